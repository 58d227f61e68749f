"""One test per row of docs/errors.md: produce the bad input, run the CLI in-process, check what it says.

A failing case must print exactly one line on stderr, ``priorstudio: error: …`` (no traceback), with the
documented exit code; a case that must work (16-bit, alpha, CMYK, palette, EXIF-rotated, 1×1, thin) must
run to the end with a tiny random-weights model and write a result of the right size.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from priorstudio.cli import main
from priorstudio.core.denoisers import BiasFreeUNet
from priorstudio.core.denoisers.registry import pack_weights, save_weights

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


# -- running the CLI ----------------------------------------------------------------------------------------
@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    def run(*argv: object) -> Result:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def expect_error(res: Result, code: int, *patterns: str, clean: bool = True) -> str:
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert res.code == code, f"exit {res.code}, expected {code}; stderr:\n{res.err}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{res.err}"
    line = lines[0]
    assert line.startswith("priorstudio: error: "), line
    assert "Traceback" not in res.err
    if clean:  # one plain line: no terminal escapes or tabs from library messages
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", line), repr(line)
    for pattern in patterns:
        assert re.search(pattern, line, re.IGNORECASE), f"{pattern!r} not in {line!r}"
    return line


# -- files ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    paths = {"gray": folder / "tiny-gray.pt", "color": folder / "tiny-color.pt"}
    save_weights(paths["gray"], BiasFreeUNet(1, (8, 16)))
    save_weights(paths["color"], BiasFreeUNet(3, (8, 16)))
    return paths


def _gray(h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return write_png(tmp_path / "photo.png", _gray())


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares a huge image (what a decompression bomb looks like at first)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (min(width, 4096) + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def restore(cli, tmp_path: Path, image: Path, model: Path, *extra: object) -> Result:
    out = tmp_path / "out.png"
    return cli("restore", image, "-o", out, "--model", model, "--max-steps", 3, "-q", *extra)


def restored_ok(cli, tmp_path: Path, image: Path, model: Path, *extra: object) -> Image.Image:
    res = restore(cli, tmp_path, image, model, *extra)
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    return Image.open(tmp_path / "out.png")


# == input images ============================================================================================
def test_img_missing(cli, tmp_path: Path, models) -> None:
    expect_error(
        restore(cli, tmp_path, tmp_path / "nope.png", models["gray"]), 3, "nope.png", "not found|no such|exist"
    )


def test_img_zero_byte(cli, tmp_path: Path, models) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    expect_error(restore(cli, tmp_path, tmp_path / "empty.png", models["gray"]), 3, "empty.png", "empty|0 bytes")


def test_img_truncated(cli, tmp_path: Path, models) -> None:
    data = (write_png(tmp_path / "full.png", _gray(64, 64))).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    expect_error(restore(cli, tmp_path, tmp_path / "cut.png", models["gray"]), 3, "cut.png", "truncat|corrupt|damaged")


def test_img_corrupt(cli, tmp_path: Path, models) -> None:
    data = bytearray(write_png(tmp_path / "ok.png", _gray(64, 64)).read_bytes())
    data[60:200] = bytes(range(140))  # inside the compressed pixel data
    (tmp_path / "bad.png").write_bytes(bytes(data))
    expect_error(restore(cli, tmp_path, tmp_path / "bad.png", models["gray"]), 3, "bad.png", "corrupt|damaged|truncat")


def test_img_not_an_image(cli, tmp_path: Path, models) -> None:
    (tmp_path / "notes.png").write_text("these are my notes, not a picture\n")
    expect_error(restore(cli, tmp_path, tmp_path / "notes.png", models["gray"]), 3, "notes.png", "not .*image|format")


def test_img_bomb_header(cli, tmp_path: Path, models) -> None:
    (tmp_path / "bomb.png").write_bytes(png_declaring(30000, 30000))
    assert (tmp_path / "bomb.png").stat().st_size < 1000
    expect_error(restore(cli, tmp_path, tmp_path / "bomb.png", models["gray"]), 3, "bomb.png", "bomb|large|limit")


def test_img_huge_declared_size(cli, tmp_path: Path, models) -> None:
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, "BMP")
    data = bytearray(buf.getvalue())
    struct.pack_into("<ii", data, 18, 1_000_000, 1_000_000)  # BITMAPINFOHEADER width, height
    (tmp_path / "huge.bmp").write_bytes(bytes(data))
    expect_error(restore(cli, tmp_path, tmp_path / "huge.bmp", models["gray"]), 3, "huge.bmp", "large|bomb")


def test_run_too_large_for_memory(cli, tmp_path: Path, models, monkeypatch: pytest.MonkeyPatch) -> None:
    from priorstudio.core import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 100 * 2**20)
    image = write_png(tmp_path / "big.png", _gray(512, 384))
    line = expect_error(restore(cli, tmp_path, image, models["gray"]), 6, "restoring on a 384×512 image needs about")
    assert "but only 100.0 MB is available" in line and "would fit at" in line
    assert not (tmp_path / "out.png").exists()
    w, h = (int(v) for v in re.search(r"would fit at (\d+)×(\d+)", line).groups())
    assert 0 < w < 384 and 0 < h < 512


def test_img_1x1(cli, tmp_path: Path, models) -> None:
    out = restored_ok(cli, tmp_path, write_png(tmp_path / "dot.png", _gray(1, 1)), models["gray"])
    assert out.size == (1, 1)


def test_img_thin(cli, tmp_path: Path, models) -> None:
    out = restored_ok(cli, tmp_path, write_png(tmp_path / "row.png", _gray(1, 300)), models["gray"])
    assert out.size == (300, 1)
    out = restored_ok(cli, tmp_path, write_png(tmp_path / "col.png", _gray(2, 1)), models["gray"], "--overwrite")
    assert out.size == (1, 2)


def test_img_16bit(cli, tmp_path: Path, models) -> None:
    from priorstudio.core.imageio import load_image

    a = (np.arange(24 * 16).reshape(16, 24) * 170 + 3).astype(np.uint16)
    path = write_png(tmp_path / "deep.png", a)
    x = load_image(path)
    assert x.shape == (1, 16, 24)
    assert torch.allclose(x[0], torch.from_numpy(a.astype(np.float32) / 65535), atol=1e-6)  # all 16 bits kept
    out = restored_ok(cli, tmp_path, path, models["gray"], "--bit-depth", 16)
    assert out.size == (24, 16) and np.asarray(out).dtype in (np.uint16, np.int32)


def test_img_alpha(cli, tmp_path: Path, models) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (12, 16, 4), dtype=np.uint8)
    out = restored_ok(cli, tmp_path, write_png(tmp_path / "alpha.png", rgba, "RGBA"), models["color"])
    assert out.size == (16, 12) and out.mode == "RGB"


def test_img_cmyk(cli, tmp_path: Path, models) -> None:
    Image.new("CMYK", (16, 12), (10, 200, 30, 5)).save(tmp_path / "print.jpg")
    out = restored_ok(cli, tmp_path, tmp_path / "print.jpg", models["color"])
    assert out.size == (16, 12) and out.mode == "RGB"


def test_img_palette(cli, tmp_path: Path, models) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    out = restored_ok(cli, tmp_path, tmp_path / "pal.png", models["color"])
    assert out.size == (16, 12) and out.mode == "RGB"


def test_img_exif_rotated(cli, tmp_path: Path, models) -> None:
    from priorstudio.core.imageio import load_image

    stored = np.zeros((10, 20), np.uint8)  # stored 20 wide, 10 high, bright left column block
    stored[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    x = load_image(tmp_path / "phone.jpg")
    assert x.shape[-2:] == (20, 10)  # displayed upright: 10 wide, 20 high
    assert x[0, :4].mean() > 0.8 and x[0, -4:].mean() < 0.2  # the bright block ends up on top
    out = restored_ok(cli, tmp_path, tmp_path / "phone.jpg", models["gray"])
    assert out.size == (10, 20)


@pytest.mark.parametrize("size", [(1, 1), (1, 17), (13, 1)])
def test_img_exif_thin(cli, tmp_path: Path, models, size: tuple[int, int]) -> None:
    h, w = size
    for orientation in (2, 6, 7):
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(_gray(h, w)).save(tmp_path / "thin.jpg", exif=exif, quality=95)
        out = restored_ok(cli, tmp_path, tmp_path / "thin.jpg", models["gray"], "--overwrite")
        assert out.size == ((w, h) if orientation < 5 else (h, w))


# == masks ===================================================================================================
def inpaint(cli, tmp_path: Path, photo: Path, model: Path, mask: Path) -> Result:
    return restore(cli, tmp_path, photo, model, "--task", "inpaint", "--mask", mask)


def test_mask_wrong_size(cli, tmp_path: Path, photo: Path, models) -> None:
    mask = write_png(tmp_path / "m.png", np.full((8, 12), 255, np.uint8))
    expect_error(inpaint(cli, tmp_path, photo, models["gray"], mask), 4, "12", "16", "size|×")


def test_flash_wrong_size(cli, tmp_path: Path, photo: Path) -> None:
    flash = write_png(tmp_path / "flash.png", _gray(16, 12))
    out = tmp_path / "merged.png"
    res = cli("flash", flash, photo, "-o", out, "--gray", "-q")
    expect_error(res, 2, "12×16", "16×16", "same shot")
    assert not out.exists()


def test_mask_wrong_mode(cli, tmp_path: Path, photo: Path, models) -> None:
    colours = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = write_png(tmp_path / "m.png", colours)
    expect_error(inpaint(cli, tmp_path, photo, models["gray"], mask), 4, "mask")


def test_mask_not_an_image(cli, tmp_path: Path, photo: Path, models) -> None:
    (tmp_path / "m.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    expect_error(inpaint(cli, tmp_path, photo, models["gray"], tmp_path / "m.png"), 4, "m.png")


def test_mask_empty(cli, tmp_path: Path, photo: Path, models) -> None:
    mask = write_png(tmp_path / "m.png", np.zeros((16, 16), np.uint8))
    expect_error(inpaint(cli, tmp_path, photo, models["gray"], mask), 4, "empty")


def test_mask_full(cli, tmp_path: Path, photo: Path, models) -> None:
    mask = write_png(tmp_path / "m.png", np.full((16, 16), 255, np.uint8))
    expect_error(inpaint(cli, tmp_path, photo, models["gray"], mask), 4, "whole image|nothing is known")


# == parameters ==============================================================================================
def test_param_sigma_order(cli, tmp_path: Path, photo: Path, models) -> None:
    for values in (("--sigma0", 0.5, "--sigmaL", 0.5), ("--sigma0", 0.1, "--sigmaL", 0.2)):
        expect_error(restore(cli, tmp_path, photo, models["gray"], *values), 2, "σ_L|sigma_L|sigmaL")


@pytest.mark.parametrize("beta", ["0", "-0.1", "1.5", "nan"])
def test_param_beta(cli, tmp_path: Path, photo: Path, models, beta: str) -> None:
    expect_error(restore(cli, tmp_path, photo, models["gray"], "--beta", beta), 2, "β|beta")


@pytest.mark.parametrize("h0", ["0", "1", "-0.5", "2", "inf"])
def test_param_h0(cli, tmp_path: Path, photo: Path, models, h0: str) -> None:
    expect_error(restore(cli, tmp_path, photo, models["gray"], "--h0", h0), 2, "h_0|h0")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("sample", "-n", "-1"), "-n"),
        (("sample", "--size", "-8"), "size"),
        (("restore", "--task", "sr", "--factor", "-2"), "factor"),
        (("restore", "--task", "sr", "--mode", "simulate", "--factor", "0"), "factor"),
        (("restore", "--max-steps", "-1"), "max_steps|max-steps|step"),
        (("restore", "--samples", "0"), "samples"),
        (("restore", "--task", "blur", "--kernel", "box:-3"), "kernel|size"),
    ],
)
def test_param_negative_size(cli, tmp_path: Path, photo: Path, models, argv: tuple, words: str) -> None:
    if argv[0] == "sample":
        res = cli(*argv, "-o", tmp_path / "samples", "--model", models["gray"], "--max-steps", 3, "-q")
    else:
        res = restore(cli, tmp_path, photo, models["gray"], *argv[1:])
    expect_error(res, 2, words)


@pytest.mark.parametrize(
    ("task", "fraction"),
    [("pixels", "0"), ("pixels", "1.5"), ("lowpass", "-0.1"), ("lowpass", "nan"), ("cs", "2"), ("cs", "0")],
)
def test_param_fraction(cli, tmp_path: Path, photo: Path, models, task: str, fraction: str) -> None:
    res = restore(cli, tmp_path, photo, models["gray"], "--task", task, "--fraction", fraction)
    expect_error(res, 2, "fraction", r"\(0, 1\]")


@pytest.mark.parametrize("block", ["0", "-0.5", "1.5"])
def test_param_block_fraction(cli, tmp_path: Path, photo: Path, models, block: str) -> None:
    res = restore(cli, tmp_path, photo, models["gray"], "--task", "inpaint", "--block", block)
    expect_error(res, 2, "block")


@pytest.mark.parametrize("noise", ["-5", "300", "nan"])
def test_param_noise(cli, tmp_path: Path, photo: Path, models, noise: str) -> None:
    res = restore(cli, tmp_path, photo, models["gray"], "--mode", "simulate", "--noise", noise)
    expect_error(res, 2, "noise")


def test_param_unknown_task(cli, tmp_path: Path, photo: Path, models) -> None:
    expect_error(restore(cli, tmp_path, photo, models["gray"], "--task", "colorize"), 2, "colorize", "inpaint")


def test_param_bad_kernel(cli, tmp_path: Path, photo: Path, models) -> None:
    res = restore(cli, tmp_path, photo, models["gray"], "--task", "blur", "--kernel", "wobbly:3")
    expect_error(res, 2, "kernel", "gaussian")


def test_param_usage(cli, tmp_path: Path, photo: Path) -> None:
    """argparse's own errors: usage line plus one error line, exit 2."""
    for argv in (("restore", photo), ("restore", photo, "-o", "x.png", "--sigma0", "abc"), ("frobnicate",)):
        res = cli(*argv)
        assert res.code == 2
        assert "usage: priorstudio" in res.err and "error:" in res.err and "Traceback" not in res.err


