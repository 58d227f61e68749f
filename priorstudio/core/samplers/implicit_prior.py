"""Sampling from the prior implicit in a blind denoiser (Kadkhodaie & Simoncelli), ALGORITHMS.md §2.

By Miyasawa's relation f(y) = D(y) − y = σ²∇log p_σ(y) points uphill on the blurred image density, and its
size tells how much noise is left. The sampler climbs with a growing step h_t while injecting a shrinking
amount of fresh noise γ_t, so the effective noise σ_t decays roughly as (1 − βh_t) per step:

    y_0 ~ N(initial_mean(c), σ_0² I)
    f = D(y) − y;  d = (I − MMᵀ)f + M(c − Mᵀy);  σ_t = ‖d‖/√N;  stop when σ_t ≤ σ_L
    h_t = h_0·t / (1 + h_0·(t − 1));  γ_t = σ_t·√((1 − βh_t)² − (1 − h_t)²)
    y ← y + h_t·d + γ_t·z

and returns D(y) of the final state. A measurement operator with MᵀM = I makes it a solver for linear
inverse problems; no operator (or the ``Identity`` one) is unconditional synthesis; starting at a noisy
image (``init``) instead of a random draw is blind denoising.

Conventions of this implementation (the reference code has neither a step cap nor a divergence guard):

- The run is an iterator of :class:`StepRecord`, one per denoiser evaluation. Record ``t`` reports σ_t
  measured at step t and the h_t, γ_t used to update from it. σ_1 is measured at y_0, so with the ideal
  decay σ_t = σ_0·∏_{s<t}(1 − βh_s) (see :func:`ideal_sigma_schedule`).
- The step that finds σ_t ≤ σ_L applies no update; since it has just evaluated D(y), its D(y) *is* the
  final denoising step, so a converged sample costs no extra denoiser call. A step cap, a cancel and a
  divergence also end without an update.
- K samples run as one batch. Each has its own σ_t, stop and divergence guard; a sample that stops is
  frozen (no more updates, no more denoiser calls) while the others go on, and the denoiser is called once
  per step on the active samples only. All samples start together, so they share the step counter t.
- ``image`` in a record is D(y_t), the current estimate (free: f was computed anyway), for all K samples
  (frozen ones show their final estimate), as a fresh float32 CPU tensor, *not clamped*: it is the raw
  estimate, whose statistics the tests check. Clamp to [0, 1] to display or save it.
- PSNR/SSIM (when ``truth`` is given) are the mean over the samples of the metric of the clamped estimate.
- Stopping: iterate and simply stop asking (the iterator holds no resources, abandoning it is fine), or
  call :meth:`ImplicitPriorRun.stop` and keep iterating: the next step evaluates D(y) without updating
  and is the last record, with ``StopReason.CANCELLED`` and the current estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Protocol

import torch
from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators.base import Operator
from priorstudio.core.operators.identity import Identity
from priorstudio.core.samplers.base import StepRecord, StopReason
from priorstudio.core.tensors import as_tensor

#: σ_t must also have grown by this factor over a streak of ``divergence_patience`` rising steps before a
#: sample is called diverged. σ_t is measured from the image itself, so on small images it wanders: with
#: β = 0.01, pure noise shows a streak of 10 rising steps in 17% of 8×8 runs, 11% of 16×16 and 3% of
#: 32×32 ones (grown by up to 4.5×, 2.0× and 1.4×), while a denoiser that amplifies noise makes σ_t grow
#: without bound. Below 16×16 pixels use a patience of 20 (no such streak in 20,000 simulated 8×8 runs).
DIVERGENCE_GROWTH = 2.0

#: With at most this many samples, every record also carries each sample's σ_t as ``sigma_k``.
PER_SAMPLE_SCALARS = 16


class DenoiserLike(Protocol):
    def __call__(self, y: Tensor) -> Tensor: ...


@dataclass
class ImplicitPriorParams:
    """Parameters of the implicit-prior sampler (defaults: the inverse-problem settings of ALGORITHMS.md)."""

    sigma_0: float = field(
        default=1.0,
        metadata={"label": "σ₀", "help": "noise level of the random start", "min": 1e-3, "max": 10.0, "log": True},
    )
    sigma_L: float = field(
        default=0.01,
        metadata={
            "label": "σ_L",
            "help": "stop when the effective noise σ_t falls to this level",
            "min": 1e-4,
            "max": 1.0,
            "log": True,
        },
    )
    h_0: float = field(
        default=0.01,
        metadata={
            "label": "h₀",
            "help": "first step size; steps grow from h₀ towards 1",
            "min": 1e-4,
            "max": 0.99,
            "log": True,
        },
    )
    beta: float = field(
        default=0.01,
        metadata={
            "label": "β",
            "help": "noise injection: 1 injects none (deterministic), small values inject more and explore",
            "min": 1e-3,
            "max": 1.0,
            "log": True,
        },
    )
    seed: int = field(
        default=0,
        metadata={"label": "seed", "help": "the same seed gives the same result", "min": 0, "max": 2**31 - 1},
    )
    max_steps: int = field(
        default=3000,
        metadata={"label": "max steps", "help": "stop after this many steps at the latest", "min": 1, "max": 100_000},
    )
    emit_every: int = field(
        default=1,
        metadata={
            "label": "image every",
            "help": "attach the current estimate to every k-th record (0: only to the last)",
            "min": 0,
            "max": 10_000,
        },
    )
    project_noise: bool = field(
        default=False,
        metadata={"label": "project noise", "help": "inject noise only where the measurements say nothing"},
    )
    final_projection: bool = field(
        default=False,
        metadata={
            "label": "final projection",
            "help": "make the result agree with the measurements (exactly, except for blur: a regularised step)",
        },
    )
    divergence_patience: int = field(
        default=10,
        metadata={
            "label": "divergence patience",
            "help": "stop a sample whose σ_t rises this many steps in a row and doubles (use 20 below 16×16 pixels)",
            "min": 2,
            "max": 1000,
        },
    )

    def validate(self) -> None:
        """Raise ParameterError naming the first field outside its valid range."""
        for name in ("sigma_0", "sigma_L", "h_0", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParameterError(f"{name} must be a finite number, got {value!r}", field=name)
        for name in ("seed", "max_steps", "emit_every", "divergence_patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParameterError(f"{name} must be an integer, got {value!r}", field=name)
        if not self.sigma_0 > 0:
            raise ParameterError(f"sigma_0 (σ₀) must be > 0, got {self.sigma_0}", field="sigma_0")
        if not 0 < self.sigma_L < self.sigma_0:
            raise ParameterError(
                f"σ_L must be above 0 and below σ₀ (the noise level the run starts at): "
                f"got σ_L = {self.sigma_L:g}, σ₀ = {self.sigma_0:g}",
                field="sigma_L",
            )
        if not 0 < self.h_0 < 1:
            raise ParameterError(f"h_0 (h₀) must be in (0, 1), got {self.h_0}", field="h_0")
        if not 0 < self.beta <= 1:
            raise ParameterError(f"beta (β) must be in (0, 1], got {self.beta}", field="beta")
        if not 0 <= self.seed < 2**63:
            raise ParameterError(f"seed must be in [0, 2⁶³), got {self.seed}", field="seed")
        if self.max_steps < 1:
            raise ParameterError(f"max_steps must be ≥ 1, got {self.max_steps}", field="max_steps")
        if self.emit_every < 0:
            raise ParameterError(
                f"emit_every must be ≥ 0 (0: image only in the last record), got {self.emit_every}", field="emit_every"
            )
        if self.divergence_patience < 2:
            raise ParameterError(
                f"divergence_patience must be ≥ 2, got {self.divergence_patience}", field="divergence_patience"
            )
        for name in ("project_noise", "final_projection"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be True or False, got {getattr(self, name)!r}", field=name)

    @classmethod
    def preset(cls, preset: Mapping[str, Any], **overrides: Any) -> ImplicitPriorParams:
        """Parameters from one of the presets below, with ``overrides`` applied."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ParameterError(f"unknown sampler parameter(s): {', '.join(unknown)}")
        return cls(**{**preset, **overrides})


