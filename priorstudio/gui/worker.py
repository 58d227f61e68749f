"""Driving a step stream from a worker thread without flooding the GUI.

The sampler is a plain generator of :class:`StepRecord` (pure torch, in ``core``). A :class:`SamplerWorker`
lives in a ``QThread``, iterates it and checks the stop/pause flags between steps. It emits

- ``update`` with the scalars (no image) of *every* step since the last one and, when one is due, a fresh
  display copy of the estimate: on average at most ``max_fps`` times a second (:class:`FramePacer`; a
  signal does not copy a numpy array, so the worker never hands out a buffer it will reuse). One signal
  per frame, not one per step: each cross-thread signal wakes the GUI thread, and on a two-core machine
  every wake-up is taken from the sampler;
- ``finished`` once, with the last record (its image kept: the result), or ``failed`` with a message.

:class:`RunController` turns each ``update`` back into one ``step`` signal per step, in order, and a
``frame``, so its listeners still see every step.

The GUI keeps only the newest frame in a one-slot :class:`FrameMailbox` and repaints from a timer, so a fast
producer can never queue up images. :class:`RunController` owns the thread: start, pause, step, stop, and a
clean shutdown that joins the thread (closing the window mid-run).

Observers that must see every record with its image (a run history for scrubbing, a recorder) can be
passed as ``sinks``: they are called in the worker thread, so they must be thread-safe and quick.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from priorstudio.core.errors import PriorStudioError
from priorstudio.core.samplers.base import StepRecord, StepStream, StopReason
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.canvas import to_bytes
from priorstudio.gui.compute_threads import enter_worker

RecordSink = Callable[[StepRecord], None]

#: Steps that bring no frame still reach the GUI within this delay (in one update with those before them).
STEPS_MAX_DELAY_S = 1 / 15
#: From this many values up the per-step PSNR runs in torch on the sampler's threads (see MetricsTap).
TORCH_PSNR_MIN_VALUES = 128 * 1024


@dataclass
class Frame:
    """One image for display: float32 (H, W) or (H, W, 3) in row-major order, owned by the receiver.

    ``display`` is the same image already as 8-bit pixels at the default levels (0, 1), made in the worker
    thread so the GUI thread only wraps it (None: the receiver converts ``image`` itself).
    """

    t: int
    image: np.ndarray
    sigma: float = math.nan
    final: bool = False
    display: np.ndarray | None = None


@dataclass
class StepScalars:
    """What every step reports to the GUI (the record without its image)."""

    t: int
    sigma: float
    residual_norm: float
    data_error: float
    psnr: float | None
    ssim: float | None
    row: dict[str, Any] = field(default_factory=dict)  # the full CSV row, extras included


@dataclass
class Update:
    """What the worker hands the GUI at once: the scalars of every step since the last update, and a frame
    when one was due (the newest step's)."""

    steps: list[StepScalars]
    frame: Frame | None = None


def display_frame(t: int, image: Any, sigma: float = math.nan, final: bool = False) -> Frame:
    """A :class:`Frame` of ``image`` with its 8-bit display pixels, for the GUI thread to wrap as they are:
    (H, W) gray, or colour as (H, W, 4) bytes B, G, R, 255 — the screen's own 32-bit layout, so turning
    them into a pixmap is a plain copy (packed RGB would be converted pixel by pixel in the GUI thread).

    The pixels are exactly what the canvas makes at its default levels (NaN black, half to even). A torch
    estimate is converted by torch on the sampler's own threads, in fewer passes than NumPy's single thread:
    ~3× faster for a 256² colour frame, time the sampler would otherwise lose at every frame."""
    little = sys.byteorder == "little"  # (big-endian 32-bit pixels are A, R, G, B: those get packed RGB)
    if not (isinstance(image, torch.Tensor) and little):
        arr = display_copy(image)
        if arr.ndim == 2 or not little:
            return Frame(t, arr, sigma, final, to_bytes(arr))
        pixels = np.empty((*arr.shape[:2], 4), dtype=np.uint8)
        to_bytes(arr, out=pixels[..., 2::-1])  # B, G, R, straight into the 32-bit layout
        pixels[..., 3] = 255
        return Frame(t, arr, sigma, final, pixels)
    x = image.detach().to("cpu", torch.float32)
    x = x[0] if x.dim() == 4 else x
    clipped = x.clamp(0.0, 1.0)  # a new tensor: never a view of the sampler's buffer; NaN stays NaN
    levels = torch.nan_to_num_(clipped * 255.0, nan=0.0).round_().to(torch.uint8)
    if clipped.shape[0] == 1:
        return Frame(t, clipped[0].numpy(), sigma, final, levels[0].numpy())
    pixels = torch.empty((*clipped.shape[1:], 4), dtype=torch.uint8)
    pixels[..., :3] = levels.flip(0).permute(1, 2, 0)  # B, G, R
    pixels[..., 3] = 255
    return Frame(t, clipped.permute(1, 2, 0).contiguous().numpy(), sigma, final, pixels.numpy())


def display_copy(image: Any) -> np.ndarray:
    """The first sample of a (B, C, H, W) / (C, H, W) estimate as a fresh float32 (H, W[, 3]) array in [0, 1]."""
    arr = image.detach().to("cpu").float().numpy() if hasattr(image, "detach") else np.asarray(image, np.float32)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    out = np.empty(arr.shape, dtype=np.float32)  # always a new buffer, never a view of the sampler's
    np.clip(arr, 0.0, 1.0, out=out)
    return out


class MetricsTap:
    """PSNR every step and SSIM within a time budget, against the truth, for records that carry an image.

    The sampler could compute both itself, but SSIM costs as much as a denoiser call on a small model;
    computing it on every step would halve the speed the user came to watch. So SSIM is computed only
    while it takes at most ``ssim_share`` of the run's time (and always on the last step); the steps in
    between carry no SSIM (a gap in the plot, an empty CSV cell). Values the method reports are kept.
    """

    def __init__(self, truth: Any, *, ssim_share: float = 0.005) -> None:
        self.truth = truth.detach().to("cpu", dtype=torch.float32)
        if self.truth.dim() == 3:
            self.truth = self.truth.unsqueeze(0)
        self.ssim_share = float(ssim_share)
        self._ssim_cost = 0.0
        self._last_ssim = -math.inf
        # PSNR of every step into a buffer kept for the run. Small images in NumPy (one thread): torch ops
        # there would each fork and join the worker's OpenMP team, which cost the sampler ~4% of its speed;
        # large ones (a 256² colour image) in torch on the sampler's threads, where that pays: measured in
        # the real window, 0.49 → 0.37 ms per step and ~4% more steps per second
        self._truth_flat = self.truth[:1].numpy().ravel()  # float32, as the estimates come
        self._diff = np.empty_like(self._truth_flat)
        self._threaded = self._truth_flat.size >= TORCH_PSNR_MIN_VALUES
        self._truth_t = torch.from_numpy(self._truth_flat)
        self._diff_t = torch.from_numpy(self._diff)

    def __call__(self, record: StepRecord) -> None:
        from priorstudio.core.metrics import psnr, ssim

        if record.image is None:
            return
        x = record.image[:1].detach().to("cpu", torch.float32)
        if record.psnr is None:
            fits = x.numel() == self._truth_flat.size
            record.psnr = self._psnr(x) if fits else float(psnr(x.clamp(0, 1), self.truth))
        now = time.perf_counter()
        due = self.ssim_share > 0 and now - self._last_ssim >= self._ssim_cost / self.ssim_share
        if record.ssim is None and (record.is_last or due):
            record.ssim = float(ssim(x.clamp(0.0, 1.0), self.truth))
            self._last_ssim = time.perf_counter()
            self._ssim_cost = self._last_ssim - now

    def _psnr(self, x: torch.Tensor) -> float:
        """PSNR (peak 1) of ``x`` clipped to [0, 1] against the truth, as core.metrics.psnr to ~1e-7 dB: the
        squared differences in float32 (half the memory traffic of float64), summed in float64."""
        if self._threaded:
            d = self._diff_t
            torch.clamp(x.reshape(-1), 0.0, 1.0, out=d)
            d.sub_(self._truth_t)
            total = float(d.square_().sum(dtype=torch.float64))
        else:
            d = self._diff
            np.clip(x.contiguous().numpy().reshape(-1), 0.0, 1.0, out=d)
            d -= self._truth_flat
            np.square(d, out=d)
            total = float(d.sum(dtype=np.float64))  # not np.dot: BLAS would start its own spinning threads
        mse = total / self._diff.size
        return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


class FramePacer:
    """Which steps' images to send: on average at most ``rate`` a second, in bursts of at most ``burst``.

    A fixed minimum interval aliases with the step time: a sampler at 28 steps/s against a 33 ms interval
    sends only every other step for long stretches (about 18 frames/s). A token bucket keeps the long-run
    rate at ``rate`` yet lets a frame through as soon as one is due. ``rate`` ≤ 0 sends every frame.
    """

    def __init__(self, rate: float, burst: float = 2.0) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self._tokens = 1.0
        self._at: float | None = None

    def ready(self, now: float | None = None) -> bool:
        """True when a frame may go now (and counts it as sent)."""
        if self.rate <= 0:
            return True
        now = time.perf_counter() if now is None else now
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class FrameMailbox:
    """A one-slot mailbox: ``put`` replaces what is there, ``take`` empties it. Thread-safe.

    ``dropped`` counts frames that were replaced before anyone took them (for the benchmark).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self.dropped = 0
        self.delivered = 0

    def put(self, frame: Frame) -> None:
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame

    def take(self) -> Frame | None:
        with self._lock:
            frame, self._frame = self._frame, None
            if frame is not None:
                self.delivered += 1
            return frame

    def clear(self) -> None:
        with self._lock:
            self._frame = None


class SamplerWorker(QObject):
    """Iterates a step stream in its thread; pause/resume/step/stop are thread-safe flags.

    Built in the GUI thread, moved to a QThread, started by connecting ``QThread.started`` to :meth:`run`.
    """

    update = Signal(object)  # Update: every step's scalars, and a frame at most max_fps per second
    paused = Signal(int)  # the step it paused after
    resumed = Signal()
    finished = Signal(object)  # the last StepRecord (image included), also after a stop
    failed = Signal(str)  # a message for the user; the run is over

    def __init__(
        self,
        make_stream: Callable[[], StepStream],
        *,
        max_fps: float = 30.0,
        sinks: Iterable[RecordSink] = (),
        start_paused: bool = False,
        metrics: MetricsTap | None = None,
    ) -> None:
        super().__init__()
        self._make_stream = make_stream
        self._metrics = metrics
        self._pacer = FramePacer(max_fps)
        self._flush_every = STEPS_MAX_DELAY_S if max_fps > 0 else 0.0
        self._pending: list[StepScalars] = []
        self._flushed_at = -math.inf
        self._sinks = list(sinks)
        self._cond = threading.Condition()
        self._stop = False
        self._paused = bool(start_paused)
        self._single_steps = 0
        self._stream: StepStream | None = None
        self.steps_done = 0
        self.frames_emitted = 0
        #: when the run failed after some steps: its last record, with the newest estimate (else None)
        self.partial: StepRecord | None = None

    # -- control, from any thread ----------------------------------------------------------------------
    def request_stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        stream = self._stream
        stop = getattr(stream, "stop", None)
        if callable(stop):  # the sampler ends with one more record that carries the estimate
            stop()

    def set_paused(self, paused: bool) -> None:
        with self._cond:
            self._paused = bool(paused)
            self._single_steps = 0
            self._cond.notify_all()

    def step_once(self) -> None:
        """While paused: let exactly one more step run."""
        with self._cond:
            if self._paused:
                self._single_steps += 1
                self._cond.notify_all()

    @property
    def is_paused(self) -> bool:
        return self._paused

    @property
    def stop_requested(self) -> bool:
        return self._stop

    # -- the loop, in the worker thread ----------------------------------------------------------------
    @Slot()
    def run(self) -> None:
        last: StepRecord | None = None
        last_image: Any = None
        try:
            self._stream = self._make_stream()
            while True:
                if not self._wait_turn():
                    break
                try:
                    record = next(self._stream)
                except StopIteration:
                    break
                self.steps_done += 1
                last = record
                if self._metrics is not None:
                    self._metrics(record)
                for sink in self._sinks:
                    sink(record)
                if record.image is not None:
                    last_image = record.image
                self._pending.append(_scalars(record))
                frame = None
                if record.image is not None and (record.is_last or self._pacer.ready()):
                    self.frames_emitted += 1
                    frame = display_frame(record.t, record.image, record.sigma, record.is_last)
                if frame is not None or record.is_last or time.perf_counter() - self._flushed_at >= self._flush_every:
                    self._flush(frame)
                if record.is_last:
                    break
        except PriorStudioError as error:
            self._keep_partial(last, last_image)
            self._flush()
            self.failed.emit(str(error))
            return
        except Exception as error:  # a bug or an out-of-memory: report it, keep the application alive
            self._keep_partial(last, last_image)
            self._flush()
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            self.failed.emit(f"the run failed: {detail}")
            return
        finally:
            # Drop the run itself (stream, the factory holding it, observers): the worker's Python wrapper can
            # outlive the run (Qt keeps it until the event loop deletes it), and a run holds images, a network
            # and the observers' histories; a session of many runs must not keep them all.
            self._stream = None
            self._make_stream = None
            self._sinks = []
            self._metrics = None
        if last is None:
            self.failed.emit("the run stopped before its first step")
            return
        if not last.is_last:  # a stream without stop(): close it ourselves and keep the newest estimate
            last.stop_reason = StopReason.CANCELLED
            if last.image is None:
                last.image = last_image
            if last.image is not None:
                self._flush(display_frame(last.t, last.image, last.sigma, True))
        self._flush()
        self.finished.emit(last)

    def _keep_partial(self, last: StepRecord | None, last_image: Any) -> None:
        """A run that fails part-way still has its newest estimate: keep it (before ``failed``) to be saved."""
        if last is not None and last_image is not None:
            last.image = last_image
            self.partial = last

    def _flush(self, frame: Frame | None = None) -> None:
        """Hand the GUI the steps gathered since the last update (and ``frame``), as one signal."""
        if self._pending or frame is not None:
            steps, self._pending = self._pending, []
            self.update.emit(Update(steps, frame))
        self._flushed_at = time.perf_counter()

    def _wait_turn(self) -> bool:
        """Block while paused; False when the run should end without asking for another step."""
        with self._cond:
            announced = False
            while self._paused and not self._stop and self._single_steps == 0:
                if not announced:
                    self._flush()  # the GUI shows every step up to the pause
                    self.paused.emit(self.steps_done)
                    announced = True
                self._cond.wait(0.5)
            if self._single_steps > 0:
                self._single_steps -= 1
            elif announced:
                self.resumed.emit()
            return not (self._stop and not callable(getattr(self._stream, "stop", None)))


def _scalars(record: StepRecord) -> StepScalars:
    return StepScalars(
        t=record.t,
        sigma=record.sigma,
        residual_norm=record.residual_norm,
        data_error=record.data_error,
        psnr=record.psnr,
        ssim=record.ssim,
        row=record.scalars(),
    )


def worker_thread(worker: QObject, name: str) -> QThread:
    """A new (not yet started) QThread named ``name`` that runs ``worker.run`` once started, with ``worker``
    moved into it. Before that, in the new thread itself, it takes the workers' tensor thread count
    (see compute_threads.py): every worker thread of the application is made here."""
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(enter_worker, Qt.ConnectionType.DirectConnection)  # connected first: runs first
    thread.started.connect(worker.run)
    return thread


class ThreadedController(QObject):
    """Owns one worker QObject and the QThread it runs in, one job at a time; forwards its signals.

    The worker must have a ``run`` slot, ``finished(object)`` and ``failed(str)`` signals and a thread-safe
    ``request_stop()``. ``shutdown()`` stops the job and joins the thread: call it before the owner closes.
    """

    finished = Signal(object)
    failed = Signal(str)

    #: the message of the RuntimeError raised by a start while a job runs
    busy_message = "a job is already running"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: Any = None
        self._detached = False
        self._job_open = False  # between a start and its end bookkeeping (``_ended``)
        self._forwards: dict[str, _Forward] = {}

    @property
    def worker(self) -> Any:
        return self._worker

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def _ensure_idle(self) -> None:
        if self.is_running():
            raise RuntimeError(self.busy_message)
        self._cleanup()
        self._detached = False

    def _launch(self, worker: QObject, thread_name: str, forward: Iterable[str] = ()) -> None:
        """Move ``worker`` to a new thread, connect it (``forward`` names signals re-emitted here), start."""
        thread = worker_thread(worker, thread_name)
        for name in forward:
            if name not in self._forwards:
                self._forwards[name] = _Forward(self, name)
            getattr(worker, name).connect(self._forwards[name].relay)
        # the thread quits as soon as the worker is done, called from the worker thread itself (QThread.quit is
        # thread-safe): a queued quit would never arrive while the GUI thread waits in shutdown()
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        worker.failed.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        # The worker must not be destroyed in its own thread: ~QObject there holds Qt's connection locks while it
        # asks for the GIL, and a GUI thread that holds the GIL while (dis)connecting anything waits for those
        # locks: a deadlock. So, as the thread ends, the worker moves (from its own thread, as Qt requires) to
        # the GUI thread, where the queued deleteLater then runs.
        home = self.thread()
        thread.finished.connect(lambda: worker.moveToThread(home), Qt.ConnectionType.DirectConnection)
        thread.finished.connect(worker.deleteLater, Qt.ConnectionType.QueuedConnection)
        self._thread, self._worker = thread, worker
        self._job_open = True
        thread.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.request_stop()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop the job and wait for the thread to end; True when it did (or none was running).

        The job's last signals, still queued, are dropped: whoever shuts down is no longer listening. The end
        bookkeeping still happens (``_ended``: a RunController says it is no longer running), so a widget kept
        for later is not left looking busy.
        """
        if self._thread is None:
            return True
        self._detached = True
        self.stop()
        done = self._thread.wait(timeout_ms)
        if done:
            self._cleanup()
            self._end_job()
        return done

    def _ended(self) -> None:
        """Called once per job when it ends: after its ``finished`` or ``failed`` was forwarded, or when it
        was shut down (for subclasses)."""

    def _end_job(self) -> None:
        if self._job_open:
            self._job_open = False
            self._ended()

    @Slot(object)
    def _on_finished(self, result: object) -> None:
        if self._detached:
            return
        self._join()
        self.finished.emit(result)
        self._end_job()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self._detached:
            return
        self._before_failed()
        self._join()
        self.failed.emit(message)
        self._end_job()

    def _before_failed(self) -> None:
        """What a subclass keeps of a failed job before it is reported (for subclasses).

        A hook rather than an overridden ``_on_failed``: PySide6 6.12 calls a slot that a subclass overrides
        in the emitting thread, whatever the connection type, so the override ran in the worker thread and the
        job was reported failed while its thread was still running.
        """

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.wait(10_000)

    def _cleanup(self) -> None:
        if self._thread is not None and not self._thread.isRunning():
            self._thread.deleteLater()
            self._thread = None
            self._worker = None


class _Forward(QObject):
    """Re-emits one signal of a job's worker as its controller's, in the GUI thread (a bound method of an
    object living there is called there), unless the job was shut down meanwhile: a ``paused`` still queued
    from a run stopped by opening another photo must not say "running" over the new one."""

    def __init__(self, controller: ThreadedController, name: str) -> None:
        super().__init__(controller)
        self._controller = controller
        self._signal = getattr(controller, name)

    def relay(self, *args: Any) -> None:
        if not self._controller._detached:
            self._signal.emit(*args)


class RunController(ThreadedController):
    """Owns one sampler run's worker and thread; forwards the worker's signals. One run at a time.

    ``step`` comes once per step (StepScalars), in order; ``frame`` after the steps it follows.
    """

    step = Signal(object)
    frame = Signal(object)
    paused = Signal(int)
    resumed = Signal()
    runningChanged = Signal(bool)
    busy_message = "a run is already going"

    def is_paused(self) -> bool:
        """Paused now: a run that ended while paused (stopped) is not."""
        return self.is_running() and self._worker is not None and self._worker.is_paused

    #: the last run's newest estimate when it failed part-way (see SamplerWorker.partial), else None
    partial: StepRecord | None = None

    def _before_failed(self) -> None:
        self.partial = getattr(self._worker, "partial", None)

    def start(
        self,
        make_stream: Callable[[], StepStream],
        *,
        max_fps: float = 30.0,
        sinks: Iterable[RecordSink] = (),
        start_paused: bool = False,
        metrics: MetricsTap | None = None,
    ) -> SamplerWorker:
        self._ensure_idle()
        self.partial = None
        worker = SamplerWorker(make_stream, max_fps=max_fps, sinks=sinks, start_paused=start_paused, metrics=metrics)
        worker.update.connect(self._on_update)
        self._launch(worker, "priorstudio-sampler", ("paused", "resumed"))
        self.runningChanged.emit(True)
        return worker

    @Slot(object)
    def _on_update(self, update: Update) -> None:
        if self._detached:  # still queued from a job that was shut down: its listeners have moved on
            return
        for scalars in update.steps:
            self.step.emit(scalars)
        if update.frame is not None:
            self.frame.emit(update.frame)

    def pause(self, paused: bool = True) -> None:
        if self._worker is not None:
            self._worker.set_paused(paused)

    def step_once(self) -> None:
        if self._worker is not None:
            self._worker.step_once()

    def _ended(self) -> None:
        self.runningChanged.emit(False)
