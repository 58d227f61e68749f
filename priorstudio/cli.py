"""The command line: ``priorstudio`` alone opens the desktop app; subcommands run the engine headless.

Errors a user can fix print one line on stderr and exit with a documented code (docs/errors.md):
1 general, 2 bad parameter (or an output that exists), 3 bad image, 4 bad mask, 5 bad weights, 6 too large
for memory, 7 bad run record, 8 cannot write a file, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from priorstudio import __version__
from priorstudio.cli_args import parse_number_list
from priorstudio.core.errors import ParameterError, PriorStudioError, SaveError

if TYPE_CHECKING:
    from torch import Tensor

#: The smallest std that maps to white (as in the desktop app's posterior view): a map of K equal samples
#: stays black instead of amplifying rounding noise.
STD_SCALE_FLOOR = 1e-6

BIT_DEPTH_HELP = (
    "bits per sample of the images written: 8 or 16 (PNG only). Default: 16 when the input has more than 8 bits "
    "per sample and the output is a PNG, else 8"
)

MODEL_NOTE = (
    "Bundled models are listed by `priorstudio models`; their training status and benchmark figures are in "
    "docs/models.md."
)


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise ParameterError(f"--seed must be in [0, 2^63), got {seed}")


def _refuse_existing(
    targets: list[Path | str | None], overwrite: bool, other_way: str = "", creating: Path | None = None
) -> None:
    """Before any work: every output can be written where it is named (its folder exists: else SaveError,
    exit 8, instead of a result lost after the run) and none silently replaces an existing file (empty
    entries: options not given). ``other_way``: what else the message may suggest (", or --resume to …");
    ``creating``: a folder the command makes itself before writing (it and what is under it count as there)."""
    given = [Path(t) for t in targets if t]
    for target in given:
        if target.is_dir():
            raise SaveError(f"cannot write {target}: it is a folder")
        made = creating is not None and target.parent.resolve().is_relative_to(creating.resolve())
        if not target.parent.is_dir() and not made:
            raise SaveError(f"cannot write {target}: the folder {target.parent} does not exist")
    existing = [t for t in given if t.exists()]
    if existing and not overwrite:
        raise ParameterError(f"{existing[0]} exists; pass --overwrite to replace it{other_way}")


def _output_bit_depth(asked: int | None, inputs: list[Path | str], out: Path | str) -> int:
    """The bits per sample to write: as asked, else the inputs' — 16 when any has more than 8 bits per sample
    (a 16-bit scan stays 16-bit) and the output is a PNG, the one format written at 16 bits; else 8."""
    from priorstudio.core.imageio import SAVE_SUFFIXES, has_deep_samples

    if asked is not None:
        return asked
    png = SAVE_SUFFIXES.get(Path(out).suffix.lower()) == "PNG"
    return 16 if png and any(has_deep_samples(path) for path in inputs) else 8


def _refuse_unwritable_images(targets: list[Path | str | None], bit_depth: int) -> None:
    """Before any work: every image output has a name whose format can be written at ``bit_depth``."""
    from priorstudio.core.imageio import save_format

    for target in targets:
        if target:
            save_format(target, bit_depth)


# -- shared option groups ----------------------------------------------------------------------------
def _add_sampler_options(p: argparse.ArgumentParser, beta: float | None) -> None:
    g = p.add_argument_group("implicit-prior sampler")
    g.add_argument("--sigma0", type=float, default=1.0, help="initial noise level σ_0 (default 1)")
    g.add_argument("--sigmaL", type=float, default=0.01, help="stop when the effective noise σ_t ≤ σ_L (default 0.01)")
    g.add_argument("--h0", type=float, default=0.01, help="initial step size h_0 in (0, 1) (default 0.01)")
    default = f"{beta}" if beta is not None else "0.01; 1 for denoise, where injected noise would leave the photo"
    g.add_argument("--beta", type=float, default=beta, help=f"noise-injection control β in (0, 1] (default {default})")
    g.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same result")
    g.add_argument("--max-steps", type=int, default=3000, help="step cap (default 3000)")
    g.add_argument("--model", default=None, help="bundled model name or weights file (default: gray/color by image)")
    g.add_argument("--plain", action="store_true", help="use the plain fp32 path instead of the fast path")


def _sampler_params(args: argparse.Namespace, **overrides: Any):
    _check_seed(args.seed)
    from priorstudio.core.samplers.implicit_prior import ImplicitPriorParams

    params = ImplicitPriorParams(
        sigma_0=args.sigma0,
        sigma_L=args.sigmaL,
        h_0=args.h0,
        beta=args.beta,
        seed=args.seed,
        max_steps=args.max_steps,
        **overrides,
    )
    params.validate()
    return params


def _progress_note(rec, params) -> tuple[float, str]:
    """Progress of a σ-stopped run is determinate in log σ."""
    span = math.log(params.sigma_0) - math.log(params.sigma_L)
    sigma = rec.sigma if rec.sigma == rec.sigma and rec.sigma > 0 else params.sigma_0
    frac = max(rec.t / params.max_steps, (math.log(params.sigma_0) - math.log(sigma)) / span)
    note = f"t={rec.t} σ={sigma:.4f}"
    if rec.psnr is not None:
        note += f" PSNR={rec.psnr:.2f}"
    return frac, note


def _drive(stream, params, label: str, quiet: bool):
    """Iterate a step stream with a progress bar; returns (last record, rows)."""
    from priorstudio.core.progress import ProgressBar

    bar = ProgressBar(label)
    bar.enabled = not quiet
    rows, last = [], None
    for rec in stream:
        rows.append(rec.scalars())
        last = rec
        frac, note = _progress_note(rec, params)
        bar.update(frac, note)
    bar.close(f"{last.stop_reason.value if last and last.stop_reason else ''} after {last.t if last else 0} steps")
    return last, rows


# -- restore ---------------------------------------------------------------------------------------
def _parse_kernel(spec: str):
    from priorstudio.core.operators import box_kernel, gaussian_kernel, motion_kernel

    kind, _, arg = spec.partition(":")
    try:
        if kind == "gaussian":
            return gaussian_kernel(float(arg or 2.0))
        if kind == "box":
            return box_kernel(int(arg or 5))
        if kind == "motion":
            length, _, angle = (arg or "15,0").partition(",")
            return motion_kernel(float(length), float(angle or 0))  # any length, as in the app
    except ValueError:
        raise ParameterError(f"cannot read the kernel {spec!r}") from None
    path = Path(spec)
    if path.exists():
        from priorstudio.core.imageio import load_image

        k = load_image(path, mode="gray")[0]
        return k / k.sum().clamp_min(1e-12)
    raise ParameterError(
        f"--kernel must be gaussian:SIGMA, box:SIZE, motion:LENGTH,ANGLE or an image file, not {spec!r}"
    )


def _task_params(args: argparse.Namespace, image_hw: tuple[int, int]) -> dict[str, Any]:
    from priorstudio.core.problem import canonical_task

    task = canonical_task(args.task)
    if task == "inpaint":
        import torch

        if not args.mask and not (math.isfinite(args.block) and 0 < args.block < 1):
            raise ParameterError(f"--block must be a fraction in (0, 1), got {args.block}")

        if args.mask:
            from priorstudio.core.imageio import load_mask

            return {"missing": load_mask(args.mask, image_hw)}
        h, w = image_hw
        missing = torch.zeros(h, w, dtype=torch.bool)
        bh, bw = max(1, round(h * args.block)), max(1, round(w * args.block))
        missing[(h - bh) // 2 : (h - bh) // 2 + bh, (w - bw) // 2 : (w - bw) // 2 + bw] = True
        return {"missing": missing}
    if task in ("random_pixels", "compressive"):
        if not 0 <= args.operator_seed < 2**63:
            raise ParameterError(f"--operator-seed must be in [0, 2^63), got {args.operator_seed}")
        return {"fraction": args.fraction, "seed": args.operator_seed}
    if task == "spectral":
        return {"fraction": args.fraction}
    if task == "super_resolution":
        return {"factor": args.factor}
    if task == "blur":
        return {"kernel": _parse_kernel(args.kernel)}
    return {}


def _save_std_map(samples: Tensor, args: argparse.Namespace) -> float:
    """Write the spread of K samples as the desktop app shows it: one gray map (the root-mean-square of the
    channels' std), scaled so that its largest value is white. Returns that value, the map's scale."""
    from priorstudio.core.imageio import save_image
    from priorstudio.core.teach.posterior import posterior_summary

    summary = posterior_summary(samples)
    scale = max(float(summary.std_map().max()), STD_SCALE_FLOOR)
    save_image(summary.std_display(scale), Path(args.std), bit_depth=args.bit_depth, overwrite=args.overwrite)
    return scale


def cmd_restore(args: argparse.Namespace) -> int:
    import torch

    from priorstudio.core.denoisers import load_denoiser
    from priorstudio.core.imageio import load_image, save_image
    from priorstudio.core.memory import check_run_fits, estimate_run_memory
    from priorstudio.core.metrics import psnr, ssim
    from priorstudio.core.problem import build_problem, canonical_task
    from priorstudio.core.runrecord import RunRecord
    from priorstudio.core.samplers.implicit_prior import implicit_prior_sampler

    _check_seed(args.seed)
    if args.samples < 1:
        raise ParameterError("--samples must be at least 1")
    if args.std and args.samples < 2:
        raise ParameterError("--std needs --samples K with K ≥ 2 (a spread needs several samples)")
    out = Path(args.output)
    _refuse_existing([out, args.std, args.json], args.overwrite)
    args.bit_depth = _output_bit_depth(args.bit_depth, [args.input], out)
    _refuse_unwritable_images([out, args.std], args.bit_depth)
    image = load_image(args.input, mode="gray" if args.gray else "auto")
    task = canonical_task(args.task)  # "Denoise" and "denoise" are one task
    noise = (
        args.noise if args.noise is not None else (25.0 if task == "denoise" and args.mode == "simulate" else 0.0)
    ) / 255
    task_params = _task_params(args, tuple(image.shape[-2:]))
    hole = task_params.get("missing") if task == "inpaint" else None
    problem = build_problem(
        image,
        args.task,
        mode=args.mode,
        noise_sigma=noise,
        seed=args.seed,
        operator_seed=task_params.pop("seed", None),
        **task_params,
    )
    denoiser = load_denoiser(args.model, channels=image.shape[0], fast=not args.plain)
    # refuse before the first step, with a size that would fit, rather than fail (or swap) mid-run
    estimate = estimate_run_memory(problem.image_shape, denoiser, batch=args.samples, task=problem.task)
    check_run_fits(estimate, problem.image_shape[-2:], what="restoring")
    if args.beta is None:
        from priorstudio.core.samplers.implicit_prior import restore_preset

        args.beta = restore_preset(problem.task)["beta"]
    if args.samples > 1 and args.beta >= 1 and problem.init is not None:
        raise ParameterError(
            f"--samples {args.samples} with β = 1 gives {args.samples} identical images: β = 1 injects no noise "
            f"and every sample starts from the same {problem.task} start; pass --beta 0.5 (or lower) for samples "
            "that differ"
        )
    params = _sampler_params(args, emit_every=0, final_projection=args.final_projection)
    init = problem.init.unsqueeze(0).expand(args.samples, -1, -1, -1) if problem.init is not None else None
    record = RunRecord.new(
        method="implicit_prior",
        task=problem.task,
        parameters={**vars(params)},
        model=denoiser.name,
        seed=params.seed,
        source=str(args.input),
    )
    start = time.perf_counter()
    stream = implicit_prior_sampler(
        denoiser,
        problem.operator,
        problem.measurement.expand(args.samples, *problem.measurement.shape[1:]),
        params,
        truth=problem.truth,
        init=init,
        batch=args.samples,
    )
    last, rows = _drive(stream, params, f"restore {problem.task}", args.quiet)
    for row in rows:
        record.append_row(row)
    samples = last.image.clamp(0, 1)
    result = samples.mean(0)
    if hole is not None and problem.noise_sigma == 0:
        # inpainting changes only the pixels to fill; the others stay what was measured there (the photo's,
        # or in simulate mode the truth's, which is then the data). With noise they are the denoised estimate:
        # pasting the clean truth back would report a PSNR no method earned, and the noisy data would undo it.
        known = problem.observed.to(result.dtype)
        result = torch.where(torch.as_tensor(hole, dtype=torch.bool).expand_as(result), result, known)
    save_image(result, out, bit_depth=args.bit_depth, overwrite=args.overwrite)
    std_scale = _save_std_map(samples, args) if args.std else None
    metrics = {
        "seconds": round(time.perf_counter() - start, 3),
        "iterations": last.t,
        "stop_reason": last.stop_reason.value if last.stop_reason else None,
    }
    if problem.truth is not None:
        metrics.update(
            psnr=psnr(result, problem.truth),
            ssim=ssim(result, problem.truth),
            psnr_observed=psnr(problem.observed.clamp(0, 1), problem.truth)
            if problem.observed.shape == problem.truth.shape
            else None,
        )
    recorded = metrics if std_scale is None else {**metrics, "std_scale": std_scale}
    record.finish(stop_reason=metrics["stop_reason"], metrics=recorded)
    if args.json:
        record.save_json(args.json, overwrite=args.overwrite)
    summary = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items() if v is not None
    )
    if std_scale is not None:
        summary += f"; std map {args.std}: white = std {std_scale:.4g}"
    print(f"{out}: {summary}")
    if last.stop_reason is not None and last.stop_reason.value.startswith("diverged"):
        print(f"warning: {last.message}", file=sys.stderr)
    del torch
    return 0


# -- sample ------------------------------------------------------------------------------------------
def cmd_flash(args: argparse.Namespace) -> int:
    """Flash/no-flash with Deep Image Prior: the flash image is the network's fixed input, the no-flash image
    its target; stopped early, the output keeps the no-flash lighting with the flash image's low noise."""
    from priorstudio.core.imageio import load_image, save_image
    from priorstudio.core.progress import ProgressBar
    from priorstudio.core.runrecord import RunRecord
    from priorstudio.core.samplers.dip import DIPParams, dip_sampler

    _check_seed(args.seed)
    out = Path(args.output)
    _refuse_existing([out, args.json], args.overwrite)
    args.bit_depth = _output_bit_depth(args.bit_depth, [args.flash, args.noflash], out)
    _refuse_unwritable_images([out], args.bit_depth)
    mode = "gray" if args.gray else "color"
    flash, noflash = load_image(args.flash, mode=mode), load_image(args.noflash, mode=mode)
    if flash.shape != noflash.shape:
        (_, fh, fw), (_, nh, nw) = flash.shape, noflash.shape
        raise ParameterError(
            f"the flash image is {fw}×{fh} and the no-flash image {nw}×{nh}: take both from the same shot, same size"
        )
    overrides = {"seed": args.seed, "width": args.width}
    if args.steps is not None:
        overrides["max_steps"] = args.steps
    params = DIPParams.preset("flash_no_flash", **overrides)
    params.validate()
    record = RunRecord.new(
        method="dip",
        task="flash_no_flash",
        parameters={k: v for k, v in vars(params).items() if isinstance(v, (int, float, str, bool))},
        model="",
        seed=params.seed,
        source=f"{args.flash} + {args.noflash}",
    )
    bar = ProgressBar("flash/no-flash")
    bar.enabled = not args.quiet
    start, last = time.perf_counter(), None
    for rec in dip_sampler(None, None, params, init=noflash, net_input=flash):
        record.append_row(rec.scalars())
        last = rec
        bar.update(rec.t / params.max_steps, f"t={rec.t} loss={rec.extra.get('loss', math.nan):.3g}")
    bar.close(f"{last.stop_reason.value if last and last.stop_reason else ''} after {last.t if last else 0} steps")
    if last is None or last.image is None:
        why = last.message if last is not None and last.message else "the run ended before its first step"
        raise ParameterError(f"no image to save: {why}")
    save_image(last.image[0].clamp(0, 1), out, bit_depth=args.bit_depth, overwrite=args.overwrite)
    metrics = {"seconds": round(time.perf_counter() - start, 3), "iterations": last.t}
    record.finish(stop_reason=last.stop_reason.value if last.stop_reason else None, metrics=metrics)
    if args.json:
        record.save_json(args.json, overwrite=args.overwrite)
    print(f"{out}: {last.t} steps in {metrics['seconds']:.1f} s")
    return 0


def _sample_path(folder: Path, seed: int, k: int) -> Path:
    return folder / f"sample_{seed}_{k:03d}.png"


def _existing_samples(folder: Path, seed: int, n: int) -> list[Path]:
    """The files among the n samples' names that exist, in order. Found by listing the folder, not by
    trying every name: -n is only bounded by the memory check, which needs the model loaded first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = re.fullmatch(rf"sample_{seed}_(\d+)\.png", path.name)
        if match and int(match.group(1)) < n and path == _sample_path(folder, seed, int(match.group(1))):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SaveError(f"cannot create the folder {folder} ({error.strerror or type(error).__name__})") from None


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from priorstudio.core.denoisers import load_denoiser
    from priorstudio.core.imageio import save_image
    from priorstudio.core.memory import check_run_fits, estimate_run_memory
    from priorstudio.core.samplers.implicit_prior import implicit_prior_sampler

    _check_seed(args.seed)
    if args.n < 1 or args.size < 8:
        raise ParameterError("need -n ≥ 1 and --size ≥ 8")
    channels = 3 if args.color else 1
    params = _sampler_params(args, emit_every=0)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise ParameterError(f"{out_dir} is a file; -o names the folder the samples are written to")
    existing = _existing_samples(out_dir, params.seed, args.n)
    # before the run, not after minutes of sampling
    _refuse_existing([*existing, args.json], args.overwrite, creating=out_dir)
    denoiser = load_denoiser(args.model, channels=channels, fast=not args.plain)
    estimate = estimate_run_memory((channels, args.size, args.size), denoiser, batch=args.n)
    check_run_fits(estimate, (args.size, args.size), what=f"drawing {args.n} samples")
    _make_folder(out_dir)
    targets = [_sample_path(out_dir, params.seed, k) for k in range(args.n)]
    stream = implicit_prior_sampler(
        denoiser, None, None, params, batch=args.n, image_shape=(channels, args.size, args.size)
    )
    last, rows = _drive(stream, params, f"sample {args.n}×{args.size}²", args.quiet)
    for img, path in zip(last.image.clamp(0, 1), targets, strict=False):
        save_image(img, path, overwrite=args.overwrite)
    if args.json:
        from priorstudio.core.runrecord import RunRecord

        record = RunRecord.new(
            method="implicit_prior",
            task="synthesis",
            parameters={**vars(params)},
            model=denoiser.name,
            seed=params.seed,
            source="",
        )
        for row in rows:
            record.append_row(row)
        record.finish(stop_reason=last.stop_reason.value if last.stop_reason else None, metrics={"iterations": last.t})
        record.save_json(args.json, overwrite=args.overwrite)
    print(f"{args.n} samples of {args.size}² in {out_dir} after {last.t} steps ({last.stop_reason.value})")
    del torch
    return 0


# -- train -------------------------------------------------------------------------------------------
def _refuse_existing_model(args: argparse.Namespace) -> None:
    """A trained model (or the checkpoint of an unfinished run) is hours of work: replace it only when asked."""
    from priorstudio.core.denoisers.training import checkpoint_path

    out = Path(args.out)
    if out.is_dir():
        raise ParameterError(f"--out {out} is a folder; name the weights file to write, such as model.pt")
    if args.overwrite:
        return
    if args.resume:  # with nothing to resume, the first save would replace --out with a model trained afresh
        if out.exists() and not checkpoint_path(out).exists():
            raise ParameterError(
                f"--resume: there is no checkpoint {checkpoint_path(out)} to continue from, and {out} exists; "
                "pass --overwrite to train it again from the start"
            )
        return
    for path in (out, checkpoint_path(out)):
        if path.exists():
            raise ParameterError(f"{path} exists; pass --overwrite to replace it, or --resume to continue its run")


def cmd_train(args: argparse.Namespace) -> int:
    from priorstudio.core.denoisers.training import TrainConfig, train

    widths = parse_number_list(args.widths, int, "--widths")
    if args.tail < 0:
        raise ParameterError(f"--tail is a number of layers, 0 or more (got {args.tail})")
    tail = {"tail": args.tail} if args.tail else {}
    arch_config: dict[str, Any] = (
        {"widths": widths, **tail} if args.arch == "unet" else {"width": args.width, "depth": args.depth}
    )
    cfg = TrainConfig(
        data_dir=str(args.data),
        out=str(args.out),
        channels=3 if args.color else 1,
        arch=args.arch,
        arch_config=arch_config,
        val_dir=str(args.val) if args.val else None,
        val_split=args.val_split,
        patch=args.patch,
        batch=args.batch,
        steps=args.steps,
        lr=args.lr,
        lr_min=args.lr_min,
        sigma_max=args.sigma_max / 255,
        sigma_weight=args.sigma_weight,
        seed=args.seed,
        steps_per_epoch=args.epoch_steps,
        checkpoint_minutes=args.checkpoint_minutes,
        threads=args.threads,
        init_from=str(args.init_from) if args.init_from else None,
    )
    _refuse_existing_model(args)
    result = train(cfg, resume=args.resume, show_progress=not args.quiet)
    if result["rank"] == 0:
        print(f"wrote {cfg.out} at step {result['step']}/{cfg.steps}")
    # One line per rank: under torchrun every rank reports the digest of the weights it ends with.
    print(f"rank {result['rank']} weights sha256 {result['weights_sha256']}", flush=True)
    return 130 if result["interrupted"] else 0


# -- bench / models / gui ------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    # before the benchmark, not after its minutes (a resumable one continues from the file instead)
    resumable = hasattr(args, "resume")
    also = ", or --resume to continue from its rows" if resumable else ""
    _refuse_existing([args.json], args.overwrite or (resumable and args.resume), also)
    rows = args.bench_module.run(args)
    if args.json:
        from priorstudio.core.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n", overwrite=True)  # checked above
        print(f"wrote {len(rows)} rows to {args.json}")
    return 0


def _training_history(blob: dict[str, Any]) -> str:
    """The steps of every run behind a model fine-tuned over several (its description names only the last
    run's), as " (N steps in all over K runs)"."""
    training = blob.get("training")
    if not isinstance(training, dict) or not training.get("lineage"):
        return ""
    return f" ({int(training.get('total_steps', 0)):,} steps in all over {len(training['lineage']) + 1} runs)"


def cmd_models(args: argparse.Namespace) -> int:
    from priorstudio.core.denoisers.registry import available_models, load_weights_file

    models = available_models()
    if not models:
        print("no bundled models")
    for name, path in models.items():
        try:
            blob = load_weights_file(path)
            desc = blob.get("description", blob["arch"])
            val = blob.get("validation", {})
            figures = " / ".join(f"{val[k]:.2f}" for k in ("psnr_15", "psnr_25", "psnr_50") if k in val)
            print(
                f"{name:14} {path.stat().st_size / 1e6:5.1f} MB  {desc}{_training_history(blob)}"
                + (f"; validation {figures} dB" if figures else "")
            )
        except PriorStudioError as exc:
            print(f"{name:14} unusable: {exc}")
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    from priorstudio.gui.display_check import check_display, import_gui_app

    check_display()  # before any Qt GUI library loads: Qt would abort, or fail to import, with worse advice
    run_app = import_gui_app().run_app
    return run_app(str(args.image) if args.image else None, model=args.model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="priorstudio",
        description="Restore images with the implicit prior of a blind, bias-free denoiser. "
        "Without a subcommand, the desktop application opens on a bundled sample image.",
        epilog=MODEL_NOTE,
    )
    parser.add_argument("--version", action="version", version=f"priorstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="open the desktop application (the default)")
    p.add_argument("image", nargs="?", type=Path, help="image to open (default: a bundled sample)")
    p.add_argument("--model", default=None)
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("restore", help="solve an inverse problem on one image", epilog=MODEL_NOTE)
    p.add_argument(
        "input", type=Path, help="the image (the truth in simulate mode, the degraded image in restore mode)"
    )
    p.add_argument("-o", "--output", required=True, type=Path, help="where to write the result (PNG)")
    p.add_argument("--task", default="denoise", help="denoise, inpaint, pixels, sr, lowpass, cs or blur")
    p.add_argument(
        "--mode",
        choices=("simulate", "restore"),
        default="restore",
        help="restore (default): the input is already degraded; simulate: degrade it first and report PSNR/SSIM",
    )
    p.add_argument("--mask", type=Path, help="inpainting mask (white marks the pixels to fill)")
    p.add_argument(
        "--block",
        type=float,
        default=0.25,
        help="without --mask: a central block of this fraction of each side",
    )
    p.add_argument("--fraction", type=float, default=0.1, help="kept fraction for pixels, lowpass and cs (default 0.1)")
    p.add_argument(
        "--operator-seed",
        type=int,
        default=0,
        help="pixels, cs: the seed that picks the kept pixels or the projections (default 0)",
    )
    p.add_argument("--factor", type=int, default=4, help="super-resolution factor (default 4)")
    p.add_argument(
        "--kernel",
        default="gaussian:2",
        help="blur kernel: gaussian:SIGMA, box:SIZE, motion:LENGTH,ANGLE or a file",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=None,
        help="simulate: measurement noise σ on the 0–255 scale (default 0; 25 for denoise)",
    )
    p.add_argument("--gray", action="store_true", help="convert the image to gray first")
    p.add_argument("--samples", type=int, default=1, help="draw K samples as one batch; the output is their mean")
    p.add_argument(
        "--std",
        default=None,
        help="with --samples K: write the per-pixel standard deviation here, one gray map as the desktop app "
        "shows it (RMS over colour channels, scaled to its maximum; the output line gives the std shown as white)",
    )
    p.add_argument(
        "--final-projection",
        action="store_true",
        help="finish with a projection onto the data: exact for every task but blur, where it is a regularised "
        "(Wiener) step that brings the result close to the data",
    )
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=None, help=BIT_DEPTH_HELP)
    p.add_argument("--json", default=None, help="write the run record (parameters and per-step values) as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_sampler_options(p, beta=None)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser(
        "flash",
        help="flash/no-flash with Deep Image Prior: no-flash lighting, flash-image noise",
        description="Deep Image Prior with the flash image as the fixed network input and the no-flash image as "
        "the target (the paper's recipe: 600 steps of Adam at lr 0.1, no input jitter).",
    )
    p.add_argument("flash", type=Path, help="the photo taken with flash (sharp, low noise, flat light)")
    p.add_argument("noflash", type=Path, help="the same shot without flash (the light to keep, noisy)")
    p.add_argument("-o", "--output", required=True, type=Path, help="where to write the result (PNG)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default 600, the paper's)")
    p.add_argument("--width", type=int, default=128, help="network width (default 128, the paper's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gray", action="store_true", help="work on gray versions of both images")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=None, help=BIT_DEPTH_HELP)
    p.add_argument("--json", default=None, help="write the run record (parameters and per-step values) as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("sample", help="draw samples from the implicit prior", epilog=MODEL_NOTE)
    p.add_argument("-n", type=int, default=4, help="number of samples, drawn as one batch (default 4)")
    p.add_argument("--size", type=int, default=64, help="sample size in pixels (default 64)")
    p.add_argument("--color", action="store_true", help="use the color model")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--json", default=None, help="write the run record as JSON")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    _add_sampler_options(p, beta=0.5)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("train", help="train a blind, bias-free denoiser on a folder of images")
    p.add_argument("data", type=Path, help="folder of training images (any supported format)")
    p.add_argument("--out", required=True, type=Path, help="weights file to write (a checkpoint goes beside it)")
    p.add_argument("--color", action="store_true", help="train a color (3-channel) model")
    p.add_argument("--arch", choices=("unet", "bfcnn"), default="unet")
    p.add_argument("--widths", default="32,64,128,256", help="UNet widths per level (default 32,64,128,256)")
    p.add_argument(
        "--tail",
        type=int,
        default=0,
        help="UNet: extra 3×3 conv + ReLU layers at full resolution before the output (default 0)",
    )
    p.add_argument("--width", type=int, default=64, help="BF-CNN width (default 64)")
    p.add_argument("--depth", type=int, default=20, help="BF-CNN depth (default 20)")
    p.add_argument("--val", type=Path, default=None, help="validation folder (default: hold out --val-split images)")
    p.add_argument("--val-split", type=int, default=4)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--epoch-steps", type=int, default=500, help="validate every this many steps")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine decay to --lr-min)")
    p.add_argument("--lr-min", type=float, default=1e-5)
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="fine-tune: start from this weights file instead of random weights (same architecture, or a UNet "
        "with no wider level and no more tail layers: it is grown to --widths and --tail with the same output)",
    )
    p.add_argument("--sigma-max", type=float, default=102.0, help="noise drawn from U[0, this]/255 (default 102 ≈ 0.4)")
    p.add_argument(
        "--sigma-weight",
        type=float,
        default=0.0,
        help="weigh each patch's squared error by σ^−this (σ floored at 5/255, weights normalised over the "
        "batch): 0 (default) is plain MSE; 1 gives low noise levels more say",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file and its checkpoint")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="list the bundled denoisers")
    p.set_defaults(func=cmd_models)

    from priorstudio.bench import load_bench_modules

    bench = sub.add_parser("bench", help="benchmarks (each takes --json FILE)")
    bench_sub = bench.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, module in load_bench_modules().items():
        bp = bench_sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(bp)
        bp.add_argument("--json", default=None, help="write the rows as a JSON list to this file")
        bp.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
        bp.set_defaults(func=cmd_bench, bench_module=module)
    return parser


def entry() -> int:
    """The ``priorstudio`` command: the process is ours, so tune the allocator first (see core/allocator.py)."""
    from priorstudio.core.allocator import tune_allocator

    tune_allocator()
    return main()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        argv = ["gui"]
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui"])
    try:
        return int(args.func(args) or 0)
    except PriorStudioError as exc:
        print(f"priorstudio: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\npriorstudio: interrupted", file=sys.stderr)
        return 130
