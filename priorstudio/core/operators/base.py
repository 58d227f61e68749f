"""The measurement-operator protocol shared by every sampler and method.

An operator describes a linear measurement of an image x of shape (C, H, W) (or a batch (B, C, H, W)):

    forward  Mᵀx   image -> measurement     (what the camera/degradation gives us)
    adjoint  Mc    measurement -> image
    project  MMᵀx  image -> image           (orthogonal projector when MᵀM = I; Blur: the filter A⁺A)
    pinv     M⁺c   measurement -> image     (least-squares back-projection; = adjoint when orthonormal)
    data_step(y, c)                          the sampler's pull toward the measurements, M⁺(c − Mᵀy)

Orthonormal operators (``orthonormal = True``) satisfy MᵀM = I, so the implicit-prior sampler can split
every step exactly into a measured part and its complement. Blur is the exception: it is not orthonormal,
and its data step is the (Tikhonov-regularised) least-squares correction through its pseudo-inverse.

Measurements are plain tensors; their layout is the operator's business, but always carries the batch
dimension of the input first, so a batch of K samples is measured in one call.

Operators keep their index/kernel buffers on ``self.device`` (``to(device)`` moves them), and move a
buffer on the fly when they are handed tensors that live elsewhere, so they work on any device. They
compute in the dtype of their input (float32 images, float64 in tests).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.tensors import as_tensor


class Operator(ABC):
    """A linear measurement Mᵀ of images of shape ``image_shape`` = (C, H, W)."""

    #: Human-readable name of the task, e.g. "inpaint".
    name: str = "operator"
    #: True when MᵀM = I (M has orthonormal columns), so MMᵀ is an orthogonal projector.
    orthonormal: bool = True

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        if len(tuple(image_shape)) != 3:
            raise ParameterError(f"image shape must be (C, H, W), got {tuple(image_shape)}")
        c, h, w = (int(v) for v in image_shape)
        if c < 1 or h < 1 or w < 1:
            raise ParameterError(f"image shape must be positive, got {tuple(image_shape)}")
        self.image_shape: tuple[int, int, int] = (c, h, w)
        #: Where the operator's buffers live (inputs elsewhere still work; buffers follow them).
        self.device: torch.device = torch.device("cpu")

    # -- the linear maps ---------------------------------------------------------------------------
    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Mᵀx: measure a batch of images (B, C, H, W) -> (B, *measurement_shape)."""

    @abstractmethod
    def adjoint(self, c: Tensor) -> Tensor:
        """Mc: map a batch of measurements back to image space (B, C, H, W)."""

    def project(self, x: Tensor) -> Tensor:
        """M⁺Mᵀx: the component of x the measurements determine, so project + complement = I.

        MMᵀx (an orthogonal projector) when orthonormal, since the pseudo-inverse is then the adjoint.
        """
        return self.pinv(self.forward(x))

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

    def observed_image(self, c: Tensor) -> Tensor:
        """What a user should see as "the degraded image" for measurements c, as (B, C, H, W).

        The default is the measured part with mid-gray where nothing is known (the sampler's starting
        mean): known pixels on gray holes for inpainting, the low-pass image for spectral, the
        back-projection on a gray background for compressive sensing.
        """
        return self.initial_mean(c, 0.5)

    def measurement_from_observed(self, image: Tensor) -> Tensor:
        """Measurements c from an image that is already degraded (restore mode), (B, C, H, W) -> c."""
        return self.forward(image)

    def simulate(self, x: Tensor, noise_sigma: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Mᵀx plus white Gaussian noise of standard deviation ``noise_sigma`` on every measurement.

        For an orthonormal operator this has exactly the law of Mᵀ(x + σz): the image-space noise σ seen
        through the measurement.
        """
        if not noise_sigma >= 0.0:
            raise ParameterError(f"noise level must be ≥ 0, got {noise_sigma}")
        c = self.forward(x)
        if noise_sigma == 0.0 or c.numel() == 0:
            return c
        gen_device = generator.device if generator is not None else c.device
        noise = torch.randn(c.shape, generator=generator, dtype=c.dtype, device=gen_device)
        return c + noise_sigma * noise.to(c.device)

    def measurement_fraction(self) -> float:
        """Fraction of the N image dimensions the measurement keeps (0 for plain denoising: no constraint)."""
        return math.prod(self.measurement_shape) / math.prod(self.image_shape)

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        """The shape of one image's measurements: what ``forward`` gives per batch element."""
        probe = torch.zeros((1, *self.image_shape), device=self.device)
        return tuple(self.forward(probe).shape[1:])

    def measurement_batch(self, c: Tensor, name: str = "the measurement") -> Tensor:
        """``c`` as a batch (B, *measurement_shape); one unbatched measurement gains its batch axis.

        Any other shape is refused with a message naming both shapes: sliced or broadcast, a wrong one
        would otherwise fit the wrong data silently or fail deep inside a step.
        """
        c = as_tensor(c)
        expected = self.measurement_shape
        if tuple(c.shape) == expected:
            return c.unsqueeze(0)
        if c.dim() == len(expected) + 1 and tuple(c.shape[1:]) == expected and c.shape[0] >= 1:
            return c
        shown = ", ".join(str(v) for v in expected)
        raise ParameterError(
            f"{name} has shape {tuple(c.shape)}; the {self.name} operator on images of shape "
            f"{self.image_shape} measures (B, {shown})"
        )

    def describe(self) -> str:
        """One line for logs, plots and run records."""
        return self.name

    def to(self, device: torch.device | str) -> Operator:
        """Move any internal tensors to ``device`` (operators without buffers return themselves)."""
        self.device = torch.device(device)
        return self

    # -- for subclasses ----------------------------------------------------------------------------
    def _check_image(self, x: Tensor) -> None:
        """Refuse a batch whose image shape is not ``image_shape`` (a clear message beats an index error)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            c, h, w = self.image_shape
            raise ParameterError(f"{self.name}: expected images of shape (B, {c}, {h}, {w}), got {tuple(x.shape)}")


def task_of(operator: Operator | None) -> tuple[str, int | None]:
    """The task an operator stands for (``make_operator``'s name) and its super-resolution factor; None is
    denoising. Why: methods keep their per-task defaults by task name, which a form knows before an operator
    exists."""
    if operator is None:
        return "denoise", None
    factor = getattr(operator, "factor", None)
    return operator.name, factor if isinstance(factor, int) else None


def buffer_on(t: Tensor, like: Tensor) -> Tensor:
    """``t`` on the device of ``like`` (a no-op when it is already there)."""
    return t if t.device == like.device else t.to(like.device)
