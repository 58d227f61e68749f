"""Plain denoising: no measurement at all, so nothing constrains the image."""

from __future__ import annotations

from torch import Tensor

from priorstudio.core.operators.base import Operator


class Identity(Operator):
    """The empty measurement: Mᵀx is a (B, 0) tensor, M of it is the zero image, and MMᵀ = 0.

    Denoising with the implicit prior needs no data step: the sampler starts at the noisy image itself
    (with σ_0 estimated from it) and the denoiser does the rest.
    """

    name = "denoise"
    orthonormal = True  # trivially: M has no columns

    def forward(self, x: Tensor) -> Tensor:
        self._check_image(x)
        return x.flatten(1)[:, :0]  # empty, but still part of the autograd graph

    def adjoint(self, c: Tensor) -> Tensor:
        return c.new_zeros((c.shape[0], *self.image_shape))

    def complement(self, v: Tensor) -> Tensor:
        return v

    def measurement_fraction(self) -> float:
        return 0.0

    def observed_image(self, c: Tensor) -> Tensor:
        raise NotImplementedError("denoising has no measurement to show: display the noisy image itself")
