"""Fuzz the image and mask loaders with generated and mutated files of every supported format.

Every case must end in success or a PriorStudioError (a clear message for the user); anything else is an
*unhandled* exception and a bug. Cases are built from seed files of every format and pixel mode the loader
supports, then mutated: bit flips, byte overwrites, truncation, insertions and deletions, random header
fields, and huge or zero declared sizes written into the format's own size fields (with the PNG chunk CRC
recomputed, so the damage reaches the decoder instead of stopping at the checksum). The first cases are
the seed files themselves, each once, and a share of the later ones too: intact files must load, at the
size they were made with (EXIF turns included). A share of cases are pure random bytes.

    python benchmarks/fuzz_loaders.py --cases 10000 --seed 0 --json fuzz.json

Prints the counts and the first failures; exits with status 1 when a case was unhandled, an image came out
wrong (values, channels, size) or an intact file was refused.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from priorstudio.core.errors import PriorStudioError
from priorstudio.core.imageio import (
    DEFAULT_MAX_PIXELS,
    encode_image,
    image_from_bytes,
    load_image,
    load_image_info,
    load_mask,
    mask_from_bytes,
)

Seed = tuple[str, bytes, tuple[int, int]]  # (label, file bytes, (H, W) as decoded)


# -- seed files --------------------------------------------------------------------------------------------
def _encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _pixels(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """Smooth-ish content with some noise (compressors behave differently on it than on pure noise)."""
    y, x = np.mgrid[0:h, 0:w]
    base = (np.sin(x / 3.0)[..., None] + np.cos(y / 4.0)[..., None] + np.arange(c)) * 60 + 128
    return np.clip(base + rng.normal(0, 20, (h, w, c)), 0, 255).astype(np.uint8)


def _exif(orientation: int) -> tuple[Image.Exif, bool]:
    """An EXIF block with this orientation, and whether it swaps width and height (5–8)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif, orientation >= 5


def make_seeds(rng: np.random.Generator) -> list[Seed]:
    seeds: list[Seed] = []

    def add(label: str, data: bytes, size: tuple[int, int]) -> None:
        seeds.append((label, data, size))

    for h, w in [(1, 1), (1, 17), (13, 1), (9, 12), (24, 31)]:
        rgb = Image.fromarray(_pixels(rng, h, w, 3))
        gray = Image.fromarray(_pixels(rng, h, w, 1)[..., 0])
        rgba = Image.fromarray(np.concatenate([_pixels(rng, h, w, 3), _pixels(rng, h, w, 1)], -1), "RGBA")
        la = Image.fromarray(np.concatenate([_pixels(rng, h, w, 1), _pixels(rng, h, w, 1)], -1), "LA")
        pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        bits = gray.convert("1")
        deep = Image.fromarray(_pixels(rng, h, w, 1)[..., 0].astype(np.uint16) * 257)
        mask = Image.fromarray(np.where(_pixels(rng, h, w, 1)[..., 0] > 128, 255, 0).astype(np.uint8))
        exif, turned = _exif(int(rng.integers(1, 9)))
        exif_gray, turned_gray = _exif(int(rng.integers(2, 9)))  # a turn or a flip: thin images once crashed
        size = (h, w)
        add("png-rgb", _encode(rgb, "PNG"), size)
        add("png-gray", _encode(gray, "PNG"), size)
        add("png-rgba", _encode(rgba, "PNG"), size)
        add("png-la", _encode(la, "PNG"), size)
        add("png-palette-trns", _encode(pal, "PNG", transparency=0), size)
        add("png-1bit", _encode(bits, "PNG"), size)
        add("png-gray16", _encode(deep, "PNG"), size)
        add("png-mask", _encode(mask, "PNG"), size)
        add("png-rgb16", encode_image(np.asarray(rgb).transpose(2, 0, 1) / 255.0, "PNG", bit_depth=16), size)
        add("jpeg-rgb", _encode(rgb, "JPEG", quality=90), size)
        add("jpeg-gray", _encode(gray, "JPEG"), size)
        add("jpeg-cmyk", _encode(rgb.convert("CMYK"), "JPEG"), size)
        add("jpeg-exif", _encode(rgb, "JPEG", exif=exif), (w, h) if turned else size)
        add("jpeg-exif-gray", _encode(gray, "JPEG", exif=exif_gray), (w, h) if turned_gray else size)
        add("png-exif", _encode(rgba, "PNG", exif=exif_gray), (w, h) if turned_gray else size)
        add("jpeg-progressive", _encode(rgb, "JPEG", progressive=True), size)
        add("tiff-rgb", _encode(rgb, "TIFF"), size)
        add("tiff-gray16", _encode(deep, "TIFF"), size)
        add("tiff-deflate", _encode(rgb, "TIFF", compression="tiff_deflate"), size)
        add("tiff-lzw", _encode(rgba, "TIFF", compression="tiff_lzw"), size)
        add("tiff-packbits", _encode(gray, "TIFF", compression="packbits"), size)
        floats = Image.fromarray(_pixels(rng, h, w, 1)[..., 0].astype(np.float32) / 255)
        add("tiff-float", _encode(floats, "TIFF"), size)
        add("tiff-cmyk", _encode(rgb.convert("CMYK"), "TIFF"), size)
        add("bmp-rgb", _encode(rgb, "BMP"), size)
        add("bmp-gray", _encode(gray, "BMP"), size)
        add("bmp-palette", _encode(pal, "BMP"), size)
        add("bmp-1bit", _encode(bits, "BMP"), size)
        add("webp-lossy", _encode(rgb, "WEBP", quality=80), size)
        add("webp-lossless", _encode(rgba, "WEBP", lossless=True), size)
        add("gif", _encode(pal, "GIF"), size)
        add("gif-anim", _encode(pal, "GIF", save_all=True, append_images=[pal.rotate(90) if h == w else pal]), size)
        add("ppm", _encode(rgb, "PPM"), size)
        add("pgm16", _encode(deep, "PPM"), size)
        if tifffile is not None:  # 16-bit colour TIFF: Pillow cannot write it
            buf = io.BytesIO()
            tifffile.imwrite(buf, (_pixels(rng, h, w, 3).astype(np.uint16) * 257), photometric="rgb")
            add("tiff-rgb16", buf.getvalue(), size)
    return seeds


