"""What a run works on, planned without Qt: working size, the crop around a mask, the problem, the cost.

Big photos are never sent to the sampler whole unless the user asks for it:

- **Inpainting** works on the crop around the mask plus a margin, at full resolution (or shrunk to the
  working size when the crop itself is larger), and the result is blended back into the full-resolution
  photo: only the missing pixels change.
- **Every other task** works on the photo scaled so its longest side is the working size (default 512;
  ``None`` = the full image). In restore mode for super-resolution the *output* is held to the working size.

A :class:`RunPlan` says where the run's frames lie on the photo (``region``, in photo pixels), so the canvas
can place live frames on the right rectangle, and :meth:`RunPlan.compose` turns the sampler's final estimate
into the image to save.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from priorstudio.core.errors import MaskError, ParameterError
from priorstudio.core.problem import Problem, build_problem

DEFAULT_WORKING_SIDE = 512
WORKING_SIDES = (256, 384, 512, 768, 1024, 2048)
#: Context kept around the mask's bounding box for inpainting: this share of the box, at least MIN_MARGIN px.
MARGIN_SHARE = 0.5
MIN_MARGIN = 32

DenoiserFactory = Callable[[int], Any]


@dataclass(frozen=True)
class Region:
    """A rectangle of the photo in pixels (top, left, height, width)."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


def fit_side(height: int, width: int, side: int | None) -> tuple[int, int]:
    """(H, W) scaled so the longest side is at most ``side`` (None: unchanged), aspect kept, ≥ 1 px."""
    if side is None or max(height, width) <= side:
        return height, width
    s = side / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (C, H, W) to ``size``: area averaging when shrinking, bicubic when enlarging; clipped to [0, 1]."""
    h, w = image.shape[-2:]
    if (h, w) == tuple(size):
        return image
    x = image.unsqueeze(0).float()
    if size[0] <= h and size[1] <= w:
        out = F.interpolate(x, size=size, mode="area")
    else:
        out = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    return out.squeeze(0).clamp(0.0, 1.0)


def mask_bounding_box(mask: np.ndarray) -> Region | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return Region(int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))


def inpaint_region(mask: np.ndarray, margin_share: float = MARGIN_SHARE, min_margin: int = MIN_MARGIN) -> Region:
    """The crop a run on ``mask`` works on: the mask's box grown by a margin, clipped to the photo."""
    box = mask_bounding_box(mask)
    if box is None:
        raise MaskError("the mask is empty: paint the pixels to fill first (or use Mask ▸ Central block)")
    h, w = mask.shape
    my = max(min_margin, math.ceil(box.height * margin_share))
    mx = max(min_margin, math.ceil(box.width * margin_share))
    top, left = max(box.top - my, 0), max(box.left - mx, 0)
    bottom, right = min(box.bottom + my, h), min(box.right + mx, w)
    return Region(top, left, bottom - top, right - left)


@dataclass
class RunSettings:
    """What the degradation panel says: task, mode, task parameters, measurement noise, working size."""

    task: str = "inpaint"
    mode: str = "simulate"  # "simulate" | "restore"
    task_params: dict[str, Any] = field(default_factory=dict)
    noise_sigma: float = 0.0  # on the [0, 1] scale
    seed: int = 0
    working_side: int | None = DEFAULT_WORKING_SIDE  # None: the full image


