"""Every restoration method behind one call, and side-by-side comparison.

The GUI's algorithm panel, ``priorstudio bench methods`` and the compare view all go through this table:

    spec = METHODS["dip_adam"]
    stream = spec.run(operator=op, measurement=c, params=None, truth=x, denoiser=None, emit_every=50, init=None)

``params=None`` takes the method's defaults for the operator's task (``spec.default_params(operator)``);
``emit_every`` (when not None) overrides the parameters' own. Every method yields StepRecords and ends
with a record that has ``stop_reason`` set and the final image. Denoising passes the noisy image as
``init`` (its operator measures nothing).

Heavy modules are imported only when a method runs, so listing the methods is cheap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any

from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators.base import Operator, task_of
from priorstudio.core.samplers.base import StepRecord, StepStream
from priorstudio.core.samplers.dip import GD_LR, DIPParams, dip_params_for_task, dip_sampler
from priorstudio.core.samplers.nonlocal_filters import TwicingParams, twicing_sampler


def _implicit_prior_params_type() -> type:
    from priorstudio.core.samplers.implicit_prior import ImplicitPriorParams

    return ImplicitPriorParams


@dataclass(frozen=True)
class MethodSpec:
    """A restoration method: how to name it, which parameters it takes, and how to run it.

    ``run`` is called with keywords only: operator, measurement, params, truth, denoiser, emit_every, init.
    ``for_task(task, factor)`` returns the method's parameters for a task by ``make_operator``'s name (and a
    super-resolution factor), so a form can show them before there is an operator; ``defaults(operator)``
    returns them for that operator's task (None: denoising).
    """

    name: str
    label: str
    description: str
    params_type: type | Callable[[], type]
    needs_denoiser: bool
    run: Callable[..., StepStream]
    for_task: Callable[[str, int | None], Any] = field(repr=False, default=lambda task, factor: None)

    def defaults(self, operator: Operator | None) -> Any:
        return self.for_task(*task_of(operator))

    @property
    def params_class(self) -> type:
        """The parameter dataclass (resolved lazily for methods whose module is heavy)."""
        t = self.params_type
        return t if isinstance(t, type) else t()

    def default_params(self, operator: Operator | None = None, **overrides: Any) -> Any:
        """The defaults for ``operator``'s task, with ``overrides`` (checked against the fields)."""
        params = self.defaults(operator)
        if overrides:
            known = {f.name for f in fields(params)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ParameterError(f"{self.name} has no parameter(s) {', '.join(unknown)}")
            params = replace(params, **overrides)
        params.validate()
        return params


def _prepare(spec: MethodSpec, operator: Operator | None, params: Any, emit_every: int | None) -> Any:
    if params is None:
        params = spec.default_params(operator)
    elif not isinstance(params, spec.params_class):
        raise ParameterError(f"{spec.label} takes {spec.params_class.__name__}, not {type(params).__name__}")
    if emit_every is not None:
        params = replace(params, emit_every=int(emit_every))
    params.validate()
    return params


# -- the runners, one uniform signature ---------------------------------------------------------------
def _run_implicit_prior(
    *,
    operator: Operator | None,
    measurement: Tensor | None,
    params: Any = None,
    truth: Tensor | None = None,
    denoiser: Any = None,
    emit_every: int | None = None,
    init: Tensor | None = None,
) -> StepStream:
    from priorstudio.core.samplers.implicit_prior import implicit_prior_sampler

    if denoiser is None:
        raise ParameterError("the implicit prior needs a denoiser (load one with load_denoiser)")
    params = _prepare(METHODS["implicit_prior"], operator, params, emit_every)
    return implicit_prior_sampler(denoiser, operator, measurement, params, truth=truth, init=init)


def _implicit_prior_for_task(task: str, factor: int | None = None) -> Any:
    from priorstudio.core.samplers.implicit_prior import restore_params

    return restore_params(task)


def _dip_runner(name: str) -> Callable[..., StepStream]:
    def run(
        *,
        operator: Operator | None,
        measurement: Tensor | None,
        params: Any = None,
        truth: Tensor | None = None,
        denoiser: Any = None,
        emit_every: int | None = None,
        init: Tensor | None = None,
        net_input: Tensor | None = None,
    ) -> StepStream:
        """``net_input``: an image to feed the network instead of its random code (flash/no-flash)."""
        params = _prepare(METHODS[name], operator, params, emit_every)
        return dip_sampler(operator, measurement, params, truth=truth, init=init, net_input=net_input)

    return run


def _twicing_runner(name: str) -> Callable[..., StepStream]:
    def run(
        *,
        operator: Operator | None,
        measurement: Tensor | None,
        params: Any = None,
        truth: Tensor | None = None,
        denoiser: Any = None,
        emit_every: int | None = None,
        init: Tensor | None = None,
    ) -> StepStream:
        params = _prepare(METHODS[name], operator, params, emit_every)
        return twicing_sampler(operator, measurement, params, truth=truth, init=init)

    return run


#: Every method by name, in the order the GUI and the benchmarks list them.
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "implicit_prior",
            "Implicit prior",
            "stochastic ascent on the prior inside a trained blind denoiser (Kadkhodaie & Simoncelli)",
            _implicit_prior_params_type,
            True,
            _run_implicit_prior,
            _implicit_prior_for_task,
        ),
        MethodSpec(
            "dip_adam",
            "DIP (Adam)",
            "Deep Image Prior: an untrained network fitted to the degraded image with Adam (Ulyanov et al.)",
            DIPParams,
            False,
            _dip_runner("dip_adam"),
            dip_params_for_task,
        ),
        MethodSpec(
            "dip_gd",
            "DIP (gradient descent)",
            "Deep Image Prior trained by plain gradient descent: follows the network's tangent-kernel filter",
            DIPParams,
            False,
            _dip_runner("dip_gd"),
            partial(dip_params_for_task, optimizer="gd", lr=GD_LR),
        ),
        MethodSpec(
            "nlm_twicing",
            "NLM twicing",
            "non-local means filter W y, then twicing z ← z + W(y − z)",
            TwicingParams,
            False,
            _twicing_runner("nlm_twicing"),
            lambda task, factor: TwicingParams(kernel="nlm"),
        ),
        MethodSpec(
            "ntk_twicing",
            "NTK twicing",
            "twicing with the tangent kernel of a one-hidden-layer ReLU network on patches (Tachella et al.)",
            TwicingParams,
            False,
            _twicing_runner("ntk_twicing"),
            lambda task, factor: TwicingParams(kernel="ntk"),
        ),
    )
}


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ParameterError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None