try:  # optional: only to write 16-bit colour TIFF seeds
    import tifffile
except ImportError:  # pragma: no cover
    tifffile = None


# -- mutations ---------------------------------------------------------------------------------------------
HUGE = [0, 1, 2, 255, 256, 65535, 65536, 30_000, 100_000, 2**24, 2**31 - 1, 2**32 - 1]


def _put(data: bytearray, offset: int, fmt: str, value: int) -> None:
    size = struct.calcsize(fmt)
    if offset >= 0 and offset + size <= len(data):
        limit = 1 << (8 * size)
        value %= limit
        if fmt[-1].islower():  # signed
            value = value - limit if value >= limit // 2 else value
        struct.pack_into(fmt, data, offset, value)


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each chunk whose header fits in the data."""
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        chunks.append((pos, length))
        pos += 12 + length
    return chunks


def _fix_png_crc(data: bytearray, pos: int, length: int) -> None:
    end = pos + 8 + length
    if end + 4 <= len(data):
        struct.pack_into(">I", data, end, zlib.crc32(bytes(data[pos + 4 : end])) & 0xFFFFFFFF)


def huge_size(data: bytearray, rng: np.random.Generator) -> str:
    """Write a huge, zero or odd width/height into the format's own size fields."""
    w, h = int(rng.choice(HUGE)), int(rng.choice(HUGE))
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        _put(data, 16, ">I", w)
        _put(data, 20, ">I", h)
        _fix_png_crc(data, 8, 13)
        return "png-ihdr-size"
    if data[:2] == b"\xff\xd8":
        for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
            i = data.find(marker)
            if i >= 0:
                _put(data, i + 5, ">H", h)
                _put(data, i + 7, ">H", w)
                return "jpeg-sof-size"
        return "jpeg-no-sof"
    if data[:2] == b"BM":
        _put(data, 18, "<i", w)
        _put(data, 22, "<i", -h if rng.random() < 0.3 else h)
        return "bmp-size"
    if data[:3] == b"GIF":
        _put(data, 6, "<H", w)
        _put(data, 8, "<H", h)
        i = data.find(b"\x2c", 13)
        if i >= 0 and rng.random() < 0.5:
            _put(data, i + 5, "<H", w)
            _put(data, i + 7, "<H", h)
        return "gif-size"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = bytes(data[12:16])
        if kind == b"VP8 ":
            _put(data, 26, "<H", w)
            _put(data, 28, "<H", h)
        elif kind == b"VP8L":
            _put(data, 21, "<I", ((w - 1) & 0x3FFF) | (((h - 1) & 0x3FFF) << 14))
        elif kind == b"VP8X":
            _put(data, 24, "<I", (w - 1) & 0xFFFFFF)
            _put(data, 27, "<I", ((h - 1) & 0xFFFFFF) | (data[30] << 24 if len(data) > 30 else 0))
        return "webp-size"
    if data[:2] in (b"II", b"MM"):
        return tiff_tag(data, rng, tags=(256, 257), value=w)
    if data[:1] == b"P" and data[1:2] in b"123456":
        text = data[:40].split(b"\n")
        if len(text) > 2:
            new = b"\n".join([text[0], f"{w} {h}".encode(), *text[2:]])
            data[:40] = new[:40]
        return "pnm-size"
    return "unknown-size"


