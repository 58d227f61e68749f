"""Estimate a run's peak memory before starting it, and refuse (with a size that fits) when it would not fit.

A run that needs more memory than the machine has does not fail cleanly: the system swaps, freezes, and
finally kills the process, taking the user's unsaved mask with it. So every run is estimated first and
compared with the memory actually available.

The estimate is linear in the number of pixels: almost everything a run holds is an image-sized tensor.

- **The denoiser's activations** dominate. They were measured (peak RSS growth during one inference, glibc
  told to return freed memory, 256² and 512², batch 1 and 4 — the figures scale exactly with pixels and
  batch) and the formulas below reproduce the measurements within 3 % for full-size networks (15 % for a
  tiny one, where fixed costs weigh more), in 4-byte values per pixel of one batch element:

  ===================================  =======================  ========  =======
  network (values per pixel)           formula                  measured  formula
  ===================================  =======================  ========  =======
  BF-CNN 20×64 gray, fast (BN folded)  2·width + 2·C            128       130
  BF-CNN 20×64 gray, plain             3·width + 2·C            192       194
  BF-CNN 20×64 color, fast                                      131       134
  UNet 48/96/192/256 gray, fast        5·w₀ + skips + up + 2C   301       302
  UNet 48/96/192/256 gray, plain       6·w₀ + skips + up + 2C   349       350
  UNet 48/96/192/256 color, fast                                304       306
  UNet 32/64/128/256 gray, fast                                 203       202
  UNet 64/128 gray, fast                                        353       354
  UNet 8/16 gray, fast (tiny)                                   53        46
  ===================================  =======================  ========  =======

  Why: a flat CNN holds one layer's input and output (and, unfolded, the batch norm's output too). The
  UNet's top decoder level holds its skip, the concatenation (2·w₀, kept alive by the call frame) and two
  convolution outputs, plus the coarser skips and the upsampled input; NCHW convolutions add one more
  full-resolution reorder buffer. bf16 autocast is taken to halve the activations (bytes per value 2).
- **The sampler** holds about ten image-sized float32 tensors per sample (the iterate, D(y), f, d, the
  injected noise, the data step's temporaries, the copy handed to the caller) and a few shared ones
  (measurement, truth, initial image).
- **The operator** holds index or mask buffers (int64 pixel indices for inpainting, FFT buffers for the
  spectral, compressive and blur tasks).
- **Frame history** is whatever the caller keeps (the GUI's scrub history has its own byte cap).

The available memory is ``MemAvailable`` from /proc/meminfo, capped by a cgroup limit when one applies
(psutil when installed, on other systems); on CUDA it is the device's free memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from priorstudio.core.errors import ResourceLimitError

FLOAT = 4  # bytes of one float32 value

#: Image-sized float32 buffers the sampler holds per sample, and once per run.
SAMPLER_PER_SAMPLE = 10
SAMPLER_SHARED = 4

#: Operator buffers in image-sized float32 equivalents: (held once, held per sample while it runs).
OPERATOR_BUFFERS: dict[str, tuple[float, float]] = {
    "denoise": (0.0, 0.0),
    "inpaint": (2.5, 2.0),  # int64 indices of the known values (2 floats each), a bool mask; scatter temporaries
    "random_pixels": (2.5, 2.0),
    "super_resolution": (0.0, 2.0),
    "spectral": (1.0, 6.0),  # complex spectra are two floats per value, plus a temporary
    "compressive": (3.0, 8.0),  # signs, int64 permutation; the DCT's complex spectra and twiddles
    "blur": (2.0, 6.0),
}

#: Measured peak and formulas are within a few per cent; this margin covers allocator fragmentation.
SAFETY = 1.15
#: Share of the available memory a run may plan to use: the GUI, the OS and other programs need the rest.
USABLE_SHARE = 0.85
#: Fixed allowance (bytes) for everything not image-sized: weights copies, library workspaces.
FIXED_OVERHEAD = 64 * 2**20


def _arch_and_config(model: Any) -> tuple[str, dict[str, Any], bool, bool]:
    """(arch, config, fast, bf16) from a Denoiser, a network, or a weights-file dict."""
    if isinstance(model, Mapping):  # a weights blob {"arch": …, "arch_config": …}
        return str(model["arch"]), dict(model["arch_config"]), True, False
    net = getattr(model, "net", None)
    if net is not None and hasattr(model, "fast"):  # a Denoiser: its network may be a folded copy
        arch = getattr(net, "arch_name", None)
        return str(arch), dict(getattr(net, "config", {})), bool(model.fast), bool(getattr(model, "bf16", False))
    arch = getattr(model, "arch_name", None)
    return str(arch), dict(getattr(model, "config", {})), True, False


def denoiser_values_per_pixel(arch: str, config: Mapping[str, Any], *, fast: bool = True) -> float:
    """Peak activation values (not bytes) per pixel of one batch element, in one inference of the network."""
    channels = int(config.get("channels", 1))
    if arch == "bfcnn":
        width = int(config.get("width", 64))
        return (2 if fast else 3) * width + 2 * channels
    if arch == "unet":
        widths = [int(w) for w in config.get("widths", (48, 96, 192, 256))]
        w0 = widths[0]
        skips = sum(w / 4**i for i, w in enumerate(widths[1:-1], start=1))  # coarser skips kept to the end
        upsampled = widths[1] / 4  # the level below, decoded, waiting to be upsampled into the top level
        return (5 if fast else 6) * w0 + skips + upsampled + 2 * channels
    # An unknown network: assume a wide flat CNN, the measured worst case per width.
    return 3 * 64 + 2 * channels


def denoiser_bytes_per_pixel(model: Any) -> float:
    """Peak activation bytes per pixel of one batch element for a Denoiser, a network or a weights dict."""
    arch, config, fast, bf16 = _arch_and_config(model)
    return denoiser_values_per_pixel(arch, config, fast=fast) * (2 if bf16 else FLOAT)


@dataclass(frozen=True)
class MemoryEstimate:
    """A run's planned peak memory, by part, in bytes; ``pixels`` is H·W of the working image."""

    pixels: int
    denoiser: int
    sampler: int
    operator: int
    history: int
    fixed: int = FIXED_OVERHEAD

    @property
    def total(self) -> int:
        return self.denoiser + self.sampler + self.operator + self.history + self.fixed

    @property
    def bytes_per_pixel(self) -> float:
        """The pixel-proportional part per pixel (history and fixed overhead excluded)."""
        return (self.denoiser + self.sampler + self.operator) / max(self.pixels, 1)

    def describe(self) -> str:
        return (
            f"{format_bytes(self.total)} (denoiser {format_bytes(self.denoiser)}, sampler "
            f"{format_bytes(self.sampler)}, operator {format_bytes(self.operator)}"
            + (f", history {format_bytes(self.history)}" if self.history else "")
            + ")"
        )


