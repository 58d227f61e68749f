"""Orthonormal DCT-II and its inverse along the last dimension, through one complex FFT of the same length.

Makhoul's reordering: with v = (x₀, x₂, x₄, …, x₅, x₃, x₁) and V = FFT(v), the DCT-II is
X_k = Re(e^{−iπk/2N} V_k). Going back, e^{−iπk/2N} V_k = X_k − i·X_{N−k} (X_N = 0) since v is real.
O(N log N) for any N (the FFT handles every length), O(N) memory, and no SciPy.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _twiddle(n: int, like: Tensor, sign: float) -> Tensor:
    k = torch.arange(n, device=like.device, dtype=like.dtype)
    return torch.polar(torch.ones_like(k), sign * math.pi * k / (2 * n))


def _scale(n: int, like: Tensor) -> Tensor:
    """Per-coefficient factor of the orthonormal DCT-II: √(1/N) for k = 0, √(2/N) otherwise."""
    s = torch.full((n,), math.sqrt(2.0 / n), device=like.device, dtype=like.dtype)
    s[0] = math.sqrt(1.0 / n)
    return s


def dct(x: Tensor) -> Tensor:
    """Orthonormal DCT-II of the last dimension (the matrix is orthogonal: ``idct(dct(x)) == x``)."""
    n = x.shape[-1]
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    spec = torch.fft.fft(v, dim=-1)
    return (spec * _twiddle(n, x, -1.0)).real * _scale(n, x)


def idct(c: Tensor) -> Tensor:
    """Inverse (= transpose) of :func:`dct`: the orthonormal DCT-III of the last dimension."""
    n = c.shape[-1]
    y = c / _scale(n, c)
    y_rev = torch.cat([torch.zeros_like(y[..., :1]), y[..., 1:].flip(-1)], dim=-1)  # y_{N−k}, with y_N = 0
    spec = torch.complex(y, -y_rev) * _twiddle(n, c, 1.0)
    v = torch.fft.ifft(spec, dim=-1).real
    half = (n + 1) // 2
    out = torch.empty_like(c)
    out[..., ::2] = v[..., :half]
    out[..., 1::2] = v[..., half:].flip(-1)
    return out
