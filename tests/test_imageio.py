"""Image and mask I/O: every supported kind of file loads correctly, every bad one gives a clear error."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from priorstudio.core.atomic import OutputExistsError, SaveError, atomic_path, atomic_write_bytes
from priorstudio.core.errors import InputImageError, MaskError, ParameterError, PriorStudioError
from priorstudio.core.imageio import (
    DEFAULT_MAX_PIXELS,
    image_from_bytes,
    load_image,
    load_image_info,
    load_mask,
    mask_from_bytes,
    save_image,
    save_mask,
    to_display_uint8,
)

RNG = np.random.default_rng(1234)


def hwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(1, 2, 0)


def rand8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def rand16(*shape: int) -> np.ndarray:
    return RNG.integers(0, 65536, shape).astype(np.uint16)


# -- an independent, deliberately simple PNG writer/reader for checking ours -------------------------
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(
    samples: np.ndarray,
    bit_depth: int,
    color_type: int,
    *,
    size: tuple[int, int] | None = None,
    interlace: bool = False,
) -> bytes:
    """Unfiltered PNG from (H, W, C) samples; ``size`` (W, H) may lie about the dimensions."""
    h, w = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else np.uint8

    def scanlines(image: np.ndarray) -> bytes:
        if image.size == 0:
            return b""
        rows = np.ascontiguousarray(image.astype(dtype)).reshape(image.shape[0], -1).view(np.uint8)
        return b"".join(b"\x00" + row.tobytes() for row in rows)

    if interlace:
        raw = b"".join(scanlines(samples[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7)
    else:
        raw = scanlines(samples)
    width, height = size or (w, h)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def reference_png_decode(data: bytes) -> np.ndarray:
    """Pure-Python decoder for non-interlaced 8/16-bit gray/RGB PNG (all five filters), for tiny images."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert (
            zlib.crc32(kind + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        )
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    w, h, depth, ctype, _, _, interlace = header
    assert interlace == 0
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    bpp = channels * depth // 8
    stride = w * bpp
    raw = zlib.decompress(idat)
    prev = bytearray(stride)
    out = bytearray()
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                pred = 0
            line[i] = (line[i] + pred) & 0xFF
        out += line
        prev = line
    dtype = ">u2" if depth == 16 else np.uint8
    return np.frombuffer(bytes(out), dtype=dtype).reshape(h, w, channels).astype(np.int64)


# -- plain formats and modes -------------------------------------------------------------------------
def test_gray_png_8bit_exact(tmp_path: Path) -> None:
    a = rand8(7, 9)
    Image.fromarray(a).save(tmp_path / "g.png")
    t = load_image(tmp_path / "g.png")
    assert t.dtype == torch.float32 and t.shape == (1, 7, 9)
    np.testing.assert_allclose(t[0].numpy(), a / 255, atol=1e-7)


def test_gray_png_16bit_keeps_precision(tmp_path: Path) -> None:
    a = rand16(6, 11)
    Image.fromarray(a).save(tmp_path / "g16.png")  # mode I;16
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    t = load_image(tmp_path / "g16.png")
    assert t.shape == (1, 6, 11)
    np.testing.assert_allclose(t[0].numpy().astype(np.float64) * 65535, a, atol=5e-3)
    assert load_image_info(tmp_path / "g16.png").bit_depth == 16


def test_gray_tiff_16bit_keeps_precision(tmp_path: Path) -> None:
    a = rand16(5, 8)
    Image.fromarray(a).save(tmp_path / "g16.tif")
    t = load_image(tmp_path / "g16.tif")
    np.testing.assert_allclose(t[0].numpy().astype(np.float64) * 65535, a, atol=5e-3)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("channels", [3, 4])
def test_color_tiff_16bit_keeps_precision(
    tmp_path: Path, byteorder: str, compression: str | None, channels: int
) -> None:
    tifffile = pytest.importorskip("tifffile")
    a = rand16(9, 7, channels)
    if channels == 4:
        a[..., 3] = 65535  # opaque, so the colour comes through unchanged
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    tifffile.imwrite(
        tmp_path / "c16.tif",
        a,
        byteorder=byteorder,
        compression=compression,
        photometric="rgb",
        rowsperstrip=4,
        **extra,
    )
    t = load_image(tmp_path / "c16.tif")
    assert t.shape == (3, 9, 7)
    np.testing.assert_allclose(hwc(t).astype(np.float64) * 65535, a[..., :3], atol=5e-3)
    assert load_image_info(tmp_path / "c16.tif").bit_depth == 16


def test_color_png_16bit_from_independent_writer(tmp_path: Path) -> None:
    a = rand16(5, 6, 3)
    (tmp_path / "c16.png").write_bytes(png_bytes(a, 16, 2))
    t = load_image(tmp_path / "c16.png")
    np.testing.assert_allclose(hwc(t).astype(np.float64) * 65535, a, atol=5e-3)
    info = load_image_info(tmp_path / "c16.png")
    assert (info.width, info.height, info.channels, info.bit_depth) == (6, 5, 3, 16)


