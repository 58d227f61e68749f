"""Reading and writing images and masks, with a clear message for every file a user can get wrong.

Images become float32 tensors (C, H, W) in [0, 1]; C = 1 for gray sources and 3 for everything else.
Decisions worth knowing:

* **Precision.** 16-bit PNG and TIFF keep all 16 bits (divided by 65535), colour ones included: Pillow only
  hands out 8 bits per colour channel, so the colour decode runs twice, once for the high and once for the
  low byte of every sample, and the halves are joined. 32-bit integer images (``I``) with values in
  0…65535 are read as 16-bit; other ``I`` and float (``F``) images are stretched from their minimum to their
  maximum, since such files carry no agreed white point (float images already in [0, 1] are kept as is).
* **Transparency** (RGBA, LA, palette or gray/RGB with a transparent colour) is composited onto **white**,
  the way viewers show such files on a page; the hidden colour of fully transparent pixels is often junk.
  Masks use the alpha channel instead (see :func:`load_mask`).
* **CMYK** is converted to RGB by Pillow's plain formula (no colour profile).
* **EXIF orientation** is applied, as :func:`PIL.ImageOps.exif_transpose` would; a damaged EXIF block is
  ignored rather than refusing a photo that every viewer shows.
* **Animated** files (GIF, APNG, WebP, multi-page TIFF) give their first frame.
* **Limits.** Pillow's decompression-bomb warning is an error here, and images over ``max_pixels``
  (default 64 Mi pixels, about 8192²) are refused before decoding. PNG and TIFF files whose pixel data
  covers less than the size their header declares are refused too (Pillow would fill the rest with
  black); a JPEG whose data ends early but cleanly loads with the missing part gray, as viewers show it.

Saving is atomic and refuses to replace an existing file unless ``overwrite=True``
(see :mod:`priorstudio.core.atomic`). Pillow cannot write 16-bit colour PNG, so a small encoder here does.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageFile

from priorstudio.core.atomic import atomic_write_bytes
from priorstudio.core.errors import InputImageError, MaskError, ParameterError, PriorStudioError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LOAD_FORMATS",
    "SAVE_SUFFIXES",
    "ImageInfo",
    "encode_image",
    "image_from_bytes",
    "load_image",
    "load_image_info",
    "load_mask",
    "mask_from_bytes",
    "save_format",
    "save_image",
    "save_mask",
    "to_display_uint8",
]

#: Largest image accepted by default (64 Mi pixels ≈ 8192²; 768 MiB as float32 RGB).
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024

#: Pillow format names the loader accepts (everything else is "not an image").
LOAD_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "DIB", "WEBP", "GIF", "PPM")

#: Suffix → Pillow format for :func:`save_image`.
SAVE_SUFFIXES = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}

LoadMode = Literal["auto", "gray", "color"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"
_GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_ORIENTATION_TAG = 0x0112
_NATIVE = "L" if sys.byteorder == "little" else "B"


# -- errors ----------------------------------------------------------------------------------------------
def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    detail = text[0] if text else type(error).__name__
    return detail if len(detail) <= 120 else detail[:117] + "…"


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} megapixels" if n >= 100_000 else f"{n:,} pixels"


def _too_many_pixels(name: str, width: int, height: int, max_pixels: int) -> InputImageError:
    return InputImageError(
        f"{name}: {width}×{height} is {_megapixels(width * height)}, more than the limit of "
        f"{_megapixels(max_pixels)}; shrink the image first"
    )


# -- reading ---------------------------------------------------------------------------------------------
def _read_bytes(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    name = os.fspath(path)
    p = Path(name)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputImageError(f"{name}: is a folder, not an image file") from None
    except PermissionError:
        raise InputImageError(f"{name}: cannot read the file (permission denied)") from None
    except MemoryError:
        raise InputImageError(f"{name}: the file is too large to read into memory") from None
    except OSError as error:
        if p.is_dir():
            raise InputImageError(f"{name}: is a folder, not an image file") from None
        raise InputImageError(f"{name}: cannot read the file ({error.strerror or _short(error)})") from None
    return data, name


class _Guard:
    """Turns Pillow's bomb warning into an error and silences its chatter about damaged metadata.

    ``warnings.catch_warnings`` edits process-wide filters. Two loads overlapping in different threads can
    at worst leave the bomb warning set to "error" (or Pillow's chatter ignored) afterwards, which is
    harmless; the process-wide ``Image.MAX_IMAGE_PIXELS`` is never touched.
    """

    def __enter__(self) -> None:
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _open(data: bytes, name: str) -> Image.Image:
    """Identify the file (header only) with every failure turned into an InputImageError."""
    if not data:
        raise InputImageError(f"{name}: the file is empty (0 bytes)")
    try:
        with _Guard():
            return Image.open(io.BytesIO(data), formats=LOAD_FORMATS)
    except Image.UnidentifiedImageError:
        raise InputImageError(
            f"{name}: not an image PriorStudio can read (PNG, JPEG, TIFF, BMP, WebP, GIF or PNM)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputImageError(f"{name}: refused as a possible decompression bomb ({_short(error)})") from None
    except MemoryError:
        raise InputImageError(f"{name}: not enough memory to open the image") from None
    except Exception as error:
        raise InputImageError(f"{name}: the image header is truncated or corrupt ({_short(error)})") from None


def _check_size(img: Image.Image, name: str, max_pixels: int) -> tuple[int, int]:
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InputImageError(f"{name}: the image has zero size ({width}×{height})")
    if width * height > max_pixels:
        raise _too_many_pixels(name, width, height, max_pixels)
    return width, height


def _tile_rawmode(tile: ImageFile._Tile) -> str | None:
    args = tile.args
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _with_rawmode(tile: ImageFile._Tile, rawmode: str) -> ImageFile._Tile:
    args = tile.args
    return tile._replace(args=rawmode if isinstance(args, str) else (rawmode, *args[1:]))


_SWAPPABLE_16 = ("RGB", "RGBA", "RGBX")


def _sixteen_bit_plan(img: Image.Image) -> str | None:
    """How to get all 16 bits out of a multi-channel image Pillow would cut to 8: "la16", "swap" or None.

    "la16": 16-bit gray+alpha PNG (Pillow's rawmode ``LA;16B``): re-read the 4 bytes of each pixel as RGBA.
    "swap": 16-bit RGB/RGBA: decode a second time with the byte order flipped, which yields the low bytes.
    """
    rawmodes = {_tile_rawmode(t) for t in img.tile}
    if len(rawmodes) != 1:
        return None
    rawmode = rawmodes.pop()
    if rawmode is None:
        return None
    if rawmode == "LA;16B" and img.mode == "RGBA":
        return "la16"
    base, sep, order = rawmode.rpartition(";16")
    if sep and base in _SWAPPABLE_16 and order in ("B", "L", "N") and img.mode in ("RGB", "RGBA"):
        return "swap"
    return None


def _swapped(rawmode: str) -> str:
    base, _, order = rawmode.rpartition(";16")
    native_other = "B" if _NATIVE == "L" else "L"
    return base + ";16" + {"B": "L", "L": "B", "N": native_other}[order]


@dataclass
class _Decoded:
    """Pixels as decoded, before compositing: values (H, W, C∈{1,3}) in [0,1] and alpha (H, W) or None."""

    values: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int


def _transparent_where(values: np.ndarray, transparency: object) -> np.ndarray | None:
    """Alpha from a single transparent gray level or colour (PNG tRNS on gray/RGB images)."""
    if isinstance(transparency, int) and values.shape[-1] == 1:
        return (values[..., 0] != transparency).astype(np.float32)
    if (
        isinstance(transparency, tuple)
        and len(transparency) == values.shape[-1] == 3
        and all(isinstance(v, int) for v in transparency)
    ):
        return np.any(values != np.asarray(transparency), axis=-1).astype(np.float32)
    return None


def _packed_gray_bits(img: Image.Image) -> int:
    """Bits per sample of an 8-bit-mode gray image stored packed (2- or 4-bit PNG), else 8; before load."""
    if img.mode != "L":
        return 8
    for tile in img.tile:
        rawmode = _tile_rawmode(tile) or ""
        if rawmode.startswith(("L;2", "L;4")):
            return int(rawmode[2])
    return 8


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float32) if hi <= 0 else np.ones_like(values, dtype=np.float32)
    return ((values.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)


def _deep_ppm_maxval(img: Image.Image) -> int | None:
    """The maximum sample value of a colour PPM with more than 8 bits per sample, else None."""
    if img.format != "PPM" or img.mode != "RGB" or len(img.tile) != 1:
        return None
    tile = img.tile[0]
    args = tile.args
    if tile.codec_name != "ppm" or not isinstance(args, tuple) or len(args) != 2:
        return None
    maxval = args[1]
    return maxval if isinstance(maxval, int) and 255 < maxval < 65536 else None


def _deep_ppm_rgb(img: Image.Image, data: bytes, name: str) -> _Decoded | None:
    """Binary PPM (P6) with more than 8 bits per sample: read the big-endian samples directly.

    Pillow scales such files to 8 bits per channel; the format is simple enough to read exactly.
    """
    maxval = _deep_ppm_maxval(img)
    if maxval is None or data[:2] != b"P6":
        return None
    tile = img.tile[0]
    w, h = img.size
    count = w * h * 3
    if tile.offset < 0 or len(data) < tile.offset + 2 * count:
        raise InputImageError(f"{name}: the image data is truncated or corrupt (image file is truncated)")
    samples = np.frombuffer(data, dtype=">u2", count=count, offset=tile.offset).reshape(h, w, 3)
    return _Decoded((np.minimum(samples, maxval) / np.float32(maxval)).astype(np.float32), None, 16)


def _decode_pixels(img: Image.Image, data: bytes, name: str) -> _Decoded:
    """Full decode of an opened image into :class:`_Decoded` (raises whatever Pillow raises)."""
    deep_ppm = _deep_ppm_rgb(img, data, name)
    if deep_ppm is not None:
        return deep_ppm
    plan = _sixteen_bit_plan(img)
    if plan == "la16":
        img.tile = [_with_rawmode(t, "RGBA") for t in img.tile]
        img.load()
        raw = np.asarray(img, dtype=np.uint8).astype(np.uint16)
        gray = (raw[..., 0] << 8) | raw[..., 1]
        alpha = (raw[..., 2] << 8) | raw[..., 3]
        return _Decoded(gray[..., None] / np.float32(65535), (alpha / np.float32(65535)).astype(np.float32), 16)
    tiles = len(img.tile)
    gray_bits = _packed_gray_bits(img)
    img.load()
    mode = img.mode
    info = img.info
    if plan == "swap":
        low_img = Image.open(io.BytesIO(data), formats=LOAD_FORMATS)
        if low_img.size == img.size and low_img.mode == mode and len(low_img.tile) == tiles:
            low_img.tile = [_with_rawmode(t, _swapped(_tile_rawmode(t) or "")) for t in low_img.tile]
            low_img.load()
            high = np.asarray(img, dtype=np.uint8).astype(np.uint16)
            low = np.asarray(low_img, dtype=np.uint8).astype(np.uint16)
            full = (high << 8) | low
            alpha = full[..., 3] / np.float32(65535) if mode == "RGBA" else None
            rgb = full[..., :3]
            if alpha is None and isinstance(info.get("transparency"), tuple):
                alpha = _transparent_where(rgb, info["transparency"])
            return _Decoded((rgb / np.float32(65535)).astype(np.float32), alpha, 16)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        raw16 = np.asarray(img).astype(np.uint16)[..., None]
        alpha = _transparent_where(raw16, info.get("transparency"))
        return _Decoded((raw16 / np.float32(65535)).astype(np.float32), alpha, 16)
    if mode == "I":
        raw32 = np.asarray(img).astype(np.int64)[..., None]
        if raw32.min() >= 0 and raw32.max() <= 65535:
            return _Decoded((raw32 / 65535.0).astype(np.float32), None, 16)
        return _Decoded(_stretch(raw32), None, 32)
    if mode == "F":
        rawf = np.asarray(img).astype(np.float32)[..., None]
        if not np.isfinite(rawf).all():
            raise InputImageError(f"{name}: the image contains NaN or infinite values")
        if rawf.min() >= 0 and rawf.max() <= 1:
            return _Decoded(rawf, None, 32)
        return _Decoded(_stretch(rawf), None, 32)
    if mode == "1":
        levels = np.asarray(img.convert("L"))[..., None]  # 0 or 255; a tRNS level is given on this scale
        return _Decoded((levels > 127).astype(np.float32), _transparent_where(levels, info.get("transparency")), 1)
    if mode == "L":
        raw8 = np.asarray(img)[..., None]
        transparency = info.get("transparency")
        if isinstance(transparency, int) and gray_bits < 8:  # unpacked to 0…255, its tRNS level was not
            transparency = transparency * 255 // (2**gray_bits - 1)
        return _Decoded(raw8 / np.float32(255), _transparent_where(raw8, transparency), gray_bits)
    if mode in ("LA", "La"):
        la = np.asarray(img if mode == "LA" else img.convert("LA"))
        return _Decoded(la[..., :1] / np.float32(255), la[..., 1] / np.float32(255), 8)
    if mode in ("P", "PA"):
        if mode == "PA" or "transparency" in info:
            rgba = np.asarray(img.convert("RGBA"))
            return _Decoded(rgba[..., :3] / np.float32(255), rgba[..., 3] / np.float32(255), 8)
        return _Decoded(np.asarray(img.convert("RGB")) / np.float32(255), None, 8)
    if mode == "RGB":
        raw8 = np.asarray(img)
        return _Decoded(raw8 / np.float32(255), _transparent_where(raw8, info.get("transparency")), 8)
    if mode in ("RGBA", "RGBa"):
        rgba = np.asarray(img if mode == "RGBA" else img.convert("RGBA"))
        return _Decoded(rgba[..., :3] / np.float32(255), rgba[..., 3] / np.float32(255), 8)
    if mode in ("RGBX", "CMYK", "YCbCr", "HSV"):
        return _Decoded(np.asarray(img.convert("RGB")) / np.float32(255), None, 8)
    raise InputImageError(f"{name}: unsupported pixel format {mode!r}")


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1…8); 1 when absent or unreadable."""
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an (H, W, …) array exactly as ImageOps.exif_transpose does."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, k=-1)
    if orientation == 7:
        return a[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, k=1)
    return a


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_pixel_data_short(data: bytes) -> str | None:
    """Why a PNG's pixel data inflates to fewer bytes than its header promises, or None when it does not.

    Pillow treats a deflate stream that ends early, but cleanly, as a finished image and leaves the rest
    blank; a header that lies about the height (a tiny file declaring millions of rows) would load as a
    huge empty picture. Counting the inflated bytes (streamed, never held) catches it.
    """
    view = memoryview(data)
    if len(view) < 33 or bytes(view[12:16]) != b"IHDR":
        return None
    width, height, depth, color_type, _, _, interlace = struct.unpack_from(">IIBBBBB", view, 16)
    channels = _PNG_CHANNELS.get(color_type)
    if channels is None:
        return None
    bits = depth * channels
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        pw, ph = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if pw > 0 and ph > 0:
            expected += ph * (1 + (pw * bits + 7) // 8)
    inflater = zlib.decompressobj()
    produced = 0
    pos = 8
    while pos + 8 <= len(view):
        (length,) = struct.unpack_from(">I", view, pos)
        kind = bytes(view[pos + 4 : pos + 8])
        if kind == b"IDAT":
            chunk = view[pos + 8 : pos + 8 + length]
            while chunk:
                try:
                    produced += len(inflater.decompress(chunk, 1 << 20))
                except zlib.error:
                    return None  # damaged, not short: Pillow's decoder reports it in its own words
                if produced >= expected:
                    return None
                chunk = inflater.unconsumed_tail
        elif kind == b"IEND":
            break
        pos += 12 + length
    if produced >= expected:
        return None
    return "the pixel data ends before the last row" if inflater.eof else "image file is truncated"


def _check_coverage(img: Image.Image, name: str) -> None:
    """A TIFF whose strips or tiles do not cover the declared image is corrupt (Pillow would leave holes)."""
    if img.format != "TIFF":
        return
    width, height = img.size
    covered = 0
    for tile in img.tile:
        x0, y0, x1, y1 = tile.extents
        covered += max(0, min(x1, width) - max(x0, 0)) * max(0, min(y1, height) - max(y0, 0))
    if covered < width * height:
        raise InputImageError(
            f"{name}: the image data is truncated or corrupt (its strips cover only part of the declared "
            f"{width}×{height} image)"
        )


def _decode(data: bytes, name: str, max_pixels: int) -> _Decoded:
    """Bytes → oriented :class:`_Decoded`, every failure an InputImageError."""
    if not isinstance(max_pixels, int) or max_pixels < 1:
        raise ParameterError(f"max_pixels must be a positive integer, not {max_pixels!r}")
    img = _open(data, name)
    try:
        width, height = _check_size(img, name, max_pixels)
        _check_coverage(img, name)
        short = _png_pixel_data_short(data) if img.format == "PNG" else None  # checked before allocating
        if short:
            raise InputImageError(f"{name}: the image data is truncated or corrupt ({short})")
        with _Guard():
            decoded = _decode_pixels(img, data, name)
            orientation = _orientation(img)
    except PriorStudioError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputImageError(f"{name}: refused as a possible decompression bomb ({_short(error)})") from None
    except MemoryError:
        raise InputImageError(f"{name}: not enough memory to decode the image") from None
    except Exception as error:
        raise InputImageError(f"{name}: the image data is truncated or corrupt ({_short(error)})") from None
    finally:
        img.close()
    if decoded.values.shape[:2] != (height, width):
        raise InputImageError(f"{name}: the decoded image does not match its declared size")
    if orientation != 1:
        decoded.values = _orient(decoded.values, orientation)
        if decoded.alpha is not None:
            decoded.alpha = _orient(decoded.alpha, orientation)
    return decoded


def _tensor_from(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory when torch can, else from a fresh C-ordered copy.

    ``np.ascontiguousarray`` is not enough: an EXIF flip of an image one pixel wide or high is already
    "contiguous" to NumPy, yet keeps a negative stride on its length-1 axis, which torch refuses.
    """
    if not array.flags.c_contiguous or any(stride < 0 for stride in array.strides):
        array = array.copy(order="C")
    return torch.from_numpy(array)


def _to_tensor(decoded: _Decoded, mode: str) -> torch.Tensor:
    """Composite, convert channels and clip in place where possible: large images need no extra copies."""
    values = decoded.values.astype(np.float32, copy=False)
    if not values.flags.writeable:
        values = values.copy()
    if decoded.alpha is not None:
        alpha = decoded.alpha[..., None].astype(np.float32, copy=False)
        values *= alpha
        values += 1.0 - alpha  # onto white
    if mode == "gray" and values.shape[-1] == 3:
        values = (values @ _LUMA)[..., None]
    elif mode == "color" and values.shape[-1] == 1:
        values = np.repeat(values, 3, axis=-1)
    np.clip(values, 0.0, 1.0, out=values)
    return _tensor_from(values.transpose(2, 0, 1))


def _check_mode(mode: str) -> None:
    if mode not in ("auto", "gray", "color"):
        raise ParameterError(f"mode must be 'auto', 'gray' or 'color', not {mode!r}")


def load_image(
    path: str | os.PathLike[str], *, mode: LoadMode = "auto", max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Read an image file as a float32 tensor (C, H, W) in [0, 1].

    ``mode``: "auto" (C = 1 for gray sources, 3 otherwise), "gray" (BT.601 luminance) or "color" (C = 3).
    Raises :class:`InputImageError` with a one-line message for anything that is not a readable image.
    """
    _check_mode(mode)
    data, name = _read_bytes(path)
    return _to_tensor(_decode(data, name, max_pixels), mode)


def image_from_bytes(
    data: bytes,
    *,
    mode: LoadMode = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "pasted image",
) -> torch.Tensor:
    """Like :func:`load_image` for an encoded image held in memory (paste, drag and drop)."""
    _check_mode(mode)
    return _to_tensor(_decode(bytes(data), name, max_pixels), mode)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, read without decoding the pixels (for cost estimates before loading)."""

    width: int  # after EXIF orientation: the width load_image will return
    height: int
    channels: int  # what load_image(mode="auto") returns: 1 or 3
    bit_depth: int  # bits per sample in the file: 1, 2, 4, 8, 16 or 32
    mode: str  # Pillow's mode name
    format: str  # Pillow's format name ("PNG", "JPEG", …)
    has_alpha: bool
    file_size: int  # bytes

    @property
    def pixels(self) -> int:
        return self.width * self.height


def load_image_info(path: str | os.PathLike[str]) -> ImageInfo:
    """Size, channels and bit depth of an image file from its header; no pixel decoding.

    Huge declared sizes are reported, not refused (Pillow's outright bomb limit still applies), so the
    caller can explain what would be needed; :func:`load_image` enforces ``max_pixels``.
    """
    name = os.fspath(path)
    p = Path(name)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise InputImageError(f"{name}: no such file") from None
    except OSError as error:
        raise InputImageError(f"{name}: cannot read the file ({error.strerror or _short(error)})") from None
    if p.is_dir():
        raise InputImageError(f"{name}: is a folder, not an image file")
    if size == 0:
        raise InputImageError(f"{name}: the file is empty (0 bytes)")
    try:
        with _Guard(), open(p, "rb") as fh:
            img = Image.open(fh, formats=LOAD_FORMATS)
            try:
                return _info(img, size)
            finally:
                img.close()
    except PriorStudioError:
        raise
    except Image.UnidentifiedImageError:
        raise InputImageError(
            f"{name}: not an image PriorStudio can read (PNG, JPEG, TIFF, BMP, WebP, GIF or PNM)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputImageError(f"{name}: refused as a possible decompression bomb ({_short(error)})") from None
    except PermissionError:
        raise InputImageError(f"{name}: cannot read the file (permission denied)") from None
    except Exception as error:
        raise InputImageError(f"{name}: the image header is truncated or corrupt ({_short(error)})") from None


def has_deep_samples(path: str | os.PathLike[str]) -> bool:
    """True when the file stores more than 8 bits per sample (from its header), so that a result saved from
    it should keep 16 bits; False too when it cannot be read (the read that uses it says why)."""
    try:
        return load_image_info(path).bit_depth > 8
    except PriorStudioError:
        return False


def _info(img: Image.Image, file_size: int) -> ImageInfo:
    width, height = img.size
    mode = img.mode
    plan = _sixteen_bit_plan(img)
    rawmodes = {_tile_rawmode(t) or "" for t in img.tile}
    if mode == "1":
        bits = 1
    elif mode in ("I", "F"):
        bits = 32
    elif (
        mode.startswith("I;16")
        or plan is not None
        or any(";16" in r for r in rawmodes)
        or _deep_ppm_maxval(img) is not None
    ):
        bits = 16
    else:
        bits = _packed_gray_bits(img)
    gray = mode in _GRAY_MODES or plan == "la16"
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info or (plan == "la16")
    # PNG keeps EXIF in an eXIf chunk that may come after the pixels; do not decode to find it.
    orientation = 1 if img.format == "PNG" and "exif" not in img.info else _orientation(img)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageInfo(
        width=width,
        height=height,
        channels=1 if gray else 3,
        bit_depth=bits,
        mode=mode,
        format=img.format or "",
        has_alpha=has_alpha,
        file_size=file_size,
    )


# -- masks -----------------------------------------------------------------------------------------------
#: A mask pixel is "clear" when its level is within this distance of black or white (and, in colour,
#: when its channels differ by no more than this); more than MASK_MAX_UNCLEAR of unclear pixels means the
#: file is a picture rather than a mask. Anti-aliased and JPEG-saved masks stay far below that.
MASK_CLEAR_MARGIN = 0.2
MASK_MAX_UNCLEAR = 0.25


def _unclear_fraction(level: np.ndarray, chroma: np.ndarray | None) -> float:
    unclear = (level > MASK_CLEAR_MARGIN) & (level < 1 - MASK_CLEAR_MARGIN)
    if chroma is not None:
        unclear |= chroma > MASK_CLEAR_MARGIN
    return float(unclear.mean())


def _mask_from_decoded(
    decoded: _Decoded, name: str, image_size: tuple[int, int], require_black_and_white: bool
) -> torch.Tensor:
    h, w = decoded.values.shape[:2]
    want_h, want_w = (int(image_size[0]), int(image_size[1]))
    if (h, w) != (want_h, want_w):
        raise MaskError(
            f"{name}: the mask is {w}×{h} pixels but the image is {want_w}×{want_h} (width×height); they must match"
        )
    alpha = decoded.alpha
    values = decoded.values
    if alpha is not None and float(alpha.min()) < 1.0:
        level, chroma = alpha, None
        hole = alpha < 0.5  # transparent = missing
    else:
        level = values[..., 0] if values.shape[-1] == 1 else values @ _LUMA
        chroma = None if values.shape[-1] == 1 else values.max(axis=-1) - values.min(axis=-1)
        hole = level > 0.5  # white = missing
    if require_black_and_white:
        unclear = _unclear_fraction(level, chroma)
        if unclear > MASK_MAX_UNCLEAR:
            raise MaskError(
                f"{name} is not a black-and-white mask: {100 * unclear:.0f} % of its pixels are gray or coloured "
                "(white, or transparent, marks the pixels to fill)"
            )
    return torch.from_numpy(np.ascontiguousarray(hole))


def _as_mask_error(error: InputImageError) -> MaskError:
    return MaskError(f"mask {error}")


def load_mask(
    path: str | os.PathLike[str],
    image_size: tuple[int, int],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    require_black_and_white: bool = True,
) -> torch.Tensor:
    """Read a mask file as a bool tensor (H, W), True where pixels are missing (to be filled).

    White (luminance > 0.5) marks a hole. A mask with transparency (RGBA, LA, palette) that is not fully
    opaque uses its alpha instead: transparent pixels are the holes, as in a photo with parts erased.
    ``image_size`` is (H, W) of the image the mask belongs to; any other size raises :class:`MaskError`
    naming both. A file that is mostly gray or coloured (a photo picked by mistake) is refused unless
    ``require_black_and_white=False``; soft or JPEG-saved edges are fine. Every problem with the file is a
    :class:`MaskError`.
    """
    try:
        data, name = _read_bytes(path)
        decoded = _decode(data, name, max_pixels)
    except InputImageError as error:
        raise _as_mask_error(error) from None
    return _mask_from_decoded(decoded, name, image_size, require_black_and_white)


def mask_from_bytes(
    data: bytes,
    image_size: tuple[int, int],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "pasted mask",
    require_black_and_white: bool = True,
) -> torch.Tensor:
    """Like :func:`load_mask` for an encoded mask held in memory."""
    try:
        decoded = _decode(bytes(data), name, max_pixels)
    except InputImageError as error:
        raise _as_mask_error(error) from None
    return _mask_from_decoded(decoded, name, image_size, require_black_and_white)


def save_mask(
    mask: torch.Tensor | np.ndarray,
    path: str | os.PathLike[str],
    *,
    bits: Literal[1, 8] = 1,
    overwrite: bool = False,
) -> Path:
    """Write a mask (H, W), True = missing, as a PNG with white holes on black (1-bit or 8-bit gray)."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ParameterError(f"masks are saved as PNG; {target.name} needs the .png suffix")
    if bits not in (1, 8):
        raise ParameterError(f"mask bits must be 1 or 8, not {bits!r}")
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    array = np.squeeze(array)
    if array.ndim != 2 or array.size == 0:
        raise ParameterError(f"a mask must be a non-empty 2-D array (H, W), not shape {tuple(array.shape)}")
    gray = np.where(array.astype(bool), 255, 0).astype(np.uint8)
    img = Image.fromarray(gray)
    if bits == 1:
        img = img.convert("1", dither=Image.Dither.NONE)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return atomic_write_bytes(target, buf.getvalue(), overwrite)


# -- saving ----------------------------------------------------------------------------------------------
def _as_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(H, W), (C, H, W) or (1, C, H, W) with C ∈ {1, 3} → float64 (H, W, C) clipped to [0, 1]."""
    array = image.detach().to("cpu", torch.float64).numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 3) or array.shape[1] == 0 or array.shape[2] == 0:
        raise ParameterError(f"an image must be (C, H, W) with C = 1 or 3, not shape {tuple(np.shape(image))}")
    if not np.isfinite(array).all():
        raise ParameterError("the image contains NaN or infinite values; nothing was saved")
    return np.clip(array, 0.0, 1.0).transpose(1, 2, 0)


def to_display_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An image tensor as uint8 for display: (H, W) for gray, (H, W, 3) for colour; NaN shows as black."""
    array = image.detach().to("cpu", torch.float32).numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ParameterError(f"an image must be (C, H, W) with C = 1 or 3, not shape {tuple(np.shape(image))}")
    out = np.rint(np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(out[0] if out.shape[0] == 1 else out.transpose(1, 2, 0))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _filter_rows(rows: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """PNG-filter scanlines (n, stride) given the row above each; per row the filter with the smallest
    sum of absolute signed bytes wins (the heuristic the PNG specification suggests)."""
    raw = rows.astype(np.int16)
    up = prev.astype(np.int16)
    left = np.zeros_like(raw)
    left[:, bpp:] = raw[:, :-bpp]
    upleft = np.zeros_like(raw)
    upleft[:, bpp:] = up[:, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    candidates = np.stack([raw, raw - left, raw - up, raw - ((left + up) >> 1), raw - paeth])
    candidates = (candidates & 0xFF).astype(np.uint8)
    cost = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2)
    best = cost.argmin(axis=0)
    chosen = candidates[best, np.arange(rows.shape[0])]
    return np.concatenate([best.astype(np.uint8)[:, None], chosen], axis=1)


def _encode_png16(samples: np.ndarray) -> bytes:
    """A 16-bit PNG (gray or RGB, big-endian samples) from uint16 (H, W, C∈{1,3})."""
    h, w, c = samples.shape
    color_type = {1: 0, 3: 2}[c]
    rows = samples.astype(">u2").reshape(h, w * c).view(np.uint8)
    bpp = 2 * c
    compressor = zlib.compressobj(6)
    parts = []
    block = max(1, (1 << 22) // max(1, rows.shape[1]))  # bound the filter's temporaries to a few MB
    for start in range(0, h, block):
        stop = min(h, start + block)
        prev = np.zeros_like(rows[:1]) if start == 0 else rows[start - 1 : start]
        prevs = np.concatenate([prev, rows[start : stop - 1]], axis=0)
        parts.append(compressor.compress(_filter_rows(rows[start:stop], prevs, bpp).tobytes()))
    parts.append(compressor.flush())
    compressed = b"".join(parts)
    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    chunks = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header)]
    step = 1 << 20
    chunks += [_png_chunk(b"IDAT", compressed[i : i + step]) for i in range(0, len(compressed), step)] or [
        _png_chunk(b"IDAT", b"")
    ]
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


def encode_image(image: torch.Tensor | np.ndarray, format: str = "PNG", *, bit_depth: Literal[8, 16] = 8) -> bytes:
    """Encode an image (C, H, W) in [0, 1] as file bytes ("PNG", "JPEG", "TIFF", "BMP", "WEBP")."""
    if bit_depth not in (8, 16):
        raise ParameterError(f"bit_depth must be 8 or 16, not {bit_depth!r}")
    fmt = format.upper()
    if fmt not in set(SAVE_SUFFIXES.values()):
        raise ParameterError(f"cannot write {format!r}; choose PNG, JPEG, TIFF, BMP or WEBP")
    if bit_depth == 16 and fmt != "PNG":
        raise ParameterError("16-bit images are written as PNG only; use a .png name or 8 bits")
    hwc = _as_hwc(image)
    if bit_depth == 16:
        samples = np.rint(hwc * 65535).astype(np.uint16)
        if samples.shape[-1] == 3:
            return _encode_png16(samples)
        img = Image.fromarray(np.ascontiguousarray(samples[..., 0]))  # uint16 → mode I;16
    else:
        samples8 = np.rint(hwc * 255).astype(np.uint8)
        img = Image.fromarray(np.ascontiguousarray(samples8[..., 0] if samples8.shape[-1] == 1 else samples8))
    buf = io.BytesIO()
    options: dict[str, object] = {}
    if fmt == "JPEG":
        options = {"quality": 95, "subsampling": 0}
    elif fmt == "WEBP":
        options = {"lossless": True}
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def save_image(
    image: torch.Tensor | np.ndarray,
    path: str | os.PathLike[str],
    *,
    bit_depth: Literal[8, 16] = 8,
    overwrite: bool = False,
) -> Path:
    """Write an image (C, H, W) or (H, W) in [0, 1] atomically; the format follows the suffix.

    PNG at 8 or 16 bits (16-bit gray and colour); JPEG (quality 95, no chroma subsampling), TIFF, BMP and
    lossless WebP at 8 bits. Values outside [0, 1] are clipped. An existing file is refused unless
    ``overwrite=True`` (:class:`~priorstudio.core.atomic.OutputExistsError`). Returns the path.
    """
    target = Path(path)
    fmt = save_format(target, bit_depth)
    return atomic_write_bytes(target, encode_image(image, fmt, bit_depth=bit_depth), overwrite)


def save_format(path: str | os.PathLike[str], bit_depth: int = 8) -> str:
    """The format :func:`save_image` writes ``path`` in, or a ParameterError: callers check an output name
    with it before a long run, so a name it cannot write is refused before the work, not after."""
    target = Path(path)
    fmt = SAVE_SUFFIXES.get(target.suffix.lower())
    if fmt is None:
        raise ParameterError(
            f"cannot tell the format of {target.name!r}; use one of {', '.join(sorted(set(SAVE_SUFFIXES)))}"
        )
    if bit_depth == 16 and fmt != "PNG":
        raise ParameterError(f"16-bit images are written as PNG only; {target.name} is {fmt}")
    return fmt