#: Inverse problems: the defaults of ALGORITHMS.md (β = 0.01; 200–420 steps typically).
RESTORE_PRESET: Mapping[str, Any] = MappingProxyType({"beta": 0.01, "max_steps": 3000})
#: Denoising: β = 1, a deterministic coarse-to-fine ascent from the noisy photo. The run starts at the photo
#: and nothing in the data pins it there, so noise injected on the way (β < 1) carries it away for good: on
#: two CBSD68 images at σ = 15 / 25 / 50, β = 0.01 ended 5.6–8.7 dB below the denoiser's own one-step
#: estimate, β = 1 within 0.2–0.6 dB of it, in 19–26 steps instead of 39–156 (docs/methods.md).
DENOISE_PRESET: Mapping[str, Any] = MappingProxyType({"beta": 1.0, "max_steps": 3000})
#: Synthesis from the prior alone: β = 0.5 (about 48 steps on the ideal decay).
SYNTHESIS_PRESET: Mapping[str, Any] = MappingProxyType({"beta": 0.5, "max_steps": 1000})
#: Watching the sampler work: β = 0.5, an image in every record, a short cap.
TEACH_PRESET: Mapping[str, Any] = MappingProxyType({"beta": 0.5, "emit_every": 1, "max_steps": 500})


def restore_preset(task: str | None) -> Mapping[str, Any]:
    """The restoring preset for a task: :data:`DENOISE_PRESET` for denoising, else :data:`RESTORE_PRESET`."""
    return DENOISE_PRESET if task == "denoise" else RESTORE_PRESET


