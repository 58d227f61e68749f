"""Deep Image Prior: fit an untrained network f_θ(z) to the degraded image alone (ALGORITHMS.md §3).

    min_θ ‖Mᵀ f_θ(z + jitter) − c‖²            (mean over the measurement; for denoising ‖f_θ − y‖²)

z is fixed noise (32 channels, uniform × 0.1) and a little fresh Gaussian jitter is added to it at every
step. The network fits the image's structure before its noise (or before the artefacts of the missing
data), so quality rises and then falls: the PSNR-vs-step curve, when the truth is known, is the lesson,
and knowing *when to stop* without the truth is the practical problem.

Early stopping without ground truth (``early_stop="monitor"|"stop"``): the windowed moving variance of
the network's outputs (the ES-WMV rule of Wang et al., 2023). Over the last ``es_window`` outputs
x_{t−W+1..t}, VAR_t = (1/W) Σ ‖x_s − x̄‖² / N. While the network is learning the image, successive outputs
move a lot; once it has the image they settle; when it starts fitting noise they drift again. VAR_t has a
valley near the PSNR peak. The rule keeps the output at the lowest VAR_t seen so far and fires when VAR_t
has not set a new minimum for ``es_patience`` steps; the run then ends with EARLY_STOP and the kept output.
With "monitor" the rule only reports (``extra["es_var"]``, ``extra["es_step"]``, a message when it would
fire) so its choice can be compared with the best step.

Speed on a CPU (``fast=True``), measured on 2-core AMD EPYC machines, one with AVX2 only and one with
AVX-512-bf16 (the reference network, steps of each variant interleaved; docs/methods.md has the tables):
- the fit runs on one thread by default (``threads=1``): results then depend on the seed alone, and one
  thread is never the slow choice when other jobs share the cores. ``threads=0`` chooses the count by
  timing two steps with 1 thread and two with the caller's count (faster on an idle machine; the numbers
  depend on the count, so two such runs can differ in their last digits). With other jobs on the cores,
  OpenMP's spinning barriers make 2 threads many times *slower* than 1 (218 s of wall time per step on 2
  threads against 2.9 s on 1 at 64×64, with two high-priority jobs on both cores);
- bf16 autocast (``precision="auto"``) where the hardware has bf16 units (AMX or AVX-512-bf16 CPUs, CUDA),
  and with it the channels_last layout, which oneDNN's bf16 kernels prefer: on an idle machine at 128×128,
  0.085 s per step in bf16 and 0.072 s with channels_last, against 0.124 s in fp32. On AVX2 bf16 is
  emulated and slower, so "auto" means fp32 there, and channels_last alone was slower too (batch norm and
  1×1 convolutions take slow paths), so it is not used with fp32 unless asked for;
- scalars leave the device only when a record needs them (PSNR every ``metrics_every`` steps; the loss
  is read every step only on the CPU, where reading it costs no synchronisation), bookkeeping (average,
  early-stopping window, metrics) runs under ``torch.inference_mode``, and Adam runs as one fused kernel
  where the installed torch has it: together 0.124 s against 0.131 s for the plain loop;
- the network keeps bf16 and channels-last from end to end (dip_network.py): CPU autocast pads in fp32, so
  every 3×3 convolution cast its input up and back down, and a concatenation's backward handed the
  upsampling a gradient in neither layout, which sent it to a slow kernel; fixing both took a step at
  256×256 on one thread from 0.48 to 0.38 s.
Against the plain reference the fast path is 1.4× faster at 64×64 and 1.9× at 128×128 on the idle
AVX-512-bf16 machine (before the last item), 2.9–3.0× at 256×256 and 2.8× at 512×512 on one thread, and
80–90× with the cores taken by other jobs. ``torch.compile`` took over 7 minutes to compile and ran slower,
so it is not used.

``fast=False`` is the plain fp32 reference of the same recipe (default threads, PSNR and loss read at
every step, no inference mode, the default Adam), kept for side-by-side timing (``priorstudio bench dip``).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators.base import Operator, task_of
from priorstudio.core.samplers.base import StepRecord, StopReason
from priorstudio.core.samplers.dip_network import count_weights, input_code, skip_network
from priorstudio.core.tensors import as_tensor

OPTIMIZERS = ("adam", "gd")
PRECISIONS = ("auto", "fp32", "bf16")
EARLY_STOP_MODES = ("off", "monitor", "stop")
#: Learning rate of plain gradient descent on the mean squared error (see ``DIP_PRESETS["gd"]``).
GD_LR = 1.0


@dataclass
class DIPParams:
    """Parameters of a Deep Image Prior run (defaults: the paper's settings for 4× super-resolution)."""

    max_steps: int = field(
        default=2000,
        metadata={"label": "steps", "help": "number of optimisation steps", "min": 1, "max": 100_000},
    )
    optimizer: str = field(
        default="adam",
        metadata={
            "label": "optimizer",
            "help": "Adam (the paper) or plain gradient descent (follows the neural tangent kernel filter)",
            "choices": OPTIMIZERS,
        },
    )
    lr: float = field(
        default=0.01,
        metadata={
            "label": "learning rate",
            "help": "step size of the optimizer",
            "min": 1e-6,
            "max": 100.0,
            "log": True,
        },
    )
    reg_noise_std: float = field(
        default=0.03,
        metadata={
            "label": "input jitter",
            "help": "std of the fresh noise added to the input code at every step (regularises the fit)",
            "min": 0.0,
            "max": 1.0,
        },
    )
    ema: float = field(
        default=0.0,
        metadata={
            "label": "output averaging",
            "help": "weight of the exponential average of the outputs (0.99 for denoising; 0: none)",
            "min": 0.0,
            "max": 0.9999,
        },
    )
    input_channels: int = field(
        default=32,
        metadata={"label": "input channels", "help": "channels of the fixed input noise z", "min": 1, "max": 512},
    )
    input_scale: float = field(
        default=0.1,
        metadata={"label": "input scale", "help": "z is uniform noise in [0, scale)", "min": 1e-4, "max": 10.0},
    )
    width: int = field(
        default=128,
        metadata={"label": "width", "help": "channels of every encoder/decoder level", "min": 1, "max": 512},
    )
    depth: int = field(
        default=5,
        metadata={"label": "scales", "help": "number of scales (each halves the resolution)", "min": 1, "max": 8},
    )
    skip_channels: int = field(
        default=4,
        metadata={"label": "skip channels", "help": "channels of the skip connections (0: none)", "min": 0, "max": 512},
    )
    seed: int = field(
        default=0,
        metadata={
            "label": "seed",
            "help": "seeds the weights, the input code and the jitter",
            "min": 0,
            "max": 2**31 - 1,
        },
    )
    emit_every: int = field(
        default=50,
        metadata={
            "label": "image every",
            "help": "attach the current estimate to every k-th record (0: only to the last)",
            "min": 0,
            "max": 100_000,
        },
    )
    metrics_every: int = field(
        default=10,
        metadata={
            "label": "PSNR every",
            "help": "compute PSNR against the truth every k steps (and on every record with an image)",
            "min": 1,
            "max": 100_000,
        },
    )
    ssim_every: int = field(
        default=0,
        metadata={
            "label": "SSIM every",
            "help": "compute SSIM every k steps (0: only with images and at the end; it is slower than PSNR)",
            "min": 0,
            "max": 100_000,
        },
    )
    early_stop: str = field(
        default="off",
        metadata={
            "label": "early stopping",
            "help": "running-variance rule without ground truth: off, monitor (report only) or stop",
            "choices": EARLY_STOP_MODES,
        },
    )
    es_window: int = field(
        default=50,
        metadata={"label": "variance window", "help": "outputs in the running variance", "min": 2, "max": 1000},
    )
    es_patience: int = field(
        default=300,
        metadata={
            "label": "patience",
            "help": "stop when the running variance has not reached a new minimum for this many steps",
            "min": 1,
            "max": 100_000,
        },
    )
    fast: bool = field(
        default=True,
        metadata={
            "label": "fast path",
            "help": "bf16 and channels-last where the CPU has bf16 units; fewer host reads",
        },
    )
    threads: int = field(
        default=1,
        metadata={
            "label": "threads",
            "help": "CPU threads for the fit: 1 gives the same result for the same seed under any load; "
            "0 chooses by timing (faster on an idle machine, but the count, and so the last digits, can differ)",
            "min": 0,
            "max": 256,
        },
    )
    channels_last: bool = field(
        default=False,
        metadata={
            "label": "channels last",
            "help": "NHWC memory layout always (the fast path uses it by itself with bf16, where it is faster)",
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "label": "precision",
            "help": "auto: bf16 only where the hardware has bf16 units (not on AVX2 CPUs), else fp32",
            "choices": PRECISIONS,
        },
    )

    def validate(self) -> None:
        """Raise ParameterError naming the first field outside its valid range."""
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if "choices" in meta:
                if value not in meta["choices"]:
                    raise ParameterError(
                        f"{f.name} must be one of {', '.join(meta['choices'])}, got {value!r}", field=f.name
                    )
                continue
            if f.type == "bool" or isinstance(f.default, bool):
                if not isinstance(value, bool):
                    raise ParameterError(f"{f.name} must be True or False, got {value!r}", field=f.name)
                continue
            if isinstance(f.default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ParameterError(f"{f.name} must be an integer, got {value!r}", field=f.name)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParameterError(f"{f.name} must be a finite number, got {value!r}", field=f.name)
            lo, hi = meta.get("min"), meta.get("max")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ParameterError(f"{f.name} ({meta['label']}) must be in [{lo}, {hi}], got {value}", field=f.name)
        if self.lr <= 0:
            raise ParameterError(f"lr must be > 0, got {self.lr}", field="lr")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DIPParams:
        """Parameters for one of ``DIP_PRESETS`` (e.g. "denoise", "sr4"), with ``overrides`` applied."""
        if name not in DIP_PRESETS:
            raise ParameterError(f"unknown DIP preset {name!r}; choose one of: {', '.join(DIP_PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ParameterError(f"unknown DIP parameter(s): {', '.join(unknown)}")
        return cls(**{**DIP_PRESETS[name], **overrides})


#: The paper's settings per task (the skip network of 5 scales × 128 channels, Adam, lr 0.01 throughout).
DIP_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # σ = 25 denoising: averaging the outputs (weight 0.99) gains about 1 dB over the raw output
        "denoise": MappingProxyType({"max_steps": 3000, "reg_noise_std": 1 / 30, "ema": 0.99}),
        # super-resolution through a Lanczos-2 downsampler (``priorstudio.core.resample``)
        "sr4": MappingProxyType({"max_steps": 2000, "reg_noise_std": 0.03}),
        "sr8": MappingProxyType({"max_steps": 4000, "reg_noise_std": 0.05}),
        # inpainting a masked region: 3000–6000 steps in the paper's examples
        "inpaint": MappingProxyType({"max_steps": 5000, "reg_noise_std": 0.03}),
        # restoration from a random half of the pixels: long runs
        "random_pixels": MappingProxyType({"max_steps": 11000, "reg_noise_std": 0.03}),
        # flash/no-flash: the flash image is the network input (pass it as ``net_input``); a short run
        "flash_no_flash": MappingProxyType({"max_steps": 600, "lr": 0.1, "reg_noise_std": 0.0}),
        # any other operator (spectral, compressive, blur): the inpainting-like recipe
        "default": MappingProxyType({"max_steps": 3000, "reg_noise_std": 0.03}),
        # plain gradient descent: the kernel regime of Tachella et al.; needs a far larger step than Adam
        "gd": MappingProxyType({"optimizer": "gd", "lr": GD_LR, "max_steps": 3000}),
    }
)


def preset_for_task(task: str, factor: int | None = None) -> str:
    """The ``DIP_PRESETS`` key for an operator task name (``make_operator``'s names)."""
    if task == "super_resolution":
        return "sr8" if (factor or 4) >= 8 else "sr4"
    if task in DIP_PRESETS:
        return task
    return "default"


def dip_params_for_task(task: str, factor: int | None = None, **overrides: Any) -> DIPParams:
    """The paper's parameters for a task by name (super-resolution: and factor), with ``overrides``."""
    return DIPParams.preset(preset_for_task(task, factor), **overrides)


def dip_params_for(operator: Operator | None, **overrides: Any) -> DIPParams:
    """The paper's parameters for the task of ``operator`` (None: denoising), with ``overrides``."""
    return dip_params_for_task(*task_of(operator), **overrides)


# -- early stopping ------------------------------------------------------------------------------------------
class RunningVariance:
    """ES-WMV: the variance of the last ``window`` outputs and the output at its lowest value so far.

    ``update(x)`` returns VAR_t (NaN until the window is full). The window sums are kept incrementally
    (in float64 for the squared norms) and re-summed every ``window`` steps to stop drift.
    """

    def __init__(self, window: int, patience: int) -> None:
        self.window, self.patience = int(window), int(patience)
        self._buf: list[Tensor] = []
        self._pos = 0
        self._sum: Tensor | None = None
        self._sq = 0.0
        self._count = 0
        self.best_var = math.inf
        self.best_step = 0
        self.best_image: Tensor | None = None
        self.t = 0

    def update(self, x: Tensor, keep: Tensor | None = None) -> float:
        """Add output x; ``keep`` (default x) is what is stored when VAR_t reaches a new minimum."""
        self.t += 1
        x = x.detach().to(torch.float32)
        n = x.numel()
        sq = float(x.double().pow(2).sum())
        if len(self._buf) < self.window:
            self._buf.append(x.clone())
            self._sum = x.clone() if self._sum is None else self._sum.add_(x)
            self._sq += sq
        else:
            old = self._buf[self._pos]
            self._sq += sq - float(old.double().pow(2).sum())
            self._sum.add_(x).sub_(old)
            old.copy_(x)
            self._pos = (self._pos + 1) % self.window
            self._count += 1
            if self._count % self.window == 0:
                self._sum = torch.stack(self._buf).sum(0)
                self._sq = float(sum(float(b.double().pow(2).sum()) for b in self._buf))
        if len(self._buf) < self.window:
            return math.nan
        mean_sq = float(self._sum.double().pow(2).sum()) / self.window**2
        var = max(self._sq / self.window - mean_sq, 0.0) / n
        if var < self.best_var:
            self.best_var, self.best_step = var, self.t
            self.best_image = (x if keep is None else keep).detach().clone()
        return var

    @property
    def fired(self) -> bool:
        """True once VAR_t has gone ``patience`` steps without a new minimum."""
        return self.best_image is not None and self.t - self.best_step >= self.patience

    def state(self) -> dict[str, Any]:
        """The window and its minimum so far, as tensors and plain values (for :meth:`DIPRun.state`)."""
        return {
            "buf": [b.clone() for b in self._buf],
            "pos": self._pos,
            "sum": None if self._sum is None else self._sum.clone(),
            "sq": self._sq,
            "count": self._count,
            "best_var": self.best_var,
            "best_step": self.best_step,
            "best_image": None if self.best_image is None else self.best_image.clone(),
            "t": self.t,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self._buf = [b.clone() for b in state["buf"]]
        self._pos, self._count, self.t = int(state["pos"]), int(state["count"]), int(state["t"])
        self._sum = None if state["sum"] is None else state["sum"].clone()
        self._sq, self.best_var, self.best_step = float(state["sq"]), float(state["best_var"]), int(state["best_step"])
        self.best_image = None if state["best_image"] is None else state["best_image"].clone()


# -- the run -------------------------------------------------------------------------------------------------
class StoppableRun(Iterator[StepRecord]):
    """An iterator of step records with :meth:`stop` (one more record, CANCELLED) and :meth:`close`."""

    def __init__(self) -> None:
        self._stop_requested = False
        self._steps: Iterator[StepRecord] = self._run()

    def __iter__(self) -> StoppableRun:
        return self

    def __next__(self) -> StepRecord:
        return next(self._steps)

    def stop(self) -> None:
        """Ask for an end: the next record is the last (CANCELLED) and carries the current estimate."""
        self._stop_requested = True

    def close(self) -> None:
        """Abandon the run at once, without a final record."""
        self._steps.close()  # type: ignore[attr-defined]

    def _run(self) -> Iterator[StepRecord]:  # pragma: no cover - abstract
        raise NotImplementedError


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads, then restore the previous count.

    Small element-wise work (the non-local filters, bookkeeping) gains nothing from a second thread and
    loses a lot when the cores are busy: OpenMP's barriers spin while waiting for a descheduled thread
    (measured here: building a 64² filter took 0.80 s of CPU with 2 threads, 0.07 s with 1).
    """
    before = torch.get_num_threads()
    if n > 0 and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def cpu_bf16_fast() -> bool:
    from priorstudio.core.denoisers.inference import cpu_has_fast_bf16

    return cpu_has_fast_bf16()


def dip_bytes_per_pixel(params: DIPParams, channels: int) -> float:
    """Rough peak memory of one DIP step per image pixel (activations kept for the backward pass).

    The top level keeps its skip, the concatenation, its batch-norm output and five width-channel maps
    at full resolution; every coarser level about as much at a quarter of the pixels. Plus the input
    code, the early-stopping window and a handful of image-sized buffers.
    """
    w, s = params.width, params.skip_channels
    top = 2 * (s + w) + 6 * w + 3 * params.input_channels
    values = top * (1 + 1 / 3) + channels * (params.es_window if params.early_stop != "off" else 0) + 12 * channels
    return values * 4


class DIPRun(StoppableRun):
    """One Deep Image Prior run; iterate it for step records. See :func:`dip_sampler`."""

    def __init__(
        self,
        operator: Operator | None,
        measurement: Tensor | None,
        params: DIPParams,
        *,
        truth: Tensor | None = None,
        init: Tensor | None = None,
        net_input: Tensor | None = None,
        device: torch.device | str | None = None,
        network: nn.Module | None = None,
    ) -> None:
        params.validate()
        self.params = params
        self.device = torch.device(device or "cpu")
        denoising = (
            operator is None or operator.name == "denoise" or (measurement is not None and measurement.numel() == 0)
        )
        if denoising:
            if init is None:
                raise ParameterError("DIP denoising fits the noisy image: pass it as init (C, H, W)")
            self.target = _as_batch("init", init).to(self.device, torch.float32)
            self.operator = None
        else:
            if measurement is None:
                raise ParameterError(f"the {operator.name} operator needs its measurement")
            self.operator = operator
            target = operator.measurement_batch(measurement)
            if target.shape[0] != 1:
                raise ParameterError(f"DIP fits one measurement, got a batch of {target.shape[0]}")
            self.target = target.to(self.device, torch.float32)
        shape = operator.image_shape if operator is not None else tuple(self.target.shape[1:])
        self.image_shape: tuple[int, int, int] = tuple(int(v) for v in shape)  # type: ignore[assignment]
        c, h, w = self.image_shape
        self.truth = None if truth is None else _as_batch("truth", truth).to(torch.float32)
        if self.truth is not None and tuple(self.truth.shape[1:]) != self.image_shape:
            raise ParameterError(f"truth has shape {tuple(self.truth.shape[1:])}, expected {self.image_shape}")

        gen = torch.Generator().manual_seed(params.seed)
        if net_input is not None:
            z = _as_batch("net_input", net_input).to(torch.float32)
            if tuple(z.shape[-2:]) != (h, w):
                raise ParameterError(f"net_input is {tuple(z.shape[-2:])}, the image is {(h, w)}")
        else:
            z = input_code(params.input_channels, (h, w), params.seed, params.input_scale)
        self.net = network if network is not None else _seeded_network(params, z.shape[1], c)
        check = getattr(self.net, "check_size", None)
        if callable(check):
            check((h, w))
        self._check_memory()
        self.z = z.to(self.device)
        self.jitter_gen = gen
        self.net.to(self.device).train()
        self.bf16 = params.precision == "bf16" or (
            params.precision == "auto"
            and params.fast
            and (self.device.type == "cuda" or (self.device.type == "cpu" and cpu_bf16_fast()))
        )
        #: NHWC layout: asked for, or the fast path's choice with bf16 (oneDNN's bf16 kernels prefer it)
        self.channels_last = params.channels_last or (params.fast and self.bf16)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
            self.z = self.z.contiguous(memory_format=torch.channels_last)
        self.optimizer = self._make_optimizer()
        #: the thread count the run settled on (CPU), for reports
        self.threads: int = torch.get_num_threads()
        self.weights = count_weights(self.net)
        #: the last step done (0 before the first)
        self.t_done = 0
        self._pending: Mapping[str, Any] | None = None
        super().__init__()

    # -- setup ---------------------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        p = self.params
        params = list(self.net.parameters())
        if p.optimizer == "gd":
            return torch.optim.SGD(params, lr=p.lr)
        if p.fast:
            with contextlib.suppress(RuntimeError, TypeError, ValueError):
                return torch.optim.Adam(params, lr=p.lr, fused=True)
        return torch.optim.Adam(params, lr=p.lr)

    def _check_memory(self) -> None:
        from priorstudio.core.memory import MemoryEstimate, check_run_fits

        c, h, w = self.image_shape
        per_pixel = dip_bytes_per_pixel(self.params, c)
        est = MemoryEstimate(pixels=h * w, denoiser=int(per_pixel * h * w), sampler=0, operator=0, history=0)
        check_run_fits(est, (h, w), device=self.device, what="Deep Image Prior")

    # -- one step ------------------------------------------------------------------------------------------
    def _loss(self, out: Tensor) -> Tensor:
        if self.operator is None:
            return F.mse_loss(out, self.target)
        return F.mse_loss(self.operator.forward(out), self.target)

    def _step(self) -> tuple[Tensor, Tensor]:
        """One optimisation step; returns (the output the step's loss was computed on, the loss)."""
        p = self.params
        z = self.z
        if p.reg_noise_std > 0:
            noise = torch.randn(z.shape, generator=self.jitter_gen, dtype=z.dtype).to(self.device)
            z = z + p.reg_noise_std * noise
        self.optimizer.zero_grad(set_to_none=True)
        if self.bf16:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                out = self.net(z)
            out = out.float()
        else:
            out = self.net(z)
        loss = self._loss(out)
        loss.backward()
        self.optimizer.step()
        return out.detach(), loss.detach()

    # -- the loop ------------------------------------------------------------------------------------------
    def _run(self) -> Iterator[StepRecord]:
        """The steps. The thread count is set around each optimisation step only, so the caller's own
        setting is in force whenever the run is suspended (between records)."""
        p = self.params
        caller_threads = torch.get_num_threads()
        candidates: list[int] = []
        chosen = 0  # 0: the caller's count
        if self.device.type == "cpu":
            if p.threads > 0:
                chosen = p.threads
            elif p.fast and caller_threads > 1:
                candidates = [1, 1, caller_threads, caller_threads]  # timed on steps 2–5
        self.threads = chosen or caller_threads
        timings: dict[int, list[float]] = {}
        self.monitor = RunningVariance(p.es_window, p.es_patience) if p.early_stop != "off" else None
        self._average: Tensor | None = None
        self._last_good: Tensor | None = None
        self._es_announced = False
        #: the step at which the early-stopping rule fired (0: not yet)
        self.es_fired_at = 0
        self._es_pick: tuple[int, Tensor] | None = None
        first = 1
        if self._pending is not None:
            first = self._restore(self._pending) + 1
            self._pending = None
            chosen, candidates = self.threads if chosen == 0 and candidates else chosen, []
            self.threads = chosen or caller_threads
        for t in range(first, p.max_steps + 1):
            tune = 2 <= t < 2 + len(candidates)
            n = candidates[t - 2] if tune else chosen
            start = time.perf_counter()
            with cpu_threads(n):
                out, loss = self._step()
            if tune:
                timings.setdefault(n, []).append(time.perf_counter() - start)
                if t == 1 + len(candidates):
                    chosen = min(timings, key=lambda k: min(timings[k]))
                    self.threads = chosen
            if p.fast:  # never yield inside the context: the caller's thread would inherit inference mode
                with torch.inference_mode():
                    record = self._bookkeeping(t, out, loss)
            else:
                record = self._bookkeeping(t, out, loss)
            self.t_done = t
            yield record
            if record.is_last:
                return

    # -- continuing in another process ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything the steps after :attr:`t_done` depend on, as tensors and plain values: ``torch.save`` it
        (it loads with ``weights_only=True``) and give it to :meth:`resume_from` of a new run with the same
        parameters and image to go on as if never stopped. Take it between records.

        Why: a paper-scale run is hours of CPU; this lets it survive the end of a process.
        """
        monitor = getattr(self, "monitor", None)  # the loop's state exists once the first step has begun
        pick = getattr(self, "_es_pick", None)
        return {
            "format": RUN_STATE_FORMAT,
            "params": _fingerprint(self.params),
            "image_shape": list(self.image_shape),
            "t": self.t_done,
            "network": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # a snapshot: Adam updates its moments in place
            "jitter": self.jitter_gen.get_state(),
            "threads": self.threads,
            "average": _snapshot(getattr(self, "_average", None)),
            "last_good": _snapshot(getattr(self, "_last_good", None)),
            "monitor": None if monitor is None else monitor.state(),
            "es_fired_at": getattr(self, "es_fired_at", 0),
            "es_announced": getattr(self, "_es_announced", False),
            "es_pick": None if pick is None else [pick[0], pick[1]],
        }

    def resume_from(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` (checked against this run's parameters and image size) at the next
        step. Call before the first record."""
        if inspect.getgeneratorstate(self._steps) != inspect.GEN_CREATED:
            raise ParameterError("resume_from() must come before the run's first step")
        if not isinstance(state, Mapping) or state.get("format") != RUN_STATE_FORMAT:
            raise ParameterError("not a saved Deep Image Prior run")
        if state.get("params") != _fingerprint(self.params):
            raise ParameterError("the saved run used other parameters; start it again")
        if list(state.get("image_shape", [])) != list(self.image_shape):
            raise ParameterError(f"the saved run was for a {state.get('image_shape')} image, not {self.image_shape}")
        if not 0 <= int(state["t"]) < self.params.max_steps:
            raise ParameterError(f"the saved run is at step {state['t']} of {self.params.max_steps}: nothing left")
        self._pending = state

    def _restore(self, state: Mapping[str, Any]) -> int:
        """Load ``state`` into the run (its loop variables set up first); returns the step it had done."""
        self.net.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.jitter_gen.set_state(state["jitter"])
        self.threads = int(state["threads"])
        self._average = None if state["average"] is None else state["average"].clone()
        self._last_good = None if state["last_good"] is None else state["last_good"].clone()
        if self.monitor is not None and state["monitor"] is not None:
            self.monitor.load_state(state["monitor"])
        self.es_fired_at = int(state["es_fired_at"])
        self._es_announced = bool(state["es_announced"])
        pick = state["es_pick"]
        self._es_pick = None if pick is None else (int(pick[0]), pick[1].clone())
        self.t_done = int(state["t"])
        return self.t_done

    def _bookkeeping(self, t: int, out: Tensor, loss: Tensor) -> StepRecord:
        """The record of step t: averaging, early-stopping window, loss, metrics, image."""
        p = self.params
        out = out.float()
        if p.ema > 0:
            if self._average is None:
                self._average = out.clone()
            else:
                self._average.mul_(p.ema).add_(out, alpha=1 - p.ema)
            estimate = self._average
        else:
            estimate = out
        last = t == p.max_steps or self._stop_requested
        emit = last or (p.emit_every > 0 and t % p.emit_every == 0)
        measure = emit or t % p.metrics_every == 0 or not p.fast
        record = StepRecord(t=t)
        if self.device.type == "cpu" or measure:
            lv = float(loss)
            record.extra["loss"] = lv
            record.residual_norm = math.sqrt(lv) if lv >= 0 else math.nan
            if not math.isfinite(lv) or not bool(torch.isfinite(estimate).all()):
                return self._final(t, self._last_good, StopReason.DIVERGED_NAN, f"the fit became NaN at step {t}")
            # every checked step, not only the measured ones: a NaN between two of them keeps the step before
            self._last_good = estimate.clone()
        if measure and self.operator is not None:
            record.data_error = float(self.operator.consistency_error(estimate, self.target).mean())
        monitor = self.monitor
        if monitor is not None:
            record.extra["es_var"] = monitor.update(out, keep=estimate)
            record.extra["es_step"] = float(monitor.best_step)
            if monitor.fired and not self._es_announced:
                self._es_announced = True
                self.es_fired_at = t
                self._es_pick = (monitor.best_step, monitor.best_image)
                record.message = f"early stopping: the output variance has not fallen since step {monitor.best_step}"
                if p.early_stop == "stop":
                    final = self._final(t, monitor.best_image, StopReason.EARLY_STOP, record.message)
                    final.extra.update(record.extra)
                    return final
        if self.truth is not None and measure:
            record.psnr, record.ssim = self._metrics(estimate, with_ssim=self._ssim_due(t, emit))
        if emit:
            record.image = estimate.detach().to("cpu", torch.float32, copy=True)
        if last:
            record.extra["threads"] = float(self.threads)
            if monitor is not None:
                record.extra["es_fired_at"] = float(self.es_fired_at) if self.es_fired_at else math.nan
                choice = self.es_choice
                if choice is not None:
                    record.extra["es_step"] = float(choice[0])
                    if self.truth is not None:
                        record.extra["es_psnr"] = self._metrics(choice[1], with_ssim=False)[0]
            record.stop_reason = StopReason.CANCELLED if self._stop_requested else StopReason.STEP_CAP
            record.message = record.message or (
                "stopped on request" if self._stop_requested else f"{p.max_steps} steps done"
            )
        return record

    @property
    def es_choice(self) -> tuple[int, Tensor] | None:
        """(step, estimate) the early-stopping rule picks: its choice when it fired, else its choice so far.

        Once the rule has fired, a later, lower running variance (outputs can settle again once the noise
        is fitted) does not change the choice: a run in "stop" mode would have returned this image.
        """
        if self._es_pick is not None:
            return self._es_pick
        monitor = self.monitor
        if monitor is None or monitor.best_image is None:
            return None
        return monitor.best_step, monitor.best_image

    def _ssim_due(self, t: int, emit: bool) -> bool:
        every = self.params.ssim_every
        return emit or (every > 0 and t % every == 0)

    def _final(self, t: int, image: Tensor | None, reason: StopReason, message: str) -> StepRecord:
        record = StepRecord(t=t, stop_reason=reason, message=message)
        if image is not None:
            record.image = image.detach().to("cpu", torch.float32, copy=True)
            if self.truth is not None:
                record.psnr, record.ssim = self._metrics(image, with_ssim=True)
        return record

    def _metrics(self, estimate: Tensor, *, with_ssim: bool) -> tuple[float, float | None]:
        from priorstudio.core.metrics import psnr, ssim

        x = estimate.detach().to("cpu", torch.float32).clamp(0, 1)
        return psnr(x, self.truth), (ssim(x, self.truth) if with_ssim else None)


RUN_STATE_FORMAT = "priorstudio-dip-run-1"


def _fingerprint(params: DIPParams) -> dict[str, Any]:
    """The parameters that decide a run's numbers, as plain values (what to show in records is left out)."""
    skip = {"emit_every", "metrics_every", "ssim_every"}
    return {f.name: _plain(getattr(params, f.name)) for f in fields(params) if f.name not in skip}


def _plain(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) or value is None else repr(value)


def _seeded_network(params: DIPParams, in_channels: int, out_channels: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        return skip_network(in_channels, out_channels, params.width, params.depth, params.skip_channels)


def _snapshot(t: Tensor | None) -> Tensor | None:
    """A copy of a tensor the run goes on changing in place (None stays None)."""
    return None if t is None else t.detach().clone()


def _as_batch(name: str, x: Tensor) -> Tensor:
    x = as_tensor(x)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ParameterError(f"{name} must be one image (C, H, W), got shape {tuple(x.shape)}")
    return x


def dip_sampler(
    operator: Operator | None,
    measurement: Tensor | None,
    params: DIPParams,
    *,
    truth: Tensor | None = None,
    init: Tensor | None = None,
    net_input: Tensor | None = None,
    device: torch.device | str | None = None,
    network: nn.Module | None = None,
) -> DIPRun:
    """Run Deep Image Prior; returns an iterator of step records (a :class:`DIPRun` with ``stop()``).

    - ``operator``/``measurement``: the linear measurement Mᵀ and its data c (1, …); the loss is
      ‖Mᵀf_θ − c‖². For denoising (no operator, or the ``denoise`` operator) the noisy image is ``init``
      and the loss is ‖f_θ − init‖².
    - ``truth``: the clean image (C, H, W), to report PSNR (every ``metrics_every`` steps) and SSIM.
    - ``net_input``: use this image (C', H, W) as the fixed network input instead of noise, e.g. the
      flash image for flash/no-flash (the target is then the no-flash image, passed as ``init``).
    - ``network``: a module mapping the input code to an image (default: the skip network of ``params``).

    Every record has the fit loss in ``extra["loss"]`` (on the CPU; elsewhere on measured steps); the
    last one has the final estimate (the output average when ``ema`` > 0) and why the run stopped.
    """
    return DIPRun(
        operator, measurement, params, truth=truth, init=init, net_input=net_input, device=device, network=network
    )


def replace_params(params: DIPParams, **changes: Any) -> DIPParams:
    """A copy of ``params`` with ``changes`` (validated)."""
    new = replace(params, **changes)
    new.validate()
    return new
