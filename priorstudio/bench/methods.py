"""Compare restoration methods on the same degraded images: one line per method per image.

    priorstudio bench methods DIR --task inpaint [--steps 500] [--methods dip_adam,nlm_twicing]

For each image (centre-cropped), the degradation is simulated (with the truth kept for PSNR) and every
method runs on the same measurement through ``priorstudio.core.samplers.registry.compare``: best PSNR,
the step it occurred at, final PSNR, seconds. ``--steps`` caps the iterative methods (the implicit prior
usually stops sooner by itself; twicing has its own short cap, ``--twicing-steps``).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from priorstudio.core.denoisers.training import list_images
from priorstudio.core.errors import PriorStudioError
from priorstudio.core.imageio import load_image
from priorstudio.core.problem import build_problem, canonical_task
from priorstudio.core.samplers.registry import METHODS, compare

NAME = "methods"
HELP = "run several methods (implicit prior, DIP Adam/GD, NLM/NTK twicing) on the same degraded images"

TASKS = ("denoise", "inpaint", "pixels", "sr", "lowpass", "cs")
#: The kept fraction of the tasks that take ``--fraction``, when it is not given.
DEFAULT_FRACTION = {"pixels": 0.5, "lowpass": 0.1, "cs": 0.1}


def _fraction(task: str, args: argparse.Namespace) -> float:
    return args.fraction if args.fraction is not None else DEFAULT_FRACTION[task]


def describe_task(task: str, args: argparse.Namespace) -> str:
    """The degradation as this run builds it, for the header line (the settings given, not the defaults)."""
    if task == "denoise":
        return "additive Gaussian noise"
    if task == "inpaint":
        return "a central block of H/4 × W/4 missing"
    if task == "sr":
        return f"{args.factor}× block-average super-resolution"
    kept = f"{100 * _fraction(task, args):.3g}%"
    if task == "pixels":
        return f"{kept} of the pixels kept at random"
    if task == "lowpass":
        return f"the lowest {kept} of the Fourier coefficients kept"
    return f"{kept} compressive measurements"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="folder of clean test images")
    parser.add_argument("--task", default="denoise", choices=tuple(TASKS), help="degradation (default denoise)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--steps", type=int, default=300, help="step cap of the iterative methods (default 300)")
    parser.add_argument("--twicing-steps", type=int, default=30, help="step cap of twicing (default 30)")
    parser.add_argument("--crop", type=int, default=64, help="centre crop size (default 64)")
    parser.add_argument("--limit", type=int, default=1, help="number of images (default 1; 0: all)")
    parser.add_argument("--gray", action="store_true", help="convert the images to gray")
    parser.add_argument("--noise", type=float, default=None, help="noise σ on the 0–255 scale (default 25 / 0)")
    parser.add_argument("--fraction", type=float, default=None, help="kept fraction for pixels/lowpass/cs")
    parser.add_argument("--factor", type=int, default=4, help="super-resolution factor (default 4)")
    parser.add_argument("--model", default=None, help="denoiser for the implicit prior (default: bundled)")
    parser.add_argument("--dip-width", type=int, default=128, help="DIP network width (default 128, the paper's)")
    parser.add_argument("--seed", type=int, default=0)


def _task_params(task: str, args: argparse.Namespace, hw: tuple[int, int]) -> dict[str, Any]:
    h, w = hw
    if task == "inpaint":
        missing = torch.zeros(h, w, dtype=torch.bool)
        bh, bw = max(1, h // 4), max(1, w // 4)
        top, left = (h - bh) // 2, (w - bw) // 2
        missing[top : top + bh, left : left + bw] = True
        return {"missing": missing}
    if task == "pixels":
        return {"fraction": _fraction(task, args), "operator_seed": args.seed}
    if task == "sr":
        return {"factor": args.factor}
    if task in ("lowpass", "cs"):
        extra = {"operator_seed": args.seed} if task == "cs" else {}
        return {"fraction": _fraction(task, args), **extra}
    return {}


def _centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    _, h, w = x.shape
    s = min(size, h, w) if size > 0 else min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[:, top : top + s, left : left + s]


def _load_denoiser(model: str | None, channels: int):
    from priorstudio.core.denoisers import load_denoiser

    try:
        return load_denoiser(model, channels=channels)
    except PriorStudioError as exc:
        print(f"implicit prior skipped: {exc}")
        return None


def _fmt(v: float | None, unit: str = " dB") -> str:
    return "   n/a  " if v is None or not math.isfinite(v) else f"{v:6.2f}{unit}"


def run(args: argparse.Namespace) -> list[dict]:
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    files = list_images(args.folder)[: args.limit or None]
    noise = args.noise if args.noise is not None else (25.0 if args.task == "denoise" else 0.0)
    task = canonical_task(args.task)
    degradation = describe_task(args.task, args)
    print(
        f"{args.folder.name}: {len(files)} image(s), {args.crop}² crops, task {args.task} ({degradation}), "
        f"noise σ={noise:g}, steps ≤ {args.steps} (twicing ≤ {args.twicing_steps})"
    )
    rows: list[dict] = []
    denoisers: dict[int, Any] = {}
    for path in files:
        image = _centre_crop(load_image(path, mode="gray" if args.gray else "auto"), args.crop)
        problem = build_problem(
            image,
            task,
            noise_sigma=noise / 255,
            seed=args.seed,
            **_task_params(args.task, args, tuple(image.shape[-2:])),
        )
        channels = image.shape[0]
        denoiser = None
        if "implicit_prior" in names:
            if channels not in denoisers:
                denoisers[channels] = _load_denoiser(args.model, channels)
            denoiser = denoisers[channels]
        params: dict[str, Any] = {}
        for name in names:
            spec = METHODS[name]
            steps = args.twicing_steps if name.endswith("twicing") else args.steps
            overrides: dict[str, Any] = {"max_steps": steps}
            if name.startswith("dip"):
                overrides.update(width=args.dip_width, emit_every=0)
            if "seed" in {f.name for f in fields(spec.params_class)}:  # the stochastic methods
                overrides["seed"] = args.seed
            params[name] = spec.default_params(problem.operator, **overrides)
        results = compare(
            names,
            problem.operator,
            problem.measurement,
            problem.truth,
            denoiser=denoiser,
            init=problem.init,
            params=params,
            emit_every=0,
            skip_errors=True,
        )
        for name, summary in results.items():
            row = {"image": path.name, "task": args.task, "noise": noise, "crop": args.crop, **summary.row()}
            rows.append(row)
            if summary.error:
                print(f"{path.stem:12} {name:15} skipped: {summary.error}")
                continue
            print(
                f"{path.stem:12} {name:15} best {_fmt(summary.best_psnr)} @ step {summary.best_step:5d}, "
                f"final {_fmt(summary.final_psnr)}, {summary.seconds:7.1f} s ({summary.steps} steps, "
                f"{summary.stop_reason})",
                flush=True,
            )
    return rows