def restore_params(task: str | None, factor: int | None = None) -> ImplicitPriorParams:
    """The sampler's parameters for restoring a task by name (``factor`` changes nothing here; it is there so
    every method's per-task defaults take the same arguments)."""
    return ImplicitPriorParams.preset(restore_preset(task))


# -- the schedule ---------------------------------------------------------------------------------------
def step_size(t: int, h_0: float) -> float:
    """h_t = h₀·t / (1 + h₀·(t − 1)): h₀ at t = 1, rising towards 1."""
    return h_0 * t / (1 + h_0 * (t - 1))


def noise_scale(h: float, beta: float) -> float:
    """γ_t / σ_t = √((1 − βh)² − (1 − h)²): the share of fresh noise injected; 0 for β = 1."""
    return math.sqrt(max((1 - beta * h) ** 2 - (1 - h) ** 2, 0.0))


def ideal_sigma_schedule(params: ImplicitPriorParams, n: int) -> list[float]:
    """σ_t for t = 1…n on the ideal decay σ_{t+1} = (1 − βh_t)σ_t from σ_1 = σ₀ (index t − 1), for plots."""
    out, sigma = [], float(params.sigma_0)
    for t in range(1, int(n) + 1):
        out.append(sigma)
        sigma *= 1 - params.beta * step_size(t, params.h_0)
    return out


def expected_iterations(params: ImplicitPriorParams) -> int:
    """The step t at which the ideal decay first reaches σ_L (capped at ``max_steps``).

    The decay is about exponential once h_t ≈ 1, so this is the run's length to within a few tens of
    percent (a denoiser that removes more than the ideal share per step stops sooner).
    """
    sigma = float(params.sigma_0)
    for t in range(1, params.max_steps + 1):
        if sigma <= params.sigma_L:
            return t
        sigma *= 1 - params.beta * step_size(t, params.h_0)
    return params.max_steps