def test_interlaced_png_16bit_keeps_precision(tmp_path: Path) -> None:
    a = rand16(11, 13, 3)
    (tmp_path / "i16.png").write_bytes(png_bytes(a, 16, 2, interlace=True))
    assert Image.open(tmp_path / "i16.png").info.get("interlace")
    np.testing.assert_allclose(hwc(load_image(tmp_path / "i16.png")).astype(np.float64) * 65535, a, atol=5e-3)
    g = rand16(11, 13, 1)
    (tmp_path / "g16.png").write_bytes(png_bytes(g, 16, 0, interlace=True))
    np.testing.assert_allclose(load_image(tmp_path / "g16.png")[0].numpy() * 65535.0, g[..., 0], atol=5e-3)


def test_rgba_png_16bit_composited_with_full_precision(tmp_path: Path) -> None:
    a = rand16(4, 5, 4)
    (tmp_path / "rgba16.png").write_bytes(png_bytes(a, 16, 6))
    t = hwc(load_image(tmp_path / "rgba16.png")).astype(np.float64)
    v = a.astype(np.float64) / 65535
    expected = v[..., :3] * v[..., 3:] + (1 - v[..., 3:])
    np.testing.assert_allclose(t, expected, atol=2e-6)


def test_la_png_16bit_is_gray_with_full_precision(tmp_path: Path) -> None:
    a = rand16(4, 5, 2)
    (tmp_path / "la16.png").write_bytes(png_bytes(a, 16, 4))
    t = load_image(tmp_path / "la16.png")
    assert t.shape == (1, 4, 5)
    v = a.astype(np.float64) / 65535
    np.testing.assert_allclose(t[0].numpy(), v[..., 0] * v[..., 1] + (1 - v[..., 1]), atol=2e-6)
    info = load_image_info(tmp_path / "la16.png")
    assert (info.channels, info.bit_depth, info.has_alpha) == (1, 16, True)


def test_rgb_png_8bit_exact(tmp_path: Path) -> None:
    a = rand8(4, 6, 3)
    Image.fromarray(a).save(tmp_path / "c.png")
    t = load_image(tmp_path / "c.png")
    assert t.shape == (3, 4, 6)
    np.testing.assert_allclose(hwc(t), a / 255, atol=1e-7)


def test_rgba_is_composited_onto_white(tmp_path: Path) -> None:
    a = rand8(5, 4, 4)
    a[0, 0, 3] = 0  # fully transparent: white whatever the hidden colour
    a[0, 1, 3] = 255  # opaque: its own colour
    Image.fromarray(a, "RGBA").save(tmp_path / "rgba.png")
    t = hwc(load_image(tmp_path / "rgba.png"))
    v = a.astype(np.float64) / 255
    np.testing.assert_allclose(t, v[..., :3] * v[..., 3:] + 1 - v[..., 3:], atol=1e-6)
    np.testing.assert_allclose(t[0, 0], 1.0)
    np.testing.assert_allclose(t[0, 1], v[0, 1, :3], atol=1e-6)


def test_la_is_gray_composited_onto_white(tmp_path: Path) -> None:
    a = rand8(3, 5, 2)
    Image.fromarray(a, "LA").save(tmp_path / "la.png")
    t = load_image(tmp_path / "la.png")
    assert t.shape == (1, 3, 5)
    v = a.astype(np.float64) / 255
    np.testing.assert_allclose(t[0].numpy(), v[..., 0] * v[..., 1] + 1 - v[..., 1], atol=1e-6)


def _palette_image() -> Image.Image:
    img = Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8), "P")
    img.putpalette([10, 20, 30, 200, 100, 0, 0, 0, 255] + [0] * (253 * 3))
    return img


def test_palette_with_transparency(tmp_path: Path) -> None:
    _palette_image().save(tmp_path / "p.png", transparency=1)
    t = hwc(load_image(tmp_path / "p.png"))
    assert t.shape == (2, 3, 3)
    np.testing.assert_allclose(t[0, 0], np.array([10, 20, 30]) / 255, atol=1e-6)
    np.testing.assert_allclose(t[0, 1], 1.0)  # transparent index → white
    np.testing.assert_allclose(t[0, 2], np.array([0, 0, 255]) / 255, atol=1e-6)