# -- compare -------------------------------------------------------------------------------------------
@dataclass
class MethodSummary:
    """What one method did on one problem: the numbers for a table and the curves for one plot."""

    name: str
    label: str
    best_psnr: float = math.nan
    best_step: int = 0
    final_psnr: float = math.nan
    final_ssim: float = math.nan
    steps: int = 0
    seconds: float = 0.0
    stop_reason: str = ""
    message: str = ""
    #: (step, PSNR) wherever a record had PSNR
    psnr_curve: list[tuple[int, float]] = field(default_factory=list)
    #: (step, fit loss) wherever a record had one
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    #: the final estimate (1, C, H, W) on the CPU, or None
    image: Tensor | None = None
    #: the emitted estimate closest to the best step (1, C, H, W), or None when none was emitted
    best_image: Tensor | None = None
    error: str = ""

    def row(self) -> dict[str, Any]:
        """The numbers as a JSON-friendly dict (no curves, no images)."""
        return {
            "method": self.name,
            "psnr_best": _finite(self.best_psnr),
            "best_step": self.best_step,
            "psnr": _finite(self.final_psnr),
            "ssim": _finite(self.final_ssim),
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "stop_reason": self.stop_reason,
            **({"error": self.error} if self.error else {}),
        }


def _finite(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 4)


def summarize(
    name: str,
    stream: StepStream,
    *,
    on_record: Callable[[str, StepRecord], bool | None] | None = None,
) -> MethodSummary:
    """Drive ``stream`` to its end and summarise it. ``on_record`` returning False asks the run to stop."""
    spec = METHODS.get(name)
    out = MethodSummary(name, spec.label if spec else name)
    start = time.perf_counter()
    last: StepRecord | None = None
    best_t_image = -1
    stopping = False
    for rec in stream:
        last = rec
        if rec.psnr is not None and math.isfinite(rec.psnr):
            out.psnr_curve.append((rec.t, float(rec.psnr)))
            if not rec.psnr <= out.best_psnr:  # also true while best is NaN
                out.best_psnr, out.best_step = float(rec.psnr), rec.t
        loss = rec.extra.get("loss")
        if loss is not None and math.isfinite(loss):
            out.loss_curve.append((rec.t, float(loss)))
        if rec.image is not None:
            closer = abs(rec.t - out.best_step) <= abs(best_t_image - out.best_step)
            if best_t_image < 0 or closer:
                out.best_image, best_t_image = rec.image, rec.t
        if on_record is not None and on_record(name, rec) is False and not stopping:
            stop = getattr(stream, "stop", None)
            if callable(stop):
                stop()
                stopping = True
            else:
                break
    out.seconds = time.perf_counter() - start
    if last is not None:
        out.steps = last.t
        out.image = last.image
        out.final_psnr = last.psnr if last.psnr is not None else math.nan
        out.final_ssim = last.ssim if last.ssim is not None else math.nan
        out.stop_reason = last.stop_reason.value if last.stop_reason else "cancelled"
        out.message = last.message
    return out


def compare(
    methods: Iterable[str],
    operator: Operator | None,
    measurement: Tensor | None,
    truth: Tensor | None,
    *,
    denoiser: Any = None,
    init: Tensor | None = None,
    params: Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    emit_every: int | None = 0,
    on_record: Callable[[str, StepRecord], bool | None] | None = None,
    skip_errors: bool = False,
) -> dict[str, MethodSummary]:
    """Run several methods on the same problem, one after the other; summaries by method name.

    - ``params``: per-method parameters (method name → params); others get their defaults.
    - ``max_steps``: cap every method's steps (for quick comparisons), applied to its parameters.
    - ``emit_every``: images in the records (0: only the final one; the compare view wants a few).
    - ``on_record(name, record)``: called for every record (progress, live curves); return False to stop
      that method (it ends with its current estimate).
    - ``skip_errors``: a method that cannot run (e.g. the implicit prior without a denoiser) gives a
      summary with ``error`` set instead of raising.
    """
    params = dict(params or {})
    result: dict[str, MethodSummary] = {}
    for name in methods:
        spec = get_method(name)
        try:
            p = params.get(name) or spec.default_params(operator)
            if max_steps is not None:
                p = replace(p, max_steps=int(max_steps))
            stream = spec.run(
                operator=operator,
                measurement=measurement,
                params=p,
                truth=truth,
                denoiser=denoiser,
                emit_every=emit_every,
                init=init,
            )
            result[name] = summarize(name, stream, on_record=on_record)
        except ParameterError as exc:
            if not skip_errors:
                raise
            result[name] = MethodSummary(name, spec.label, error=str(exc))
    return result
