"""Train a blind, bias-free denoiser from a folder of images.

Recipe (ALGORITHMS.md §1): random patches with scale/flip/rotation augmentation; σ drawn per patch from
U[0, σ_max] and never shown to the network (blind); MSE between D(x + σz) and x; Adam with cosine decay.
Checkpoints (every few minutes, on Ctrl-C/SIGTERM and at the end) hold everything needed to resume
bit-for-bit: weights, optimizer, step, every rank's patch generator, the smoothed loss, whether bf16 was used.
They load with ``weights_only=True`` like any weights file, carry a checksum over all of it, and are refused
when damaged or when the resuming run's settings or data differ from those they were written by.

Data-parallel training uses PyTorch's own engine: run under ``torchrun --nproc_per_node=N`` and each rank
draws its own patches, gradients are averaged by DistributedDataParallel (gloo on CPU, nccl on GPUs);
rank 0 validates and writes files.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from priorstudio.core.denoisers.architectures import build_network, count_parameters
from priorstudio.core.denoisers.inference import cpu_has_fast_bf16
from priorstudio.core.denoisers.registry import load_weights_file, network_from_blob, pack_weights, state_digest
from priorstudio.core.denoisers.widening import can_grow, grow_unet
from priorstudio.core.errors import ParameterError, WeightsError
from priorstudio.core.imageio import load_image
from priorstudio.core.progress import ProgressBar, format_seconds

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VALIDATION_SIGMAS = (15, 25, 50)
SIGMA_WEIGHT_FLOOR = 5 / 255  # --sigma-weight: patches below this noise level weigh as much as one at it
MAX_THREADS = 1024  # torch takes a C int; no CPU this runs on has more cores than this


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved inside every checkpoint and weights file."""

    data_dir: str
    out: str
    channels: int = 1
    arch: str = "unet"
    arch_config: dict[str, Any] = field(default_factory=lambda: {"widths": [32, 64, 128, 256]})
    val_dir: str | None = None
    val_split: int = 4  # hold out this many training images for validation when no val_dir is given
    patch: int = 64
    batch: int = 16
    steps: int = 6000
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup: int = 100
    sigma_max: float = 0.4
    # Each patch's squared error weighs max(σ, SIGMA_WEIGHT_FLOOR)^−sigma_weight (normalised over the batch):
    # 0 is plain MSE, where the noisiest patches dominate the gradient; 1 gives low noise levels more say.
    sigma_weight: float = 0.0
    scales: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7)
    seed: int = 0
    steps_per_epoch: int = 500
    checkpoint_minutes: float = 5.0
    bf16: bool | None = None  # None: autocast where the CPU has native bf16
    threads: int | None = None
    init_from: str | None = None  # fine-tune: start from this weights file (same architecture) instead of random

    def validate(self, *, resuming: bool = False) -> None:
        """Refuse a run that could not start or would fail later, naming the option as the command line does.

        ``resuming``: a checkpoint will be continued, which holds the weights: ``--init-from`` need not
        still be there."""
        if self.channels not in (1, 3):
            raise ParameterError("channels must be 1 (gray) or 3 (color)")
        if self.patch < 16 or self.batch < 1 or self.steps < 1:
            raise ParameterError("--patch must be ≥ 16, --batch and --steps ≥ 1")
        if not 0 < self.sigma_max <= 1:
            raise ParameterError(f"--sigma-max must be in (0, 255], got {self.sigma_max * 255:g}")
        if not 0 <= self.sigma_weight <= 2:
            raise ParameterError(f"--sigma-weight must be between 0 and 2, got {self.sigma_weight:g}")
        if not 0 < self.lr_min <= self.lr:
            raise ParameterError(f"need 0 < --lr-min ≤ --lr, got --lr-min {self.lr_min:g} and --lr {self.lr:g}")
        if self.steps_per_epoch < 1:
            raise ParameterError(f"--epoch-steps must be at least 1, got {self.steps_per_epoch}")
        if self.val_split < 0:
            raise ParameterError(f"--val-split must be 0 or more, got {self.val_split}")
        if not math.isfinite(self.checkpoint_minutes) or self.checkpoint_minutes < 0:
            raise ParameterError(f"--checkpoint-minutes must be 0 or more, got {self.checkpoint_minutes:g}")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise ParameterError(f"--threads must be between 1 and {MAX_THREADS}, got {self.threads}")
        _check_architecture(self.arch, self.arch_config)
        if self.init_from is not None and not resuming and not Path(self.init_from).is_file():
            raise ParameterError(f"--init-from: no weights file at {self.init_from!r}")


