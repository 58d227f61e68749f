"""`priorstudio restore` and `flash`: outputs checked before the work, honest inpainting figures, samples
that differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from priorstudio import cli


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from priorstudio.core.denoisers import BiasFreeUNet
    from priorstudio.core.denoisers.registry import save_weights

    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_weights(path, BiasFreeUNet(1, (8, 16)))
    return str(path)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    y, x = np.mgrid[0:24, 0:24]
    pixels = (128 + 90 * np.sin(x / 3.0) * np.cos(y / 4.0)).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def _known(out: Path, photo: Path) -> tuple[np.ndarray, np.ndarray]:
    """The output and the photo on the pixels a 0.5 central block leaves known."""
    result, truth = np.asarray(Image.open(out), dtype=float), np.asarray(Image.open(photo), dtype=float)
    known = np.ones(truth.shape, bool)
    known[6:18, 6:18] = False
    return result[known], truth[known]


def test_inpainting_with_noise_does_not_paste_the_clean_truth_back(tiny_model, photo, tmp_path, capsys) -> None:
    """Simulated noise: the known pixels are the method's estimate, not the clean photo (which made the
    reported PSNR one no method earned); without noise they are the photo's, exactly."""
    base = ["restore", str(photo), "--task", "inpaint", "--block", "0.5", "--mode", "simulate", "--gray"]
    base += ["--model", tiny_model, "--max-steps", "3", "-q"]
    noisy, clean = tmp_path / "noisy.png", tmp_path / "clean.png"
    assert cli.main([*base, "-o", str(noisy), "--noise", "50"]) == 0, capsys.readouterr().err
    result, truth = _known(noisy, photo)
    assert np.abs(result - truth).max() > 10
    assert cli.main([*base, "-o", str(clean)]) == 0, capsys.readouterr().err
    result, truth = _known(clean, photo)
    assert np.array_equal(result, truth)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "out.gif"], "cannot tell the format"),
        (["-o", "out.jpg", "--bit-depth", "16"], "16-bit images are written as PNG only"),
        (["-o", "out.png", "--samples", "2", "--beta", "0.5", "--std", "std.tga"], "cannot tell the format"),
    ],
)
def test_an_output_it_cannot_write_is_refused_before_the_run(
    tiny_model, photo, tmp_path, capsys, monkeypatch, extra, message
) -> None:
    import priorstudio.core.denoisers as denoisers

    def no_model(*args, **kwargs):  # the check must come first: no model is loaded, nothing runs
        raise AssertionError("the run started")

    monkeypatch.setattr(denoisers, "load_denoiser", no_model)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["restore", str(photo), "--model", tiny_model, "-q", *extra]) == 2
    assert message in capsys.readouterr().err


def test_flash_refuses_an_unwritable_output_before_the_fit(photo, tmp_path, capsys) -> None:
    argv = ["flash", str(photo), str(photo), "-o", str(tmp_path / "out.xyz"), "--steps", "100000", "-q"]
    assert cli.main(argv) == 2
    assert "cannot tell the format" in capsys.readouterr().err


def test_several_denoising_samples_need_noise_injection(tiny_model, photo, tmp_path, capsys) -> None:
    """Denoising's β = 1 injects no noise and starts every sample from the same image: K identical samples
    and a black std map. Refused with the way out; with β < 1 the samples differ."""
    base = ["restore", str(photo), "--mode", "simulate", "--gray", "--model", tiny_model, "--max-steps", "4", "-q"]
    base += ["--sigmaL", "1e-4"]  # the untrained model's residual is small: let it take its 4 steps
    std = tmp_path / "std.png"
    argv = [*base, "-o", str(tmp_path / "a.png"), "--samples", "3", "--std", str(std)]
    assert cli.main(argv) == 2
    assert "identical" in capsys.readouterr().err and not std.exists()
    assert cli.main([*argv, "--beta", "0.5"]) == 0, capsys.readouterr().err
    assert "white = std" in capsys.readouterr().out
    assert np.asarray(Image.open(std)).max() > 0


def test_a_16_bit_input_is_written_at_16_bits_unless_asked_otherwise(tiny_model, photo, tmp_path, capsys) -> None:
    """A 16-bit scan restored to an 8-bit file silently lost its depth; JPEG, which holds 8, still works."""
    deep = tmp_path / "deep.png"
    Image.fromarray(np.asarray(Image.open(photo), dtype=np.uint16) * 257).save(deep)
    base = ["restore", "--task", "denoise", "--gray", "--model", tiny_model, "--max-steps", "2", "-q"]
    for source, out, extra, depth in [
        (deep, "a.png", [], 16),
        (deep, "b.png", ["--bit-depth", "8"], 8),
        (deep, "c.jpg", [], 8),
        (photo, "d.png", [], 8),
        (photo, "e.png", ["--bit-depth", "16"], 16),
    ]:
        target = tmp_path / out
        assert cli.main([*base, str(source), "-o", str(target), *extra]) == 0, capsys.readouterr().err
        mode = Image.open(target).mode
        assert mode == ("I;16" if depth == 16 else "L"), (out, mode)
