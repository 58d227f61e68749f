"""`priorstudio bench denoise`: what its figures measure."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from priorstudio import cli
from priorstudio.bench import denoise as bench_denoise
from priorstudio.core.denoisers import BiasFreeUNet
from priorstudio.core.denoisers.registry import save_weights


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench-denoise")
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    for i in range(2):  # mid-gray with texture: noise at σ = 50 would often clip at 0 or 1
        Image.fromarray(rng.integers(60, 196, (24, 24), dtype=np.uint8)).save(images / f"{i}.png")
    save_weights(root / "tiny.pt", BiasFreeUNet(1, (8, 16)))
    return root


def test_noisy_psnr_is_that_of_the_unclipped_input_and_the_timing_is_the_denoiser_alone(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_ssim = bench_denoise.ssim

    def slow_ssim(*args, **kwargs):
        time.sleep(0.4)  # metrics cost time; seconds_per_image must not include it (far above a loaded call)
        return real_ssim(*args, **kwargs)

    monkeypatch.setattr(bench_denoise, "ssim", slow_ssim)
    out = folder / "rows.json"
    argv = ["bench", "denoise", str(folder / "images"), "--model", str(folder / "tiny.pt"), "--sigmas", "25,100"]
    assert cli.main([*argv, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    for row in rows:
        expected = 20 * math.log10(255 / row["sigma"])  # white noise, nothing clipped
        assert row["psnr_noisy"] == pytest.approx(expected, abs=0.35)
        assert row["seconds_per_image"] < 0.4  # a 24² denoiser call takes milliseconds, even on a busy machine
    assert rows[1]["psnr_noisy"] < 8.5  # clipped to [0, 1], σ = 100 would read about 1.5 dB higher
