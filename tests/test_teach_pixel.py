"""What the inspector computes for one pixel: the window is exact, the sweep uses the slider's noise."""

from __future__ import annotations

import pytest
import torch

from priorstudio.core.denoisers import BFCNN, Denoiser
from priorstudio.core.teach.inspector import add_noise, jacobian_row
from priorstudio.core.teach.pixel import pixel_filter, pixel_spectrum, pixel_sweep


@pytest.fixture(scope="module")
def denoiser() -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(BFCNN(1, 8, 3), fast=False, device="cpu")  # three 3×3 layers: each output sees ±3 pixels


def test_filter_on_a_window_equals_the_whole_image(denoiser):
    y = add_noise(torch.rand(1, 24, 24), 0.1, seed=2)
    result = pixel_filter(denoiser, y, (0, 10, 12), 0.1, view=7, window=16)
    full = jacobian_row(denoiser, y, (0, 10, 12))
    torch.testing.assert_close(result.filter, full[:, 7:14, 9:16], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(result.patch, y[:, 7:14, 9:16])
    assert result.dot == pytest.approx(result.output, abs=1e-5)  # bias-free: filter · y = D(y)
    torch.testing.assert_close(result.score, result.denoised - y[:, 2:18, 4:20])


def test_sweep_uses_the_noise_the_slider_adds(denoiser):
    clean = torch.rand(1, 24, 24)
    levels = (10, 50)
    result = pixel_sweep(denoiser, clean, (0, 12, 11), levels, view=9, window=16)
    assert result.filters.shape == (2, 1, 9, 9) and result.levels == levels
    for f, level in zip(result.filters, levels):
        y = add_noise(clean, level / 255, seed=0)  # what the slider shows at that level
        full = jacobian_row(denoiser, y, (0, 12, 11))
        torch.testing.assert_close(f, full[:, 8:17, 7:16], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(result.filters[0], result.filters[1])


def test_spectrum_of_a_window(denoiser):
    y = torch.rand(1, 20, 20)
    s = pixel_spectrum(denoiser, y, (0, 3, 3), 0.1, k=5, window=8)
    assert s.n == 64 and s.values.shape == (5,)
    assert torch.all(s.values[:-1] >= s.values[1:])
    assert s.d_lower == pytest.approx(float((s.values.double() ** 2).sum()))
    assert s.d_estimate > 0 and 1.0 <= s.participation <= 5.0 + 1e-6