# == weights =================================================================================================
def test_weights_missing(cli, tmp_path: Path, photo: Path) -> None:
    expect_error(restore(cli, tmp_path, photo, tmp_path / "gone.pt"), 5, "gone.pt", "not found")
    expect_error(restore(cli, tmp_path, photo, "no-such-model"), 5, "no-such-model", "unknown model")


def test_weights_corrupt(cli, tmp_path: Path, photo: Path, models) -> None:
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    expect_error(restore(cli, tmp_path, photo, tmp_path / "noise.pt"), 5, "noise.pt", "corrupt")
    data = bytearray(models["gray"].read_bytes())  # a real archive whose directory at the end is damaged
    data[-60:-20] = bytes(40)
    (tmp_path / "damaged.pt").write_bytes(bytes(data))
    expect_error(restore(cli, tmp_path, photo, tmp_path / "damaged.pt"), 5, "damaged.pt", "corrupt|truncat")


def test_weights_damaged_data(cli, tmp_path: Path, photo: Path, models) -> None:
    data = bytearray(models["gray"].read_bytes())  # a complete archive whose tensor bytes were damaged
    mid = len(data) // 2
    data[mid : mid + 256] = bytes(256)
    (tmp_path / "damaged.pt").write_bytes(bytes(data))
    expect_error(restore(cli, tmp_path, photo, tmp_path / "damaged.pt"), 5, "damaged.pt", "corrupt|checksum")


