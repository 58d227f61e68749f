"""Iterative methods that speak the step protocol of ``base``: one StepRecord per iteration."""

from priorstudio.core.samplers.base import StepRecord, StepStream, StopReason
from priorstudio.core.samplers.gaussian import GaussianBlindDenoiser, GaussianPrior
from priorstudio.core.samplers.implicit_prior import (
    DENOISE_PRESET,
    RESTORE_PRESET,
    SYNTHESIS_PRESET,
    TEACH_PRESET,
    ImplicitPriorParams,
    ImplicitPriorRun,
    expected_iterations,
    ideal_sigma_schedule,
    implicit_prior_sampler,
    noise_scale,
    restore_preset,
    step_size,
)

__all__ = [
    "DENOISE_PRESET",
    "RESTORE_PRESET",
    "SYNTHESIS_PRESET",
    "TEACH_PRESET",
    "GaussianBlindDenoiser",
    "GaussianPrior",
    "ImplicitPriorParams",
    "ImplicitPriorRun",
    "StepRecord",
    "StepStream",
    "StopReason",
    "expected_iterations",
    "ideal_sigma_schedule",
    "implicit_prior_sampler",
    "noise_scale",
    "restore_preset",
    "step_size",
]