# -- the run ----------------------------------------------------------------------------------------------
class ImplicitPriorRun(Iterator[StepRecord]):
    """One run of the sampler: iterate it for its step records; :meth:`stop` ends it with a final record.

    Arguments are checked when the run is made (a ParameterError names what is wrong); the first step
    happens on the first ``next()``. See :func:`implicit_prior_sampler` for the arguments.
    """

    def __init__(
        self,
        denoiser: DenoiserLike,
        operator: Operator | None,
        measurement: Tensor | None,
        params: ImplicitPriorParams,
        *,
        truth: Tensor | None = None,
        init: Tensor | None = None,
        batch: int = 1,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        image_shape: tuple[int, int, int] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        params.validate()
        self.params = params
        self.denoiser = denoiser
        self.dtype = dtype
        if device is None:
            device = getattr(denoiser, "device", None) or "cpu"
        self.device = torch.device(device)
        self.image_shape = _resolve_shape(operator, truth, init, image_shape)
        self.numel = math.prod(self.image_shape)
        if measurement is not None and operator is not None:
            measurement = operator.measurement_batch(measurement)
        self.batch = _resolve_batch(batch, measurement, init)
        #: the operator, or None for an unconstrained run (no operator, or ``Identity``)
        self.operator = None if operator is None or isinstance(operator, Identity) else operator
        self.measurement = self._prepare_measurement(operator, measurement)
        self.truth = self._prepare_image("truth", truth)
        self.init = self._prepare_image("init", init)
        if generator is None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        self.generator = generator
        #: the starting noise level: σ₀, or in denoising mode (``init``) the estimate σ_1 from the residual
        self.sigma_0: float = float(params.sigma_0)
        #: steps taken by each sample (its t when it stopped, or the current t while it runs)
        self.steps = torch.zeros(self.batch, dtype=torch.long)
        #: why each sample stopped (None while it runs)
        self.reasons: list[StopReason | None] = [None] * self.batch
        self._stop_requested = False
        self._steps = self._run()

    # -- iterator protocol ---------------------------------------------------------------------------
    def __iter__(self) -> ImplicitPriorRun:
        return self

    def __next__(self) -> StepRecord:
        return next(self._steps)

    def stop(self) -> None:
        """Ask for an end: the next record evaluates D(y) without updating and is the last (CANCELLED)."""
        self._stop_requested = True

    def close(self) -> None:
        """Abandon the run at once, without a final record (like a generator's ``close``)."""
        self._steps.close()

    @property
    def constrained(self) -> bool:
        return self.operator is not None

    # -- argument preparation ------------------------------------------------------------------------
    def _prepare_measurement(self, operator: Operator | None, c: Tensor | None) -> Tensor | None:
        if self.operator is None:
            return None
        if c is None:
            raise ParameterError(f"the {operator.name} operator needs its measurement")
        c = as_tensor(c).to(self.device, self.dtype)
        if c.shape[0] not in (1, self.batch):
            raise ParameterError(f"the measurement has batch size {c.shape[0]}; expected 1 or {self.batch}")
        return c.expand(self.batch, *c.shape[1:]).contiguous()

    def _prepare_image(self, name: str, x: Tensor | None) -> Tensor | None:
        if x is None:
            return None
        x = as_tensor(x)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape or x.shape[0] not in (1, self.batch):
            raise ParameterError(
                f"{name} must be one image {self.image_shape} or a batch of {self.batch}, got {tuple(x.shape)}"
            )
        return x.to(self.device, self.dtype).expand(self.batch, *self.image_shape).contiguous()

    # -- the algorithm -------------------------------------------------------------------------------
    def _noise(self) -> Tensor:
        """Fresh N(0, I) for the whole batch (so a sample's noise does not depend on when others stop)."""
        gen = self.generator
        z = torch.randn((self.batch, *self.image_shape), generator=gen, device=gen.device, dtype=self.dtype)
        return z.to(self.device)

    def _direction(self, f: Tensor, y: Tensor, c: Tensor | None) -> Tensor:
        """d = (I − MMᵀ)f + M(c − Mᵀy); just f without an operator."""
        if self.operator is None:
            return f
        return self.operator.complement(f) + self.operator.data_step(y, c)

    def _run(self) -> Iterator[StepRecord]:
        p, b = self.params, self.batch
        op, c = self.operator, self.measurement
        if self.init is not None:
            y = self.init.clone()
        else:
            if op is not None:
                mean = op.initial_mean(c)
            else:
                mean = torch.full((b, *self.image_shape), 0.5, device=self.device, dtype=self.dtype)
            y = mean + p.sigma_0 * self._noise()
        estimate = y.clone()  # D(y) once known; the "last good state" before the first step
        anchor = estimate.clone()  # the estimate where the current streak of rising σ_t began
        anchor_sigma = torch.full((b,), math.inf, dtype=torch.float64)
        sigma_now = torch.full((b,), math.nan, dtype=torch.float64)
        sigma_prev = torch.full((b,), math.inf, dtype=torch.float64)
        streak = torch.zeros(b, dtype=torch.long)
        active = torch.ones(b, dtype=torch.bool)
        stop_t = torch.zeros(b, dtype=torch.long)
        notes: dict[StopReason, list[str]] = {}

        for t in range(1, p.max_steps + 1):
            idx = torch.nonzero(active).squeeze(1)
            dev_idx = idx.to(self.device)
            ya = y.index_select(0, dev_idx)
            xa = self.denoiser(ya).to(self.device, self.dtype)
            f = xa - ya
            ca = c.index_select(0, dev_idx) if c is not None else None
            d = self._direction(f, ya, ca)
            sig = (d.flatten(1).norm(dim=1) / math.sqrt(self.numel)).to("cpu", torch.float64)
            res = (f.flatten(1).norm(dim=1) / math.sqrt(self.numel)).to("cpu", torch.float64)
            self.steps[idx] = t
            if t == 1 and self.init is not None:
                self.sigma_0 = float(sig[torch.isfinite(sig)].mean()) if bool(torch.isfinite(sig).any()) else math.nan

            # -- per-sample bookkeeping: which samples stop here, and with which estimate
            bad = ~(torch.isfinite(sig) & torch.isfinite(res))
            good = ~bad
            gi = idx[good]
            estimate[gi.to(self.device)] = xa[good.to(self.device)]
            sigma_now[gi] = sig[good]
            rising = sig > sigma_prev[idx]
            streak[idx] = torch.where(rising, streak[idx] + 1, torch.zeros_like(streak[idx]))
            reset = good & ~rising
            ri = idx[reset]
            anchor[ri.to(self.device)] = xa[reset.to(self.device)]
            anchor_sigma[ri] = sig[reset]
            sigma_prev[idx] = torch.where(good, sig, sigma_prev[idx])

            converged = good & (sig <= p.sigma_L)
            diverged = good & ~converged & (streak[idx] >= p.divergence_patience)
            diverged &= sig >= DIVERGENCE_GROWTH * anchor_sigma[idx]
            last_step = t == p.max_steps or self._stop_requested
            capped = good & ~converged & ~diverged & last_step
            final_reason = StopReason.CANCELLED if self._stop_requested else StopReason.STEP_CAP
            for k in torch.nonzero(bad).squeeze(1).tolist():
                i = int(idx[k])
                self._finish_sample(i, StopReason.DIVERGED_NAN, notes, f"sample {i} at step {t}")
            for k in torch.nonzero(diverged).squeeze(1).tolist():
                i = int(idx[k])
                estimate[i] = anchor[i]
                begin = t - int(streak[i])
                note = (
                    f"sample {i}: σ_t rose from {float(anchor_sigma[i]):.3g} to {float(sig[k]):.3g} "
                    f"over steps {begin}–{t}; its estimate from step {begin} is kept"
                )
                self._finish_sample(i, StopReason.DIVERGED_SIGMA, notes, note)
            for i in idx[converged].tolist():
                self.reasons[i] = StopReason.CONVERGED
            for i in idx[capped].tolist():
                self.reasons[i] = final_reason
            stopping = bad | converged | diverged | capped
            stop_t[idx[stopping]] = t
            active[idx[stopping]] = False

            # -- the update of the samples that go on
            go = ~stopping
            h = step_size(t, p.h_0)
            scale = noise_scale(h, p.beta)
            gamma = sig[go] * scale
            if bool(go.any()):
                gi_dev = idx[go].to(self.device)
                z = self._noise().index_select(0, gi_dev)
                if p.project_noise and op is not None:
                    z = op.complement(z)
                g = gamma.to(self.device, self.dtype).view(-1, 1, 1, 1)
                go_dev = go.to(self.device)
                y[gi_dev] = ya[go_dev] + h * d[go_dev] + g * z

            finished = not bool(active.any())
            emit = finished or (p.emit_every > 0 and t % p.emit_every == 0)
            if finished and p.final_projection and op is not None:
                estimate = estimate + op.data_step(estimate, c)
            record = StepRecord(
                t=t,
                sigma=float(sig[good].mean()) if bool(good.any()) else math.nan,
                h=h if bool(go.any()) else math.nan,
                gamma=float(gamma.mean()) if bool(go.any()) else math.nan,
                residual_norm=float(res[good].mean()) if bool(good.any()) else math.nan,
                data_error=self._data_error(estimate, c),
                image=estimate.detach().to("cpu", torch.float32, copy=True) if emit else None,
                extra=self._extra(sigma_now, active),
            )
            if self.truth is not None:
                record.psnr, record.ssim = self._metrics(estimate)
            if t == 1 and self.init is not None:
                record.message = f"started at the given image; estimated σ₀ = {self.sigma_0:.4g}"
            if finished:
                record.stop_reason = _overall_reason(self.reasons)
                record.message = _summary(self.reasons, stop_t, notes, p)
                yield record
                return
            yield record

    def _finish_sample(self, i: int, reason: StopReason, notes: dict[StopReason, list[str]], note: str) -> None:
        self.reasons[i] = reason
        notes.setdefault(reason, []).append(note)

    def _data_error(self, estimate: Tensor, c: Tensor | None) -> float:
        if self.operator is None:
            return 0.0
        err = self.operator.consistency_error(estimate, c)
        err = err[torch.isfinite(err)]
        return float(err.mean()) if err.numel() else math.nan

    def _extra(self, sigma_now: Tensor, active: Tensor) -> dict[str, float]:
        finite = sigma_now[torch.isfinite(sigma_now)]
        extra = {
            "active": float(active.sum()),
            "sigma_max": float(finite.max()) if finite.numel() else math.nan,
        }
        if self.batch <= PER_SAMPLE_SCALARS and self.batch > 1:
            extra.update({f"sigma_{k}": float(v) for k, v in enumerate(sigma_now.tolist())})
        return extra

    def _metrics(self, estimate: Tensor) -> tuple[float, float]:
        """Mean PSNR and SSIM over the samples whose estimate is finite (NaN when none is)."""
        from priorstudio.core.metrics import psnr_batch, ssim_batch

        x = estimate.detach().to("cpu", torch.float32)
        ok = torch.isfinite(x).flatten(1).all(1)
        if not bool(ok.any()):
            return math.nan, math.nan
        x, ref = x[ok].clamp(0, 1), self.truth.to("cpu", torch.float32)[ok]
        return float(psnr_batch(x, ref).mean()), float(ssim_batch(x, ref).mean())


def implicit_prior_sampler(
    denoiser: DenoiserLike,
    operator: Operator | None,
    measurement: Tensor | None,
    params: ImplicitPriorParams,
    *,
    truth: Tensor | None = None,
    init: Tensor | None = None,
    batch: int = 1,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    image_shape: tuple[int, int, int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> ImplicitPriorRun:
    """Run the implicit-prior sampler; returns an iterator of step records (an :class:`ImplicitPriorRun`).

    - ``denoiser``: a blind denoiser, callable on (B, C, H, W).
    - ``operator``/``measurement``: the linear measurement and its data c, (1, …) or (K, …); ``None`` (or
      an ``Identity`` operator) for an unconstrained run.
    - ``truth``: the clean image (C, H, W) or (K, C, H, W), to report PSNR/SSIM.
    - ``init``: start at this image (C, H, W) or (K, C, H, W) instead of a random draw: blind denoising.
      σ₀ is then estimated from the first residual (``run.sigma_0``).
    - ``batch``: K independent samples in one batch (taken from ``init``/``measurement`` when they carry
      a batch of K and ``batch`` is left at 1).
    - ``device``: where to compute (default: the denoiser's device). ``generator``: a torch.Generator to
      draw the noise from, instead of one seeded with ``params.seed``.
    - ``image_shape``: (C, H, W), required only when neither an operator, ``truth`` nor ``init`` gives it.
    - ``dtype``: the dtype of the state (float32; float64 for exact oracles in tests and lessons).
    """
    return ImplicitPriorRun(
        denoiser,
        operator,
        measurement,
        params,
        truth=truth,
        init=init,
        batch=batch,
        device=device,
        generator=generator,
        image_shape=image_shape,
        dtype=dtype,
    )


# -- helpers ---------------------------------------------------------------------------------------------
def _resolve_shape(
    operator: Operator | None,
    truth: Tensor | None,
    init: Tensor | None,
    image_shape: tuple[int, int, int] | None,
) -> tuple[int, int, int]:
    """The (C, H, W) every argument must agree on."""
    candidates: list[tuple[str, tuple[int, ...]]] = []
    if operator is not None:
        candidates.append(("the operator", tuple(operator.image_shape)))
    for name, x in (("init", init), ("truth", truth)):
        if x is not None:
            candidates.append((name, tuple(x.shape[-3:]) if x.dim() >= 3 else tuple(x.shape)))
    if image_shape is not None:
        candidates.append(("image_shape", tuple(int(v) for v in image_shape)))
    if not candidates:
        raise ParameterError("unconstrained sampling needs image_shape=(C, H, W) (or an init or truth image)")
    name0, shape = candidates[0]
    if len(shape) != 3 or min(shape) < 1:
        raise ParameterError(f"{name0} gives the image shape {shape}; expected (C, H, W)")
    for name, other in candidates[1:]:
        if other != shape:
            raise ParameterError(f"{name} has image shape {other} but {name0} has {shape}")
    return shape  # type: ignore[return-value]


def _resolve_batch(batch: int, measurement: Tensor | None, init: Tensor | None) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ParameterError(f"batch must be an integer ≥ 1, got {batch!r}")
    sizes = set()
    if measurement is not None and measurement.dim() >= 1 and measurement.shape[0] > 1:
        sizes.add(int(measurement.shape[0]))
    if init is not None and init.dim() == 4 and init.shape[0] > 1:
        sizes.add(int(init.shape[0]))
    if batch == 1 and len(sizes) == 1:
        return sizes.pop()
    if any(s != batch for s in sizes):
        raise ParameterError(f"batch is {batch} but the measurement/init carry batches of {sorted(sizes)}")
    return batch


def _overall_reason(reasons: list[StopReason | None]) -> StopReason:
    """The run's reason: the most serious among the samples'."""
    for reason in (
        StopReason.DIVERGED_NAN,
        StopReason.DIVERGED_SIGMA,
        StopReason.CANCELLED,
        StopReason.STEP_CAP,
    ):
        if reason in reasons:
            return reason
    return StopReason.CONVERGED


def _summary(
    reasons: list[StopReason | None], stop_t: Tensor, notes: dict[StopReason, list[str]], p: ImplicitPriorParams
) -> str:
    """The last record's message, in plain words."""
    k = len(reasons)
    parts = []
    words = {
        StopReason.CONVERGED: f"reached σ_L = {p.sigma_L:g}",
        StopReason.STEP_CAP: f"hit the step cap ({p.max_steps}) before reaching σ_L",
        StopReason.CANCELLED: "were stopped on request",
        StopReason.DIVERGED_NAN: "diverged (the estimate became NaN or infinite; the last finite estimate is kept)",
        StopReason.DIVERGED_SIGMA: (
            f"diverged (σ_t grew for {p.divergence_patience}+ steps in a row; the estimate before that is kept)"
        ),
    }
    for reason, text in words.items():
        who = [i for i, r in enumerate(reasons) if r == reason]
        if not who:
            continue
        steps = stop_t[who]
        lo, hi = int(steps.min()), int(steps.max())
        when = f"at step {lo}" if lo == hi else f"at steps {lo}–{hi}"
        if len(who) == k:
            subject = "the sample" if k == 1 else f"all {k} samples"
        else:
            subject = f"{len(who)} of {k} samples"
        verb = text.replace("were stopped", "was stopped") if k == 1 else text
        line = f"{subject} {verb} {when}"
        if notes.get(reason):
            line += " — " + "; ".join(notes[reason][:3]) + ("; …" if len(notes[reason]) > 3 else "")
        parts.append(line)
    return ". ".join(parts) + "."
