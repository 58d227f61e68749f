"""Deep Image Prior measured against the paper, and the fast path against a plain fp32 reference.

- 4× (or 8×) super-resolution through the Lanczos-2 downsampler on Set5/Set14: PSNR on the BT.601 luma
  with a ``factor``-pixel border removed, as the paper computes it (paper, 2000 steps: Set5 29.90 dB,
  Set14 27.00 dB). High-resolution images are centre-cropped to a multiple of 32, as the paper does.
- Denoising σ = 25 (colour) on one image, F16 by default (paper: 29.22 dB raw at 1800 steps, 30.43 dB
  with the 0.99 output average; CBM3D 31.42 dB).
- Speed: K steps of the fast path and of the plain fp32 reference of the same recipe, interleaved one
  step each (so both see the same machine load), after 5 warm-up steps each; ``plain_seconds`` is the
  plain per-step time × the run's steps (extrapolated, the plain run is not carried to the end).
- Time: ``seconds`` is wall time, ``cpu_seconds`` the CPU time of the benchmark's process (all its
  threads): the cost of a run even when other jobs share the cores.
- Early stopping: every run monitors the running-variance rule (``early_stop="monitor"``). The row reports
  the step whose output the rule returns (``es_step``) and that output's PSNR (``es_psnr``), and the step at
  which it fired (``es_fired_at``; None when it did not fire within the run, ``es_step`` then being its
  choice so far).

The full protocol (Set5 + Set14 at 2000 steps, F16 at 3000) takes about 12 hours of an idle 2-core CPU
(days when its cores are shared); ``--limit``, ``--crop``, ``--steps`` and ``--width`` give reduced runs,
and the rows say which settings were used. With ``--json`` every row is written as soon as its image is
done, and ``--resume`` keeps the rows already there that used the same settings and skips their images, so
the protocol can be run in pieces. The image in progress is saved beside the rows every few minutes
(``--checkpoint-minutes``) and on Ctrl-C, and ``--resume`` goes on with it from there to the same numbers,
so an interrupted run loses minutes, not the hours of a whole image.
The default data paths are relative to the working folder, or else to the folder above the source tree.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from priorstudio.core.atomic import atomic_write_text
from priorstudio.core.denoisers.training import list_images
from priorstudio.core.errors import ParameterError
from priorstudio.core.imageio import load_image
from priorstudio.core.metrics import psnr, psnr_y
from priorstudio.core.operators.base import Operator
from priorstudio.core.resample import LanczosDownsample
from priorstudio.core.samplers.dip import DIPParams, DIPRun, dip_sampler, replace_params

NAME = "dip"
HELP = "Deep Image Prior: 4×/8× super-resolution (Set5/Set14, Y PSNR) and σ=25 denoising; fast vs plain fp32 speed"

DEFAULT_SETS = ("../shared/data/test/set5", "../shared/data/test/set14")
DEFAULT_DENOISE = "../shared/data/dip/denoising/F16_GT.png"
WARMUP = 5
#: The repository root (three levels above this file), against which the default data paths also resolve.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def data_path(path: str | Path) -> Path:
    """``path`` as given when it exists from the working folder, else relative to the source root."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    other = SOURCE_ROOT / p
    return other if other.exists() else p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folders", nargs="*", type=Path, help=f"super-resolution test sets (default: {', '.join(DEFAULT_SETS)})"
    )
    parser.add_argument("--factor", type=int, default=4, choices=(4, 8), help="super-resolution factor (default 4)")
    parser.add_argument("--steps", type=int, default=0, help="super-resolution steps (0: the paper's 2000 / 4000)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images of each set (0: all)")
    parser.add_argument("--crop", type=int, default=0, help="centre-crop high-resolution images to N×N (0: whole)")
    parser.add_argument(
        "--denoise-image",
        default=DEFAULT_DENOISE,
        help=f"image (or folder of images) for σ=25 denoising ('' to skip; default {DEFAULT_DENOISE})",
    )
    parser.add_argument("--denoise-steps", type=int, default=0, help="denoising steps (0: the paper's 3000)")
    parser.add_argument("--denoise-crop", type=int, default=0, help="centre-crop the denoising image (0: whole)")
    parser.add_argument("--noise", type=float, default=25.0, help="denoising noise level on the 0–255 scale")
    parser.add_argument("--ema", type=float, default=None, help="denoising output average (default: 0.99)")
    parser.add_argument("--no-sr", action="store_true", help="skip super-resolution")
    parser.add_argument("--every", type=int, default=50, help="PSNR curve resolution in steps (default 50)")
    parser.add_argument("--width", type=int, default=128, help="channels per network level (default 128, the paper's)")
    parser.add_argument("--es-window", type=int, default=50, help="early stopping: outputs in the running variance")
    parser.add_argument("--es-patience", type=int, default=300, help="early stopping: steps without a new minimum")
    parser.add_argument("--timing-steps", type=int, default=6, help="steps timed side by side (0: no plain run)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per fit (default 1: the same numbers under any load; 0: chosen by timing, "
        "faster on an idle machine)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in --json FILE that used the same settings and skip their images, and go on "
        "with the image in progress from its last save",
    )
    parser.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=5.0,
        help="with --json FILE: save the image in progress to FILE.run.pt this often (default 5)",
    )