def sigma_weighted_mse(out: Tensor, target: Tensor, sigma: Tensor, power: float) -> Tensor:
    """Mean squared error with patch ``i`` weighted by ``max(σ_i, SIGMA_WEIGHT_FLOOR)^−power``, the weights
    normalised to mean 1 over the batch; ``power`` 0 is plain MSE.

    Why: with σ uniform on [0, σ_max] the error of a patch grows with its σ, so plain MSE spends most of its
    gradient on the noisiest patches. The optimum is unchanged (for every σ it is still the conditional
    mean: a blind network reads σ off the image); what moves is how a network of finite size shares its
    capacity between noise levels. The floor keeps near-clean patches finite.
    """
    per_patch = (out - target).pow(2).flatten(1).mean(dim=1)
    if power == 0:
        return per_patch.mean()
    weights = sigma.flatten().clamp_min(SIGMA_WEIGHT_FLOOR).pow(-power)
    return (weights * per_patch).sum() / weights.sum()


def _check_architecture(arch: str, config: Mapping[str, Any]) -> None:
    """The network options, checked before the data are read (a bad one failed after loading them)."""
    if arch == "unet":
        widths = list(config.get("widths", [1, 1]))
        if len(widths) < 2 or any(int(w) < 1 for w in widths):
            raise ParameterError(f"--widths needs at least two levels of 1 or more channels, got {widths}")
        if int(config.get("tail", 0)) < 0:
            raise ParameterError(f"--tail must be 0 or more, got {config.get('tail')}")
    elif arch == "bfcnn":
        if int(config.get("depth", 3)) < 3:
            raise ParameterError(f"--depth must be at least 3 for a BF-CNN, got {config.get('depth')}")
        if int(config.get("width", 1)) < 1:
            raise ParameterError(f"--width must be at least 1, got {config.get('width')}")


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ParameterError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ParameterError(f"no images found in {folder}")
    return files


def data_hash(files: list[Path]) -> str:
    """SHA-256 over the names and contents of the training files: which data made these weights."""
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _read(path: Path, channels: int) -> np.ndarray:
    """uint8 (H, W, C) array; training data is read once and kept compact in memory.

    8-bit gray and RGB files are converted by Pillow, as they always were (a run's patches stay the same);
    any other kind (16-bit, gray or color with alpha, palette, CMYK, …) goes through the app's own loader,
    which keeps its full range instead of Pillow's clipping of 16-bit values to 0/255.
    """
    with Image.open(path) as im:
        if im.mode in ("L", "RGB"):
            im = im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
            return arr[:, :, None] if arr.ndim == 2 else arr
    values = load_image(path, mode="gray" if channels == 1 else "color").numpy().transpose(1, 2, 0)
    return np.ascontiguousarray(np.rint(values * 255).clip(0, 255).astype(np.uint8))


class PatchSampler:
    """Draws augmented patches from images held in memory as uint8, at several scales."""

    def __init__(self, images: list[np.ndarray], patch: int, scales: tuple[float, ...]) -> None:
        self.patch = patch
        self.pool: list[Tensor] = []
        for arr in images:
            base = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
            for s in scales:
                w, h = max(1, round(base.width * s)), max(1, round(base.height * s))
                if min(w, h) < patch:
                    continue
                im = base if s == 1.0 else base.resize((w, h), Image.BICUBIC)
                a = np.asarray(im, dtype=np.uint8)
                a = a[:, :, None] if a.ndim == 2 else a
                self.pool.append(torch.from_numpy(a.transpose(2, 0, 1).copy()))
        if not self.pool:
            raise ParameterError(f"no training image is at least {patch}×{patch} pixels")

    def sample(self, batch: int, gen: torch.Generator) -> Tensor:
        p = self.patch
        out = []
        idx = torch.randint(len(self.pool), (batch,), generator=gen).tolist()
        for i in idx:
            img = self.pool[i]
            _, h, w = img.shape
            y = int(torch.randint(h - p + 1, (1,), generator=gen))
            x = int(torch.randint(w - p + 1, (1,), generator=gen))
            patch = img[:, y : y + p, x : x + p]
            k = int(torch.randint(8, (1,), generator=gen))
            patch = torch.rot90(patch, k % 4, dims=(1, 2))
            if k >= 4:
                patch = patch.flip(2)
            out.append(patch)
        return torch.stack(out).float().div_(255.0)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * progress))


