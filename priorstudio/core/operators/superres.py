"""s×s block-average super-resolution, for any integer s and any image size.

Mᵀx = s·blockmean(x) for a full block: the block's sum divided by √(s²), so every column of M is the
block's indicator over √(pixel count) and has unit norm. When H or W is not a multiple of s the last
row/column of blocks is partial (e.g. 17 rows with s = 4: four blocks of 4 rows and one of 1). Each
partial block is normalised by √(its own pixel count), so MᵀM = I stays exact and the low-resolution
image (the block means) is ⌈H/s⌉×⌈W/s⌉ with every edge pixel the mean of the pixels it covers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators.base import Operator, buffer_on
from priorstudio.core.operators.validation import check_int


class SuperResolution(Operator):
    """Measurement: the ⌈H/s⌉×⌈W/s⌉ block sums over √(block size), shape (B, C, ⌈H/s⌉, ⌈W/s⌉)."""

    name = "super_resolution"

    def __init__(self, image_shape: tuple[int, int, int], factor: int = 4) -> None:
        super().__init__(image_shape)
        _, h, w = self.image_shape
        self.factor = check_int("factor", factor, 1, max(h, w))
        s = self.factor
        self.low_res_shape: tuple[int, int] = (-(-h // s), -(-w // s))
        rows = torch.full((self.low_res_shape[0],), float(s), dtype=torch.float64)
        cols = torch.full((self.low_res_shape[1],), float(s), dtype=torch.float64)
        rows[-1], cols[-1] = h - s * (self.low_res_shape[0] - 1), w - s * (self.low_res_shape[1] - 1)
        #: √(pixels in each block), (h', w'): the normalisation that makes M orthonormal.
        self.block_norm = (rows[:, None] * cols[None, :]).sqrt()

    def _norm(self, like: Tensor) -> Tensor:
        return buffer_on(self.block_norm, like).to(like.dtype)

    def _block_sums(self, x: Tensor) -> Tensor:
        _, h, w = self.image_shape
        s = self.factor
        hl, wl = self.low_res_shape
        x = F.pad(x, (0, wl * s - w, 0, hl * s - h))
        return x.reshape(*x.shape[:2], hl, s, wl, s).sum(dim=(3, 5))

    def _spread(self, v: Tensor) -> Tensor:
        """Copy each low-resolution value over its block (nearest upsampling), cropped to H×W."""
        _, h, w = self.image_shape
        s = self.factor
        return v.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)[:, :, :h, :w]

    def forward(self, x: Tensor) -> Tensor:
        self._check_image(x)
        return self._block_sums(x) / self._norm(x)

    def adjoint(self, c: Tensor) -> Tensor:
        return self._spread(c / self._norm(c))

    def low_res_image(self, c: Tensor) -> Tensor:
        """The block-mean image (B, C, ⌈H/s⌉, ⌈W/s⌉) for display or saving."""
        return c / self._norm(c)

    def measurement_from_low_res(self, low_res: Tensor) -> Tensor:
        """Measurements from a low-resolution image (B, C, ⌈H/s⌉, ⌈W/s⌉) of block means (restore mode)."""
        c = self.image_shape[0]
        if low_res.dim() != 4 or tuple(low_res.shape[1:]) != (c, *self.low_res_shape):
            hl, wl = self.low_res_shape
            raise ParameterError(
                f"super-resolution ×{self.factor} of a {self.image_shape[1]}×{self.image_shape[2]} image needs a "
                f"{hl}×{wl} low-resolution image with {c} channel(s), got shape {tuple(low_res.shape)}"
            )
        return low_res * self._norm(low_res)

    def observed_image(self, c: Tensor) -> Tensor:
        """The low-resolution image upsampled by nearest neighbour to H×W (= Mc)."""
        return self._spread(self.low_res_image(c))

    def measurement_from_observed(self, image: Tensor) -> Tensor:
        """From the low-resolution image; a full-size image (e.g. ``observed_image``) is measured directly."""
        if image.dim() == 4 and tuple(image.shape[1:]) == self.image_shape:
            return self.forward(image)
        return self.measurement_from_low_res(image)

    def measurement_fraction(self) -> float:
        return self.block_norm.numel() / (self.image_shape[1] * self.image_shape[2])

    def describe(self) -> str:
        return f"super_resolution ×{self.factor}"

    def to(self, device: torch.device | str) -> SuperResolution:
        super().to(device)
        self.block_norm = self.block_norm.to(self.device)
        return self
