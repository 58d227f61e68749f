"""The run worker on its own: throttled fresh frames, every step's scalars, pause/step/stop, failures."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from priorstudio.core.errors import ParameterError
from priorstudio.core.samplers.base import StepRecord, StopReason
from priorstudio.gui.worker import FrameMailbox, MetricsTap, RunController, display_copy

pytestmark = pytest.mark.gui


class FakeRun:
    """A step stream like the sampler's: ``stop()`` makes the next record the last (CANCELLED)."""

    def __init__(self, n: int, delay: float = 0.0, shared_buffer: bool = False) -> None:
        self.n, self.delay = n, delay
        self.buffer = torch.zeros(1, 1, 8, 8)
        self.shared = shared_buffer
        self._stop = False
        self.t = 0

    def stop(self) -> None:
        self._stop = True

    def __iter__(self):
        return self

    def __next__(self) -> StepRecord:
        if self.t >= self.n:
            raise StopIteration
        self.t += 1
        if self.delay:
            time.sleep(self.delay)
        self.buffer.fill_(self.t / self.n)
        image = self.buffer if self.shared else self.buffer.clone()
        record = StepRecord(t=self.t, sigma=1.0 / self.t, image=image)
        if self._stop:
            record.stop_reason = StopReason.CANCELLED
        elif self.t == self.n:
            record.stop_reason = StopReason.CONVERGED
        return record


def generator_stream(n: int):
    """A bare generator: no stop(); the worker ends it and keeps the newest estimate."""
    for t in range(1, n + 1):
        time.sleep(0.002)
        yield StepRecord(t=t, sigma=1.0 / t, image=torch.full((1, 1, 4, 4), float(t)))


def test_every_step_reported_frames_throttled_and_fresh(qtbot):
    controller = RunController()
    steps, frames = [], []
    controller.step.connect(steps.append)
    controller.frame.connect(frames.append)
    run = FakeRun(400, shared_buffer=True)  # the producer reuses its buffer: frames must be copies
    with qtbot.waitSignal(controller.finished, timeout=10_000) as blocker:
        controller.start(lambda: run, max_fps=30)
    assert blocker.args[0].t == 400 and blocker.args[0].stop_reason == StopReason.CONVERGED
    assert [s.t for s in steps] == list(range(1, 401))
    assert 1 <= len(frames) < 400 and frames[-1].final and frames[-1].t == 400
    values = [float(f.image[0, 0]) for f in frames]
    assert values == sorted(values) and values[0] < 1.0  # each frame kept its own values
    assert frames[0].image.dtype == np.float32 and frames[0].image.flags["C_CONTIGUOUS"]
    assert not controller.is_running()


def test_steps_reach_the_gui_in_batches_with_the_frames(qtbot, monkeypatch):
    """One cross-thread update per frame (not one per step), yet every step arrives, in order, before the
    frame that follows it; the frame's 8-bit pixels are the float image at levels (0, 1)."""
    updates, order = [], []
    original = RunController._on_update

    def counting(self, update):
        updates.append(len(update.steps))
        original(self, update)

    monkeypatch.setattr(RunController, "_on_update", counting)
    controller = RunController()
    controller.step.connect(lambda s: order.append(("step", s.t)))
    controller.frame.connect(lambda f: order.append(("frame", f.t, f)))
    with qtbot.waitSignal(controller.finished, timeout=10_000):
        controller.start(lambda: FakeRun(300, delay=0.001), max_fps=20)  # ≥ 0.3 s at 1000 steps/s
    steps = [e[1] for e in order if e[0] == "step"]
    frames = [e[2] for e in order if e[0] == "frame"]
    assert steps == list(range(1, 301))
    assert sum(updates) == 300 and len(updates) <= len(frames) + 2 < 60  # not 300 signals
    for i, event in enumerate(order):  # a frame comes after its own step
        if event[0] == "frame":
            assert event[1] in steps[: sum(1 for e in order[:i] if e[0] == "step")]
    for frame in frames:
        assert frame.display is not None and frame.display.dtype == np.uint8
        expected = np.rint(np.clip(frame.image, 0, 1) * 255).astype(np.uint8)
        assert np.array_equal(frame.display, expected)


def test_frame_rate_cap(qtbot):
    controller = RunController()
    frames = []
    controller.frame.connect(frames.append)
    start = time.perf_counter()
    with qtbot.waitSignal(controller.finished, timeout=20_000):
        controller.start(lambda: FakeRun(60, delay=0.005), max_fps=10)  # ≥ 0.3 s of steps
    elapsed = time.perf_counter() - start
    assert len(frames) <= elapsed * 10 + 2  # at most 10 a second, plus the first and the last


def test_pause_step_and_stop(qtbot):
    controller = RunController()
    steps = []
    controller.step.connect(lambda s: steps.append(s.t))
    with qtbot.waitSignal(controller.paused, timeout=5_000):
        controller.start(lambda: FakeRun(10_000, delay=0.001), start_paused=True)
    assert steps == [] and controller.is_paused()
    with qtbot.waitSignal(controller.paused, timeout=5_000):
        controller.step_once()
    qtbot.waitUntil(lambda: steps == [1], timeout=5_000)
    with qtbot.waitSignal(controller.resumed, timeout=5_000):
        controller.pause(False)
    qtbot.waitUntil(lambda: len(steps) > 5, timeout=5_000)
    with qtbot.waitSignal(controller.finished, timeout=5_000) as blocker:
        controller.stop()
    assert blocker.args[0].stop_reason == StopReason.CANCELLED and blocker.args[0].image is not None