def test_palette_without_transparency_and_gif(tmp_path: Path) -> None:
    img = _palette_image()
    img.save(tmp_path / "p.png")
    img.save(tmp_path / "p.gif")
    for name in ("p.png", "p.gif"):
        t = hwc(load_image(tmp_path / name))
        np.testing.assert_allclose(t[0, 1], np.array([200, 100, 0]) / 255, atol=1e-6)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    t = load_image(tmp_path / "cmyk.jpg")
    assert t.shape == (3, 8, 8)
    expected = np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB")) / 255
    np.testing.assert_allclose(hwc(t), expected, atol=1e-6)
    assert t[0].mean() > 0.9 and t[1].mean() < 0.1  # red


def test_one_bit_image(tmp_path: Path) -> None:
    a = RNG.random((4, 7)) > 0.5
    Image.fromarray(a).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    t = load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(t[0].numpy(), a.astype(np.float32))
    assert load_image_info(tmp_path / "b.png").bit_depth == 1


def test_mode_i_and_f(tmp_path: Path) -> None:
    small = RNG.integers(0, 65536, (3, 4)).astype(np.int32)
    Image.fromarray(small, "I").save(tmp_path / "i.tif")
    np.testing.assert_allclose(load_image(tmp_path / "i.tif")[0].numpy() * 65535.0, small, atol=5e-3)
    wide = np.array([[-5, 0], [10, 95]], dtype=np.int32)
    Image.fromarray(wide, "I").save(tmp_path / "iw.tif")
    np.testing.assert_allclose(load_image(tmp_path / "iw.tif")[0].numpy(), (wide + 5) / 100, atol=1e-6)
    unit = RNG.random((3, 4)).astype(np.float32)
    Image.fromarray(unit, "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "f.tif")[0].numpy(), unit)
    big = np.array([[0, 2], [4, 8]], dtype=np.float32)
    Image.fromarray(big, "F").save(tmp_path / "fb.tif")
    np.testing.assert_allclose(load_image(tmp_path / "fb.tif")[0].numpy(), big / 8)
    bad = np.array([[0, np.nan]], dtype=np.float32)
    Image.fromarray(bad, "F").save(tmp_path / "fn.tif")
    with pytest.raises(InputImageError, match="NaN"):
        load_image(tmp_path / "fn.tif")


@pytest.mark.parametrize("maxval", [65535, 1023])
def test_deep_pnm_keeps_precision(tmp_path: Path, maxval: int) -> None:
    a = RNG.integers(0, maxval + 1, (3, 5, 3)).astype(">u2")
    (tmp_path / "c.ppm").write_bytes(b"P6\n5 3\n%d\n" % maxval + a.tobytes())
    np.testing.assert_allclose(hwc(load_image(tmp_path / "c.ppm")).astype(np.float64) * maxval, a, atol=maxval * 1e-7)
    assert load_image_info(tmp_path / "c.ppm").bit_depth == 16
    (tmp_path / "g.pgm").write_bytes(b"P5\n5 3\n%d\n" % maxval + a[..., 0].tobytes())
    np.testing.assert_allclose(load_image(tmp_path / "g.pgm")[0].numpy() * maxval, a[..., 0], atol=0.01)
    (tmp_path / "cut.ppm").write_bytes((b"P6\n5 3\n%d\n" % maxval + a.tobytes())[:-3])
    with pytest.raises(InputImageError, match="truncated"):
        load_image(tmp_path / "cut.ppm")


@pytest.mark.parametrize("suffix", ["bmp", "webp", "tif", "jpg"])
def test_other_formats(tmp_path: Path, suffix: str) -> None:
    a = rand8(6, 10, 3)
    kwargs = {"lossless": True} if suffix == "webp" else {"quality": 100} if suffix == "jpg" else {}
    Image.fromarray(a).save(tmp_path / f"c.{suffix}", **kwargs)
    t = hwc(load_image(tmp_path / f"c.{suffix}"))
    assert t.shape == (6, 10, 3)
    expected = np.asarray(Image.open(tmp_path / f"c.{suffix}").convert("RGB")) / 255  # JPEG is lossy
    np.testing.assert_allclose(t, expected, atol=1e-6)
    if suffix != "jpg":
        np.testing.assert_allclose(t, a / 255, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (500, 1), (1, 500), (2, 3)])
def test_tiny_and_thin_images(tmp_path: Path, size: tuple[int, int]) -> None:
    w, h = size
    for mode in ("L", "RGB"):
        Image.new(mode, (w, h), 77 if mode == "L" else (77, 1, 2)).save(tmp_path / f"{mode}.png")
        t = load_image(tmp_path / f"{mode}.png")
        assert t.shape == ((1 if mode == "L" else 3), h, w)
        assert abs(float(t[0, 0, 0]) - 77 / 255) < 1e-6


