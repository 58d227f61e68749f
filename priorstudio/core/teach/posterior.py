"""Posterior mean and uncertainty: K samples for one measurement → mean image and per-pixel spread.

The implicit-prior sampler with β < 1 draws (approximately) from p(x | measurement). Running K chains as one
batch and taking the per-pixel mean and standard deviation shows both the best guess and *where the data
say least*: inside an inpainting hole the samples disagree, on measured pixels they coincide. The std is
the unbiased one (divides by K − 1), so K ≥ 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.samplers.base import StepRecord, StepStream


@dataclass
class PosteriorSummary:
    """The mean (C, H, W), the per-pixel standard deviation (C, H, W) and the number of samples."""

    mean: Tensor
    std: Tensor
    k: int

    def std_map(self) -> Tensor:
        """Spread per pixel (1, H, W): the root-mean-square over colour channels (the std itself for gray)."""
        return self.std.pow(2).mean(0, keepdim=True).sqrt()

    def std_display(self, scale: float | None = None) -> Tensor:
        """The std map scaled to [0, 1] for showing it: by its maximum, or by a fixed ``scale`` so two maps
        can be compared by eye."""
        m = self.std_map()
        s = float(m.max()) if scale is None else float(scale)
        return (m / max(s, 1e-12)).clamp(0, 1)

    def region_std(self, region: Tensor) -> tuple[float, float]:
        """Mean spread inside and outside a boolean (H, W) or (1, H, W) region (e.g. the inpainting hole)."""
        m = self.std_map()[0]
        r = region.reshape(m.shape).bool()
        if not r.any() or r.all():
            raise ParameterError("the region must contain some pixels, and not all of them")
        return float(m[r].mean()), float(m[~r].mean())


def posterior_summary(samples: Tensor, *, clip: bool = True) -> PosteriorSummary:
    """Mean and per-pixel standard deviation of K samples (K, C, H, W), clipped to [0, 1] first by default
    (the images one would save)."""
    if samples.dim() != 4:
        raise ParameterError(f"expected K samples as (K, C, H, W), got shape {tuple(samples.shape)}")
    k = samples.shape[0]
    if k < 2:
        raise ParameterError(f"a spread needs at least 2 samples, got {k}")
    x = samples.detach().float()
    if clip:
        x = x.clamp(0, 1)
    return PosteriorSummary(mean=x.mean(0), std=x.std(0, unbiased=True), k=k)


def posterior_stream(
    denoiser: Any,
    operator: Any,
    measurement: Tensor,
    params: Any,
    k: int,
    *,
    init: Tensor | None = None,
    truth: Tensor | None = None,
) -> StepStream:
    """The implicit-prior sampler running K chains for one measurement as one batch.

    ``measurement`` is the problem's (1, …) measurement; ``init`` an optional (C, H, W) start (denoising).
    Iterate it like any StepStream (the GUI worker drives it); summarise the last record's image with
    :func:`posterior_summary`.
    """
    from priorstudio.core.samplers.implicit_prior import implicit_prior_sampler

    if k < 2:
        raise ParameterError(f"the posterior view needs K ≥ 2 samples, got {k}")
    batch_measurement = measurement.expand(k, *measurement.shape[1:]) if measurement.shape[0] == 1 else measurement
    batch_init = init.unsqueeze(0).expand(k, -1, -1, -1) if init is not None and init.dim() == 3 else init
    return implicit_prior_sampler(denoiser, operator, batch_measurement, params, truth=truth, init=batch_init, batch=k)


def sample_posterior(
    denoiser: Any,
    operator: Any,
    measurement: Tensor,
    params: Any,
    k: int,
    *,
    init: Tensor | None = None,
    truth: Tensor | None = None,
) -> tuple[PosteriorSummary, StepRecord]:
    """Run :func:`posterior_stream` to the end; returns the summary and the last record (why it stopped)."""
    last: StepRecord | None = None
    for last in posterior_stream(denoiser, operator, measurement, params, k, init=init, truth=truth):  # noqa: B007
        pass
    if last is None or last.image is None:
        raise ParameterError("the sampler produced no final image")
    return posterior_summary(last.image), last