@dataclass
class RunPlan:
    """A planned run: the problem at working size and where it lies on the photo.

    ``region`` is the rectangle of the photo the run covers (photo pixels); the run's images are
    ``work_shape`` and are stretched over it for display. ``output_shape`` is what :meth:`compose` returns.
    """

    settings: RunSettings
    photo_shape: tuple[int, int, int]
    region: Region
    problem: Problem
    mask_full: np.ndarray | None = None  # inpainting: the photo-size mask (True = missing)

    @property
    def work_shape(self) -> tuple[int, int, int]:
        return self.problem.image_shape

    @property
    def scale(self) -> float:
        """Working pixels per photo pixel (1 at full resolution; > 1 for super-resolution output)."""
        return self.work_shape[2] / self.region.width

    @property
    def is_crop(self) -> bool:
        return self.settings.task == "inpaint"

    def describe(self) -> str:
        c, h, w = self.work_shape
        kind = "gray" if c == 1 else "colour"
        where = ""
        if self.is_crop:
            r = self.region
            at = f"at {r.left},{r.top}"
            where = f" (crop {at})" if (r.height, r.width) == (h, w) else f" (crop {r.width}×{r.height} {at}, scaled)"
        elif (h, w) != self.photo_shape[1:]:
            where = f" (photo {self.photo_shape[2]}×{self.photo_shape[1]})"
        return f"{w}×{h} {kind}{where}"

    def take(self, image: Tensor) -> Tensor:
        """A photo-size companion image (C, H, W) cut and scaled as the run sees the photo: its region, at the
        size of the image the run seeks (a flash photo becomes the network input of a DIP run this way)."""
        h, w = (int(v) for v in image.shape[1:])
        if (h, w) != self.photo_shape[1:]:
            raise ParameterError(
                f"the image is {w}×{h} and the photo {self.photo_shape[2]}×{self.photo_shape[1]}: "
                "they must be the same size"
            )
        rows, cols = self.region.slices()
        piece = image.detach().to("cpu", torch.float32)[:, rows, cols]
        size = tuple(int(v) for v in self.problem.image_shape[1:])
        return resize(piece, size) if tuple(piece.shape[1:]) != size else piece.contiguous()

    def compose(self, photo: Tensor, estimate: Tensor) -> Tensor:
        """The image to save from the run's final estimate (C, H, W) or (1, C, H, W).

        Inpainting: the photo with only its missing pixels replaced (the estimate scaled back to the crop
        when it was run smaller). With measurement noise the known pixels of the crop were measured noisy
        too, so the whole crop is the estimate: pasting the photo back there would put the clean truth (in
        simulate mode) or the noise (in restore mode) next to the denoised fill. Other tasks: the estimate
        itself, at working size.
        """
        est = estimate.detach().to("cpu", torch.float32)
        if est.dim() == 4:
            est = est[0]
        est = est.clamp(0.0, 1.0)
        if not self.is_crop:
            return est
        assert self.mask_full is not None
        r = self.region
        rows, cols = r.slices()
        piece = resize(est, (r.height, r.width))
        out = photo.detach().to("cpu", torch.float32).clone()
        if self.problem.noise_sigma > 0:
            out[:, rows, cols] = piece
            return out
        hole = torch.from_numpy(np.ascontiguousarray(self.mask_full[rows, cols]))
        out[:, rows, cols] = torch.where(hole.unsqueeze(0), piece, out[:, rows, cols])
        return out


def _shrink_masked(image: Tensor, missing: np.ndarray, size: tuple[int, int]) -> tuple[Tensor, np.ndarray]:
    """Shrink an inpainting crop and its mask together (area averaging).

    A working pixel is missing when most of the photo pixels under it are, and a known one is the mean of
    the known photo pixels under it only: the damaged pixels never leak into the data. (Calling a working
    pixel missing when *any* photo pixel under it is would turn a scattered mask into an all-missing image;
    that rule is kept for thin strokes, which the majority rule would lose.)
    """
    known = torch.from_numpy(np.ascontiguousarray(~missing)).float()[None, None]
    share = F.interpolate(known, size=size, mode="area")[0]  # (1, h, w): share of known photo pixels
    summed = F.interpolate((image.float() * known[0]).unsqueeze(0), size=size, mode="area")[0]
    plain = resize(image, size)
    work = torch.where(share > 0, summed / share.clamp_min(1e-12), plain).clamp(0.0, 1.0)
    work_missing = share[0] < 0.5
    painted = float(missing.mean())
    if float(work_missing.float().mean()) < 0.5 * painted:
        # thin strokes (a scratch a few photo pixels wide) cover under half of every working pixel and vanished,
        # down to "the mask is empty": then a working pixel is missing when any photo pixel under it is
        work_missing = share[0] < 1.0 - 1e-6
    return work, work_missing.numpy()


