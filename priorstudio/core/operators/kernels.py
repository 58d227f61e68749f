"""Blur kernels: Gaussian, linear motion, box, and checking user kernels.

Every kernel is a 2-D float32 tensor of odd size with its centre at (kh // 2, kw // 2), normalised to
sum 1 (a blur keeps the mean brightness).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators.validation import check_int, check_positive
from priorstudio.core.tensors import as_tensor


def gaussian_kernel(sigma: float) -> Tensor:
    """Isotropic Gaussian of standard deviation ``sigma`` pixels, truncated at radius ⌈3σ⌉ (at least 1)."""
    sigma = check_positive("sigma", sigma)
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return (k / k.sum()).float()


def box_kernel(size: int) -> Tensor:
    """Uniform ``size``×``size`` average (an even size is centred half a pixel off, like any even kernel)."""
    size = check_int("size", size, 1, 1023)
    return torch.full((size, size), 1.0 / size**2)


def motion_kernel(length: float, angle_degrees: float = 0.0) -> Tensor:
    """Uniform motion along a straight segment of ``length`` pixels through the centre.

    ``angle_degrees`` is counter-clockwise from the x axis as seen on screen (0: horizontal, 90: vertical).
    The segment is sampled densely and splatted bilinearly, so any angle and non-integer length works.
    """
    length = check_positive("length", length)
    if length > 1023 or not math.isfinite(float(angle_degrees)):
        raise ParameterError(
            f"motion blur needs a length in (0, 1023] and a finite angle, got {length}, {angle_degrees}"
        )
    half = (length - 1) / 2 if length >= 1 else 0.0
    r = math.ceil(half)
    size = 2 * r + 1
    n = max(1, math.ceil(8 * length))
    t = torch.linspace(-half, half, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    a = math.radians(float(angle_degrees))
    xs, ys = r + t * math.cos(a), r - t * math.sin(a)  # rows grow downwards
    k = torch.zeros(size, size, dtype=torch.float64)
    x0, y0 = xs.floor(), ys.floor()
    fx, fy = xs - x0, ys - y0
    for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = (y0 + dy).long().clamp(0, size - 1), (x0 + dx).long().clamp(0, size - 1)
        k.index_put_((yy, xx), wt, accumulate=True)
    return (k / k.sum()).float()


def check_kernel(kernel: object) -> Tensor:
    """A user kernel as float64 (kh, kw) normalised to sum 1; refuses empty, non-finite or non-positive-sum ones."""
    try:
        k = as_tensor(kernel).detach().to(device="cpu", dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ParameterError(f"a blur kernel must be a 2-D array of numbers, not {type(kernel).__name__}") from None
    if k.dim() == 3 and k.shape[0] == 1:
        k = k[0]
    if k.dim() != 2 or k.numel() == 0:
        raise ParameterError(f"a blur kernel must be a non-empty 2-D array, got shape {tuple(k.shape)}")
    if not bool(torch.isfinite(k).all()):
        raise ParameterError("the blur kernel contains NaN or infinite values")
    total = float(k.sum())
    if not total > 1e-12 * max(1.0, float(k.abs().sum())):
        raise ParameterError(f"the blur kernel must have a positive sum (it is normalised to 1), got {total:g}")
    return k / total