def psnr(x: Tensor, ref: Tensor) -> float:
    mse = F.mse_loss(x.clamp(0, 1), ref).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def validate(net: nn.Module, images: list[Tensor], sigmas=VALIDATION_SIGMAS, seed: int = 1234) -> dict[str, float]:
    """Mean PSNR (dB) of blind denoising at each σ (0–255 scale) over the validation images."""
    was_training = net.training
    net.eval()
    # the noise comes from a CPU generator whatever the device, so a GPU run validates on the same noisy images
    gen = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    result = {}
    for s in sigmas:
        vals = []
        for img in images:
            x = img.unsqueeze(0)
            y = x + (s / 255.0) * torch.randn(x.shape, generator=gen)
            x, y = x.to(device), y.to(device)
            vals.append(psnr(net(y), x))
        result[f"psnr_{s}"] = float(np.mean(vals))
    net.train(was_training)
    return result


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _training_device() -> torch.device:
    """This process's device: its own GPU under torchrun (LOCAL_RANK), made current for NCCL, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(device)  # before the process group: NCCL talks through the current device
    return device


def _init_distributed() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend=backend)
    return True


def weights_digest(net: nn.Module) -> str:
    """SHA-256 of all weights and buffers: equal digests mean bit-identical networks."""
    return state_digest(net.state_dict())


def _load_init(net: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Load the weights a fine-tune starts from; return the lineage of runs behind them.

    The file must describe the same architecture (a mismatch is an error, not a silent partial load) or a
    UNet this run's wider or deeper one can grow from without changing its output (``widening.grow_unet``), and
    it must come from the same kind of data: its lineage is carried forward so the model card can state the
    total steps and CPU time behind a model trained over several runs.
    """
    blob = load_weights_file(cfg.init_from)
    want = {"channels": cfg.channels, **cfg.arch_config}
    have = {"channels": 1, **blob["arch_config"]}  # the architectures' default, as the file was built with
    growable = ("widths", "tail")
    if cfg.arch == "unet" and bool(have.get("norm", False)) != bool(want.get("norm", False)):
        has, needs = ("has", "does not") if have.get("norm") else ("has no", "does")
        raise ParameterError(
            f"--init-from {Path(cfg.init_from).name}: its UNet {has} batch norm and this run's {needs} "
            "(the norm layers cannot be added or dropped by fine-tuning)"
        )
    channels = int(have["channels"])
    if channels != cfg.channels:
        kinds = {1: "gray (1 channel)", 3: "colour (3 channels)"}
        has, trains = (kinds.get(c, f"{c}-channel") for c in (channels, cfg.channels))
        hints = {(3, 1): " (add --color to fine-tune it)", (1, 3): " (drop --color to fine-tune it)"}
        raise ParameterError(
            f"--init-from {Path(cfg.init_from).name}: it is a {has} model and this run trains a {trains} one"
            + hints.get((channels, cfg.channels), "")
        )
    alike = blob["arch"] == cfg.arch and all(have.get(k) == v for k, v in want.items() if k not in growable)
    same = alike and have.get("widths") == want.get("widths") and have.get("tail", 0) == want.get("tail", 0)
    grow = alike and not same and cfg.arch == "unet" and can_grow(have, want)
    if not (same or grow):
        raise ParameterError(
            f"--init-from {Path(cfg.init_from).name}: it holds a {blob['arch']} {have}, "
            f"but this run trains a {cfg.arch} {want} (a UNet can only be grown: same levels, no level narrower, "
            "no fewer tail layers)"
        )
    start = network_from_blob(blob, Path(cfg.init_from).name)
    if grow:
        start = grow_unet(start, want, seed=cfg.seed)
    net.load_state_dict(start.state_dict())
    prev = dict(blob.get("training") or {})
    lineage = list(prev.pop("lineage", []) or [])
    entry = {k: prev[k] for k in ("step", "steps", "train_seconds", "lr", "patch", "batch", "world_size") if k in prev}
    entry["data_hash"] = blob.get("data_hash", "")
    entry["file"] = Path(cfg.init_from).name
    if grow and have.get("widths") != want.get("widths"):
        entry["widths"] = list(have["widths"])  # this run grew the network from these widths
    if grow and have.get("tail", 0) != want.get("tail", 0):
        entry["tail"] = int(have.get("tail", 0))  # …and deepened it from this many tail layers
    return [*lineage, entry]


