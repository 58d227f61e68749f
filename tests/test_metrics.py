"""PSNR and SSIM against scikit-image (a test-only dependency), plus the luma PSNR for super-resolution."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from priorstudio.core.errors import ParameterError
from priorstudio.core.metrics import psnr, psnr_batch, psnr_y, rgb_to_y, ssim, ssim_batch, ssim_map

skm = pytest.importorskip("skimage.metrics")
ndimage = pytest.importorskip("scipy.ndimage")


def pair(shape: tuple[int, ...], seed: int = 0, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(shape, generator=g, dtype=torch.float64)
    x = (ref + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, ref


def sk_ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> float:
    a, b = x.numpy(), ref.numpy()
    options = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": data_range}
    if a.shape[0] == 1:
        return float(skm.structural_similarity(a[0], b[0], **options))
    return float(skm.structural_similarity(a, b, channel_axis=0, **options))


@pytest.mark.parametrize("shape", [(1, 11, 11), (1, 12, 13), (1, 31, 64), (3, 11, 17), (3, 40, 33), (3, 64, 64)])
def test_ssim_matches_skimage(shape: tuple[int, ...]) -> None:
    x, ref = pair(shape, seed=shape[1] * shape[2])
    assert ssim(x, ref) == pytest.approx(sk_ssim(x, ref), abs=1e-10)


def test_ssim_matches_skimage_float32_input_and_data_range() -> None:
    x, ref = pair((3, 24, 20), seed=5)
    assert ssim(x.float(), ref.float()) == pytest.approx(sk_ssim(x.float().double(), ref.float().double()), abs=1e-9)
    # on the 0–255 scale with data_range 255 the value is the same
    assert ssim(x * 255, ref * 255, data_range=255) == pytest.approx(sk_ssim(x, ref), abs=1e-10)
    assert ssim(x, ref, data_range=2.0) == pytest.approx(sk_ssim(x, ref, 2.0), abs=1e-10)


def test_ssim_properties() -> None:
    x, ref = pair((1, 20, 20), seed=1)
    assert ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, ref) == pytest.approx(ssim(ref, x), abs=1e-12)
    assert ssim(x, ref) < 1
    worse, _ = pair((1, 20, 20), seed=1, noise=0.3)
    assert ssim(worse, ref) < ssim(x, ref)


def _reference_small(x: np.ndarray, ref: np.ndarray) -> float:
    """The documented small-image rule with scipy: mirror ('reflect') borders, no crop on short axes."""
    truncate = 5 / 1.5  # radius 5 → 11 taps, like the full-size window

    def blur(img: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(img, 1.5, mode="reflect", truncate=truncate)

    c1, c2 = 0.01**2, 0.03**2
    values = []
    for a, b in zip(x, ref):
        ma, mb = blur(a), blur(b)
        va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
        s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
        h, w = a.shape
        top = 5 if h >= 11 else 0
        left = 5 if w >= 11 else 0
        values.append(s[top : h - top, left : w - left])
    return float(np.mean(values))


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 7), (1, 3, 3), (3, 5, 8), (1, 10, 10), (1, 4, 40), (3, 1, 30)])
def test_ssim_small_images_follow_the_documented_rule(shape: tuple[int, ...]) -> None:
    x, ref = pair(shape, seed=3)
    value = ssim(x, ref)
    assert math.isfinite(value)
    assert value == pytest.approx(_reference_small(x.numpy(), ref.numpy()), abs=1e-10)
    assert ssim(ref, ref) == pytest.approx(1.0)
    h, w = shape[1:]
    assert ssim_map(x, ref).shape[-2:] == (h - 10 if h >= 11 else h, w - 10 if w >= 11 else w)


def test_psnr_matches_skimage_and_handles_identity() -> None:
    for shape in [(1, 9, 7), (3, 32, 32)]:
        x, ref = pair(shape, seed=2)
        expected = skm.peak_signal_noise_ratio(ref.numpy(), x.numpy(), data_range=1.0)
        assert psnr(x, ref) == pytest.approx(expected, abs=1e-9)
        assert psnr(x * 255, ref * 255, data_range=255) == pytest.approx(expected, abs=1e-9)
    assert psnr(ref, ref) == math.inf
    assert psnr(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.1)) == pytest.approx(20.0)


def test_batched_versions() -> None:
    x, ref = pair((4, 3, 16, 16), seed=4)
    per = psnr_batch(x, ref)
    assert per.shape == (4,)
    for i in range(4):
        assert float(per[i]) == pytest.approx(psnr(x[i], ref[i]), abs=1e-12)
        assert float(ssim_batch(x, ref)[i]) == pytest.approx(ssim(x[i], ref[i]), abs=1e-12)
    assert psnr(x, ref) == pytest.approx(float(per.mean()))
    # a single reference is broadcast over the batch
    assert torch.allclose(psnr_batch(x, ref[0]), psnr_batch(x, ref[0].expand(4, -1, -1, -1)))
    assert ssim_batch(x, ref[0]).shape == (4,)


def test_shape_and_range_errors() -> None:
    with pytest.raises(ParameterError, match="shapes"):
        psnr(torch.rand(1, 4, 4), torch.rand(1, 4, 5))
    with pytest.raises(ParameterError, match="shapes"):
        ssim(torch.rand(3, 4, 4), torch.rand(1, 4, 4))
    with pytest.raises(ParameterError, match="data_range"):
        psnr(torch.rand(1, 4, 4), torch.rand(1, 4, 4), data_range=0)
    with pytest.raises(ParameterError, match="empty"):
        ssim(torch.rand(1, 0, 4), torch.rand(1, 0, 4))


def test_rgb_to_y_is_matlab_bt601() -> None:
    rgb = torch.tensor([[[0.0]], [[0.0]], [[0.0]]])
    assert float(rgb_to_y(rgb)) == pytest.approx(16 / 255)
    white = torch.ones(3, 1, 1)
    assert float(rgb_to_y(white)) == pytest.approx(235 / 255, abs=1e-3)
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    expected = 16 / 255 + (65.481 * x[:, 0] + 128.553 * x[:, 1] + 24.966 * x[:, 2]) / 255
    assert torch.allclose(rgb_to_y(x)[:, 0], expected)
    gray = torch.rand(1, 5, 5)
    assert rgb_to_y(gray) is gray


def test_psnr_y_with_border() -> None:
    x, ref = pair((3, 20, 24), seed=6)
    b = 4
    yx, yr = rgb_to_y(x)[..., b:-b, b:-b], rgb_to_y(ref)[..., b:-b, b:-b]
    mse = float(((yx - yr) ** 2).mean())
    assert psnr_y(x, ref, border=b) == pytest.approx(10 * math.log10(1 / mse), abs=1e-9)
    assert psnr_y(x, ref) == pytest.approx(psnr(rgb_to_y(x), rgb_to_y(ref)))
    with pytest.raises(ParameterError, match="border"):
        psnr_y(x, ref, border=10)


def test_runtime_does_not_import_skimage() -> None:
    """scikit-image and scipy are test-only: the runtime modules must not import them."""
    import priorstudio.core.imageio as imageio_module
    import priorstudio.core.metrics as metrics_module

    for module in (metrics_module, imageio_module):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in ("skimage", "scipy")], module.__name__
