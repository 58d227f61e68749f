"""An hour in front of a class, compressed: many sampler steps and many start/stop cycles through the real app.

    python benchmarks/soak.py [--steps 10000] [--cycles 200] [--size 64] [--model tiny|NAME|PATH] [--json FILE]

Runs offscreen (no display needed) with the real :class:`MainWindow`, its worker thread, frame mailbox,
repaint timer, plots and run record.

1. **Long run:** denoising runs with β = 0.001 and σ_L = 10⁻⁴ (so σ_t never reaches the target and each run
   goes to its step cap) until ``--steps`` sampler steps have passed through the worker. A run that ends
   early (a diverged random network) is followed by the next, so the count is always reached.
2. **Start/stop:** ``--cycles`` times, start a run and press Stop after a short random delay (sometimes
   before the first step, sometimes after a few), and wait for the run to end. Every stop must keep a
   partial result (the verdict counts them), and no thread may be left behind.

Memory (RSS), open file descriptors and threads are read at the start (after one warm-up run, so lazily
loaded libraries are not counted as growth), after the long run, and at the end. Frames emitted by the
worker are each either shown live by the window, dropped by the one-slot mailbox (replaced before the
repaint timer took them: by design, not a loss) or replaced by the final result still waiting when the run
ended; the final results shown are counted apart, so that emitted = shown + dropped + replaced must hold.
The longest event-loop stall is the worst lateness of a 5 ms heartbeat timer.

``--model tiny`` (the default) uses a random-weight UNet with widths 8/16, which keeps the soak about
the app rather than about the network on a busy CPU; any bundled model name or weights file works too.

``--json FILE`` writes ``{"steps", "mem_mb_start", "mem_mb_end", "threads_end"}`` and more. Targets (the
verdict "OK" and exit status 0): memory growth < 50 MB, no thread left (``threads_end`` equal to the
start), every start/stop cycle kept a partial result, the frame counts add up, no unexpected error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import numpy as np
import torch
from PIL import Image

from priorstudio.core.denoisers import BiasFreeUNet, Denoiser, load_denoiser
from priorstudio.core.memory import current_rss_bytes

HEARTBEAT_MS = 5
TARGET_GROWTH_MB = 50.0


def rss_mb() -> float:
    rss = current_rss_bytes()
    return math.nan if rss is None else rss / 2**20


def open_fds() -> int:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return -1


def os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def snapshot() -> dict[str, float]:
    return {
        "mem_mb": round(rss_mb(), 1),
        "fds": open_fds(),
        "threads": os_threads(),
        "py_threads": threading.active_count(),
    }


def make_photo(folder: Path, size: int) -> Path:
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    img = 0.5 + 0.3 * np.sin(9 * x) * np.cos(7 * y) + 0.15 * (x - y)
    path = folder / "soak.png"
    Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(path)
    return path


class Soak:
    """Drives one MainWindow through the long run and the start/stop cycles, counting as it goes."""

    def __init__(self, window, app) -> None:  # type: ignore[no-untyped-def]
        from PySide6 import QtCore

        self.QtCore = QtCore
        self.window = window
        self.app = app
        self.steps = 0
        self.runs = 0
        self.frames_emitted = 0
        self.frames_dropped = 0
        self.frames_shown = 0  # live frames, while the run went
        self.frames_replaced = 0  # waiting in the mailbox when the run ended: the final result took their place
        self.finals_shown = 0  # final results (one per run that ended with an image)
        self.stop_reasons: dict[str, int] = {}
        self.errors: list[str] = []
        self.max_stall_ms = 0.0
        self._last_beat = time.perf_counter()
        self._finished = False
        self._last_record = None
        window.controller.step.connect(self._on_step)
        window.runFinished.connect(self._on_finished)
        self.heartbeat = QtCore.QTimer()
        self.heartbeat.setInterval(HEARTBEAT_MS)
        self.heartbeat.timeout.connect(self._beat)

    def _beat(self) -> None:
        now = time.perf_counter()
        self.max_stall_ms = max(self.max_stall_ms, 1000 * (now - self._last_beat) - HEARTBEAT_MS)
        self._last_beat = now

    def _on_step(self, _scalars) -> None:  # type: ignore[no-untyped-def]
        self.steps += 1

    def _on_finished(self, record) -> None:  # type: ignore[no-untyped-def]
        self._finished = True
        self._last_record = record
        self._count_frames(record)
        reason = record.stop_reason.value if record is not None and record.stop_reason else "failed"
        self.stop_reasons[reason] = self.stop_reasons.get(reason, 0) + 1

    def _count_frames(self, record) -> None:  # type: ignore[no-untyped-def]
        """Split the window's frame count into live frames and the final result, which is no worker frame."""
        worker = self.window.controller.worker
        mailbox = self.window.mailbox
        final = int(record is not None and self.window.result is not None)
        live = self.window.frames_shown - final
        self.frames_emitted += worker.frames_emitted if worker is not None else 0
        self.frames_dropped += mailbox.dropped
        self.frames_shown += live
        self.frames_replaced += mailbox.delivered - live  # taken by the end of the run, not shown
        self.finals_shown += final

    def frames(self) -> dict[str, int]:
        return {
            "emitted": self.frames_emitted,
            "shown": self.frames_shown,
            "dropped": self.frames_dropped,
            "replaced_by_final": self.frames_replaced,
            "finals_shown": self.finals_shown,
        }

    def reset_counts(self) -> None:
        self.steps = self.runs = 0
        self.frames_emitted = self.frames_dropped = self.frames_shown = 0
        self.frames_replaced = self.finals_shown = 0
        self.stop_reasons.clear()

    def _spin(self, ms: int, *, until_finished: bool = False) -> None:
        """Run the event loop for ``ms`` (with ``until_finished``: at most, ending with the run): a real,
        blocking loop, as in the app.

        Polling ``processEvents`` instead would never run Qt's deferred deletions, so every run's worker and
        thread would pile up: a leak of the benchmark, not of the application.
        """
        if until_finished and self._finished:
            return
        loop = self.QtCore.QEventLoop()
        timer = self.QtCore.QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        if until_finished:
            self.window.runFinished.connect(loop.quit)
        timer.start(ms)
        loop.exec()
        timer.stop()
        if until_finished:
            self.window.runFinished.disconnect(loop.quit)

    def _wait_finished(self, timeout_s: float = 600.0) -> None:
        deadline = time.perf_counter() + timeout_s
        while not self._finished:
            self._spin(1000, until_finished=True)
            if time.perf_counter() > deadline:
                raise TimeoutError("a run did not finish in time")

    def _start(self, max_steps: int) -> bool:
        self.window.algorithm.set_values({"max_steps": int(max_steps)})
        self._finished = False
        if not self.window.start_run():
            self.errors.append(f"could not start: {self.window.errors[-1] if self.window.errors else '?'}")
            return False
        self.runs += 1
        return True

    def long_run(self, total_steps: int, per_run: int) -> None:
        self._last_beat = time.perf_counter()
        self.heartbeat.start()
        target = self.steps + total_steps
        while self.steps < target:
            if not self._start(min(per_run, target - self.steps)):
                break
            self._wait_finished()
        self.heartbeat.stop()

    def start_stop(self, cycles: int, rng: random.Random) -> int:
        """Start and stop ``cycles`` runs; returns how many stops kept a partial result."""
        kept = 0
        for _ in range(cycles):
            if not self._start(100_000):
                break
            self._spin(rng.choice([0, 0, 1, 3, 10, 30]), until_finished=True)  # stop 0–30 ms into the run
            self.window.actions["stop"].trigger()
            self._wait_finished()
            if self.window.controller.is_running():
                self.errors.append("the run still ran after it finished")
            record = self._last_record
            if record is not None and self.window.result is not None:
                kept += 1
        return kept