def checkpoint_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".ckpt.pt")


def checkpoint_digest(state: dict[str, Any]) -> str:
    """SHA-256 over everything in a checkpoint but its checksums: tensors by their bytes, the rest by ``repr``.

    ``state_sha256`` covers only the weights; this also covers the optimizer's moments, the generators and the
    bookkeeping, none of which the zip archive torch writes checks when it is read back.
    """
    h = hashlib.sha256()

    def walk(name: str, value: Any) -> None:
        if isinstance(value, Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for key, item in sorted(value.items(), key=lambda kv: str(kv[0])):
                walk(f"{name}.{key}", item)
        elif isinstance(value, (list, tuple)):
            h.update(f"{name}|{type(value).__name__}|{len(value)}|".encode())
            for i, item in enumerate(value):
                walk(f"{name}[{i}]", item)
        else:
            h.update(f"{name}={value!r}|".encode())

    walk("", {k: v for k, v in state.items() if k not in ("state_sha256", "checkpoint_sha256")})
    return h.hexdigest()


# Settings a resumed run must share with the run that wrote the checkpoint, as the command line names them.
_RESUME_SETTINGS = {
    "steps": "--steps",
    "sigma_max": "--sigma-max",
    "sigma_weight": "--sigma-weight",
    "lr": "--lr",
    "lr_min": "--lr-min",
    "warmup": "warmup",
    "patch": "--patch",
    "batch": "--batch",
    "seed": "--seed",
    "scales": "scales",
    "val_split": "--val-split",
    "val_dir": "--val",
}
# What a checkpoint written before a setting existed ran with.
_SETTINGS_BEFORE_THEY_WERE_SAVED = {"sigma_weight": 0.0}
_UNKNOWN = object()  # a setting the checkpoint does not record: nothing to compare
_ARCH_OPTIONS = {
    "channels": "channels (--color)",
    "widths": "--widths",
    "tail": "--tail",
    "width": "--width",
    "depth": "--depth",
}


def _shown(key: str, value: Any) -> str:
    if key == "sigma_max" and isinstance(value, (int, float)):
        return f"{value * 255:g}"  # --sigma-max is on the 0–255 scale
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "(none)" if value is None else str(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _read_checkpoint(ckpt: Path, cfg: TrainConfig, net: nn.Module, data_digest: str) -> dict[str, Any]:
    """The checkpoint to resume from, checked whole and against this run's settings; ParameterError otherwise."""
    over = "; to start the run over, drop --resume and pass --overwrite"
    try:
        state = load_weights_file(ckpt)  # format, safe unpickling, complete archive, weights checksum
    except WeightsError as exc:
        detail = str(exc).removesuffix("; download or copy it again")  # advice for bundled weights
        raise ParameterError(f"--resume: cannot continue from {ckpt}: {detail}{over}") from None
    missing = [k for k in ("optimizer", "step", "history", "generator_state", "training") if k not in state]
    if missing or not isinstance(state["training"], dict):
        what = missing[0] if missing else "training settings"
        raise ParameterError(f"--resume: {ckpt} is not a training checkpoint (it has no {what}){over}")
    expected = state.get("checkpoint_sha256")
    if expected is not None and checkpoint_digest(state) != expected:  # checkpoints before checksums: none
        raise ParameterError(
            f"--resume: the checkpoint {ckpt} is corrupt: it does not match the checksum it was saved with "
            f"(the file was damaged after it was written){over}"
        )
    training = state["training"]
    diffs = []
    if state["arch"] != cfg.arch:
        diffs.append(f"--arch {state['arch']} in the checkpoint, {cfg.arch} now")
    have, want = state["arch_config"], dict(net.config)  # type: ignore[arg-type]
    for key in sorted(set(have) | set(want)):
        old, new = have.get(key, 0 if key == "tail" else None), want.get(key, 0 if key == "tail" else None)
        if not _same(old, new):
            diffs.append(f"{_ARCH_OPTIONS.get(key, key)} {_shown(key, old)} in the checkpoint, {_shown(key, new)} now")
    for key, name in _RESUME_SETTINGS.items():
        old = training.get(key, _SETTINGS_BEFORE_THEY_WERE_SAVED.get(key, _UNKNOWN))
        if old is not _UNKNOWN and not _same(old, getattr(cfg, key)):
            diffs.append(f"{name} {_shown(key, old)} in the checkpoint, {_shown(key, getattr(cfg, key))} now")
    if cfg.bf16 is not None and training.get("bf16") is not None and bool(training["bf16"]) != cfg.bf16:
        diffs.append(f"bf16 {bool(training['bf16'])} in the checkpoint, {cfg.bf16} now")
    if state.get("data_hash") and state["data_hash"] != data_digest:
        diffs.append(
            f"training data {state['data_hash'][:12]}… in the checkpoint, {data_digest[:12]}… now "
            "(compared by the files' names and contents)"
        )
    if diffs:
        raise ParameterError(
            f"--resume: {ckpt} was written by a run with other settings: "
            + "; ".join(diffs)
            + "; resume with the same settings, or drop --resume and pass --overwrite to start over"
        )
    return state


def _gather_rank_states(gen: torch.Generator, loss_avg: float, world: int, device: torch.device):
    """Every rank's patch generator state (world × N bytes) and smoothed loss (world), for the checkpoint.

    A collective under torchrun: every rank must call it. The tensors travel on the training device, since
    NCCL only moves GPU tensors.
    """
    state = gen.get_state()
    loss = torch.tensor([loss_avg], dtype=torch.float64)
    if world == 1:
        return state.unsqueeze(0), loss
    states = [torch.empty_like(state, device=device) for _ in range(world)]
    losses = [torch.empty_like(loss, device=device) for _ in range(world)]
    torch.distributed.all_gather(states, state.to(device))
    torch.distributed.all_gather(losses, loss.to(device))
    return torch.stack([t.cpu() for t in states]), torch.cat([t.cpu() for t in losses])


def _agree_on_resume(step: int, problem: str, ckpt: Path, world: int, device: torch.device) -> str:
    """Under torchrun, each rank has read the checkpoint (or found none, step -1): they must all resume alike.

    Returns the error every rank then raises, or "" when all ranks resume from the same step.
    """
    if world == 1:
        return problem
    mine = torch.tensor([step, 1 if problem else 0], dtype=torch.int64, device=device)
    every = [torch.empty_like(mine) for _ in range(world)]
    torch.distributed.all_gather(every, mine)
    steps = [int(t[0]) for t in every]
    failed = [r for r, t in enumerate(every) if int(t[1])]
    if problem:
        return problem
    if failed:
        return f"--resume: rank {failed[0]} could not use its checkpoint {ckpt} (its own message says why)"
    if len(set(steps)) > 1:
        found = ", ".join(f"rank {r}: {'no checkpoint' if s < 0 else f'step {s}'}" for r, s in enumerate(steps))
        return (
            f"--resume: the ranks do not agree on the checkpoint {ckpt} ({found}); every rank must see the "
            "same checkpoint file"
        )
    return ""


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a training run; writes ``cfg.out`` (weights) and its checkpoint. Returns a summary."""
    ckpt = checkpoint_path(cfg.out)
    resuming = resume and ckpt.exists()
    cfg.validate(resuming=resuming)
    device = _training_device()
    started_group = _init_distributed()
    rank, world = _dist_info()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bf16 = cfg.bf16 if cfg.bf16 is not None else (device.type == "cuda" or cpu_has_fast_bf16())

    files = list_images(cfg.data_dir)
    if cfg.val_dir:
        val_files = list_images(cfg.val_dir)
        train_files = files
    else:
        k = min(cfg.val_split, max(0, len(files) - 1))
        val_files, train_files = files[len(files) - k :], files[: len(files) - k]
    digest = data_hash(train_files)
    sampler = PatchSampler([_read(p, cfg.channels) for p in train_files], cfg.patch, tuple(cfg.scales))
    val_images = [torch.from_numpy(_read(p, cfg.channels).transpose(2, 0, 1).copy()).float() / 255 for p in val_files]

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    net = build_network(cfg.arch, {"channels": cfg.channels, **cfg.arch_config}).to(device)
    # a resumed run takes its weights and its lineage from the checkpoint: the --init-from file may since have
    # been moved, or (a fine-tune in place) be this very run's partial output, which is no earlier run
    lineage = _load_init(net, cfg) if cfg.init_from and not resuming else []
    if lineage and ("widths" in lineage[-1] or "tail" in lineage[-1]) and rank == 0 and not resume:
        grown = []
        if "widths" in lineage[-1]:
            grown.append(f"from widths {lineage[-1]['widths']} to {cfg.arch_config['widths']}")
        if "tail" in lineage[-1]:
            grown.append(f"from {lineage[-1]['tail']} to {cfg.arch_config.get('tail', 0)} tail layers")
        log(f"grew the network {' and '.join(grown)} (same output; {count_parameters(net):,} weights)")
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    step, history, cpu_seconds = 0, [], 0.0
    loss_avg = float("nan")  # the smoothed loss the progress bar shows and the validation history records

    ckpt.parent.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] | None = None
    if resume:
        problem = ""
        if ckpt.exists():
            try:
                state = _read_checkpoint(ckpt, cfg, net, digest)
            except ParameterError as exc:
                problem = str(exc)
        # every rank reads the file itself; a rank that finds none (or another step) would start a different run
        problem = _agree_on_resume(-1 if state is None else int(state["step"]), problem, ckpt, world, device)
        if problem:
            if started_group:
                torch.distributed.destroy_process_group()
            raise ParameterError(problem)
    if state is not None:
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        step, history, cpu_seconds = (
            int(state["step"]),
            list(state["history"]),
            float(state.get("train_seconds", 0)),
        )
        lineage = list(state["training"].get("lineage") or [])
        if state["training"].get("bf16") is not None:
            bf16 = bool(state["training"]["bf16"])  # as the run began, whatever this machine would choose
        saved_world = int(state.get("world_size", 1))
        gen_states, losses = state.get("generator_states"), state.get("loss_avgs")
        if saved_world == world and gen_states is not None:
            gen.set_state(gen_states[rank].clone())  # exact continuation of each rank's patch stream
        elif world == 1 and saved_world == 1:
            gen.set_state(state["generator_state"])  # a checkpoint from before every rank's state was kept
        else:  # another number of processes: each rank reseeds deterministically from the step it resumes at
            gen.manual_seed((cfg.seed * 1000 + rank) * 1_000_003 + step)
        if losses is not None:
            loss_avg = float(losses[rank if saved_world == world else 0])
        if rank == 0:
            log(f"resumed from {ckpt} at step {step}/{cfg.steps}")
    elif resume and rank == 0:
        log(f"no checkpoint at {ckpt}; starting fresh")

    # channels_last before DDP wraps the network: DDP lays out its gradient buckets after the parameters as they
    # are when it is built, and a later change of layout scrambled the gradients it averaged in its first step
    model: nn.Module = net.to(memory_format=torch.channels_last)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    stop_requested = {"flag": False}

    def _on_signal(signum, frame):
        stop_requested["flag"] = True

    old_handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # only the main thread may install handlers
            old_handlers[sig] = signal.signal(sig, _on_signal)

    def summary_meta() -> dict[str, Any]:
        cfg_dict = asdict(cfg)
        cfg_dict["world_size"] = world
        cfg_dict["bf16"] = bf16
        return {
            "training": {
                **cfg_dict,
                "step": step,
                "train_seconds": cpu_seconds,
                "train_files": len(train_files),
                # earlier runs this one fine-tunes, oldest first: the model's full training history
                "lineage": lineage,
                "total_train_seconds": cpu_seconds + sum(float(r.get("train_seconds", 0)) for r in lineage),
                "total_steps": step + sum(int(r.get("step", 0)) for r in lineage),
            },
            "data_hash": digest,
            "validation": history[-1] if history else {},
            "validation_history": history,
            "description": f"blind bias-free {cfg.arch}, {'gray' if cfg.channels == 1 else 'color'}, "
            f"{count_parameters(net)} weights, σ ∈ [0, {cfg.sigma_max * 255:.0f}]/255, step {step}/{cfg.steps}",
        }

    def save() -> None:
        """Write the checkpoint and the weights; under torchrun every rank calls it, rank 0 writes."""
        generator_states, loss_avgs = _gather_rank_states(gen, loss_avg, world, device)
        if rank != 0:
            return
        state = pack_weights(net, **summary_meta())
        state.update(
            {
                "optimizer": opt.state_dict(),
                "step": step,
                "history": history,
                "train_seconds": cpu_seconds,
                "generator_state": gen.get_state(),
                "generator_states": generator_states,  # one row per rank
                "loss_avgs": loss_avgs,
                "world_size": world,
            }
        )
        state["checkpoint_sha256"] = checkpoint_digest(state)
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(ckpt)
        out = Path(cfg.out)
        tmp = out.with_name(out.name + ".tmp")
        torch.save(pack_weights(net, **summary_meta()), tmp)
        tmp.replace(out)

    bar = ProgressBar(f"train {Path(cfg.out).stem}") if (show_progress and rank == 0) else None
    last_ckpt = time.monotonic()
    t0 = time.monotonic()
    start_step = step
    model.train()
    try:
        while step < cfg.steps:
            save_due = rank == 0 and time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60
            if world > 1:  # every rank must agree to stop and to checkpoint, or the collectives would hang
                # on the training device: NCCL (GPUs) only reduces GPU tensors
                flags = torch.tensor([float(stop_requested["flag"]), float(save_due)], device=device)
                torch.distributed.all_reduce(flags)
                stop_requested["flag"], save_due = bool(flags[0].item() > 0), bool(flags[1].item() > 0)
            if stop_requested["flag"]:
                break
            if save_due:
                save()
                last_ckpt = time.monotonic()
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg)
            x = sampler.sample(cfg.batch, gen).to(device)
            sigma = (torch.rand((cfg.batch, 1, 1, 1), generator=gen) * cfg.sigma_max).to(device)
            noisy = x + sigma * torch.randn(x.shape, generator=gen).to(device)
            noisy = noisy.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(noisy)
            loss = sigma_weighted_mse(out.float(), x, sigma, cfg.sigma_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_avg = loss.item() if loss_avg != loss_avg else 0.98 * loss_avg + 0.02 * loss.item()
            now = time.monotonic()
            if bar:
                rate = (step - start_step) / max(now - t0, 1e-9)
                eta = (cfg.steps - step) / max(rate, 1e-9)
                bar.update(
                    step / cfg.steps,
                    f"step {step} loss {loss_avg:.2e} {rate:.2f} it/s eta {format_seconds(eta)}",
                )
            if step % cfg.steps_per_epoch == 0 or step == cfg.steps:
                cpu_seconds += now - t0
                if rank == 0 and val_images:
                    val = validate(net, val_images)
                    history.append({"step": step, "loss": loss_avg, **val})
                    log(
                        f"\nstep {step}: loss {loss_avg:.3e}, validation PSNR "
                        + " / ".join(f"{val[f'psnr_{s}']:.2f}" for s in VALIDATION_SIGMAS)
                        + " dB at σ = 15/25/50"
                    )
                elif rank == 0:  # one training image and no --val: nothing held out to measure on
                    history.append({"step": step, "loss": loss_avg})
                    log(f"\nstep {step}: loss {loss_avg:.3e} (no validation images: pass --val DIR to measure)")
                t0, start_step = time.monotonic(), step
        cpu_seconds += time.monotonic() - t0
        t0 = time.monotonic()
        save()
        if stop_requested["flag"] and rank == 0:
            log(f"\nstopped at step {step}; checkpoint saved to {ckpt} (resume with --resume)")
    finally:
        if bar:
            bar.stream.write("\n")
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if started_group:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    return {
        "step": step,
        "steps": cfg.steps,
        "weights_sha256": weights_digest(net),
        "history": history,
        "out": str(cfg.out),
        "rank": rank,
        "interrupted": stop_requested["flag"],
        "data_hash": digest,
    }
