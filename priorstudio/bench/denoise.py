"""Blind denoising quality of a bundled (or given) model on a folder of clean images."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from priorstudio.cli_args import parse_number_list
from priorstudio.core.denoisers import load_denoiser
from priorstudio.core.denoisers.training import list_images
from priorstudio.core.imageio import load_image
from priorstudio.core.metrics import psnr, ssim

NAME = "denoise"
HELP = "blind denoising PSNR/SSIM per noise level on a folder of clean images (seed 0)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="folder of clean test images")
    parser.add_argument("--sigmas", default="15,25,50", help="noise levels on the 0–255 scale (default 15,25,50)")
    parser.add_argument("--gray", action="store_true", help="convert the images to gray")
    parser.add_argument("--model", default=None, help="bundled model name or weights file (default: by channels)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="use the plain fp32 path instead of the fast path")


def run(args: argparse.Namespace) -> list[dict]:
    files = list_images(args.folder)
    if args.limit:
        files = files[: args.limit]
    images = [load_image(p, mode="gray" if args.gray else "auto") for p in files]
    channels = 3 if any(im.shape[0] == 3 for im in images) else 1
    if channels == 3:
        images = [im.expand(3, -1, -1).contiguous() for im in images]
    denoiser = load_denoiser(args.model, channels=channels, fast=not args.plain)
    print(f"{args.folder.name}: {len(images)} {'color' if channels == 3 else 'gray'} images, {denoiser.description}")
    print(f"{'sigma':>5} {'PSNR':>7} {'SSIM':>7} {'noisy':>7} {'s/img':>6}")
    rows = []
    denoiser(images[0].unsqueeze(0))  # warm-up (first-call setup), outside the timing and the noise stream
    for sigma in parse_number_list(args.sigmas, float, "--sigmas"):
        gen = torch.Generator().manual_seed(args.seed)
        p_out, s_out, p_in = [], [], []
        seconds = 0.0
        for x in images:
            y = x + (sigma / 255.0) * torch.randn(x.shape, generator=gen)
            start = time.perf_counter()
            out = denoiser(y.unsqueeze(0)).squeeze(0)
            seconds += time.perf_counter() - start  # the denoiser alone, not the noise or the metrics
            out = out.clamp(0, 1)
            p_out.append(psnr(out, x))
            s_out.append(ssim(out, x))
            p_in.append(psnr(y, x))  # the input the denoiser is given: unclipped noise, 20·log10(255/σ) dB
        seconds /= len(images)
        row = {
            "set": args.folder.name,
            "sigma": sigma,
            "psnr": round(sum(p_out) / len(p_out), 3),
            "ssim": round(sum(s_out) / len(s_out), 4),
            "psnr_noisy": round(sum(p_in) / len(p_in), 3),
            "images": len(images),
            "model": denoiser.name,
            "seconds_per_image": round(seconds, 3),
        }
        rows.append(row)
        print(
            f"{sigma:5g} {row['psnr']:7.2f} {row['ssim']:7.4f} {row['psnr_noisy']:7.2f} {seconds:6.2f}",
            flush=True,
        )
    return rows