def test_weights_truncated(cli, tmp_path: Path, photo: Path, models) -> None:
    data = models["gray"].read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    expect_error(restore(cli, tmp_path, photo, tmp_path / "half.pt"), 5, "half.pt", "truncated")


def test_weights_wrong_channels(cli, tmp_path: Path, photo: Path, models) -> None:
    expect_error(restore(cli, tmp_path, photo, models["color"]), 5, "3-channel", "gray model")


def test_weights_mismatched_architecture(cli, tmp_path: Path, photo: Path) -> None:
    blob = pack_weights(BiasFreeUNet(1, (8, 16)))
    blob["arch_config"]["widths"] = [8, 32]  # the saved tensors no longer fit the described network
    torch.save(blob, tmp_path / "odd.pt")
    expect_error(
        restore(cli, tmp_path, photo, tmp_path / "odd.pt"),
        5,
        "odd.pt",
        "do not match",
        r"the network's is \(32, 8, 3, 3\)",
    )


def test_weights_not_priorstudio(cli, tmp_path: Path, photo: Path) -> None:
    torch.save(BiasFreeUNet(1, (8, 16)).state_dict(), tmp_path / "bare.pt")
    expect_error(restore(cli, tmp_path, photo, tmp_path / "bare.pt"), 5, "bare.pt", "not a PriorStudio")


