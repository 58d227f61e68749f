"""Convolutional blur, the one operator that is not orthonormal, and how the sampler's data step handles it.

Forward: y = A x = k ⊛ x, a convolution with the kernel centred at (kh // 2, kw // 2) and a **circular
(periodic) boundary**, computed as a product in the Fourier domain: Â·x̂. The measurement is the blurred
image itself, (B, C, H, W). Adjoint: Aᵀ is the correlation with k, conj(Â)·ĉ.

A is not orthonormal (AᵀA ≠ I), so the sampler cannot split an image exactly into a measured part and its
complement. Its data step uses the Tikhonov-regularised pseudo-inverse

    A⁺ = (AᵀA + εI)⁻¹Aᵀ,   in the Fourier domain  conj(Â) / (|Â|² + ε),   ε = 1e-3 by default,

and ``data_step(y, c) = A⁺(c − Ay)``. ``project`` is A⁺A (the filter |Â|²/(|Â|² + ε)) and ``complement``
is I − A⁺A, so ``project + complement = I`` as for every operator. The identity this relies on: at the
frequencies where |Â| ≫ √ε, A⁺A ≈ I, hence A·A⁺·A x ≈ A x and one full data step makes y agree with the
data there (the residual is multiplied by ε/(|Â|² + ε) per step); where |Â| ≪ √ε the blur destroyed the
frequency, A⁺A ≈ 0, and the prior alone fills it in. As ε → 0 on a kernel with no zero in its spectrum,
A⁺ is the exact inverse A⁻¹. ε also caps the amplification of measurement noise at 1/(2√ε) (≈ 16).
"""

from __future__ import annotations

import torch
from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators.base import Operator, buffer_on
from priorstudio.core.operators.kernels import check_kernel
from priorstudio.core.operators.validation import check_positive

#: Default Tikhonov regularisation of the pseudo-inverse (relative to |Â(0)|² = 1 of a normalised kernel).
DEFAULT_EPS = 1e-3


def periodic_kernel(kernel: Tensor, h: int, w: int) -> Tensor:
    """The kernel wrapped onto an H×W torus with its centre at (0, 0); larger kernels fold onto themselves."""
    kh, kw = kernel.shape
    rows = (torch.arange(kh) - kh // 2) % h
    cols = (torch.arange(kw) - kw // 2) % w
    out = torch.zeros(h * w, dtype=kernel.dtype)
    out.index_add_(0, (rows[:, None] * w + cols[None, :]).reshape(-1), kernel.reshape(-1))
    return out.view(h, w)


class Blur(Operator):
    """Circular convolution with a normalised kernel; Tikhonov pseudo-inverse with regularisation ``eps``."""

    name = "blur"
    orthonormal = False

    def __init__(self, image_shape: tuple[int, int, int], kernel: object, eps: float = DEFAULT_EPS) -> None:
        super().__init__(image_shape)
        self.kernel = check_kernel(kernel)  # float64, sums to 1
        self.eps = check_positive("eps", eps)
        _, h, w = self.image_shape
        #: Â on the rfft2 grid (H, W//2 + 1), complex128.
        self.transfer = torch.fft.rfft2(periodic_kernel(self.kernel, h, w))

    def _apply(self, x: Tensor, multiplier: Tensor) -> Tensor:
        _, h, w = self.image_shape
        cdtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        spec = torch.fft.rfft2(x) * buffer_on(multiplier, x).to(cdtype)
        return torch.fft.irfft2(spec, s=(h, w))

    def forward(self, x: Tensor) -> Tensor:
        self._check_image(x)
        return self._apply(x, self.transfer)

    def adjoint(self, c: Tensor) -> Tensor:
        self._check_image(c)
        return self._apply(c, self.transfer.conj())

    def pinv(self, c: Tensor) -> Tensor:
        """(AᵀA + εI)⁻¹Aᵀc, a Fourier-domain Wiener/Tikhonov filter."""
        self._check_image(c)
        return self._apply(c, self.transfer.conj() / (self.transfer.abs() ** 2 + self.eps))

    def project(self, x: Tensor) -> Tensor:
        """A⁺A x: the part of x the blurred data determine (a filter with gains |Â|²/(|Â|²+ε) in [0, 1))."""
        self._check_image(x)
        gain = self.transfer.abs() ** 2
        return self._apply(x, (gain / (gain + self.eps)).to(self.transfer.dtype))

    def complement(self, v: Tensor) -> Tensor:
        return v - self.project(v)

    def observed_image(self, c: Tensor) -> Tensor:
        """The blurred image is the measurement itself."""
        return c

    def measurement_from_observed(self, image: Tensor) -> Tensor:
        """A loaded blurred photo is the measurement as it is."""
        if image.dim() != 4 or tuple(image.shape[1:]) != self.image_shape:
            raise ParameterError(f"blur: expected an image of shape (B, *{self.image_shape}), got {tuple(image.shape)}")
        return image

    def measurement_fraction(self) -> float:
        return 1.0

    def describe(self) -> str:
        kh, kw = self.kernel.shape
        return f"blur ({kh}×{kw} kernel, ε={self.eps:g})"

    def to(self, device: torch.device | str) -> Blur:
        super().to(device)
        self.transfer = self.transfer.to(self.device)
        return self
