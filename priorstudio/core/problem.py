"""A restoration problem, built the same way for the CLI, the GUI and the benchmarks.

Two modes:
- *simulate*: the loaded image is the truth; the degradation is applied to it (plus optional measurement
  noise), so PSNR/SSIM can be tracked against it.
- *restore*: the loaded image is already degraded; the measurement is read off it (for super-resolution it
  is the low-resolution input, and the result is ``factor`` times larger).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators import Operator, make_operator
from priorstudio.core.operators.validation import check_int

Mode = Literal["simulate", "restore"]

#: Short names accepted on the command line, mapped to the operator factory's task names.
TASK_ALIASES = {
    "denoise": "denoise",
    "inpaint": "inpaint",
    "pixels": "random_pixels",
    "random_pixels": "random_pixels",
    "sr": "super_resolution",
    "super_resolution": "super_resolution",
    "lowpass": "spectral",
    "spectral": "spectral",
    "cs": "compressive",
    "compressive": "compressive",
    "blur": "blur",
}


def canonical_task(task: str) -> str:
    try:
        return TASK_ALIASES[task.lower()]
    except KeyError:
        known = ", ".join(sorted(TASK_ALIASES))
        raise ParameterError(f"unknown task {task!r}; choose one of: {known}") from None


@dataclass
class Problem:
    """Everything a method needs: the operator, the measurement and, when known, the truth."""

    task: str
    mode: Mode
    operator: Operator
    measurement: Tensor  # (1, …) the data the solution must agree with
    observed: Tensor  # (C, H, W) the degraded image as a user should see it
    truth: Tensor | None  # (C, H, W) in simulate mode
    init: Tensor | None  # (C, H, W) a starting image (denoising starts at the noisy image)
    noise_sigma: float  # measurement noise standard deviation on the [0, 1] scale (0 when none)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.operator.image_shape


def build_problem(
    image: Tensor,
    task: str,
    *,
    mode: Mode = "simulate",
    noise_sigma: float = 0.0,
    seed: int = 0,
    operator_seed: int | None = None,
    **task_params: Any,
) -> Problem:
    """Build the problem for ``image`` (C, H, W) in [0, 1].

    ``noise_sigma`` (on the [0, 1] scale) adds Gaussian noise to the simulated measurement; for the
    denoising task in simulate mode it is the noise level to remove. ``task_params`` go to the operator
    factory (``missing`` for inpainting, ``fraction``, ``factor``, ``kernel``…). ``seed`` drives the simulated
    noise; ``operator_seed`` is the seed of a random operator (which pixels are kept, which projections
    are measured), kept apart so the two can be varied independently.
    """
    if image.dim() != 3:
        raise ParameterError(f"expected one image (C, H, W), got shape {tuple(image.shape)}")
    if mode not in ("simulate", "restore"):
        raise ParameterError(f"mode must be 'simulate' or 'restore', not {mode!r}")
    if not (0.0 <= noise_sigma <= 1.0):
        raise ParameterError(f"noise level must be in [0, 255] on the 0–255 scale, got {noise_sigma * 255:g}")
    task = canonical_task(task)
    image = image.float()
    if operator_seed is not None:
        task_params = {**task_params, "seed": int(operator_seed)}
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0, 2**63 - 1))  # the range a generator takes
    if mode == "simulate":
        op = make_operator(task, tuple(image.shape), **task_params)
        x = image.unsqueeze(0)
        c = op.simulate(x, noise_sigma=noise_sigma, generator=gen)
        if task == "denoise":
            noisy = (x + noise_sigma * torch.randn(x.shape, generator=gen)).squeeze(0)
            return Problem(task, mode, op, c, noisy, image, noisy, noise_sigma)
        return Problem(task, mode, op, c, op.observed_image(c).squeeze(0), image, None, noise_sigma)

    # restore: the image is the degraded observation
    shape = tuple(image.shape)
    if task == "super_resolution":
        factor = task_params.get("factor", 4)
        if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 1:  # check, then size
            raise ParameterError(f"super-resolution factor must be a whole number ≥ 1, got {factor!r}")
        factor = int(factor)
        shape = (shape[0], shape[1] * factor, shape[2] * factor)
    op = make_operator(task, shape, **task_params)
    c = op.measurement_from_observed(image.unsqueeze(0))
    init = image if task == "denoise" else None
    return Problem(task, mode, op, c, image, None, init, noise_sigma)