class RowStore:
    """The rows so far, written to ``path`` (when given) after every image, so a long run can be resumed.

    A row is reused only for the same set, task, image and settings (``settings`` in the row): a resumed run
    with other steps, width, crop or seed measures again.
    """

    def __init__(self, path: str | Path | None, resume: bool, checkpoint_minutes: float = 5.0) -> None:
        self.path = Path(path) if path else None
        self.resume, self.checkpoint_minutes = resume, checkpoint_minutes
        self.rows: list[dict] = []
        self._earlier: dict[str, dict] = {}
        if resume:
            if self.path is None:
                raise ParameterError("--resume needs --json FILE (the rows to continue from)")
            if self.path.exists():
                try:
                    earlier = json.loads(self.path.read_text())
                except (OSError, ValueError) as exc:
                    raise ParameterError(f"--resume: cannot read the rows in {self.path}: {exc}") from None
                if not isinstance(earlier, list):
                    raise ParameterError(f"--resume: {self.path} does not hold a list of rows")
                self._earlier = {self.key(r): r for r in earlier if isinstance(r, dict) and "settings" in r}

    def checkpoint(self, row_id: dict) -> RunCheckpoint:
        """Where the run for ``row_id`` is saved while it goes (nowhere without ``--json``)."""
        path = None if self.path is None else self.path.with_name(self.path.name + ".run.pt")
        return RunCheckpoint(path, self.key(row_id), self.checkpoint_minutes, resume=self.resume)

    @staticmethod
    def key(row: dict) -> str:
        ident = {k: row.get(k) for k in ("set", "task", "image", "size", "settings")}
        return json.dumps(ident, sort_keys=True)

    def earlier(self, row_id: dict) -> dict | None:
        """The row of an earlier run with these identifying fields, if there is one."""
        return self._earlier.get(self.key(row_id))

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.rows, indent=2) + "\n", overwrite=True)


def _settings(args: argparse.Namespace, params: DIPParams) -> dict[str, Any]:
    """What, besides the image, decides a row's numbers (for --resume)."""
    settings: dict[str, Any] = {
        "steps": params.max_steps,
        "width": params.width,
        "seed": args.seed,
        "ema": params.ema,
        "every": args.every,
        "es": [args.es_window, args.es_patience],
        "timing_steps": args.timing_steps,
    }
    if params.threads != 1:  # rows measured before the option existed used one thread
        settings["threads"] = params.threads
    return settings


def _measure(store: RowStore, row_id: dict, label: str, measure) -> dict:
    """The earlier row for ``row_id`` when resuming, else ``measure(checkpoint)``'s (which goes on from a saved
    run of this image when resuming); printed and stored either way."""
    row = store.earlier(row_id)
    if row is not None:
        print(_line(label, row) + " (kept from the earlier run)", flush=True)
    else:
        row = {**row_id, **measure(checkpoint=store.checkpoint(row_id))}
        print(_line(label, row), flush=True)
    store.add(row)
    return row


def centre_crop(x: torch.Tensor, size: int, multiple: int = 32) -> torch.Tensor:
    """The centre size×size crop (size 0: the whole image), then cut down to a multiple of ``multiple``."""
    _, h, w = x.shape
    th, tw = (min(size, h), min(size, w)) if size > 0 else (h, w)
    th, tw = th - th % multiple, tw - tw % multiple
    if th < multiple or tw < multiple:
        raise SystemExit(f"image of {w}×{h} is too small for a crop that is a multiple of {multiple}")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[:, top : top + th, left : left + tw]


