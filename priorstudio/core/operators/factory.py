"""Build an operator from a task name and plain parameters: one entry point for the CLI, GUI and benchmarks.

``TASKS`` describes every task (a one-line description and its parameters with defaults, ranges and help
text), so forms and command-line flags can be generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from priorstudio.core.errors import MaskError, ParameterError
from priorstudio.core.operators.base import Operator
from priorstudio.core.operators.blur import DEFAULT_EPS, Blur
from priorstudio.core.operators.compressive import CompressiveSensing
from priorstudio.core.operators.identity import Identity
from priorstudio.core.operators.pixels import Inpaint, RandomPixels
from priorstudio.core.operators.spectral import SpectralLowPass
from priorstudio.core.operators.superres import SuperResolution


@dataclass(frozen=True)
class TaskParam:
    """One parameter of a task. ``kind`` is "float", "int", "mask" (a bool image) or "kernel" (a 2-D array)."""

    name: str
    default: Any
    kind: str
    label: str
    help: str
    min: float | None = None
    max: float | None = None
    log: bool = False


@dataclass(frozen=True)
class TaskInfo:
    """A task: its name for ``make_operator``, a one-line description, and its parameters in form order."""

    name: str
    description: str
    params: tuple[TaskParam, ...] = field(default_factory=tuple)

    @property
    def defaults(self) -> dict[str, Any]:
        """Parameter name → default (None where the caller must supply a value, e.g. the inpainting mask)."""
        return {p.name: p.default for p in self.params}


_FRACTION_HELP = "share of the image's values that are measured"
_SEED = TaskParam(
    "seed",
    0,
    "int",
    "pattern seed",
    "which pixels (or projections) are measured: the same seed gives the same pattern",
    0,
    2**31 - 1,
)

#: Every task ``make_operator`` knows, by name.
TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("denoise", "remove noise; no measurement constrains the image"),
        TaskInfo(
            "inpaint",
            "fill the pixels marked in a mask from the rest of the image",
            (TaskParam("missing", None, "mask", "mask", "True/white where pixels are missing (H×W or C×H×W)"),),
        ),
        TaskInfo(
            "random_pixels",
            "restore an image of which only a random fraction of pixels is known",
            (TaskParam("fraction", 0.1, "float", "kept fraction", _FRACTION_HELP, 0.001, 1.0, True), _SEED),
        ),
        TaskInfo(
            "super_resolution",
            "enlarge by an integer factor: the measurement is the average of each s×s block",
            (TaskParam("factor", 4, "int", "factor s", "block size / magnification (any integer ≥ 1)", 1, 64),),
        ),
        TaskInfo(
            "spectral",
            "restore fine detail from the lowest Fourier coefficients (an ideal low-pass)",
            (
                TaskParam(
                    "fraction", 0.1, "float", "kept fraction", "share of Fourier coefficients kept", 0.001, 1.0, True
                ),
            ),
        ),
        TaskInfo(
            "compressive",
            "recover an image from random orthonormal projections (compressive sensing)",
            (TaskParam("fraction", 0.1, "float", "measured fraction", _FRACTION_HELP, 0.001, 1.0, True), _SEED),
        ),
        TaskInfo(
            "blur",
            "deblur: the measurement is the image convolved with a kernel (circular boundary)",
            (
                TaskParam("kernel", None, "kernel", "kernel", "2-D blur kernel (normalised to sum 1)"),
                TaskParam(
                    "eps", DEFAULT_EPS, "float", "ε", "Tikhonov regularisation of the pseudo-inverse", 1e-6, 1.0, True
                ),
            ),
        ),
    )
}


def make_operator(task: str, image_shape: tuple[int, int, int], **params: Any) -> Operator:
    """The operator for ``task`` (a key of ``TASKS``) on images of shape (C, H, W).

    Unknown tasks, unknown or missing parameters and values out of range raise ParameterError (MaskError
    for a bad inpainting mask).
    """
    info = TASKS.get(task)
    if info is None:
        raise ParameterError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    known = info.defaults
    unknown = sorted(set(params) - set(known))
    if unknown:
        accepted = ", ".join(known) or "no parameters"
        raise ParameterError(f"task {task!r} does not take {', '.join(unknown)} (it takes {accepted})")
    values = {**known, **params}
    shape = tuple(image_shape)
    if task == "denoise":
        return Identity(shape)
    if task == "inpaint":
        if values["missing"] is None:
            raise MaskError("inpainting needs a mask of the pixels to fill (missing=...)")
        return Inpaint(shape, values["missing"])
    if task == "random_pixels":
        return RandomPixels(shape, values["fraction"], values["seed"])
    if task == "super_resolution":
        return SuperResolution(shape, values["factor"])
    if task == "spectral":
        return SpectralLowPass(shape, values["fraction"])
    if task == "compressive":
        return CompressiveSensing(shape, values["fraction"], values["seed"])
    if values["kernel"] is None:
        raise ParameterError("blur needs a kernel (kernel=gaussian_kernel(2.0), a 2-D array, …)")
    return Blur(shape, values["kernel"], eps=values["eps"])