def test_modes_gray_and_color(tmp_path: Path) -> None:
    a = rand8(3, 4, 3)
    Image.fromarray(a).save(tmp_path / "c.png")
    g = load_image(tmp_path / "c.png", mode="gray")
    assert g.shape == (1, 3, 4)
    np.testing.assert_allclose(g[0].numpy(), a @ np.array([0.299, 0.587, 0.114]) / 255, atol=1e-5)
    Image.fromarray(a[..., 0]).save(tmp_path / "g.png")
    c = load_image(tmp_path / "g.png", mode="color")
    assert c.shape == (3, 3, 4) and torch.equal(c[0], c[2])
    with pytest.raises(ParameterError, match="mode"):
        load_image(tmp_path / "g.png", mode="rgb")  # type: ignore[arg-type]


# -- EXIF orientation ----------------------------------------------------------------------------------
def _marked() -> np.ndarray:
    """A 2×3 (H×W) RGB image whose pixels are all different and far apart (survive JPEG)."""
    a = np.zeros((2, 3, 3), dtype=np.uint8)
    a[0, 0] = (255, 0, 0)
    a[0, 1] = (0, 255, 0)
    a[0, 2] = (0, 0, 255)
    a[1, 0] = (255, 255, 0)
    a[1, 1] = (255, 255, 255)
    a[1, 2] = (0, 0, 0)
    return np.kron(a, np.ones((8, 8, 1), dtype=np.uint8))  # 16×24 blocks of 8 px for JPEG


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    img = Image.fromarray(_marked())
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.jpg", exif=exif, quality=100, subsampling=0)
    t = load_image(tmp_path / "o.jpg")
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.jpg")).convert("RGB")) / 255
    np.testing.assert_allclose(hwc(t), expected, atol=1e-6)
    info = load_image_info(tmp_path / "o.jpg")
    assert (info.height, info.width) == tuple(t.shape[1:])


def test_exif_orientation_6_is_a_quarter_turn_clockwise(tmp_path: Path) -> None:
    img = Image.fromarray(_marked())  # 24 wide, 16 tall, red block top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif, quality=100, subsampling=0)
    t = hwc(load_image(tmp_path / "r.jpg"))
    assert t.shape == (24, 16, 3)  # now portrait
    assert t[4, 12].round().tolist() == [1.0, 0.0, 0.0]  # the red block is now top-right
    assert t[20, 12].round().tolist() == [0.0, 0.0, 1.0]  # blue (top-right before) is bottom-right


def test_broken_or_bogus_orientation_is_ignored(tmp_path: Path) -> None:
    img = Image.fromarray(_marked())
    exif = Image.Exif()
    exif[0x0112] = 99
    img.save(tmp_path / "b.jpg", exif=exif, quality=100, subsampling=0)
    assert load_image(tmp_path / "b.jpg").shape == (3, 16, 24)


def _exif_jpeg(size: tuple[int, int], orientation: int, mode: str) -> bytes:
    """A JPEG of (H, W) pixels whose EXIF says how to turn it for display."""
    h, w = size
    rng = np.random.default_rng(orientation)
    a = rng.integers(0, 256, (h, w) if mode == "L" else (h, w, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(a, mode).save(buf, format="JPEG", exif=exif, quality=100)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("size", [(1, 1), (1, 17), (13, 1)])
def test_exif_orientation_of_one_pixel_wide_images(
    tmp_path: Path, size: tuple[int, int], orientation: int, mode: str
) -> None:
    """Flipping a 1-pixel side leaves a negative stride that torch cannot take; the image must still load."""
    path = tmp_path / "thin.jpg"
    path.write_bytes(_exif_jpeg(size, orientation, mode))
    h, w = size if orientation < 5 else size[::-1]
    t = load_image(path)
    assert t.shape == (1 if mode == "L" else 3, h, w)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)), dtype=np.float32) / 255
    np.testing.assert_allclose(hwc(t), expected.reshape(h, w, -1), atol=1e-6)
    assert (load_image_info(path).height, load_image_info(path).width) == (h, w)


# -- bad input -----------------------------------------------------------------------------------------
def _good_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rand8(16, 16, 3)).save(buf, format="PNG")
    return buf.getvalue()


def _good_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rand8(16, 16, 3)).save(buf, format="JPEG")
    return buf.getvalue()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_folder(tmp_path: Path) -> None:
    with pytest.raises(InputImageError, match="folder"):
        load_image(tmp_path)


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputImageError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(InputImageError, match="empty"):
        load_image_info(tmp_path / "empty.png")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("these are my notes, not a picture\n")
    with pytest.raises(InputImageError, match="not an image"):
        load_image(tmp_path / "notes.png")
    with pytest.raises(InputImageError, match="not an image"):
        load_image_info(tmp_path / "notes.png")


@pytest.mark.parametrize("maker", [_good_png, _good_jpeg])
def test_truncated(tmp_path: Path, maker) -> None:
    data = maker()
    (tmp_path / "t.img").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputImageError, match="truncated or corrupt"):
        load_image(tmp_path / "t.img")