def frames_add_up(frames: dict[str, int]) -> bool:
    return frames["emitted"] == frames["shown"] + frames["dropped"] + frames["replaced_by_final"]


def describe_frames(frames: dict[str, int]) -> str:
    verdict = "" if frames_add_up(frames) else " (DO NOT ADD UP)"
    return (
        f"frames emitted {frames['emitted']} = shown {frames['shown']} + dropped {frames['dropped']} + replaced "
        f"by the final result {frames['replaced_by_final']}{verdict}; final results shown {frames['finals_shown']}"
    )


def tiny(channels: int) -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(BiasFreeUNet(channels, (8, 16)), fast=True, device="cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000, help="sampler steps in the long phase (default 10000)")
    parser.add_argument("--cycles", type=int, default=200, help="start/stop cycles (default 200)")
    parser.add_argument("--size", type=int, default=64, help="side of the square test photo (default 64)")
    parser.add_argument("--per-run", type=int, default=2500, help="step cap of each run of the long phase")
    parser.add_argument("--model", default="tiny", help="'tiny' (random 8/16 UNet), a bundled name or a file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stop delays")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.cycles < 0 or args.size < 8 or args.per_run < 1:
        parser.error("need --steps ≥ 1, --cycles ≥ 0, --size ≥ 8 and --per-run ≥ 1")

    from PySide6 import QtCore

    from priorstudio.gui.app import freeze_startup_heap, make_application, prepare_process
    from priorstudio.gui.main_window import MainWindow

    prepare_process()  # as the application does
    app = make_application(["soak"])
    folder = Path(tempfile.mkdtemp(prefix="priorstudio-soak-"))
    settings = QtCore.QSettings(str(folder / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    errors: list[tuple[str, str]] = []
    if args.model == "tiny":
        window = MainWindow(denoiser_factory=tiny, settings=settings, error_sink=lambda t, m: errors.append((t, m)))
        model_desc = "random UNet 8/16 (tiny)"
    else:
        load_denoiser(args.model, channels=1)  # fail early and clearly on a bad model
        window = MainWindow(model=args.model, settings=settings, error_sink=lambda t, m: errors.append((t, m)))
        model_desc = args.model
    window.errors = errors  # type: ignore[attr-defined]
    window.confirm_close = lambda reason: "discard"
    window.resize(1200, 800)
    window.show()
    photo = make_photo(folder, args.size)
    if not window.open_path(photo):
        print(f"cannot open the test photo: {errors}", file=sys.stderr)
        return 1
    window.degradation.set_mode("restore")
    window.degradation.set_task("denoise")
    window.algorithm.apply_preset("restore")
    window.algorithm.set_values({"sigma_0": 1.0, "sigma_L": 1e-4, "h_0": 0.01, "beta": 0.001, "seed": 0})
    freeze_startup_heap()  # as the application does once its window is up

    soak = Soak(window, app)
    soak.long_run(20, 20)  # warm-up: libraries, caches, first allocations
    warm = {"steps": soak.steps, "runs": soak.runs}
    soak._spin(1000)  # each snapshot is taken a second after a run ended, as the end one is
    start = snapshot()
    t0 = time.perf_counter()
    soak.reset_counts()
    soak.long_run(args.steps, args.per_run)
    long_seconds = time.perf_counter() - t0
    soak._spin(1000)
    after_long = snapshot()
    long_runs, long_steps = soak.runs, soak.steps
    frames = soak.frames()
    reasons_long = dict(soak.stop_reasons)
    print(
        f"long run: {long_steps} steps in {long_runs} run(s), {long_seconds:.1f} s ({long_steps / long_seconds:.0f} "
        f"steps/s); {describe_frames(frames)}; longest stall {soak.max_stall_ms:.0f} ms"
    )
    print(
        f"  memory {start['mem_mb']:.1f} → {after_long['mem_mb']:.1f} MB, fds {start['fds']} → {after_long['fds']}, "
        f"threads {start['threads']} → {after_long['threads']}"
    )

    soak.reset_counts()
    t1 = time.perf_counter()
    kept = soak.start_stop(args.cycles, random.Random(args.seed))
    cycle_seconds = time.perf_counter() - t1
    cycle_frames = soak.frames()
    soak._spin(1000)  # let deleteLater(), the memory release after a run and the last signals run first
    end = snapshot()
    running = window.controller.is_running()
    print(
        f"start/stop: {args.cycles} cycles in {cycle_seconds:.1f} s, partial result kept {kept}/{args.cycles}, "
        f"stop reasons {dict(soak.stop_reasons)}; {describe_frames(cycle_frames)}"
    )
    print(
        f"  memory {after_long['mem_mb']:.1f} → {end['mem_mb']:.1f} MB, fds {after_long['fds']} → {end['fds']}, "
        f"threads {after_long['threads']} → {end['threads']}, a run still going: {running}"
    )
    growth = end["mem_mb"] - start["mem_mb"]
    ok = growth < TARGET_GROWTH_MB and end["threads"] <= start["threads"] and not running and not soak.errors
    ok = ok and not errors and end["fds"] <= start["fds"] + 2 and kept == args.cycles
    ok = ok and frames_add_up(frames) and frames_add_up(cycle_frames)
    print(
        f"memory growth {growth:+.1f} MB (target < {TARGET_GROWTH_MB:.0f}); threads at end {end['threads']} "
        f"(start {start['threads']}); partial results kept {kept}/{args.cycles}; {'OK' if ok else 'NOT OK'}"
        + (f"; errors: {soak.errors + [m for _, m in errors]}" if soak.errors or errors else "")
    )
    result = {
        "steps": long_steps,
        "mem_mb_start": start["mem_mb"],
        "mem_mb_end": end["mem_mb"],
        "threads_end": end["threads"],
        "mem_mb_after_long_run": after_long["mem_mb"],
        "mem_growth_mb": round(growth, 1),
        "threads_start": start["threads"],
        "threads_after_long_run": after_long["threads"],
        "py_threads_start": start["py_threads"],
        "py_threads_end": end["py_threads"],
        "fds_start": start["fds"],
        "fds_after_long_run": after_long["fds"],
        "fds_end": end["fds"],
        "runs_long": long_runs,
        "stop_reasons_long": reasons_long,
        "seconds_long": round(long_seconds, 2),
        "steps_per_s": round(long_steps / long_seconds, 1),
        "frames_emitted": frames["emitted"],
        "frames_shown": frames["shown"],
        "frames_dropped": frames["dropped"],
        "frames_replaced_by_final": frames["replaced_by_final"],
        "final_results_shown": frames["finals_shown"],
        "frames_cycles": cycle_frames,
        "frames_add_up": frames_add_up(frames) and frames_add_up(cycle_frames),
        "max_stall_ms": round(soak.max_stall_ms, 1),
        "cycles": args.cycles,
        "cycles_seconds": round(cycle_seconds, 2),
        "partial_results_kept": kept,
        "stop_reasons_cycles": dict(soak.stop_reasons),
        "run_still_going": running,
        "errors": soak.errors + [f"{t}: {m}" for t, m in errors],
        "warm_up": warm,
        "model": model_desc,
        "size": args.size,
        "torch_threads": torch.get_num_threads(),
        "ok": ok,
    }
    window.shutdown()
    window.close()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
