"""Orthonormal DCT-II and its inverse along the last dimension, through one real FFT of the same length.

Makhoul's reordering: with v = (x₀, x₂, x₄, …, x₅, x₃, x₁) and V = FFT(v), the DCT-II is
X_k = Re(e^{−iπk/2N} V_k), and since v is real, X_{N−k} = −Im(e^{−iπk/2N} V_k). So the half spectrum
from ``rfft`` gives all N outputs; going back, e^{−iπk/2N} V_k = X_k − i·X_{N−k} (X_N = 0) feeds ``irfft``.
O(N log N) for any N (the FFT handles every length), O(N) memory, and no SciPy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor


@lru_cache(maxsize=8)
def _twiddle(n: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin of πk/2N for k = 0 … N//2 (cached: building them costs as much as the FFT)."""
    k = torch.arange(n // 2 + 1, dtype=torch.float64, device=device) * (math.pi / (2 * n))
    return k.cos().to(dtype), k.sin().to(dtype)


def _orthonormalise(x: Tensor, forward: bool) -> Tensor:
    """Scale to the orthonormal DCT (√(2/N), and √(1/N) for k = 0) or back, in place."""
    n = x.shape[-1]
    s = math.sqrt(2.0 / n)
    x.mul_(s if forward else 1.0 / s)
    x[..., 0].mul_(math.sqrt(0.5) if forward else math.sqrt(2.0))
    return x


def dct(x: Tensor) -> Tensor:
    """Orthonormal DCT-II of the last dimension (the matrix is orthogonal: ``idct(dct(x)) == x``)."""
    n = x.shape[-1]
    cos, sin = _twiddle(n, x.dtype, x.device)
    spec = torch.fft.rfft(torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1), dim=-1)
    re, im = spec.real, spec.imag
    p = re * cos + im * sin  # Re(e^{−iθ}V)
    q = im * cos - re * sin  # Im(e^{−iθ}V)
    h = n // 2 + 1
    out = torch.cat([p, q[..., 1 : n - h + 1].flip(-1).neg_()], dim=-1)
    return _orthonormalise(out, forward=True)


def idct(c: Tensor) -> Tensor:
    """Inverse (= transpose) of :func:`dct`: the orthonormal DCT-III of the last dimension."""
    n = c.shape[-1]
    h = n // 2 + 1
    cos, sin = _twiddle(n, c.dtype, c.device)
    y = _orthonormalise(c.clone(), forward=False)
    y_low = y[..., :h]
    y_rev = torch.cat([torch.zeros_like(y[..., :1]), y.flip(-1)[..., : h - 1]], dim=-1)  # y_{N−k}, y_N = 0
    # V_k = e^{iθ}(y_k − i·y_{N−k})
    spec = torch.complex(y_low * cos + y_rev * sin, y_low * sin - y_rev * cos)
    v = torch.fft.irfft(spec, n=n, dim=-1)
    half = (n + 1) // 2
    out = torch.empty_like(c)
    out[..., ::2] = v[..., :half]
    out[..., 1::2] = v[..., half:].flip(-1)
    return out
