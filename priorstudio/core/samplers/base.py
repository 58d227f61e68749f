"""The step protocol every iterative method speaks.

A method is a generator that yields one :class:`StepRecord` per iteration. Callers (the CLI's progress bar,
the GUI worker, benchmarks, tests) iterate it, and can pause or stop simply by not asking for the next
record. The last record has ``stop_reason`` set and carries the final estimate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from torch import Tensor


class StopReason(str, Enum):
    """Why a run ended; stored in the last record and in run records."""

    CONVERGED = "converged"  # σ_t reached σ_L (or a method's own criterion)
    STEP_CAP = "step_cap"  # hit the maximum number of steps
    DIVERGED_NAN = "diverged_nan"  # the estimate or σ_t became NaN/Inf; last good state kept
    DIVERGED_SIGMA = "diverged_sigma"  # σ_t grew for several steps in a row; last good state kept
    EARLY_STOP = "early_stop"  # a no-ground-truth early-stopping rule fired
    CANCELLED = "cancelled"  # the caller stopped it


@dataclass
class StepRecord:
    """What one iteration reports. Scalars are per batch element averaged; ``image`` only when asked.

    ``image`` is the current estimate (B, C, H, W) on the CPU as float32 (a fresh tensor the caller may
    keep). ``extra`` holds method-specific scalars (e.g. DIP's fit loss) for plots and CSV.
    """

    t: int
    sigma: float = float("nan")
    h: float = float("nan")
    gamma: float = float("nan")
    residual_norm: float = float("nan")
    data_error: float = float("nan")
    psnr: float | None = None
    ssim: float | None = None
    image: Tensor | None = None
    stop_reason: StopReason | None = None
    message: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def is_last(self) -> bool:
        return self.stop_reason is not None

    def scalars(self) -> dict[str, Any]:
        """The record without the image: one CSV row."""
        row: dict[str, Any] = {
            "t": self.t,
            "sigma": self.sigma,
            "h": self.h,
            "gamma": self.gamma,
            "residual_norm": self.residual_norm,
            "data_error": self.data_error,
            "psnr": self.psnr,
            "ssim": self.ssim,
        }
        row.update(self.extra)
        return row


StepStream = Iterator[StepRecord]