class _Payload:
    """Unpickling this would create ``path``: the proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_weights_unpickle_code(cli, tmp_path: Path, photo: Path) -> None:
    sentinel = tmp_path / "code-ran"
    blob = pack_weights(BiasFreeUNet(1, (8, 16)))
    blob["training"] = _Payload(sentinel)
    torch.save(blob, tmp_path / "evil.pt")
    assert not sentinel.exists()
    line = expect_error(restore(cli, tmp_path, photo, tmp_path / "evil.pt"), 5, "evil.pt", "refused", clean=False)
    assert not sentinel.exists()
    assert "\x1b" not in line and "can still be loaded" not in line and "weights_only" not in line
    assert "Unsupported global" in line  # it says what the file tried to load


# == output ==================================================================================================
def test_output_exists(cli, tmp_path: Path, photo: Path, models) -> None:
    out, record = tmp_path / "out.png", tmp_path / "run.json"
    out.write_bytes(b"precious")
    expect_error(restore(cli, tmp_path, photo, models["gray"]), 2, "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    assert restore(cli, tmp_path, photo, models["gray"], "--overwrite").code == 0
    assert out.read_bytes() != b"precious"
    out.unlink()
    record.write_text("precious")
    expect_error(restore(cli, tmp_path, photo, models["gray"], "--json", record), 2, "run.json", "exists")
    assert not out.exists() and record.read_text() == "precious"
    res = restore(cli, tmp_path, photo, models["gray"], "--json", record, "--overwrite")
    assert res.code == 0, res.err
    assert out.exists() and json.loads(record.read_text())["method"] == "implicit_prior"


def test_output_exists_sample(cli, tmp_path: Path, models, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sample` refuses an existing output like `restore` does (exit 2), before any step is spent."""
    from priorstudio.core.samplers import implicit_prior

    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "sample_0_001.png").write_bytes(b"precious")
    steps: list[int] = []
    real = implicit_prior.implicit_prior_sampler
    monkeypatch.setattr(implicit_prior, "implicit_prior_sampler", lambda *a, **k: steps.append(1) or real(*a, **k))
    res = cli("sample", "-n", 2, "--size", 16, "-o", folder, "--model", models["gray"], "--max-steps", 3, "-q")
    expect_error(res, 2, "sample_0_001.png", "exists", "--overwrite")
    assert (folder / "sample_0_001.png").read_bytes() == b"precious" and not steps
    record = tmp_path / "run.json"
    record.write_text("precious")
    res = cli(
        "sample", "-n", 2, "--size", 16, "-o", folder, "--model", models["gray"], "--max-steps", 3, "-q",
        "--json", record, "--overwrite",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert (folder / "sample_0_001.png").read_bytes() != b"precious"
    assert json.loads(record.read_text())["task"] == "synthesis"


def test_output_exists_train(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train --out` never replaces a model (or its checkpoint) unasked, and refuses before any training."""
    from priorstudio.core.denoisers import training

    runs: list[bool] = []

    def fake_train(cfg, resume: bool = False, **kwargs):
        runs.append(resume)
        return {"rank": 0, "step": cfg.steps, "weights_sha256": "0" * 64, "interrupted": False}

    monkeypatch.setattr(training, "train", fake_train)
    model = tmp_path / "model.pt"
    model.write_bytes(b"hours of training")
    argv = ("train", tmp_path, "--out", model, "-q")
    expect_error(cli(*argv), 2, "model.pt exists", "--overwrite", "--resume")
    assert model.read_bytes() == b"hours of training" and runs == []
    model.unlink()
    training.checkpoint_path(model).write_bytes(b"an unfinished run")
    expect_error(cli(*argv), 2, r"model\.ckpt\.pt exists", "--resume")
    assert runs == []
    assert cli(*argv, "--resume").code == 0 and runs == [True]
    assert cli(*argv, "--overwrite").code == 0 and runs == [True, False]
    # --resume with nothing to resume would train afresh and replace --out: refused unless --overwrite
    training.checkpoint_path(model).unlink()
    model.write_bytes(b"hours of training")
    expect_error(cli(*argv, "--resume"), 2, "no checkpoint", r"model\.ckpt\.pt", "--overwrite")
    assert model.read_bytes() == b"hours of training" and runs == [True, False]
    assert cli(*argv, "--resume", "--overwrite").code == 0 and runs == [True, False, True]
    model.unlink()
    assert cli(*argv, "--resume").code == 0 and runs == [True, False, True, True]  # nothing at all: a fresh run


def test_output_exists_bench(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from priorstudio.bench import speed

    runs: list[int] = []
    monkeypatch.setattr(speed, "run", lambda args: runs.append(1) or [{"size": 8}])
    rows = tmp_path / "rows.json"
    rows.write_text("precious")
    expect_error(cli("bench", "speed", "--json", rows), 2, "rows.json exists", "--overwrite")
    assert rows.read_text() == "precious" and runs == []
    assert cli("bench", "speed", "--json", rows, "--overwrite").code == 0
    assert json.loads(rows.read_text()) == [{"size": 8}] and runs == [1]


def test_param_operator_seed(cli, tmp_path: Path, photo: Path, models) -> None:
    outs = []
    for seed in (0, 0, 5):
        res = restore(
            cli,
            tmp_path,
            photo,
            models["gray"],
            "--mode",
            "simulate",
            "--task",
            "pixels",
            "--operator-seed",
            seed,
            "--overwrite",
        )
        assert res.code == 0, res.err
        outs.append((tmp_path / "out.png").read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    expect_error(
        restore(cli, tmp_path, photo, models["gray"], "--task", "pixels", "--operator-seed", -1, "--overwrite"),
        2,
        "operator-seed",
    )


def test_output_folder_missing(cli, tmp_path: Path, photo: Path, models, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found before any work: the image, its record, a benchmark's rows are not lost after the run."""
    from priorstudio.core.samplers import implicit_prior

    def no_run(*args, **kwargs):
        raise AssertionError("the run started although its output could not be written")

    monkeypatch.setattr(implicit_prior, "implicit_prior_sampler", no_run)
    out = tmp_path / "no-such-folder" / "out.png"
    res = cli("restore", photo, "-o", out, "--model", models["gray"], "--max-steps", 3, "-q")
    expect_error(res, 8, "no-such-folder", "does not exist")
    record = tmp_path / "gone" / "r.json"
    res = cli("restore", photo, "-o", tmp_path / "r.png", "--json", record, "--model", models["gray"], "-q")
    expect_error(res, 8, "gone", "does not exist")
    assert not (tmp_path / "r.png").exists()
    res = cli("bench", "denoise", photo.parent, "--model", models["gray"], "--json", tmp_path / "gone" / "rows.json")
    expect_error(res, 8, "gone", "does not exist")


def test_run_interrupted(cli, tmp_path: Path, photo: Path, models, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after the first step: exit 130, one line, and neither the image nor the record is written."""
    from priorstudio.core.samplers import implicit_prior

    real = implicit_prior.implicit_prior_sampler

    def interrupted(*args, **kwargs):
        yield next(real(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(implicit_prior, "implicit_prior_sampler", interrupted)
    res = restore(cli, tmp_path, photo, models["gray"], "--json", tmp_path / "run.json")
    assert res.code == 130, res.err
    assert [line for line in res.err.splitlines() if line.strip()] == ["priorstudio: interrupted"]
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "run.json").exists()


# == starting the app ========================================================================================
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X11 check is Linux's")
def test_app_no_display(tmp_path: Path) -> None:
    """A real start with no display: one line and exit code 1 where Qt would abort the process."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["HOME"] = str(tmp_path)  # nothing of the real user's settings or autosave is touched
    done = subprocess.run(
        [sys.executable, "-m", "priorstudio"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("priorstudio: error: no display to open the window on (DISPLAY is not set)")
    assert "xvfb-run priorstudio" in line


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X11 check is Linux's")
def test_app_missing_system_libraries(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from priorstudio.gui import display_check

    ldd = "\tlibxcb-icccm.so.4 => not found\n\tlibxcb-keysyms.so.1 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x7f)\n"
    monkeypatch.setattr(display_check, "_run_ldd", lambda plugin: ldd)
    monkeypatch.setattr(display_check, "_xcb_plugin", lambda: Path("libqxcb.so"))
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    res = cli()  # no arguments: the app
    assert res.code == 1
    assert res.err.strip() == (
        "priorstudio: error: Qt's X11 display plugin cannot load: the system lacks libxcb-icccm.so.4, "
        "libxcb-keysyms.so.1. On Debian or Ubuntu: sudo apt install libxcb-icccm4 libxcb-keysyms1 (other "
        "systems: the packages that provide them)"
    )


def test_app_qt_gui_library_missing(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from priorstudio.gui import display_check

    def import_module(name: str) -> types.ModuleType:
        raise ImportError("libEGL.so.1: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(display_check, "importlib", types.SimpleNamespace(import_module=import_module))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # the display itself is fine: the library is what lacks
    res = cli("gui")
    expect_error(res, 1, r"Qt's GUI libraries cannot load: the system lacks libEGL\.so\.1\.", "apt install libegl1")


# == the table and the tests stay in sync ====================================================================
def _table_ids() -> list[str]:
    return re.findall(r"^\|\s*`([a-z0-9-]+)`\s*\|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)


META_TESTS = {
    "every_row_has_a_test_and_every_test_a_row",
    "every_error_class_is_documented_with_its_exit_code",
    "every_exit_code_in_the_cases_is_documented",
    "the_cli_docstring_lists_the_documented_codes",
}


def test_every_row_has_a_test_and_every_test_a_row() -> None:
    ids = _table_ids()
    assert len(ids) == len(set(ids)) and len(ids) >= 30
    meta = META_TESTS
    tests = {name[len("test_") :] for name in globals() if name.startswith("test_")} - meta
    rows = {i.replace("-", "_") for i in ids}
    assert rows - tests == set(), "rows without a test"
    assert tests - rows == set(), "tests without a row"


def _exit_code_table() -> dict[int, set[str]]:
    """The "Exit codes" table of the doc: code → the exception names in its "raised as" cell."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|[^|\n]*\|([^|\n]*)\|\s*$", section, flags=re.MULTILINE)
    table = {int(code): set(re.findall(r"`(\w+)`", names)) for code, names in rows}
    assert len(table) == len(rows), "a code is listed twice"
    return table


def _error_classes() -> dict[str, type]:
    from priorstudio.core import errors

    return {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.PriorStudioError)
    }


def test_every_error_class_is_documented_with_its_exit_code() -> None:
    table = _exit_code_table()
    classes = _error_classes()
    documented = {name: code for code, names in table.items() for name in names}
    assert set(documented) == set(classes), "classes and documented names differ"
    for name, code in documented.items():
        assert classes[name].exit_code == code, f"{name} exits {classes[name].exit_code}, documented {code}"
    # the rows without an exception: success, and Ctrl-C (see test_run_interrupted)
    assert {code for code, names in table.items() if not names} == {0, 130}
    assert {cls.exit_code for cls in classes.values()} | {0, 130} == set(table)


def test_every_exit_code_in_the_cases_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    codes = {int(c) for c in re.findall(r"^\|\s*`[a-z0-9-]+`\s*\|.*\|\s*(\d+)\s*\|\s*$", text, flags=re.MULTILINE)}
    assert len(codes) >= 7 and codes <= set(_exit_code_table())


def test_the_cli_docstring_lists_the_documented_codes() -> None:
    from priorstudio import cli

    listed = cli.__doc__.split("(docs/errors.md):", 1)[1]
    assert {int(c) for c in re.findall(r"\b(\d+) [a-z]", listed)} == set(_exit_code_table()) - {0}
