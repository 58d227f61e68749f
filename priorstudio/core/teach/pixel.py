"""What the denoiser inspector shows for one pixel, computed off the GUI thread (and testable without Qt).

The network runs on a window around the pixel rather than the whole photo: for a CNN the result at the
pixel is exact once the window reaches twice its receptive field past it, and a click stays fast.
Each ``pixel_*`` function returns a plain dataclass the dialog only displays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from priorstudio.core.teach.inspector import (
    NetLike,
    add_noise,
    crop_window,
    denoise_fp32,
    effective_dimensionality,
    estimate_effective_dimensionality,
    filter_sweep,
    jacobian_row,
    leading_singular_values,
    participation_ratio,
)

Pixel = tuple[int, int, int]  # (channel, row, column)


@dataclass
class FilterResult:
    """The filter at a pixel, the patch it weighs, and the check filter · y = D(y) at the pixel."""

    pixel: Pixel
    sigma: float
    patch: Tensor  # (C, s, s) of y around the pixel
    filter: Tensor  # (C, s, s) the row of A(y) around the pixel
    output: float  # D(y) at the pixel
    dot: float  # row · y over the compute window
    denoised: Tensor  # (C, h, w) D(y) on the compute window
    score: Tensor  # (C, h, w) D(y) − y on the compute window


@dataclass
class SweepResult:
    """The filter at one pixel for several noise levels (one noise pattern, scaled)."""

    pixel: Pixel
    levels: tuple[int, ...]  # noise levels on the 0–255 scale
    filters: Tensor  # (n, C, s, s) the filter at the pixel for each level


#: the noise levels (0–255 scale) of the side-by-side filters
SWEEP_LEVELS = (5, 15, 25, 50, 75, 100)


@dataclass
class PixelSpectrum:
    """Leading singular values of A(y) on the window around a pixel and the dimensionality they imply."""

    pixel: Pixel
    sigma: float
    values: Tensor  # the leading singular values, descending
    n: int  # N = C·h·w, the dimension of the window
    d_lower: float  # Σ sᵢ² over the leading values: a lower bound on d
    d_estimate: float  # Hutchinson's estimate of d = ‖A‖²_F
    participation: float


def pixel_filter(denoiser: NetLike, y: Tensor, pixel: Pixel, sigma: float, view: int, window: int) -> FilterResult:
    """The row of A(y) at ``pixel`` on a ``window`` around it; patch and filter cropped to ``view``."""
    c, i, j = pixel
    rows, cols = crop_window(tuple(y.shape[-2:]), (i, j), window)
    win = y[:, rows, cols]
    pi, pj = i - rows.start, j - cols.start
    row = jacobian_row(denoiser, win, (c, pi, pj))
    denoised = denoise_fp32(denoiser, win)
    vr, vc = crop_window(tuple(win.shape[-2:]), (pi, pj), view)
    return FilterResult(
        pixel=pixel,
        sigma=sigma,
        patch=win[:, vr, vc].clone(),
        filter=row[:, vr, vc].clone(),
        output=float(denoised[c, pi, pj]),
        dot=float((row.double() * win.double()).sum()),
        denoised=denoised,
        score=denoised - win,
    )


def pixel_sweep(
    denoiser: NetLike, clean: Tensor, pixel: Pixel, levels: Sequence[int], view: int, window: int
) -> SweepResult:
    """The filter at ``pixel`` for each level, on the window around it, with the slider's noise pattern."""
    c, i, j = pixel
    rows, cols = crop_window(tuple(clean.shape[-2:]), (i, j), window)
    z = add_noise(torch.zeros_like(clean), 1.0, seed=0)[:, rows, cols]
    win = clean[:, rows, cols]
    pi, pj = i - rows.start, j - cols.start
    filters = filter_sweep(denoiser, win, (c, pi, pj), [v / 255.0 for v in levels], noise=z)
    vr, vc = crop_window(tuple(win.shape[-2:]), (pi, pj), view)
    return SweepResult(pixel=pixel, levels=tuple(levels), filters=filters[:, :, vr, vc].clone())


def pixel_spectrum(denoiser: NetLike, y: Tensor, pixel: Pixel, sigma: float, k: int, window: int) -> PixelSpectrum:
    """The ``k`` leading singular values of A(y) on a ``window`` around ``pixel`` (matrix-free)."""
    _, i, j = pixel
    rows, cols = crop_window(tuple(y.shape[-2:]), (i, j), window)
    win = y[:, rows, cols].contiguous()
    values = leading_singular_values(denoiser, win, k)
    return PixelSpectrum(
        pixel=pixel,
        sigma=sigma,
        values=values,
        n=int(win.numel()),
        d_lower=effective_dimensionality(values),
        d_estimate=estimate_effective_dimensionality(denoiser, win, probes=16),
        participation=participation_ratio(values),
    )