def tiff_tag(data: bytearray, rng: np.random.Generator, tags: tuple[int, ...] = (), value: int | None = None) -> str:
    """Change the value of one IFD entry (a given tag, or any) in place."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return "tiff-short"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return "tiff-bad-ifd"
    (count,) = struct.unpack_from(order + "H", data, ifd)
    entries = [ifd + 2 + 12 * k for k in range(count) if ifd + 14 + 12 * k <= len(data)]
    if tags:
        entries = [e for e in entries if struct.unpack_from(order + "H", data, e)[0] in tags] or entries
    if not entries:
        return "tiff-no-entries"
    entry = entries[int(rng.integers(len(entries)))]
    (kind,) = struct.unpack_from(order + "H", data, entry + 2)
    new = int(rng.choice(HUGE)) if value is None else value
    if rng.random() < 0.2:  # sometimes the count, not the value
        _put(data, entry + 4, order + "I", int(rng.choice(HUGE)))
    elif kind == 3:
        _put(data, entry + 8, order + "H", new)
    else:
        _put(data, entry + 8, order + "I", new)
    return "tiff-tag"


def png_chunk_damage(data: bytearray, rng: np.random.Generator) -> str:
    """Damage one chunk's body and recompute its CRC, so the decoder itself sees the damage."""
    chunks = _png_chunks(bytes(data))
    if not chunks:
        return "png-no-chunks"
    pos, length = chunks[int(rng.integers(len(chunks)))]
    body = pos + 8
    if length and body + length <= len(data):
        for _ in range(int(rng.integers(1, 4))):
            data[body + int(rng.integers(length))] = int(rng.integers(256))
    _fix_png_crc(data, pos, length)
    return "png-chunk-crc-fixed"


