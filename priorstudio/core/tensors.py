"""Tensors from what callers hand in: tensors, NumPy arrays (any strides), nested lists, numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def as_tensor(data: Any, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.as_tensor`` that also takes NumPy views with negative strides (``np.flipud(a)``, ``a[::-1]``).

    PyTorch refuses such views; copying them to a contiguous array keeps a flipped kernel or mask a valid
    input instead of a confusing "not an array" message. Tensors and contiguous arrays are not copied.
    """
    if isinstance(data, np.ndarray) and any(s < 0 for s in data.strides):
        data = np.ascontiguousarray(data)
    return torch.as_tensor(data, dtype=dtype)