def time_side_by_side(make_run, steps: int) -> tuple[float, float, int]:
    """Median seconds per step of the fast path and of the plain reference, interleaved step by step.

    ``make_run(fast)`` builds a fresh run. Returns (fast, plain, threads the fast run chose).
    """
    fast, plain = make_run(True), make_run(False)
    for _ in range(WARMUP):
        next(fast)
        next(plain)
    tf, tp = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        next(fast)
        t1 = time.perf_counter()
        next(plain)
        t2 = time.perf_counter()
        tf.append(t1 - t0)
        tp.append(t2 - t1)
    threads = fast.threads
    fast.close()
    plain.close()
    return statistics.median(tf), statistics.median(tp), threads


def plain_params(params: DIPParams) -> DIPParams:
    """The plain fp32 reference of the same recipe: default threads, metrics and host reads every step."""
    return replace_params(params, fast=False, threads=0, metrics_every=1, precision="fp32", channels_last=False)


class RunCheckpoint:
    """The image in progress, saved beside the rows every few minutes, so that a run of hours survives the
    end of its process: ``--resume`` goes on from the last save, to the same numbers.

    One file (``<json>.run.pt``) holds the run's state (:meth:`DIPRun.state`), the PSNR bookkeeping so far
    and the row's timing; it names its image and settings, and it is deleted when the image is done.
    """

    def __init__(self, path: Path | None, key: str, minutes: float, *, resume: bool = True) -> None:
        self.path, self.key, self.interval, self.resume = path, key, minutes * 60, resume  # minutes: checked by run()
        self._last = time.monotonic()
        #: the step of the last save (0: none yet)
        self.saved_at = 0

    def load(self) -> dict[str, Any] | None:
        """The saved progress on this image, or None (not resuming, no file, another image or settings, or
        unreadable)."""
        if not self.resume or self.path is None or not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, weights_only=True)
        except Exception as exc:  # a damaged file costs the image's progress, not the benchmark
            print(f"ignoring the saved run {self.path}: it cannot be read ({type(exc).__name__})", flush=True)
            return None
        if not isinstance(saved, dict) or saved.get("key") != self.key:
            print(f"ignoring the saved run {self.path}: it is of another image or other settings", flush=True)
            return None
        return saved

    def due(self) -> bool:
        return self.path is not None and time.monotonic() - self._last >= self.interval

    def save(self, run: DIPRun, progress: dict[str, Any], row: dict[str, Any]) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({"key": self.key, "run": run.state(), "progress": progress, "row": row}, tmp)
        tmp.replace(self.path)
        self._last = time.monotonic()
        self.saved_at = int(progress["last_t"])

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class _Clocks:
    """Wall and CPU time of a run, carried over from a saved run. CPU time (all threads of this process)
    is what the run cost when other jobs share the cores, where wall time is not."""

    def __init__(self, progress: dict[str, Any]) -> None:
        self.wall0 = time.perf_counter() - float(progress["seconds"])
        self.cpu0 = time.process_time() - float(progress.get("cpu_seconds", 0.0))

    def note(self, progress: dict[str, Any]) -> None:
        progress["seconds"] = time.perf_counter() - self.wall0
        progress["cpu_seconds"] = time.process_time() - self.cpu0


