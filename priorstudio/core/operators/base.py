"""The measurement-operator protocol shared by every sampler and method.

An operator describes a linear measurement of an image x of shape (C, H, W) (or a batch (B, C, H, W)):

    forward  Mᵀx   image -> measurement     (what the camera/degradation gives us)
    adjoint  Mc    measurement -> image
    project  MMᵀx  image -> image           (orthogonal projector when MᵀM = I)
    pinv     M⁺c   measurement -> image     (least-squares back-projection; = adjoint when orthonormal)
    data_step(y, c)                          the sampler's pull toward the measurements, M⁺(c − Mᵀy)

Orthonormal operators (``orthonormal = True``) satisfy MᵀM = I, so the implicit-prior sampler can split
every step exactly into a measured part and its complement. Blur is the exception: it is not orthonormal,
and its data step is the (Tikhonov-regularised) least-squares correction through its pseudo-inverse.

Measurements are plain tensors; their layout is the operator's business, but always carries the batch
dimension of the input first, so a batch of K samples is measured in one call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class Operator(ABC):
    """A linear measurement Mᵀ of images of shape ``image_shape`` = (C, H, W)."""

    #: Human-readable name of the task, e.g. "inpaint".
    name: str = "operator"
    #: True when MᵀM = I (M has orthonormal columns), so MMᵀ is an orthogonal projector.
    orthonormal: bool = True

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        c, h, w = (int(v) for v in image_shape)
        if c < 1 or h < 1 or w < 1:
            raise ValueError(f"image shape must be positive, got {image_shape}")
        self.image_shape: tuple[int, int, int] = (c, h, w)

    # -- the linear maps ---------------------------------------------------------------------------
    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Mᵀx: measure a batch of images (B, C, H, W) -> (B, *measurement_shape)."""

    @abstractmethod
    def adjoint(self, c: Tensor) -> Tensor:
        """Mc: map a batch of measurements back to image space (B, C, H, W)."""

    def project(self, x: Tensor) -> Tensor:
        """MMᵀx: the measured component of x (an orthogonal projector when orthonormal)."""
        return self.adjoint(self.forward(x))

    def pinv(self, c: Tensor) -> Tensor:
        """M⁺c: the least-squares image for measurements c (the adjoint when MᵀM = I)."""
        return self.adjoint(c)

    def data_step(self, y: Tensor, c: Tensor) -> Tensor:
        """M⁺(c − Mᵀy): the image-space correction that makes y agree with the measurements c."""
        return self.pinv(c - self.forward(y))

    def complement(self, v: Tensor) -> Tensor:
        """(I − MM⁺)v: the part of v the measurements say nothing about."""
        return v - self.pinv(self.forward(v))

    def consistency_error(self, y: Tensor, c: Tensor) -> Tensor:
        """‖Mᵀy − c‖ / √(measurement size), one value per batch element: how far y is from the data."""
        r = (self.forward(y) - c).flatten(1)
        return r.norm(dim=1) / max(r.shape[1], 1) ** 0.5

    # -- helpers for callers -----------------------------------------------------------------------
    def initial_mean(self, c: Tensor, fill: float = 0.5) -> Tensor:
        """The sampler's starting mean: the measured part from the data, ``fill`` elsewhere."""
        like = c.new_full((c.shape[0], *self.image_shape), fill)
        return self.complement(like) + self.pinv(c)

    def measurement_fraction(self) -> float:
        """Fraction of the N image dimensions the measurement keeps (1 for plain denoising)."""
        probe = torch.zeros((1, *self.image_shape))
        return self.forward(probe).numel() / probe.numel()

    def describe(self) -> str:
        """One line for logs, plots and run records."""
        return self.name

    def to(self, device: torch.device | str) -> Operator:
        """Move any internal tensors to ``device`` (operators without buffers return themselves)."""
        return self
