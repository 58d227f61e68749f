"""Denoiser throughput: the plain fp32 path and the fast path side by side, in one run.

The two paths are timed alternately, call by call, and the ratio is the median of the per-pair ratios: a
shared or throttled CPU can change speed by 2× within a minute, and interleaving puts both paths under the
same conditions. The fast path's spread (fastest and slowest call) is reported so such drift is visible.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from priorstudio.cli_args import parse_number_list
from priorstudio.core.denoisers import BFCNN, BiasFreeUNet, Denoiser
from priorstudio.core.denoisers.architectures import count_parameters
from priorstudio.core.denoisers.registry import available_models, load_weights_file, network_from_blob
from priorstudio.core.errors import ParameterError

NAME = "speed"
HELP = "denoiser steps per second, plain fp32 vs the fast path, per architecture, size and channels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="128,256,512", help="square image sizes (default 128,256,512)")
    parser.add_argument("--channels", default="1,3", help="1 (gray), 3 (color) or both (default 1,3)")
    parser.add_argument("--arch", default="bfcnn,unet", help="architectures (default bfcnn,unet)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls per path and case, interleaved; medians are reported"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="time this weights file as the UNet of its channel count, instead of the bundled one",
    )


ARCHS = ("bfcnn", "unet")


def _network(arch: str, channels: int, model: str | None = None) -> torch.nn.Module:
    """The reference BF-CNN, or the UNet exactly as bundled (random weights if none is bundled); ``model``:
    a weights file to time as the UNet of its channel count."""
    if arch == "bfcnn":
        return BFCNN(channels)
    if model is not None:
        blob = load_weights_file(model)
        if blob["arch"] == "unet" and blob["arch_config"].get("channels", 1) == channels:
            return network_from_blob(blob, Path(model).name)
    for path in available_models().values():
        blob = load_weights_file(path)
        if blob["arch"] == "unet" and blob["arch_config"].get("channels") == channels:
            return network_from_blob(blob, path.name)
    return BiasFreeUNet(channels, (32, 64, 128, 256))


def _call_ms(denoiser: Denoiser, y: torch.Tensor) -> float:
    t = time.perf_counter()
    denoiser(y)
    return 1000 * (time.perf_counter() - t)


def time_side_by_side(plain: Denoiser, fast: Denoiser, y: torch.Tensor, repeats: int) -> dict[str, float]:
    """Alternate plain and fast calls; medians of each, the median per-pair ratio, the fast path's range."""
    plain(y), fast(y)  # warm-up: allocations, kernel selection, the fused primitive's probe
    pairs = [(_call_ms(plain, y), _call_ms(fast, y)) for _ in range(max(1, repeats))]
    plain_ms = [p for p, _ in pairs]
    fast_ms = [f for _, f in pairs]
    return {
        "plain_ms": statistics.median(plain_ms),
        "fast_ms": statistics.median(fast_ms),
        "ratio": statistics.median(p / f for p, f in pairs),
        "fast_ms_min": min(fast_ms),
        "fast_ms_max": max(fast_ms),
    }


def _choices(text: str, allowed: tuple, what: str, cast=str) -> list:
    """The comma-separated ``text`` as values of ``allowed``, or a ParameterError naming the choices."""
    values = [cast(v.strip()) for v in text.split(",") if v.strip()] if text.strip() else []
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        shown = ", ".join(str(a) for a in allowed)
        raise ParameterError(f"{what} takes {shown} or a comma-separated list of them, got {text!r}")
    return values


def run(args: argparse.Namespace) -> list[dict]:
    archs = _choices(args.arch, ARCHS, "--arch")
    channel_list = _choices(args.channels, ("1", "3"), "--channels")
    model = getattr(args, "model", None)
    if model is not None and not Path(model).is_file():
        raise ParameterError(f"--model: no weights file at {model!r}")
    rows = []
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"{'arch':6} {'size':>5} {'ch':>2} {'params':>9} {'plain ms':>9} {'fast ms':>8} {'ratio':>6} "
        f"{'fast it/s':>9} {'fast range ms':>13}  path"
    )
    for arch in archs:
        for channels in (int(c) for c in channel_list):
            net = _network(arch, channels, model)
            plain, fast = Denoiser(net, fast=False), Denoiser(net, fast=True)
            for size in parse_number_list(args.sizes, int, "--sizes"):
                y = torch.rand(1, channels, size, size)
                t = time_side_by_side(plain, fast, y, args.repeats)
                row = {
                    "arch": arch,
                    "size": size,
                    "channels": channels,
                    "params": count_parameters(net),
                    **{k: round(v, 2) for k, v in t.items()},
                    "fast_steps_per_s": round(1000 / t["fast_ms"], 2),
                    "repeats": max(1, args.repeats),
                    "fast_path": fast.description,
                }
                rows.append(row)
                spread = f"{t['fast_ms_min']:.0f}–{t['fast_ms_max']:.0f}"
                print(
                    f"{arch:6} {size:5d} {channels:2d} {row['params']:9d} {t['plain_ms']:9.1f} {t['fast_ms']:8.1f} "
                    f"{row['ratio']:6.2f} {row['fast_steps_per_s']:9.2f} {spread:>13}  {fast.description}",
                    flush=True,
                )
    return rows