def plan_run(photo: Tensor, settings: RunSettings, mask: np.ndarray | None = None) -> RunPlan:
    """Plan a run on ``photo`` (C, H, W) in [0, 1]; raises ParameterError/MaskError for what is wrong."""
    if photo.dim() != 3:
        raise ParameterError(f"expected one image (C, H, W), got shape {tuple(photo.shape)}")
    c, h, w = (int(v) for v in photo.shape)
    side = settings.working_side
    if side is not None and side < 16:
        raise ParameterError(f"the working size must be at least 16 px, got {side}")
    params = dict(settings.task_params)
    if settings.task == "inpaint":
        if mask is None or mask.shape != (h, w):
            raise MaskError("inpainting needs a mask of the photo's size: paint the pixels to fill first")
        region = inpaint_region(mask)
        crop = photo[:, region.top : region.bottom, region.left : region.right]
        crop_mask = mask[region.top : region.bottom, region.left : region.right]
        size = fit_side(region.height, region.width, side)
        if size != (region.height, region.width):
            work, crop_mask = _shrink_masked(crop, crop_mask, size)
        else:
            work = crop
        params["missing"] = torch.from_numpy(np.ascontiguousarray(crop_mask))
        problem = _build(work, settings, params)
        return RunPlan(settings, (c, h, w), region, problem, mask_full=mask.copy())
    region = Region(0, 0, h, w)
    if settings.task == "super_resolution" and settings.mode == "restore":
        factor = int(params.get("factor", 4))
        out_h, out_w = fit_side(h * factor, w * factor, side)
        in_size = (max(1, out_h // factor), max(1, out_w // factor))
        work = resize(photo, in_size)
    else:
        work = resize(photo, fit_side(h, w, side))
    problem = _build(work, settings, params)
    return RunPlan(settings, (c, h, w), region, problem)


def _build(image: Tensor, settings: RunSettings, params: dict[str, Any]) -> Problem:
    params = dict(params)
    operator_seed = params.pop("seed", None)  # the form's seed picks the operator; the run seed the noise
    return build_problem(
        image,
        settings.task,
        mode=settings.mode,  # type: ignore[arg-type]
        noise_sigma=settings.noise_sigma,
        seed=settings.seed,
        operator_seed=operator_seed,
        **params,
    )


# -- cost ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostEstimate:
    """What a run will cost before it starts: steps, seconds and memory."""

    steps: int
    seconds_per_step: float | None
    memory_bytes: int | None

    @property
    def seconds(self) -> float | None:
        return None if self.seconds_per_step is None else self.steps * self.seconds_per_step

    def describe(self) -> str:
        from priorstudio.core.memory import format_bytes

        parts = [f"~{self.steps} steps"]
        if self.seconds_per_step is not None:
            parts.append(f"{1000 * self.seconds_per_step:.0f} ms/step ≈ {format_duration(self.seconds or 0)}")
        if self.memory_bytes is not None:
            parts.append(f"memory ≈ {format_bytes(self.memory_bytes)}")
        return " · ".join(parts)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


class StepTimer:
    """Seconds per denoiser call per pixel, measured once per denoiser on a small image (for estimates)."""

    PROBE = 96

    def __init__(self) -> None:
        self._per_pixel: dict[int, float] = {}

    def seconds_per_step(self, denoiser: Any, shape: tuple[int, int, int]) -> float:
        key = id(denoiser)
        if key not in self._per_pixel:
            c = shape[0]
            y = torch.rand(1, c, self.PROBE, self.PROBE)
            denoiser(y)  # warm-up
            start = time.perf_counter()
            denoiser(y)
            self._per_pixel[key] = (time.perf_counter() - start) / self.PROBE**2
        # the sampler adds a few image-sized operations per step: about 15% on top of the denoiser
        return 1.15 * self._per_pixel[key] * shape[1] * shape[2]


class MethodStepTimer:
    """Seconds per step of a method that uses no denoiser (Deep Image Prior, twicing), measured by running it
    for a few steps on two small denoising problems, once per method, channel count and the parameters that
    change its cost, and extrapolated as a fixed cost plus a cost per pixel.

    Why: their cost is that of their own network or filter, which no denoiser timing says; without it the
    panel could only give a number of steps. Two sizes, because a twicing step is so cheap that its fixed
    cost (records, metrics) is most of it at a probe's size, while a DIP step grows with the pixels.
    """

    PROBES = (48, 96)
    STEPS = 4  # the first takes the set-up (network, filter weights); the fastest of the rest counts
    #: parameters that change the result but not the time a step takes
    COST_FREE = frozenset(
        {"seed", "max_steps", "emit_every", "lr", "step_size", "ema", "es_window", "es_patience", "input_scale"}
        | {"reg_noise_std", "h_factor", "sigma", "noise_offset", "metrics_every", "ssim_every", "early_stop"}
    )

    def __init__(self) -> None:
        self._fits: dict[tuple[Any, ...], tuple[float, float] | None] = {}

    def is_measured(self, method: Any, params: Any, channels: int) -> bool:
        return self._key(method, params, channels) in self._fits

    def seconds_per_step(self, method: Any, params: Any, shape: tuple[int, int, int]) -> float | None:
        """The estimate for ``shape`` (C, H, W), or None where the method cannot run on the probes."""
        key = self._key(method, params, shape[0])
        if key not in self._fits:
            self._fits[key] = self._measure(method, params, shape[0])
        fit = self._fits[key]
        return None if fit is None else fit[0] + fit[1] * shape[1] * shape[2]

    def _key(self, method: Any, params: Any, channels: int) -> tuple[Any, ...]:
        values = {k: v for k, v in sorted(vars(params).items()) if k not in self.COST_FREE}
        return (method.name, channels, repr(values))

    def _measure(self, method: Any, params: Any, channels: int) -> tuple[float, float] | None:
        from dataclasses import fields, replace

        names = {f.name for f in fields(params)}
        quick = {"max_steps": self.STEPS, "emit_every": 0, "early_stop": "off"}
        probe = replace(params, **{k: v for k, v in quick.items() if k in names})
        gen = torch.Generator().manual_seed(0)
        times = []
        for side in self.PROBES:
            image = torch.rand((channels, side, side), generator=gen)
            try:
                problem = build_problem(image, "denoise", noise_sigma=0.1)
                steps, last = [], time.perf_counter()
                for _ in method.stream(denoiser=None, problem=problem, params=probe):
                    now = time.perf_counter()
                    steps.append(now - last)
                    last = now
            except (ParameterError, RuntimeError, ValueError):  # e.g. a network too deep for the probe
                return None
            if len(steps) < 2:
                return None
            times.append(min(steps[1:]))
        (p1, p2), (t1, t2) = (side * side for side in self.PROBES), times
        per_pixel = max((t2 - t1) / (p2 - p1), 0.0)
        return max(t1 - per_pixel * p1, 0.0), per_pixel


def estimate_method_cost(
    plan: RunPlan, steps: int, method: Any, params: Any, timer: MethodStepTimer | None = None
) -> CostEstimate:
    """The cost of a method that uses no denoiser: its measured step time, and for Deep Image Prior the
    memory of its network's activations."""
    from priorstudio.core.samplers.dip import DIPParams, dip_bytes_per_pixel

    c, h, w = plan.work_shape
    per_step = (timer or MethodStepTimer()).seconds_per_step(method, params, plan.work_shape)
    memory = int(dip_bytes_per_pixel(params, c) * h * w) if isinstance(params, DIPParams) else None
    return CostEstimate(steps, per_step, memory)


def starting_noise(plan: RunPlan) -> float:
    """The noise level of the image a run starts at (denoising starts at the photo): the level simulated, or
    in restore mode a robust estimate from the image's finest details — what the sampler's σ₀ will be."""
    from priorstudio.core.samplers.nonlocal_filters import estimate_noise_sigma

    if plan.settings.mode == "simulate" and plan.settings.noise_sigma > 0:
        return float(plan.settings.noise_sigma)
    start = plan.problem.init if plan.problem.init is not None else plan.problem.observed
    return estimate_noise_sigma(start)


def estimate_cost(plan: RunPlan, steps: int, denoiser: Any | None, timer: StepTimer | None = None) -> CostEstimate:
    """The cost of ``plan`` over ``steps`` steps; time and memory need the denoiser (None: steps only)."""
    if denoiser is None:
        return CostEstimate(steps, None, None)
    from priorstudio.core.memory import estimate_run_memory

    try:
        memory: int | None = estimate_run_memory(plan.work_shape, denoiser, task=plan.settings.task).total
    except Exception:  # an unknown model kind: no memory figure rather than no estimate
        memory = None
    per_step = (timer or StepTimer()).seconds_per_step(denoiser, plan.work_shape)
    return CostEstimate(steps, per_step, memory)


def _file_stamp(model: str | None) -> tuple[int, int] | None:
    """(modification time, size) of a weights file; None for a bundled model's name or no model."""
    if not model:
        return None
    try:
        st = os.stat(model)
    except (OSError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_size)


class DenoiserProvider:
    """The denoiser for a number of channels: the chosen bundled model or file, loaded once and cached.

    Tests and benchmarks inject ``factory`` (``channels -> Denoiser``) instead; then ``model`` is ignored.
    """

    def __init__(self, model: str | None = None, factory: DenoiserFactory | None = None) -> None:
        self.model = model
        self._factory = factory
        self._cache: dict[tuple[str | None, int, tuple[int, int] | None], Any] = {}

    @property
    def injected(self) -> bool:
        return self._factory is not None

    def set_model(self, model: str | None) -> None:
        if model != self.model:
            self.model = model
            self._cache.clear()

    def __call__(self, channels: int) -> Any:
        # a weights file written again while the app is open (a run trained further) is loaded again
        key = (self.model, int(channels), _file_stamp(self.model))
        if key not in self._cache:
            for old in [k for k in self._cache if k[:2] == key[:2]]:
                del self._cache[old]
            if self._factory is not None:
                self._cache[key] = self._factory(int(channels))
            else:
                from priorstudio.core.denoisers import load_denoiser

                self._cache[key] = load_denoiser(self.model, channels=int(channels))
        return self._cache[key]