def estimate_run_memory(
    image_shape: tuple[int, int, int],
    model: Any,
    *,
    batch: int = 1,
    task: str = "denoise",
    history_bytes: int = 0,
) -> MemoryEstimate:
    """Peak memory of a sampler run on images (C, H, W) with ``batch`` samples.

    ``model`` is a Denoiser, a network, or a weights dict (``load_weights_file``); ``task`` an operator
    task name (``make_operator``'s names); ``history_bytes`` what the caller keeps of the frames.
    """
    c, h, w = (int(v) for v in image_shape)
    batch = max(int(batch), 1)
    pixels = h * w
    values = c * pixels  # one image-sized tensor has this many values
    denoiser = denoiser_bytes_per_pixel(model) * pixels * batch
    sampler = (SAMPLER_PER_SAMPLE * batch + SAMPLER_SHARED) * values * FLOAT
    fixed_op, per_sample_op = OPERATOR_BUFFERS.get(task, (3.0, 6.0))
    operator = (fixed_op + per_sample_op * batch) * values * FLOAT
    return MemoryEstimate(
        pixels=pixels,
        denoiser=int(denoiser * SAFETY),
        sampler=int(sampler * SAFETY),
        operator=int(operator * SAFETY),
        history=int(history_bytes),
    )


# -- what the machine has -------------------------------------------------------------------------------
def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_headroom() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2 or v1), or None when there is no limit."""
    candidates = [
        (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
        (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
    ]
    for limit_path, usage_path in candidates:
        limit = _read_int(limit_path)  # "max" (v2, unlimited) reads as None
        usage = _read_int(usage_path)
        if limit is not None and usage is not None and limit < 2**60:
            return max(limit - usage, 0)
    return None


def _meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes(device: Any = None) -> int | None:
    """Memory a new run can use now, in bytes; None when the system does not say.

    CPU: ``MemAvailable`` (what can be allocated without swapping), capped by a cgroup limit; psutil's
    figure where /proc is absent. CUDA: the device's free memory.
    """
    kind = getattr(device, "type", device)
    if kind == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    avail = _meminfo_available()
    if avail is None:
        try:
            import psutil  # optional: only used where /proc/meminfo does not exist
        except ImportError:
            return None
        avail = int(psutil.virtual_memory().available)
    headroom = _cgroup_headroom()
    return avail if headroom is None else min(avail, headroom)


# -- deciding ----------------------------------------------------------------------------------------------
def format_bytes(n: float) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def suggest_working_size(
    image_hw: tuple[int, int], estimate: MemoryEstimate, budget: int, *, multiple: int = 8
) -> tuple[int, int] | None:
    """The largest (H, W) with the same aspect ratio whose run fits in ``budget`` bytes, or None.

    Memory is linear in pixels, so the side scales with √(budget / need); the sides are rounded down to a
    multiple of ``multiple`` (the UNet pads to one anyway). None when not even a small image would fit.
    """
    h, w = (int(v) for v in image_hw)
    room = budget - estimate.fixed - estimate.history
    per_pixel = estimate.bytes_per_pixel
    if room <= 0 or per_pixel <= 0:
        return None
    scale = min(1.0, math.sqrt(room / (per_pixel * h * w)))
    nh, nw = int(h * scale), int(w * scale)
    if scale < 1.0:
        nh, nw = nh - nh % multiple, nw - nw % multiple
    if min(nh, nw) < multiple:
        return None
    return nh, nw


def check_run_fits(
    estimate: MemoryEstimate,
    image_hw: tuple[int, int],
    *,
    available: int | None = None,
    device: Any = None,
    what: str = "this run",
) -> MemoryEstimate:
    """Raise :class:`ResourceLimitError` when ``estimate`` exceeds the usable memory; else return it.

    The message says how much is needed and available and offers a working size that fits. With
    ``available=None`` the machine is asked (:func:`available_bytes`); when it cannot say, the run goes on.
    """
    if available is None:
        available = available_bytes(device)
    if available is None:
        return estimate
    budget = int(available * USABLE_SHARE)
    if estimate.total <= budget:
        return estimate
    h, w = image_hw
    size = suggest_working_size(image_hw, estimate, budget)
    message = (
        f"{what} on a {w}×{h} image needs about {estimate.describe()}, but only {format_bytes(available)} is available"
    )
    if size is None:
        message += "; close other programs or use a smaller model"
    else:
        message += (
            f"; it would fit at {size[1]}×{size[0]} (longest side {max(size)} px): resize or crop the image, "
            "use fewer samples, or close other programs"
        )
    raise ResourceLimitError(message)


def current_rss_bytes() -> int | None:
    """This process's resident memory (for benchmarks and soak tests), or None where /proc is absent."""
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
