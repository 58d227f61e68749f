"""Measurements that keep a subset of pixel values: inpainting and random pixels.

Mᵀx picks the kept entries of x (flattened over C, H, W); M puts them back and leaves zeros elsewhere.
The columns of M are distinct unit vectors, so MᵀM = I exactly and MMᵀ multiplies by the 0/1 mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

from priorstudio.core.errors import MaskError
from priorstudio.core.operators.base import Operator, buffer_on
from priorstudio.core.operators.validation import check_fraction, check_seed
from priorstudio.core.tensors import as_tensor


class PixelSubset(Operator):
    """Keep the entries ``index`` (int64, sorted, into the flattened C·H·W image)."""

    def __init__(self, image_shape: tuple[int, int, int], index: Tensor) -> None:
        super().__init__(image_shape)
        self.index = index.to(torch.long)

    @property
    def numel(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def known_mask(self) -> Tensor:
        """Bool (C, H, W), True where a pixel value is measured (for display and masks in the GUI)."""
        m = torch.zeros(self.numel, dtype=torch.bool, device=self.index.device)
        m[self.index] = True
        return m.view(self.image_shape)

    def forward(self, x: Tensor) -> Tensor:
        self._check_image(x)
        return x.flatten(1).index_select(1, buffer_on(self.index, x))

    def adjoint(self, c: Tensor) -> Tensor:
        out = c.new_zeros((c.shape[0], self.numel))
        out[:, buffer_on(self.index, c)] = c
        return out.view(c.shape[0], *self.image_shape)

    def measurement_fraction(self) -> float:
        return self.index.numel() / self.numel

    def to(self, device: torch.device | str) -> PixelSubset:
        super().to(device)
        self.index = self.index.to(self.device)
        return self


class Inpaint(PixelSubset):
    """Fill the pixels marked ``missing`` (bool (H, W) for all channels, or (C, H, W) per channel).

    The measurement is the values of the known pixels. A mask that hides everything leaves nothing to
    go on, and one that hides nothing leaves nothing to inpaint; both are refused with a MaskError.
    """

    name = "inpaint"

    def __init__(self, image_shape: tuple[int, int, int], missing: Tensor) -> None:
        Operator.__init__(self, image_shape)
        c, h, w = self.image_shape
        missing = _as_bool_mask(missing)
        if missing.dim() == 3 and missing.shape[0] == 1:
            missing = missing[0]
        if tuple(missing.shape) == (h, w):
            missing = missing.unsqueeze(0).expand(c, h, w)
        elif tuple(missing.shape) != (c, h, w):
            raise MaskError(
                f"the mask is {'×'.join(map(str, missing.shape))} but the image is {h}×{w}"
                + (f" with {c} channels" if c > 1 else "")
                + "; draw or load a mask of the image's size"
            )
        if bool(missing.all()):
            raise MaskError("the mask covers the whole image: nothing is known to inpaint from")
        if not bool(missing.any()):
            raise MaskError("the mask is empty: mark the pixels to fill (white in a mask file) first")
        self.missing_fraction = float(missing.float().mean())
        super().__init__(image_shape, torch.nonzero(~missing.reshape(-1)).squeeze(1).cpu())

    def describe(self) -> str:
        return f"inpaint ({100 * self.missing_fraction:.1f}% missing)"


class RandomPixels(PixelSubset):
    """Keep a random ``fraction`` of the pixel positions (the same positions in every channel).

    round(fraction·H·W) positions (at least one) are drawn without replacement from a generator seeded
    with ``seed``: the same seed and image size always give the same pixels.
    """

    name = "random_pixels"

    def __init__(self, image_shape: tuple[int, int, int], fraction: float = 0.1, seed: int = 0) -> None:
        Operator.__init__(self, image_shape)
        self.fraction = check_fraction("fraction", fraction)
        self.seed = check_seed(seed)
        c, h, w = self.image_shape
        n = h * w
        m = max(1, round(self.fraction * n))
        gen = torch.Generator().manual_seed(self.seed)
        pos = torch.randperm(n, generator=gen)[:m].sort().values
        index = (torch.arange(c).unsqueeze(1) * n + pos.unsqueeze(0)).reshape(-1)
        super().__init__(image_shape, index)

    def describe(self) -> str:
        return f"random_pixels ({100 * self.fraction:g}% kept, seed {self.seed})"


def _as_bool_mask(mask: object) -> Tensor:
    """A bool tensor from a bool/0-1 tensor or array; anything else is a MaskError."""
    try:
        t = as_tensor(mask)
    except (TypeError, ValueError, RuntimeError):
        raise MaskError(f"the mask must be a boolean array, not {type(mask).__name__}") from None
    if t.dim() not in (2, 3) or t.numel() == 0:
        raise MaskError(f"the mask must be a 2-D (H, W) or 3-D (C, H, W) array, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        return t.cpu()
    if not bool(((t == 0) | (t == 1)).all()):
        raise MaskError("the mask must hold only 0/1 (or False/True) values")
    return (t != 0).cpu()