def test_a_stream_without_stop_keeps_the_newest_estimate(qtbot):
    controller = RunController()
    controller.start(lambda: generator_stream(10_000))
    qtbot.wait(50)
    with qtbot.waitSignal(controller.finished, timeout=5_000) as blocker:
        controller.stop()
    record = blocker.args[0]
    assert record.stop_reason == StopReason.CANCELLED and float(record.image.flatten()[0]) == record.t


def test_errors_are_reported_not_raised(qtbot):
    controller = RunController()

    def bad():
        yield StepRecord(t=1, sigma=1.0)
        raise ParameterError("σ went the wrong way")

    with qtbot.waitSignal(controller.failed, timeout=5_000) as blocker:
        controller.start(bad)
    assert "wrong way" in blocker.args[0]
    # reported on the GUI thread once the run's thread is over: a new run may start at once
    assert not controller.is_running()
    with qtbot.waitSignal(controller.failed, timeout=5_000) as blocker:
        controller.start(lambda: iter(()))
    assert "before its first step" in blocker.args[0]


def test_shutdown_joins_a_running_thread(qtbot):
    controller = RunController()
    controller.start(lambda: FakeRun(100_000, delay=0.001))
    qtbot.wait(30)
    assert controller.shutdown(5_000)
    assert not controller.is_running()


def test_shutdown_mid_run_says_the_run_ended_once_and_drops_its_queued_steps(qtbot):
    """A widget kept for later (a Teach tool) follows runningChanged: it must not stay 'running'."""
    controller = RunController()
    states, steps = [], []
    controller.runningChanged.connect(states.append)
    controller.step.connect(steps.append)
    controller.start(lambda: FakeRun(100_000, delay=0.001))
    qtbot.waitUntil(lambda: len(steps) > 0, timeout=5_000)
    assert controller.shutdown(5_000)
    seen = len(steps)
    qtbot.wait(100)  # whatever the job had queued arrives now, and is dropped
    assert states == [True, False] and len(steps) == seen
    assert controller.shutdown(5_000) and states == [True, False]  # nothing more to end
    controller.start(lambda: FakeRun(3))  # and it can run again
    qtbot.waitUntil(lambda: states == [True, False, True, False], timeout=5_000)


def test_a_background_call_waited_for_says_it_is_no_longer_busy(qtbot):
    import threading

    from priorstudio.gui.teach.common import BackgroundCall

    call, states, gate = BackgroundCall(), [], threading.Event()
    call.busyChanged.connect(states.append)
    assert call.start(lambda: gate.wait(5))
    gate.set()
    call.wait()  # closing the window: the result is not wanted, the button must come back
    assert states == [True, False] and not call.is_busy()
    assert call.start(lambda: 1)
    qtbot.waitUntil(lambda: states == [True, False, True, False], timeout=5_000)


def test_mailbox_keeps_only_the_newest():
    box = FrameMailbox()
    assert box.take() is None
    for t in range(5):
        box.put(t)  # type: ignore[arg-type]
    assert box.take() == 4 and box.take() is None and box.dropped == 4 and box.delivered == 1


def test_metrics_tap_psnr_every_step_ssim_on_a_budget():
    truth = torch.rand(1, 16, 16)
    tap = MetricsTap(truth, ssim_share=0.05)
    records = [StepRecord(t=t, image=(truth + 0.1).unsqueeze(0)) for t in range(1, 30)]
    records[-1].stop_reason = StopReason.CONVERGED
    for r in records:
        tap(r)
    assert all(r.psnr is not None for r in records)
    with_ssim = [r for r in records if r.ssim is not None]
    assert records[0].ssim is not None and records[-1].ssim is not None
    assert len(with_ssim) < len(records)
    assert display_copy(torch.full((1, 3, 2, 2), 2.0)).max() == 1.0


@pytest.mark.parametrize("torch_from", [0, 10**9], ids=["torch", "numpy"])
def test_metrics_tap_psnr_matches_the_library_on_clipped_estimates(monkeypatch, torch_from):
    """Both ways of computing the per-step PSNR (torch for large images, NumPy for small) agree with it."""
    from priorstudio.core.metrics import psnr
    from priorstudio.gui import worker

    monkeypatch.setattr(worker, "TORCH_PSNR_MIN_VALUES", torch_from)
    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 20, 24, generator=gen)
    tap = MetricsTap(truth, ssim_share=0.0)
    for noise in (0.3, 0.05, 0.001):
        estimate = (truth + noise * torch.randn(2, 3, 20, 24, generator=gen)).float()  # values outside [0, 1] too
        record = StepRecord(t=1, image=estimate)
        tap(record)
        assert record.psnr == pytest.approx(psnr(estimate[:1].clamp(0, 1), truth), abs=1e-6)
    exact = StepRecord(t=2, image=truth.unsqueeze(0))
    tap(exact)
    assert exact.psnr == math.inf


def test_a_controllers_slots_run_on_the_gui_thread(qtbot):
    """Every end of a job is handled on the GUI thread (a slot run in the worker thread would wait on itself
    and report the job over while its thread still runs)."""
    import threading

    controller = RunController()
    seen: list[str] = []
    controller.failed.connect(lambda _m: seen.append(threading.current_thread().name))
    controller.runningChanged.connect(lambda _r: seen.append(threading.current_thread().name))

    def bad():
        yield StepRecord(t=1, sigma=1.0)
        raise ParameterError("no")

    with qtbot.waitSignal(controller.failed, timeout=5_000):
        controller.start(bad)
    qtbot.waitUntil(lambda: len(seen) == 3, timeout=5_000)  # running, failed, not running
    assert set(seen) == {threading.main_thread().name}