def test_corrupt_png_data(tmp_path: Path) -> None:
    data = bytearray(_good_png())
    start = data.index(b"IDAT") + 4
    data[start + 2 : start + 40] = bytes(38)  # wipe the deflate stream
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(InputImageError, match="truncated or corrupt"):
        load_image(tmp_path / "c.png")


def test_png_header_promising_more_rows_than_the_data_holds(tmp_path: Path) -> None:
    """Pillow would load such a file as a huge, mostly blank picture; it is refused before decoding."""
    data = png_bytes(rand8(9, 12, 1), 8, 0, size=(12, 3_000_000))
    (tmp_path / "tall.png").write_bytes(data)
    with pytest.raises(InputImageError, match="ends before the last row"):
        load_image(tmp_path / "tall.png")
    for interlace in (False, True):  # the exact byte count, interlaced or not, passes
        ok = png_bytes(rand16(7, 5, 3), 16, 2, interlace=interlace)
        assert load_image(_write(tmp_path / "ok.png", ok)).shape == (3, 7, 5)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_tiff_strips_not_covering_the_image(tmp_path: Path) -> None:
    Image.fromarray(rand8(8, 4, 3)).save(tmp_path / "ok.tif")
    data = bytearray((tmp_path / "ok.tif").read_bytes())
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    for k in range(count):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag == 257:  # ImageLength: claim 100000 rows
            struct.pack_into(order + ("H" if kind == 3 else "I"), data, entry + 8, 100_000)
    (tmp_path / "tall.tif").write_bytes(bytes(data))
    with pytest.raises(InputImageError, match="cover only part"):
        load_image(tmp_path / "tall.tif")


def test_truncated_file_still_has_header_info(tmp_path: Path) -> None:
    """load_image_info reads only the header: it answers for a file whose pixels are cut off."""
    data = _good_png()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    info = load_image_info(tmp_path / "t.png")
    assert (info.width, info.height, info.channels, info.bit_depth, info.format) == (16, 16, 3, 8, "PNG")


def test_decompression_bomb_refused(tmp_path: Path) -> None:
    # far beyond Pillow's own limit: its DecompressionBombError
    (tmp_path / "bomb.png").write_bytes(png_bytes(np.zeros((1, 1, 1)), 8, 0, size=(100_000, 100_000)))
    with pytest.raises(InputImageError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")
    # between Pillow's warning and its error: the warning must also refuse the file
    warn_size = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    (tmp_path / "warn.png").write_bytes(png_bytes(np.zeros((1, 1, 1)), 8, 0, size=(warn_size, warn_size)))
    with pytest.raises(InputImageError, match="decompression bomb"):
        load_image(tmp_path / "warn.png", max_pixels=10**12)
    with pytest.raises(InputImageError, match="decompression bomb"):
        load_image_info(tmp_path / "warn.png")


def test_too_many_pixels(tmp_path: Path) -> None:
    side = int(DEFAULT_MAX_PIXELS**0.5) + 1  # over our limit, under Pillow's
    (tmp_path / "big.png").write_bytes(png_bytes(np.zeros((1, 1, 1)), 8, 0, size=(side, side)))
    with pytest.raises(InputImageError, match="more than the limit"):
        load_image(tmp_path / "big.png")
    info = load_image_info(tmp_path / "big.png")  # reported, not refused: the GUI explains
    assert info.pixels == side * side
    Image.new("L", (20, 10)).save(tmp_path / "small.png")
    with pytest.raises(InputImageError, match=r"20×10 is 200 pixels, more than the limit of 199 pixels"):
        load_image(tmp_path / "small.png", max_pixels=199)
    assert load_image(tmp_path / "small.png", max_pixels=200).shape == (1, 10, 20)
    with pytest.raises(ParameterError):
        load_image(tmp_path / "small.png", max_pixels=0)


def test_zero_size(tmp_path: Path) -> None:
    (tmp_path / "zero.png").write_bytes(png_bytes(np.zeros((1, 1, 1)), 8, 0, size=(0, 5)))
    with pytest.raises(InputImageError):
        load_image(tmp_path / "zero.png")


def test_error_messages_are_one_line(tmp_path: Path) -> None:
    data = _good_png()
    cases = {"t.png": data[:100], "n.png": b"hello", "e.png": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputImageError) as caught:
            load_image(tmp_path / name)
        message = str(caught.value)
        assert "\n" not in message and name in message


def test_image_from_bytes(tmp_path: Path) -> None:
    data = _good_png()
    t = image_from_bytes(data)
    assert t.shape == (3, 16, 16)
    with pytest.raises(InputImageError, match="pasted image: not an image"):
        image_from_bytes(b"GIF89a nonsense")
    with pytest.raises(InputImageError, match="empty"):
        image_from_bytes(b"")


# -- saving ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_round_trip(tmp_path: Path, channels: int, bit_depth: int) -> None:
    x = torch.rand(channels, 13, 17)
    x[:, 0, 0] = 0.0
    x[:, 0, 1] = 1.0
    path = save_image(x, tmp_path / "out.png", bit_depth=bit_depth)
    y = load_image(path)
    assert y.shape == x.shape
    step = 255 if bit_depth == 8 else 65535
    assert float((y - x).abs().max()) <= 0.5 / step + 1e-6
    assert float((y - x).abs().max()) < 1 / step  # the task's 1/65535 bound, 16-bit included


def test_png16_color_is_a_standard_png(tmp_path: Path) -> None:
    """Our 16-bit colour PNG decodes the same with an independent reader (all filters exercised)."""
    x = torch.rand(3, 9, 11)
    x[:, 4:] = torch.linspace(0, 1, 11)  # smooth rows pick Sub/Up/Average/Paeth filters
    path = save_image(x, tmp_path / "c16.png", bit_depth=16)
    ref = reference_png_decode(path.read_bytes())
    np.testing.assert_array_equal(ref, np.rint(hwc(x).astype(np.float64) * 65535))
    data = path.read_bytes()
    assert struct.unpack(">IIBB", data[16:26]) == (11, 9, 16, 2)


def test_gray16_png_is_mode_i16(tmp_path: Path) -> None:
    path = save_image(torch.rand(1, 4, 5), tmp_path / "g16.png", bit_depth=16)
    assert Image.open(path).mode == "I;16"


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".PNG"])
def test_other_save_formats(tmp_path: Path, suffix: str) -> None:
    x = torch.rand(3, 8, 8)
    y = load_image(save_image(x, tmp_path / f"out{suffix}"))
    assert y.shape == x.shape
    tol = 0.25 if suffix in (".jpg", ".jpeg") else 0.5 / 255 + 1e-6
    assert float((y - x).abs().max()) <= tol


