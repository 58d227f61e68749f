"""The methods the algorithm panel offers, built from the core's method registry.

Every method is a :class:`MethodChoice`: a name, a label, its params dataclass (the form is built from the
field metadata), named presets, and ``stream(...)`` that starts a run as a StepStream. The list comes from
``priorstudio.core.samplers.registry.METHODS`` when that module exists, and is the implicit-prior sampler
alone otherwise; the implicit prior is always first.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from priorstudio.core.problem import Problem
from priorstudio.core.samplers import (
    RESTORE_PRESET,
    TEACH_PRESET,
    ImplicitPriorParams,
    implicit_prior_sampler,
)
from priorstudio.core.samplers.base import StepStream
from priorstudio.core.samplers.implicit_prior import restore_params

StreamFactory = Callable[..., StepStream]


@dataclass(frozen=True)
class PlotLabels:
    """What a method's step records mean on the side plots.

    Why: only the implicit prior has a noise level σ_t and a denoiser residual. Deep Image Prior reports how
    far its output is from the data, and twicing the residual of the data it filters; shown under the
    sampler's titles (and with an empty σ_t plot), those curves would be mislabelled.
    """

    #: whether the method reports an effective noise level σ_t (the σ_t plot is shown only then)
    sigma: bool = True
    #: the title of the plot of ``StepRecord.residual_norm`` (and ``data_error`` where reported)
    residual_title: str = "residual ‖D(y)−y‖/√N and data error"
    #: its legend entry, and its name in the values line under the mouse
    residual_name: str = "residual"
    residual_short: str = "resid"
    #: whether the method reports a data-consistency error (a legend entry only then)
    data_error: bool = True


SAMPLER_PLOTS = PlotLabels()
DIP_PLOTS = PlotLabels(
    sigma=False,
    residual_title="fit error ‖A f(z) − y‖/√N",
    residual_name="fit error",
    residual_short="fit",
    data_error=False,
)
TWICING_PLOTS = PlotLabels(sigma=False, residual_title="data residual ‖Aᵀ(y − A z)‖/√N and data error")
#: methods whose records differ from the sampler's (by name; any other method is shown like the sampler)
PLOT_LABELS = {"dip_adam": DIP_PLOTS, "dip_gd": DIP_PLOTS, "nlm_twicing": TWICING_PLOTS, "ntk_twicing": TWICING_PLOTS}


@dataclass(frozen=True)
class MethodChoice:
    """One method as the panel shows it.

    ``defaults(operator)`` gives the method's parameters for a task (the operator may be None): the form
    starts from ``defaults(None)``, and a run starts from the defaults for its operator with the form's
    values on top, so fields the form does not show (e.g. an optimizer's name) keep the method's choice.
    """

    name: str
    label: str
    params_type: type
    run: StreamFactory
    defaults: Callable[[Any], Any]
    needs_denoiser: bool = True
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    description: str = ""
    plots: PlotLabels = SAMPLER_PLOTS
    #: ``(task, factor) -> params``: the method's parameters for a task by name (the core registry's
    #: ``MethodSpec.for_task``: Deep Image Prior's per-task recipe, the implicit prior's β); None: the same
    #: for every task
    for_task: Callable[[str, int | None], Any] | None = None
    #: why a task's values differ, where it is worth saying (task → reason)
    task_notes: Mapping[str, str] = field(default_factory=dict)

    def default_values(self) -> dict[str, Any]:
        return dataclasses.asdict(self.defaults(None))

    def task_values(self, task: str, task_params: Mapping[str, Any]) -> dict[str, Any]:
        """The form's starting values for a Degradation-panel task and its parameters: the defaults, with what
        the task changes in them."""
        if self.for_task is None:
            return self.default_values()
        factor = task_params.get("factor")
        return dataclasses.asdict(self.for_task(task, factor if isinstance(factor, int) else None))

    def make_params(self, values: Mapping[str, Any], operator: Any = None) -> Any:
        """The params dataclass: the defaults for ``operator``'s task, then ``values`` (unknown names ignored)."""
        base = self.defaults(operator)
        known = {f.name for f in dataclasses.fields(base)}
        params = dataclasses.replace(base, **{k: v for k, v in values.items() if k in known})
        validate = getattr(params, "validate", None)
        if callable(validate):
            validate()
        return params

    @property
    def takes_guide(self) -> bool:
        """Whether the method can take an image as its network's input (Deep Image Prior: flash/no-flash)."""
        return "net_input" in inspect.signature(self.run).parameters

    def stream(
        self, *, denoiser: Any, problem: Problem, params: Any, truth: Any = None, guide: Any = None
    ) -> StepStream:
        """Start a run on ``problem`` (keyword arguments the method's ``run`` does not take are left out).

        ``guide``: an image (C, H, W) at the size of the image sought, fed to the network instead of its
        random input, for methods that take one (see :attr:`takes_guide`); others never see it.
        """
        offered = {
            "denoiser": denoiser,
            "operator": problem.operator,
            "measurement": problem.measurement,
            "params": params,
            "truth": truth,
            "init": problem.init,
            "emit_every": 1,  # an image in every record: the worker decides how many to show
            "problem": problem,
            "observed": problem.observed,
            "net_input": guide,
        }
        signature = inspect.signature(self.run)
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
        extras = ("problem", "observed", "emit_every", "net_input")  # passed only to a run that names them
        kwargs = {k: v for k, v in offered.items() if k in signature.parameters or (takes_any and k not in extras)}
        return self.run(**kwargs)


def _implicit_prior_run(
    *, denoiser: Any, operator: Any, measurement: Any, params: ImplicitPriorParams, truth: Any = None, init: Any = None
) -> StepStream:
    return implicit_prior_sampler(denoiser, operator, measurement, params, truth=truth, init=init)


IMPLICIT_PRIOR = MethodChoice(
    name="implicit_prior",
    label="Implicit prior (Kadkhodaie–Simoncelli)",
    params_type=ImplicitPriorParams,
    run=_implicit_prior_run,
    defaults=lambda operator: ImplicitPriorParams.preset(RESTORE_PRESET),
    needs_denoiser=True,
    # "restore" is the defaults for the task at hand: RESTORE_PRESET, or DENOISE_PRESET for denoising
    presets={"restore": {}, "teach": dict(TEACH_PRESET)},
    description="stochastic ascent on the prior implicit in the blind denoiser",
    for_task=restore_params,
    task_notes={"denoise": "no noise is injected, so the run stays with the photo"},
)


def available_methods() -> dict[str, MethodChoice]:
    """Name → method: the implicit prior, then whatever the core's registry offers."""
    methods = {IMPLICIT_PRIOR.name: IMPLICIT_PRIOR}
    try:
        registry = importlib.import_module("priorstudio.core.samplers.registry")
    except ImportError:
        return methods
    for name, spec in getattr(registry, "METHODS", {}).items():
        if name in methods:
            continue
        try:
            params_type = getattr(spec, "params_class", None) or spec.params_type
            if not isinstance(params_type, type):
                params_type = params_type()
            default_params = getattr(spec, "default_params", None)
            defaults = default_params if callable(default_params) else (lambda operator, t=params_type: t())
            methods[name] = MethodChoice(
                name=str(getattr(spec, "name", name)),
                label=str(getattr(spec, "label", name)),
                params_type=params_type,
                run=spec.run,
                defaults=defaults,
                needs_denoiser=bool(getattr(spec, "needs_denoiser", True)),
                presets=dict(getattr(spec, "presets", {}) or {}),
                description=str(getattr(spec, "description", "")),
                plots=PLOT_LABELS.get(name, SAMPLER_PLOTS),
                for_task=getattr(spec, "for_task", None),
            )
        except (AttributeError, TypeError):  # an entry we cannot drive is left out; the rest stay
            continue
    return methods
