"""Compressive sensing with a fast structured orthonormal transform.

Mᵀx = S·C·D·x on the image flattened over (C, H, W) into a vector of length N: D flips the sign of every
entry at random, C is the orthonormal DCT-II of length N (computed with one FFT, see ``transforms``) and
S keeps m = round(fraction·N) of the N outputs, chosen at random. C·D is orthogonal, so the rows of
S·C·D are orthonormal and MᵀM = S·Sᵀ = I exactly. The random signs spread every image structure over all
DCT outputs, so a random subset of them behaves like random projections (the subsampled randomised
transform), at O(N log N) time and O(N) memory instead of the N×m of a dense random basis. The signs
and the subset are drawn from a generator seeded with ``seed``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from priorstudio.core.operators.base import Operator, buffer_on
from priorstudio.core.operators.transforms import dct, idct
from priorstudio.core.operators.validation import check_fraction, check_seed


class CompressiveSensing(Operator):
    """m = round(fraction·C·H·W) (at least 1) orthonormal random measurements, shape (B, m)."""

    name = "compressive"

    def __init__(self, image_shape: tuple[int, int, int], fraction: float = 0.1, seed: int = 0) -> None:
        super().__init__(image_shape)
        self.fraction = check_fraction("fraction", fraction)
        self.seed = check_seed(seed)
        c, h, w = self.image_shape
        self.n = c * h * w
        m = max(1, round(self.fraction * self.n))
        gen = torch.Generator().manual_seed(self.seed)
        #: ±1 per image entry (int8 keeps it at N bytes).
        self.signs = (torch.randint(0, 2, (self.n,), generator=gen, dtype=torch.int8) * 2 - 1).to(torch.int8)
        #: The kept DCT outputs, sorted.
        self.index = torch.randperm(self.n, generator=gen)[:m].sort().values

    def _signs(self, like: Tensor) -> Tensor:
        return buffer_on(self.signs, like).to(like.dtype)

    def forward(self, x: Tensor) -> Tensor:
        self._check_image(x)
        return dct(x.flatten(1) * self._signs(x)).index_select(1, buffer_on(self.index, x))

    def adjoint(self, c: Tensor) -> Tensor:
        full = c.new_zeros((c.shape[0], self.n))
        full[:, buffer_on(self.index, c)] = c
        return (idct(full) * self._signs(c)).view(c.shape[0], *self.image_shape)

    def measurement_fraction(self) -> float:
        return self.index.numel() / self.n

    def describe(self) -> str:
        return f"compressive ({100 * self.measurement_fraction():.1f}% measured, seed {self.seed})"

    def to(self, device: torch.device | str) -> CompressiveSensing:
        super().to(device)
        self.signs, self.index = self.signs.to(self.device), self.index.to(self.device)
        return self
