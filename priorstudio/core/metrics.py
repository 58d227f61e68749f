"""Image quality metrics: PSNR, SSIM and the luma-only PSNR used in super-resolution papers.

SSIM is the Gaussian-window form of Wang et al. (2004): an 11×11 window with σ = 1.5, K1 = 0.01,
K2 = 0.03, population (not sample) covariances, and the mean of the SSIM map over the pixels whose window
lies inside the image. That is exactly what ``skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=…)`` computes (the test suite checks it against
scikit-image); colour images average the per-channel maps, as skimage does with ``channel_axis``.

Images smaller than the window: along any axis shorter than 11 pixels the image is extended by mirror
reflection (… c b a | a b c … , as skimage's filter does at borders) and no border is cropped on that
axis, so the map still has one value per pixel. A 1×1 image thus compares its two pixel values.

Everything is computed in float64 whatever the input dtype. Inputs are (C, H, W) or (B, C, H, W); the
``*_batch`` functions return one value per batch element, the plain ones a float (the batch mean).
"""

from __future__ import annotations

import math

import torch

from priorstudio.core.errors import ParameterError

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "psnr",
    "psnr_batch",
    "psnr_y",
    "rgb_to_y",
    "ssim",
    "ssim_batch",
    "ssim_map",
]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _pair(x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float64 (B, C, H, W); ``ref`` may lack the batch axis and is broadcast over it."""
    if not isinstance(x, torch.Tensor) or not isinstance(ref, torch.Tensor):
        raise ParameterError("metrics take torch tensors")
    if x.dim() == 2:
        x = x[None]
    if ref.dim() == 2:
        ref = ref[None]
    if x.dim() == 3:
        x = x[None]
    if ref.dim() == 3:
        ref = ref[None]
    if x.dim() != 4 or ref.dim() != 4:
        raise ParameterError(f"metrics need (C, H, W) or (B, C, H, W) images, not {tuple(x.shape)}")
    if ref.shape[0] == 1 and x.shape[0] > 1:
        ref = ref.expand(x.shape[0], -1, -1, -1)
    if x.shape != ref.shape:
        raise ParameterError(f"cannot compare images of shapes {tuple(x.shape)} and {tuple(ref.shape)}")
    if x.numel() == 0:
        raise ParameterError("cannot compare empty images")
    return x.detach().to(torch.float64), ref.detach().to(x.device, torch.float64)


def _check_range(data_range: float) -> float:
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(f"data_range must be a positive number, not {data_range!r}")
    return value


def psnr_batch(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each batch element (B,) as float64; +inf where the images are identical."""
    rng = _check_range(data_range)
    a, b = _pair(x, ref)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(rng * rng / mse)  # mse = 0 gives +inf


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB (10 log10(range² / MSE)); for a batch, the mean of the per-image values."""
    return float(psnr_batch(x, ref, data_range).mean())


def _gaussian_window(device: torch.device) -> torch.Tensor:
    radius = SSIM_WINDOW // 2
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    return g / g.sum()


def _mirror_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices extending a length-n axis by ``pad`` on each side with whole-sample mirror reflection."""
    i = torch.arange(-pad, n + pad, device=device)
    period = 2 * n
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - 1 - i, i)


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of (N, 1, H, W) with mirror borders; same size out.

    Each pass is a weighted sum of shifted views of the padded planes: on the CPU, float64 conv2d unfolds
    every plane into an 11× larger buffer first, which made SSIM of a 256² colour image take ~110 ms (the
    sums: ~16 ms), the same result to rounding.
    """
    pad = g.numel() // 2
    _, _, h, w = x.shape
    x = x.index_select(2, _mirror_index(h, pad, x.device)).index_select(3, _mirror_index(w, pad, x.device))
    weights = g.tolist()
    rows = x[:, :, 0:h, :] * weights[0]
    for i, weight in enumerate(weights[1:], start=1):
        rows.add_(x[:, :, i : i + h, :], alpha=weight)
    out = rows[:, :, :, 0:w] * weights[0]
    for i, weight in enumerate(weights[1:], start=1):
        out.add_(rows[:, :, :, i : i + w], alpha=weight)
    return out


def ssim_map(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """The SSIM map (B, C, H', W') in float64, cropped by the window radius along axes ≥ 11 pixels."""
    rng = _check_range(data_range)
    a, b = _pair(x, ref)
    bsz, ch, h, w = a.shape
    g = _gaussian_window(a.device)
    c1 = (SSIM_K1 * rng) ** 2
    c2 = (SSIM_K2 * rng) ** 2
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1).reshape(bsz * ch * 5, 1, h, w)
    mu_a, mu_b, m_aa, m_bb, m_ab = _blur(stack, g).reshape(bsz, 5, ch, h, w).unbind(1)
    var_a = m_aa - mu_a * mu_a
    var_b = m_bb - mu_b * mu_b
    cov = m_ab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
    r = SSIM_WINDOW // 2
    top = r if h >= SSIM_WINDOW else 0
    left = r if w >= SSIM_WINDOW else 0
    return s[..., top : h - top, left : w - left]


def ssim_batch(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each batch element (B,), float64; colour channels averaged."""
    return ssim_map(x, ref, data_range).flatten(1).mean(1)


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> float:
    """Gaussian-window SSIM (matches scikit-image, see the module notes); for a batch, the mean."""
    return float(ssim_batch(x, ref, data_range).mean())


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma as MATLAB's rgb2ycbcr computes it, on the [0, 1] scale (range 16/255…235/255).

    Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255 for (…, 3, H, W) input → (…, 1, H, W).
    A gray image (…, 1, H, W) is returned unchanged: it already is the luma.
    """
    if x.dim() < 3 or x.shape[-3] not in (1, 3):
        raise ParameterError(f"rgb_to_y needs (…, 3, H, W) or (…, 1, H, W), not {tuple(x.shape)}")
    if x.shape[-3] == 1:
        return x
    w = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (16.0 + (x * w).sum(dim=-3, keepdim=True)) / 255.0


def psnr_y(x: torch.Tensor, ref: torch.Tensor, border: int = 0) -> float:
    """PSNR on the BT.601 luma with ``border`` pixels cropped on every side (super-resolution benchmarks).

    Values stay unquantised and the peak is 1 (255 on the 8-bit scale), as in the usual MATLAB protocol.
    """
    if border < 0:
        raise ParameterError(f"border must be ≥ 0, not {border}")
    ya, yb = rgb_to_y(x.to(torch.float64)), rgb_to_y(ref.to(torch.float64))
    if border:
        h, w = ya.shape[-2:]
        if 2 * border >= h or 2 * border >= w:
            raise ParameterError(f"border {border} leaves nothing of a {w}×{h} image")
        ya = ya[..., border:-border, border:-border]
        yb = yb[..., border:-border, border:-border]
    return psnr(ya, yb, 1.0)