def test_save_accepts_hw_and_batch_of_one_and_clips(tmp_path: Path) -> None:
    save_image(torch.rand(1, 3, 4, 5), tmp_path / "b.png")
    assert load_image(tmp_path / "b.png").shape == (3, 4, 5)
    save_image(torch.full((4, 5), 2.0), tmp_path / "hw.png")
    assert float(load_image(tmp_path / "hw.png").min()) == 1.0


def test_save_refuses_bad_input(tmp_path: Path) -> None:
    x = torch.rand(3, 4, 4)
    with pytest.raises(ParameterError, match="format"):
        save_image(x, tmp_path / "out.xyz")
    with pytest.raises(ParameterError, match="16-bit"):
        save_image(x, tmp_path / "out.jpg", bit_depth=16)
    with pytest.raises(ParameterError, match="NaN"):
        save_image(torch.full((1, 2, 2), float("nan")), tmp_path / "nan.png")
    with pytest.raises(ParameterError, match="shape"):
        save_image(torch.rand(2, 4, 4), tmp_path / "two.png")
    assert not list(tmp_path.iterdir())


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="already exists") as caught:
        save_image(torch.rand(1, 4, 4), target)
    assert isinstance(caught.value, FileExistsError) and isinstance(caught.value, PriorStudioError)
    assert target.read_bytes() == b"precious"
    save_image(torch.rand(1, 4, 4), target, overwrite=True)
    assert load_image(target).shape == (1, 4, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary files left


def test_save_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SaveError, match="does not exist"):
        save_image(torch.rand(1, 4, 4), tmp_path / "no" / "out.png")