def png_header_fields(data: bytearray, rng: np.random.Generator) -> str:
    """Random bit depth / colour type / interlace in IHDR, CRC fixed."""
    field = int(rng.integers(24, 29))
    if field >= len(data):
        return "png-short"
    data[field] = int(rng.choice([0, 1, 2, 3, 4, 6, 8, 16, 255, int(rng.integers(256))]))
    _fix_png_crc(data, 8, 13)
    return "png-ihdr-fields"


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    out = bytearray(data)
    names = []
    for _ in range(int(rng.integers(1, 4))):
        if not out:
            break
        n = len(out)
        r = rng.random()
        if r < 0.20:
            for _ in range(int(rng.integers(1, 9))):
                i = int(rng.integers(n))
                out[i] ^= 1 << int(rng.integers(8))
            names.append("bitflip")
        elif r < 0.30:
            i = int(rng.integers(n))
            out[i] = int(rng.choice([0, 0xFF, 0x7F, 0x80, int(rng.integers(256))]))
            names.append("byte")
        elif r < 0.42:
            del out[int(rng.integers(n)) :]
            names.append("truncate")
        elif r < 0.48:
            i = int(rng.integers(n + 1))
            out[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
            names.append("insert")
        elif r < 0.53:
            i = int(rng.integers(n))
            del out[i : i + int(rng.integers(1, 64))]
            names.append("delete")
        elif r < 0.58:
            i, j = sorted(int(v) for v in rng.integers(0, n, 2))
            out[j:j] = out[i : min(j, i + 256)]
            names.append("duplicate")
        elif r < 0.68:
            i = int(rng.integers(min(n, 64)))
            k = int(rng.integers(1, 5))
            out[i : i + k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
            names.append("header")
        elif r < 0.83:
            names.append(huge_size(out, rng))
        elif out[:8] == b"\x89PNG\r\n\x1a\n":
            names.append(png_chunk_damage(out, rng) if r < 0.93 else png_header_fields(out, rng))
        elif out[:2] in (b"II", b"MM"):
            names.append(tiff_tag(out, rng))
        else:
            del out[int(rng.integers(n)) :]
            names.append("truncate")
    return bytes(out), "+".join(names)


class _SilencedNativeStderr:
    """Send file descriptor 2 to /dev/null while fuzzing: libtiff prints every complaint there from C.

    Yields a text stream on the original stderr for progress lines.
    """

    def __enter__(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        self._stream = os.fdopen(os.dup(self._saved), "w", buffering=1)
        return self._stream

    def __exit__(self, *exc: object) -> None:
        self._stream.close()
        os.dup2(self._saved, 2)
        os.close(self._saved)


# -- running -----------------------------------------------------------------------------------------------
class Tally:
    def __init__(self, keep: int) -> None:
        self.cases = 0
        self.calls = 0
        self.loaded = 0
        self.clean_errors = 0
        self.unhandled = 0
        self.bad_output = 0
        self.intact_failures = 0
        self.keep = keep
        self.examples: list[dict[str, object]] = []
        self.errors_by_kind: collections.Counter[str] = collections.Counter()
        self.unhandled_by_type: collections.Counter[str] = collections.Counter()
        self.by_label: collections.Counter[str] = collections.Counter()
        self.slowest: list[tuple[float, str]] = []

    def example(self, **details: object) -> None:
        if len(self.examples) < self.keep:
            self.examples.append(details)


def _check_image(t: object, mode: str) -> str | None:
    import torch

    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.dim() != 3:
        return "not a float32 (C, H, W) tensor"
    if t.shape[0] not in (1, 3) or (mode == "gray" and t.shape[0] != 1) or (mode == "color" and t.shape[0] != 3):
        return f"wrong channels {tuple(t.shape)} for mode {mode}"
    if t.shape[1] < 1 or t.shape[2] < 1:
        return "empty image"
    if not bool(torch.isfinite(t).all()) or float(t.min()) < 0 or float(t.max()) > 1:
        return "values outside [0, 1]"
    return None


def run_case(
    tally: Tally,
    case: int,
    label: str,
    how: str,
    data: bytes,
    size: tuple[int, int],
    rng: np.random.Generator,
    max_pixels: int,
    folder: Path,
    intact: bool,
) -> None:
    mode = str(rng.choice(["auto", "gray", "color"]))
    strict = bool(rng.random() < 0.5)
    via_file = case % 10 == 0
    path = folder / f"case{case % 50}.img"
    if via_file:
        path.write_bytes(data)
    calls: list[tuple[str, Callable[[], object]]] = [
        (
            "load_image" if via_file else "image_from_bytes",
            (lambda: load_image(path, mode=mode, max_pixels=max_pixels))
            if via_file
            else (lambda: image_from_bytes(data, mode=mode, max_pixels=max_pixels)),
        ),
        (
            "load_mask" if via_file else "mask_from_bytes",
            (lambda: load_mask(path, size, max_pixels=max_pixels, require_black_and_white=strict))
            if via_file
            else (lambda: mask_from_bytes(data, size, max_pixels=max_pixels, require_black_and_white=strict)),
        ),
    ]
    if via_file:
        calls.append(("load_image_info", lambda: load_image_info(path)))
    for name, call in calls:
        tally.calls += 1
        start = time.perf_counter()
        try:
            result = call()
        except PriorStudioError as error:
            tally.clean_errors += 1
            message = str(error)
            tally.errors_by_kind[type(error).__name__] += 1
            if "\n" in message or not message:
                tally.bad_output += 1
                tally.example(
                    case=case,
                    seed=label,
                    mutation=how,
                    call=name,
                    problem="message not one line",
                    message=message[:300],
                )
            if intact and name in ("image_from_bytes", "load_image"):
                tally.intact_failures += 1
                tally.example(
                    case=case, seed=label, mutation=how, call=name, problem="intact file refused", message=message[:300]
                )
        except Exception as error:
            tally.unhandled += 1
            tally.unhandled_by_type[type(error).__name__] += 1
            tb = traceback.format_exception(type(error), error, error.__traceback__)
            tally.example(
                case=case,
                seed=label,
                mutation=how,
                call=name,
                problem="unhandled",
                error=f"{type(error).__name__}: {str(error)[:200]}",
                where="".join(tb[-3:])[-800:],
            )
        else:
            tally.loaded += 1
            if name in ("image_from_bytes", "load_image"):
                problem = _check_image(result, mode)
                if problem is None and intact and tuple(result.shape[1:]) != size:
                    problem = f"loaded at {tuple(result.shape[1:])} (H, W), made at {size}"
                if problem:
                    tally.bad_output += 1
                    tally.example(case=case, seed=label, mutation=how, call=name, problem=problem)
        elapsed = time.perf_counter() - start
        tally.slowest.append((elapsed, f"case {case} {label} {how} {name}"))
        if len(tally.slowest) > 64:
            tally.slowest = sorted(tally.slowest, reverse=True)[:8]


def pick_case(case: int, seeds: list[Seed], rng: np.random.Generator) -> tuple[str, str, bytes, tuple[int, int]]:
    """(seed label, how it was made, file bytes, size as made): every seed intact first, then a random mix."""
    if case < len(seeds):
        label, data, size = seeds[case]
        return label, "intact", data, size
    r = rng.random()
    label, data, size = seeds[int(rng.integers(len(seeds)))]
    if r < 0.05:
        noise = rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
        return "random", "random-bytes", noise, size
    if r < 0.12:
        return label, "intact", data, size
    data, how = mutate(data, rng)
    return label, how, data, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="number of generated files (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", type=Path, help="write {cases, unhandled, …} to this file")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"the loaders' pixel limit (default {DEFAULT_MAX_PIXELS}, the library default)",
    )
    parser.add_argument("--examples", type=int, default=10, help="how many failures to print (default 10)")
    parser.add_argument("--save-failures", type=Path, help="folder to copy inputs that failed into")
    parser.add_argument(
        "--show-native-messages",
        action="store_true",
        help="let libtiff/libjpeg print their own complaints about damaged files (hidden by default)",
    )
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    seeds = make_seeds(rng)
    tally = Tally(keep=max(args.examples, 50))
    start = time.perf_counter()
    report_every = max(1, args.cases // 20)
    quiet = _SilencedNativeStderr() if not args.show_native_messages else contextlib.nullcontext(sys.stderr)
    with tempfile.TemporaryDirectory(prefix="priorstudio-fuzz-") as tmp, quiet as progress:
        folder = Path(tmp)
        for case in range(args.cases):
            label, how, data, size = pick_case(case, seeds, rng)
            intact = how == "intact"
            tally.cases += 1
            tally.by_label[label] += 1
            before = tally.unhandled + tally.bad_output + tally.intact_failures
            run_case(tally, case, label, how, data, size, rng, args.max_pixels, folder, intact)
            if args.save_failures and tally.unhandled + tally.bad_output + tally.intact_failures > before:
                args.save_failures.mkdir(parents=True, exist_ok=True)
                (args.save_failures / f"case{case}-{label}.bin").write_bytes(data)
            if (case + 1) % report_every == 0:
                print(
                    f"  {case + 1}/{args.cases} cases, {tally.unhandled} unhandled, "
                    f"{time.perf_counter() - start:.0f} s",
                    file=progress,
                    flush=True,
                )
    seconds = time.perf_counter() - start

    print(
        f"cases {tally.cases}  loader calls {tally.calls}  loaded {tally.loaded}  "
        f"clean errors {tally.clean_errors}  unhandled {tally.unhandled}  bad output {tally.bad_output}  "
        f"intact files refused {tally.intact_failures}  ({seconds:.1f} s, seed {args.seed})"
    )
    print("clean errors by class: " + ", ".join(f"{k} {v}" for k, v in tally.errors_by_kind.most_common()))
    if tally.unhandled_by_type:
        print("unhandled by type: " + ", ".join(f"{k} {v}" for k, v in tally.unhandled_by_type.most_common()))
    slowest = sorted(tally.slowest, reverse=True)[:3]
    print("slowest calls: " + "; ".join(f"{t * 1000:.0f} ms ({what})" for t, what in slowest))
    for example in tally.examples[: args.examples]:
        print("FAIL", json.dumps(example, ensure_ascii=False))
    if args.json:
        summary = {
            "cases": tally.cases,
            "unhandled": tally.unhandled,
            "calls": tally.calls,
            "loaded": tally.loaded,
            "clean_errors": tally.clean_errors,
            "bad_output": tally.bad_output,
            "intact_failures": tally.intact_failures,
            "seconds": round(seconds, 1),
            "seed": args.seed,
            "max_pixels": args.max_pixels,
            "seed_files": len(seeds),
            "errors_by_class": dict(tally.errors_by_kind),
            "unhandled_by_type": dict(tally.unhandled_by_type),
            "examples": tally.examples,
        }
        args.json.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if tally.unhandled or tally.bad_output or tally.intact_failures else 0


if __name__ == "__main__":
    sys.exit(main())