def drive(
    run: DIPRun,
    metric,
    checkpoint: RunCheckpoint | None = None,
    saved: dict[str, Any] | None = None,
    partial_row: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run to the end; PSNR (``metric(image)``) on every emitted image; the early-stopping rule's pick.

    With ``checkpoint`` the run is saved every few minutes and on Ctrl-C (with ``partial_row``, the row so far);
    ``saved`` (what :meth:`RunCheckpoint.load` returned) continues a saved run instead of starting afresh.
    """
    progress: dict[str, Any] = {"best": -math.inf, "best_t": 0, "final": math.nan, "last_t": 0}
    progress.update(seconds=0.0, cpu_seconds=0.0)
    if saved is not None:
        run.resume_from(saved["run"])
        progress.update(saved["progress"])
        print(f"  continuing the saved run at step {progress['last_t']}", flush=True)
    clocks = _Clocks(progress)
    partial_row = partial_row or {}
    try:
        for rec in run:
            value = metric(rec.image) if rec.image is not None else None
            if value is not None:  # the bookkeeping of a record is taken in whole or not at all
                if value > progress["best"]:
                    progress["best"], progress["best_t"] = value, rec.t
                progress["final"] = value
            progress["last_t"] = rec.t
            if checkpoint is not None and checkpoint.due() and not rec.is_last:
                clocks.note(progress)
                checkpoint.save(run, progress, partial_row)
    except KeyboardInterrupt:
        if checkpoint is not None:
            if run.t_done and run.t_done == progress["last_t"]:  # stopped inside a step: the state is whole
                clocks.note(progress)
                checkpoint.save(run, progress, partial_row)
            if checkpoint.saved_at:
                print(f"\nsaved the run at step {checkpoint.saved_at}: --resume goes on from there", flush=True)
        raise
    clocks.note(progress)
    row: dict[str, Any] = {
        "psnr": round(progress["final"], 3),
        "psnr_best": round(progress["best"], 3),
        "best_step": progress["best_t"],
        "steps": progress["last_t"],
        "seconds": round(progress["seconds"], 1),
        "cpu_seconds": round(progress["cpu_seconds"], 1),
    }
    choice = run.es_choice
    if choice is not None:
        row["es_step"] = choice[0]
        row["es_fired_at"] = run.es_fired_at or None
        row["es_psnr"] = round(metric(choice[1]), 3)
    return row


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _run_one(
    kind: str,
    operator: Operator | None,
    c: torch.Tensor | None,
    params: DIPParams,
    truth: torch.Tensor,
    init: torch.Tensor | None,
    metric,
    timing_steps: int,
    checkpoint: RunCheckpoint | None = None,
) -> dict[str, Any]:
    def make(fast: bool) -> DIPRun:  # long enough for the warm-up and the timed steps, whatever the run's length
        p = params if fast else plain_params(params)
        p = replace_params(p, emit_every=0, max_steps=WARMUP + timing_steps + 1)
        return dip_sampler(operator, c, p, truth=truth, init=init)

    saved = checkpoint.load() if checkpoint is not None else None
    row: dict[str, Any] = {"width": params.width, "plain_seconds": None}
    if saved is not None:
        row.update(saved["row"])  # measured before the save
    elif timing_steps > 0:
        fast_step, plain_step, threads = time_side_by_side(make, timing_steps)
        row.update(
            fast_step_s=_sig(fast_step),  # significant digits: a tiny network's step is well under 1 ms
            plain_step_s=_sig(plain_step),
            speedup=round(plain_step / fast_step, 2),
            threads=threads,
        )
    run = dip_sampler(operator, c, params, truth=truth, init=init)
    row.update(drive(run, metric, checkpoint, saved, row))
    row["threads"] = run.threads  # the count the measured run settled on (timed when --threads 0)
    if checkpoint is not None:
        checkpoint.clear()
    if "plain_step_s" in row:
        row["plain_seconds"] = _sig(row["plain_step_s"] * row["steps"])
        row["plain_extrapolated"] = True
    return row


def _line(name: str, row: dict[str, Any]) -> str:
    text = (
        f"{name:24} final {row['psnr']:6.2f} dB, best {row['psnr_best']:6.2f} dB @ {row['best_step']:5d}, "
        f"{row['steps']} steps in {row['seconds']:.0f} s"
    )
    if "cpu_seconds" in row:
        text += f" ({row['cpu_seconds']:.0f} s CPU)"
    if "es_psnr" in row:
        text += f"; early stop @ {row['es_step']} → {row['es_psnr']:.2f} dB"
    if "speedup" in row:
        text += (
            f"; per step fast {row['fast_step_s']:.3f} s ({row['threads']} thr) vs plain {row['plain_step_s']:.3f} s "
            f"= {row['speedup']:.2f}×"
        )
    return text


def _denoise(args: argparse.Namespace, every: int, store: RowStore) -> list[dict]:
    """σ-noise denoising of one image, or of every image of a folder (``--limit``), with a summary line."""
    source = data_path(args.denoise_image)
    files = list_images(source)[: args.limit or None] if source.is_dir() else [source]
    params = DIPParams.preset("denoise", **_common(args, every))
    if args.denoise_steps:
        params = replace_params(params, max_steps=args.denoise_steps)
    if args.ema is not None:
        params = replace_params(params, ema=args.ema)
    rows: list[dict] = []
    for path in files:
        x = centre_crop(load_image(path, mode="color"), args.denoise_crop)
        gen = torch.Generator().manual_seed(args.seed)
        noisy = x + args.noise / 255 * torch.randn(x.shape, generator=gen)
        print(
            f"denoising σ={args.noise:g} on {path.name} ({x.shape[2]}×{x.shape[1]}), {params.max_steps} steps, "
            f"width {params.width}, output average {params.ema}; noisy input {psnr(noisy.clamp(0, 1), x):.2f} dB"
        )
        metric = lambda img, x=x: psnr(img[0].clamp(0, 1), x)  # noqa: E731
        row_id = {
            "set": source.name if source.is_dir() else path.stem,
            "task": f"denoise{args.noise:g}",
            "image": path.name,
            "size": f"{x.shape[2]}x{x.shape[1]}",
            "settings": _settings(args, params),
        }
        measure = partial(_run_one, "denoise", None, None, params, x, noisy, metric, args.timing_steps)
        rows.append(_measure(store, row_id, path.stem, measure))
    if len(rows) > 1:
        print(summary_line(rows))
    return rows


def summary_line(rows: list[dict]) -> str:
    """Means over rows: final and best PSNR, and what the early-stopping rule kept (when it ran)."""
    n = len(rows)
    text = (
        f"mean over {n}: final {statistics.fmean(r['psnr'] for r in rows):.2f} dB, "
        f"best {statistics.fmean(r['psnr_best'] for r in rows):.2f} dB"
    )
    es = [r for r in rows if "es_psnr" in r]
    if es:
        gap = statistics.fmean(r["psnr_best"] - r["es_psnr"] for r in es)
        steps = statistics.fmean(abs(r["es_step"] - r["best_step"]) for r in es)
        text += f"; early stopping kept {statistics.fmean(r['es_psnr'] for r in es):.2f} dB "
        # the pick is scored at its own step, the best only every --every steps, so the pick can be higher
        where = f"{gap:.2f} dB below the best" if gap >= 0 else f"{-gap:.2f} dB above the best of the curve"
        text += f"({where}, {steps:.0f} steps from it on average)"
    return text


def _common(args: argparse.Namespace, every: int) -> dict[str, Any]:
    """The settings every run of the benchmark shares (besides its task's preset)."""
    return {
        "seed": args.seed,
        "emit_every": every,
        "metrics_every": every,
        "early_stop": "monitor",
        "width": args.width,
        "es_window": args.es_window,
        "es_patience": args.es_patience,
        "threads": args.threads,
    }


def run(args: argparse.Namespace) -> list[dict]:
    if not args.checkpoint_minutes >= 0 or math.isinf(args.checkpoint_minutes):  # NaN fails the first test
        raise ParameterError(
            f"--checkpoint-minutes must be a number ≥ 0 (0: after every step), got {args.checkpoint_minutes}"
        )
    if not 0 <= args.threads <= 256:
        raise ParameterError(f"--threads must be between 0 (chosen by timing) and 256, got {args.threads}")
    store = RowStore(getattr(args, "json", None), getattr(args, "resume", False), args.checkpoint_minutes)
    torch.manual_seed(args.seed)
    every = max(1, args.every)
    if not args.no_sr:
        folders = list(args.folders) or [data_path(p) for p in DEFAULT_SETS if data_path(p).is_dir()]
        if not folders:
            raise SystemExit(f"no super-resolution test sets found (looked for {', '.join(DEFAULT_SETS)})")
        preset = "sr8" if args.factor == 8 else "sr4"
        params = DIPParams.preset(preset, **_common(args, every))
        if args.steps:
            params = replace_params(params, max_steps=args.steps)
        print(
            f"super-resolution ×{args.factor} (Lanczos-2), {params.max_steps} steps, Y PSNR with a "
            f"{args.factor}-px border, crop {args.crop or 'none'} (multiple of 32), limit {args.limit or 'none'}"
        )
        for folder in folders:
            files = list_images(folder)[: args.limit or None]
            values = []
            for path in files:
                hr = centre_crop(load_image(path, mode="color"), args.crop)
                op = LanczosDownsample(tuple(hr.shape), args.factor)
                lr = op.forward(hr.unsqueeze(0))
                metric = lambda img, hr=hr: psnr_y(img[0].clamp(0, 1), hr, border=args.factor)  # noqa: E731
                row_id = {
                    "set": folder.name,
                    "task": f"sr{args.factor}",
                    "image": path.name,
                    "size": f"{hr.shape[2]}x{hr.shape[1]}",
                    "settings": _settings(args, params),
                }
                measure = partial(_run_one, "sr", op, lr, params, hr, None, metric, args.timing_steps)
                values.append(_measure(store, row_id, f"{folder.name}/{path.stem}", measure))
            if values:
                print(f"{folder.name}: {summary_line(values)}")
    if args.denoise_image:
        _denoise(args, every, store)
    return store.rows
