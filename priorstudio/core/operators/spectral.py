"""Spectral low-pass ("spectral deblurring"): keep the lowest fraction of orthonormal-FFT coefficients.

The kept set K is a centred rectangle of frequencies, |k_y|/H ≤ r and |k_x|/W ≤ r (a square in cycles per
pixel, so a square for a square image), with r chosen so that |K| is as close as possible to
fraction·H·W; the DC coefficient is always kept. The set is symmetric under k → −k (mod H, W), i.e.
conjugate-symmetric, so MMᵀ (zeroing the FFT outside K) maps real images to real images and is an exact
orthogonal projector.

The measurement is real: per channel, the coefficients that are their own conjugate (DC, and the Nyquist
ones when kept) as they are, and for every other pair {k, −k} one representative's √2·Re and √2·Im.
Parseval with the orthonormal FFT makes this an isometry on the kept subspace, hence MᵀM = I exactly;
the measurement has |K| numbers per channel, shape (B, C, |K|).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from priorstudio.core.operators.base import Operator, buffer_on
from priorstudio.core.operators.validation import check_fraction


def lowpass_set(h: int, w: int, fraction: float) -> Tensor:
    """Bool (H, W) in unshifted FFT order: the conjugate-symmetric low-frequency set closest to ``fraction``."""
    fy = torch.fft.fftfreq(h, d=1.0 / h).abs().round().long()  # |signed frequency index|
    fx = torch.fft.fftfreq(w, d=1.0 / w).abs().round().long()
    # max(|fy|/H, |fx|/W) scaled by H·W to compare exactly in integers
    level = torch.maximum(fy[:, None] * w, fx[None, :] * h)
    values, counts = torch.unique(level, sorted=True, return_counts=True)
    cumulative = counts.cumsum(0).double()
    best = int((cumulative - fraction * h * w).abs().argmin())
    return level <= values[best]


class SpectralLowPass(Operator):
    """Keep the Fourier coefficients in a centred low-frequency set holding ``fraction`` of them."""

    name = "spectral"

    def __init__(self, image_shape: tuple[int, int, int], fraction: float = 0.1) -> None:
        super().__init__(image_shape)
        self.fraction = check_fraction("fraction", fraction)
        _, h, w = self.image_shape
        #: Bool (H, W), unshifted FFT order: the kept frequencies.
        self.kept = lowpass_set(h, w, self.fraction)
        ky, kx = torch.nonzero(self.kept, as_tuple=True)
        flat = ky * w + kx
        partner = ((-ky) % h) * w + ((-kx) % w)
        self.self_index = flat[partner == flat]
        self.pair_index = flat[flat < partner]
        self.partner_index = partner[flat < partner]
        self.kept_count = int(flat.numel())

    def forward(self, x: Tensor) -> Tensor:
        self._check_image(x)
        spec = torch.fft.fft2(x, norm="ortho").flatten(2)
        own = spec[..., buffer_on(self.self_index, x)].real
        pairs = spec[..., buffer_on(self.pair_index, x)] * math.sqrt(2.0)
        return torch.cat([own, pairs.real, pairs.imag], dim=-1)

    def adjoint(self, c: Tensor) -> Tensor:
        _, h, w = self.image_shape
        n_self, n_pair = self.self_index.numel(), self.pair_index.numel()
        own, re, im = c[..., :n_self], c[..., n_self : n_self + n_pair], c[..., n_self + n_pair :]
        pair = torch.complex(re, im) / math.sqrt(2.0)
        spec = torch.zeros((*c.shape[:2], h * w), dtype=pair.dtype, device=c.device)
        spec[..., buffer_on(self.self_index, c)] = own.to(pair.dtype)
        spec[..., buffer_on(self.pair_index, c)] = pair
        spec[..., buffer_on(self.partner_index, c)] = pair.conj()
        return torch.fft.ifft2(spec.view(*c.shape[:2], h, w), norm="ortho").real

    def project(self, x: Tensor) -> Tensor:
        """MMᵀx computed directly: zero the spectrum outside the kept set."""
        self._check_image(x)
        spec = torch.fft.fft2(x, norm="ortho") * buffer_on(self.kept, x)
        return torch.fft.ifft2(spec, norm="ortho").real

    def measurement_fraction(self) -> float:
        return self.kept_count / (self.image_shape[1] * self.image_shape[2])

    def describe(self) -> str:
        return f"spectral low-pass ({100 * self.measurement_fraction():.1f}% of coefficients)"

    def to(self, device: torch.device | str) -> SpectralLowPass:
        super().to(device)
        for name in ("kept", "self_index", "pair_index", "partner_index"):
            setattr(self, name, getattr(self, name).to(self.device))
        return self