def test_saved_file_gets_normal_permissions(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    old = os.umask(0o022)
    try:
        path = save_image(torch.rand(1, 4, 4), tmp_path / "p.png")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_path_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "movie.mp4"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.exists()
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder crashed")
    assert not list(tmp_path.iterdir())


def test_atomic_path_race_does_not_clobber(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    with pytest.raises(OutputExistsError), atomic_path(target) as tmp:
        tmp.write_bytes(b"mine")
        target.write_bytes(b"theirs")  # someone else took the name meanwhile
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_write_replaces_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two", overwrite=True)
    assert target.read_bytes() == b"two"
    with pytest.raises(SaveError, match="folder"):
        atomic_write_bytes(tmp_path, b"x", overwrite=True)


def test_to_display_uint8() -> None:
    g = to_display_uint8(torch.tensor([[[0.0, 0.5, 1.0, 2.0, float("nan")]]]))
    assert g.dtype == np.uint8 and g.shape == (1, 5)
    assert g.tolist() == [[0, 128, 255, 255, 0]]
    c = to_display_uint8(torch.rand(1, 3, 4, 6))
    assert c.shape == (4, 6, 3) and c.flags["C_CONTIGUOUS"]
    assert to_display_uint8(torch.zeros(4, 6)).shape == (4, 6)
    with pytest.raises(ParameterError):
        to_display_uint8(torch.zeros(2, 4, 4))


# -- masks ---------------------------------------------------------------------------------------------
def _holes(h: int = 6, w: int = 8) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[1:3, 2:6] = True
    m[5, 7] = True
    return m


def test_mask_gray_rgb_palette_and_one_bit(tmp_path: Path) -> None:
    m = _holes()
    gray = np.where(m, 255, 0).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "c.png")
    Image.fromarray(gray).convert("P").save(tmp_path / "p.png")
    Image.fromarray(m).save(tmp_path / "b.png")
    Image.fromarray((m * 40000).astype(np.uint16)).save(tmp_path / "g16.png")
    for name in ("g.png", "c.png", "p.png", "b.png", "g16.png"):
        loaded = load_mask(tmp_path / name, (6, 8))
        assert loaded.dtype == torch.bool and loaded.shape == (6, 8), name
        np.testing.assert_array_equal(loaded.numpy(), m, err_msg=name)


def test_mask_threshold_is_half_luminance(tmp_path: Path) -> None:
    Image.fromarray(np.array([[127, 128, 255, 0]], dtype=np.uint8)).save(tmp_path / "t.png")
    loaded = load_mask(tmp_path / "t.png", (1, 4), require_black_and_white=False)
    assert loaded.tolist() == [[False, True, True, False]]


def test_mask_that_is_a_photo_is_refused(tmp_path: Path) -> None:
    photo = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    with pytest.raises(MaskError, match=r"photo.png is not a black-and-white mask: \d+ % of its pixels"):
        load_mask(tmp_path / "photo.png", (16, 16))
    assert load_mask(tmp_path / "photo.png", (16, 16), require_black_and_white=False).shape == (16, 16)
    strokes = np.zeros((16, 16, 3), dtype=np.uint8)
    strokes[4:8] = (255, 0, 0)  # a quarter of the image painted red: coloured, not black and white
    strokes[8:10] = (255, 0, 0)
    Image.fromarray(strokes).save(tmp_path / "red.png")
    with pytest.raises(MaskError, match="coloured"):
        load_mask(tmp_path / "red.png", (16, 16))


def test_soft_and_jpeg_masks_are_accepted(tmp_path: Path) -> None:
    m = np.zeros((32, 32), dtype=np.float64)
    m[8:24, 10:20] = 1.0
    soft = m.copy()
    for _ in range(2):  # feather the edges: a soft brush
        soft = (soft + np.roll(soft, 1, 0) + np.roll(soft, -1, 0) + np.roll(soft, 1, 1) + np.roll(soft, -1, 1)) / 5
    Image.fromarray(np.rint(soft * 255).astype(np.uint8)).save(tmp_path / "soft.png")
    Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / "m.jpg", quality=75)
    for name in ("soft.png", "m.jpg"):
        loaded = load_mask(tmp_path / name, (32, 32)).numpy()
        assert loaded[16, 15] and not loaded[2, 2], name
        assert abs(int(loaded.sum()) - int(m.sum())) <= 20, name


def test_mask_alpha_transparent_is_hole(tmp_path: Path) -> None:
    m = _holes()
    rgba = np.full((6, 8, 4), 255, dtype=np.uint8)
    rgba[..., 3] = np.where(m, 0, 255)
    rgba[..., :3] = 0  # dark everywhere: only the alpha can say where the holes are
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "a.png", (6, 8)).numpy(), m)
    la = np.stack([np.zeros((6, 8), np.uint8), np.where(m, 0, 255).astype(np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "la.png", (6, 8)).numpy(), m)


def test_mask_opaque_rgba_uses_luminance(tmp_path: Path) -> None:
    m = _holes()
    rgba = np.full((6, 8, 4), 255, dtype=np.uint8)
    rgba[..., :3] = np.where(m, 255, 0)[..., None]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "o.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "o.png", (6, 8)).numpy(), m)


def test_mask_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    img.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)
    img.save(tmp_path / "pt.png", transparency=1)
    assert load_mask(tmp_path / "pt.png", (2, 2)).tolist() == [[False, True], [True, False]]


def _packed_gray_png(depth: int, levels: list[int], transparent: int) -> bytes:
    """A one-row gray PNG of ``depth`` < 8 bits per sample with a tRNS level."""
    bits = "".join(format(v, f"0{depth}b") for v in levels)
    bits += "0" * (-len(bits) % 8)
    row = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    ihdr = struct.pack(">IIBBBBB", len(levels), 1, depth, 0, 0, 0, 0)
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"tRNS", struct.pack(">H", transparent))
    return b"\x89PNG\r\n\x1a\n" + chunks + _chunk(b"IDAT", zlib.compress(b"\x00" + row)) + _chunk(b"IEND", b"")


