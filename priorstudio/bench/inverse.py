"""Linear inverse problems solved with the implicit prior of the bundled gray denoiser (ALGORITHMS.md §2)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from priorstudio.core.denoisers import load_denoiser
from priorstudio.core.denoisers.training import list_images
from priorstudio.core.imageio import load_image
from priorstudio.core.metrics import psnr, ssim
from priorstudio.core.operators import make_operator
from priorstudio.core.samplers.implicit_prior import ImplicitPriorParams, implicit_prior_sampler

NAME = "inverse"
HELP = "inpainting, random pixels, super-resolution, spectral low-pass and compressive sensing on gray crops"

#: Benchmark task name → (operator task, parameters given the image shape).
TASKS = {
    "inpaint_block": ("inpaint", "central H/4×W/4 block missing"),
    "pixels10": ("random_pixels", "10% of pixels kept at random"),
    "sr4": ("super_resolution", "4×4 block averages"),
    "lowpass10": ("spectral", "lowest 10% of Fourier coefficients"),
    "cs10": ("compressive", "10% compressive measurements"),
}


def operator_for(name: str, shape: tuple[int, int, int], seed: int):
    _, h, w = shape
    if name == "inpaint_block":
        missing = torch.zeros(h, w, dtype=torch.bool)
        bh, bw = max(1, h // 4), max(1, w // 4)
        top, left = (h - bh) // 2, (w - bw) // 2
        missing[top : top + bh, left : left + bw] = True
        return make_operator("inpaint", shape, missing=missing)
    if name == "pixels10":
        return make_operator("random_pixels", shape, fraction=0.1, seed=seed)
    if name == "sr4":
        return make_operator("super_resolution", shape, factor=4)
    if name == "lowpass10":
        return make_operator("spectral", shape, fraction=0.1)
    if name == "cs10":
        return make_operator("compressive", shape, fraction=0.1, seed=seed)
    raise SystemExit(f"unknown benchmark task {name!r}; choose from {', '.join(TASKS)}")


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    _, h, w = x.shape
    s = min(size, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[:, top : top + s, left : left + s]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="folder of clean test images")
    parser.add_argument("--crop", type=int, default=128, help="central crop size (default 128)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}")
    parser.add_argument("--model", default=None, help="gray model name or weights file (default: bundled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=3000)


def run(args: argparse.Namespace) -> list[dict]:
    files = list_images(args.folder)
    if args.limit:
        files = files[: args.limit]
    images = [center_crop(load_image(p, mode="gray"), args.crop) for p in files]
    denoiser = load_denoiser(args.model, channels=1)
    params = ImplicitPriorParams(
        sigma_0=1.0, sigma_L=0.01, h_0=0.01, beta=0.01, seed=args.seed, max_steps=args.max_steps, emit_every=0
    )
    params.validate()
    print(
        f"{args.folder.name}: {len(images)} gray crops of {args.crop}², {denoiser.description}, "
        f"σ0={params.sigma_0} σL={params.sigma_L} h0={params.h_0} β={params.beta} seed {params.seed}"
    )
    print(f"{'task':14} {'PSNR':>7} {'SSIM':>7} {'iters':>7} {'seconds':>8}")
    rows = []
    for name in (t.strip() for t in args.tasks.split(",")):
        p_all, s_all, it_all, start = [], [], [], time.perf_counter()
        for x in images:
            op = operator_for(name, tuple(x.shape), args.seed)
            c = op.forward(x.unsqueeze(0))
            last = None
            for last in implicit_prior_sampler(denoiser, op, c, params):  # noqa: B007
                pass
            out = last.image[0].clamp(0, 1)
            p_all.append(psnr(out, x))
            s_all.append(ssim(out, x))
            it_all.append(last.t)
        seconds = (time.perf_counter() - start) / len(images)
        row = {
            "task": name,
            "psnr": round(sum(p_all) / len(p_all), 3),
            "ssim": round(sum(s_all) / len(s_all), 4),
            "iterations": round(sum(it_all) / len(it_all), 1),
            "seconds": round(seconds, 2),
            "images": len(images),
            "crop": args.crop,
        }
        rows.append(row)
        print(
            f"{name:14} {row['psnr']:7.2f} {row['ssim']:7.4f} {row['iterations']:7.1f} {seconds:8.2f}",
            flush=True,
        )
    return rows