@pytest.mark.parametrize(("depth", "transparent"), [(1, 0), (1, 1), (2, 1), (2, 3), (4, 9)])
def test_packed_gray_png_with_a_transparent_level(tmp_path: Path, depth: int, transparent: int) -> None:
    """1-, 2- and 4-bit gray PNGs: the tRNS level is a raw sample value, compared before scaling."""
    top = 2**depth - 1
    levels = [0, 1, top, transparent, top // 2] if depth > 1 else [0, 1, 1, 0, 1]
    data = _packed_gray_png(depth, levels, transparent)
    hole = [v == transparent for v in levels]
    expected = [1.0 if h else v / top for v, h in zip(levels, hole, strict=True)]  # composited onto white
    assert image_from_bytes(data, mode="gray")[0, 0].tolist() == pytest.approx(expected)
    assert mask_from_bytes(data, (1, len(levels)))[0].tolist() == hole  # transparent = hole
    (tmp_path / "p.png").write_bytes(data)
    info = load_image_info(tmp_path / "p.png")
    assert info.bit_depth == depth and info.has_alpha and info.channels == 1


def test_mask_wrong_size_names_both(tmp_path: Path) -> None:
    Image.new("L", (8, 6)).save(tmp_path / "m.png")
    with pytest.raises(MaskError, match=r"mask is 8×6 pixels but the image is 10×6"):
        load_mask(tmp_path / "m.png", (6, 10))


def test_mask_file_problems_are_mask_errors(tmp_path: Path) -> None:
    with pytest.raises(MaskError, match="no such file"):
        load_mask(tmp_path / "none.png", (4, 4))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    with pytest.raises(MaskError):
        load_mask(tmp_path / "bad.png", (4, 4))
    with pytest.raises(MaskError, match="pasted mask"):
        mask_from_bytes(b"junk", (4, 4))


@pytest.mark.parametrize("bits", [1, 8])
def test_save_mask_round_trip(tmp_path: Path, bits: int) -> None:
    m = torch.from_numpy(_holes())
    path = save_mask(m, tmp_path / "m.png", bits=bits)
    assert Image.open(path).mode == ("1" if bits == 1 else "L")
    assert np.asarray(Image.open(path).convert("L"))[1, 2] == 255  # white = hole
    assert torch.equal(load_mask(path, (6, 8)), m)
    with pytest.raises(OutputExistsError):
        save_mask(m, path)
    with pytest.raises(ParameterError, match="PNG"):
        save_mask(m, tmp_path / "m.jpg")


# -- property-based: nothing but success or a PriorStudioError -----------------------------------------
def _seed_files() -> list[bytes]:
    files = []
    rng = np.random.default_rng(7)
    for fmt, mode in [("PNG", "RGB"), ("PNG", "L"), ("JPEG", "RGB"), ("PNG", "RGBA"), ("TIFF", "RGB"), ("BMP", "L")]:
        buf = io.BytesIO()
        a = rng.integers(0, 256, (9, 7, len(mode)), dtype=np.uint8)
        Image.fromarray(a[..., 0] if mode == "L" else a, mode).save(buf, format=fmt)
        files.append(buf.getvalue())
    files.append(png_bytes(rng.integers(0, 65536, (5, 4, 3)).astype(np.uint16), 16, 2))
    thin_turned = [((1, 1), 2, "L"), ((1, 17), 5, "RGB"), ((13, 1), 6, "L"), ((1, 9), 7, "RGB"), ((11, 1), 4, "RGB")]
    files += [_exif_jpeg(size, orientation, mode) for size, orientation, mode in thin_turned]
    return files


SEEDS = _seed_files()


@st.composite
def mutated_image(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.integers(0, len(SEEDS) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "header"]))
        if not data:
            break
        if kind == "flip":
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:  # overwrite 4 bytes near the start, where sizes and depths live
            i = draw(st.integers(0, min(40, max(0, len(data) - 4))))
            data[i : i + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


def _load_or_clean_error(data: bytes) -> None:
    try:
        t = image_from_bytes(data, max_pixels=1 << 20)
    except PriorStudioError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert t.dtype == torch.float32 and t.dim() == 3 and t.shape[0] in (1, 3)
    assert bool(torch.isfinite(t).all()) and float(t.min()) >= 0 and float(t.max()) <= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data: bytes) -> None:
    _load_or_clean_error(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_image())
def test_fuzz_mutated_images(data: bytes) -> None:
    _load_or_clean_error(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_image(), st.tuples(st.integers(1, 12), st.integers(1, 12)), st.booleans())
def test_fuzz_mask_importer(data: bytes, size: tuple[int, int], strict: bool) -> None:
    try:
        m = mask_from_bytes(data, size, max_pixels=1 << 20, require_black_and_white=strict)
    except PriorStudioError as error:
        assert str(error)
        return
    assert m.dtype == torch.bool and tuple(m.shape) == size
