"""Small shared pieces of the teaching widgets: an image pane, background threads, conversions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
import torch
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import QObject, QThread, Signal, Slot

from priorstudio.core.denoisers.inference import Denoiser
from priorstudio.core.samplers.base import StepRecord, StepStream
from priorstudio.core.teach.history import FrameHistory

#: What the host window passes to the widgets: the current model for a number of channels (1 or 3).
DenoiserFactory = Callable[[int], Denoiser]


def to_display(image: Any) -> np.ndarray:
    """(C, H, W) or (H, W) tensor/array → float32 row-major array for pyqtgraph: (H, W) or (H, W, 3)."""
    arr = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    return np.ascontiguousarray(arr, dtype=np.float32)


class ImagePane(pg.GraphicsLayoutWidget):
    """One image with a title, fixed levels, aspect locked, row 0 at the top; emits ``clicked(row, col)``.

    New images keep the zoom and pan (the view is fitted only when the size changes), as live frames must.
    """

    clicked = Signal(int, int)

    def __init__(self, title: str = "", parent: QtWidgets.QWidget | None = None, *, colormap: str | None = None):
        super().__init__(parent)
        self.setMinimumSize(96, 96)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.view = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self.title = pg.LabelItem(title, size="9pt")
        self.addItem(self.title, row=0, col=0)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self._shape: tuple[int, ...] | None = None
        if colormap:
            self.item.setColorMap(pg.colormap.get(colormap))
        self.scene().sigMouseClicked.connect(self._on_click)

    def set_title(self, text: str) -> None:
        self.title.setText(text)

    def set_image(self, image: Any, levels: tuple[float, float] = (0.0, 1.0)) -> None:
        arr = to_display(image)
        self.item.setImage(arr, autoLevels=False, levels=levels)
        if arr.shape != self._shape:
            self._shape = arr.shape
            self.view.autoRange(padding=0.0)

    def clear_image(self) -> None:
        self.item.clear()
        self._shape = None

    def image_shape(self) -> tuple[int, ...] | None:
        return self._shape

    def _on_click(self, event: Any) -> None:
        if self._shape is None or event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        p = self.view.mapSceneToView(event.scenePos())
        row, col = int(np.floor(p.y())), int(np.floor(p.x()))
        if 0 <= row < self._shape[0] and 0 <= col < self._shape[1]:
            self.clicked.emit(row, col)


# -- background work -------------------------------------------------------------------------------------
class _CallWorker(QObject):
    done = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self._fn = fn

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # shown to the user, never lost
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.done.emit(result)


class BackgroundCall(QObject):
    """Runs one callable at a time in its own QThread; ``done(result)`` / ``failed(message)`` on the GUI
    thread. A call started while one runs is refused (returns False): the widgets disable their button."""

    done = Signal(object)
    failed = Signal(str)
    busyChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: _CallWorker | None = None

    def is_busy(self) -> bool:
        return self._thread is not None

    def start(self, fn: Callable[[], Any]) -> bool:
        if self._thread is not None:
            return False
        thread = QThread()
        worker = _CallWorker(fn)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.done.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        self._thread, self._worker = thread, worker
        thread.start()
        self.busyChanged.emit(True)
        return True

    def _finish(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.quit()
            thread.wait()
        self._thread = self._worker = None
        self.busyChanged.emit(False)

    @Slot(object)
    def _on_done(self, result: Any) -> None:
        if self._thread is None:
            return
        self._finish()
        self.done.emit(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self._thread is None:
            return
        self._finish()
        self.failed.emit(message)

    def wait(self) -> None:
        """Block until the running call (if any) ends and its thread is gone (for closing)."""
        if self._thread is not None:
            thread = self._thread
            thread.quit()
            thread.wait()
            self._thread = self._worker = None


class _StreamWorker(QObject):
    step = Signal(object)  # dict of one step's scalars, every step
    frame = Signal(object)  # a StepRecord carrying a fresh image copy, at most ``max_fps`` per second
    finished = Signal(object)  # the last StepRecord (or None when stopped before any)
    failed = Signal(str)

    def __init__(self, make_stream: Callable[[], StepStream], history: FrameHistory | None, max_fps: float) -> None:
        super().__init__()
        self._make_stream = make_stream
        self._history = history
        self._interval = 1.0 / max_fps
        self._stop = False

    def request_stop(self) -> None:
        self._stop = True  # read between steps; a plain bool is enough under the GIL

    @Slot()
    def run(self) -> None:
        last: StepRecord | None = None
        shown = 0.0
        stop_sent = False
        try:
            stream = self._make_stream()
            for rec in stream:
                last = rec
                self.step.emit(rec.scalars())
                if rec.image is not None:
                    if self._history is not None:
                        self._history.push_record(rec)
                    now = time.monotonic()
                    if rec.is_last or now - shown >= self._interval:
                        shown = now
                        self.frame.emit(rec)
                if self._stop and not stop_sent and not rec.is_last:
                    stop_sent = True
                    stopper = getattr(stream, "stop", None)
                    if callable(stopper):
                        stopper()  # the sampler's next record is its last, with the current estimate
                        continue
                    close = getattr(stream, "close", None)
                    if callable(close):
                        close()
                    break
        except Exception as exc:
            self.failed.emit(f"{type(exc).__name__}: {exc}")
            return
        self.finished.emit(last)


class StreamRunner(QObject):
    """Drives a StepStream (a sampler generator) in a QThread: scalars every step, frames throttled, the
    run's frames pushed into an optional :class:`FrameHistory`, ``finished(last_record)`` at the end.

    ``stop()`` asks the worker to end after the current step: a stream with a ``stop()`` method (the
    implicit-prior sampler) then yields one last record with the current estimate, so the partial result
    is kept; other streams are closed. ``wait()``
    blocks until the thread is gone — call it from ``closeEvent``.
    """

    step = Signal(object)
    frame = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    runningChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None, max_fps: float = 30.0) -> None:
        super().__init__(parent)
        self.max_fps = max_fps
        self._thread: QThread | None = None
        self._worker: _StreamWorker | None = None

    def is_running(self) -> bool:
        return self._thread is not None

    def start(self, make_stream: Callable[[], StepStream], history: FrameHistory | None = None) -> bool:
        if self._thread is not None:
            return False
        thread = QThread()
        worker = _StreamWorker(make_stream, history, self.max_fps)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.step.connect(self.step)
        worker.frame.connect(self.frame)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self._thread, self._worker = thread, worker
        thread.start()
        self.runningChanged.emit(True)
        return True

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.request_stop()

    def _cleanup(self) -> None:
        thread = self._thread
        if thread is not None:
            thread.quit()
            thread.wait()
        self._thread = self._worker = None
        self.runningChanged.emit(False)

    @Slot(object)
    def _on_finished(self, last: Any) -> None:
        if self._thread is None:  # a late delivery after wait(): the run was already abandoned
            return
        self._cleanup()
        self.finished.emit(last)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self._thread is None:
            return
        self._cleanup()
        self.failed.emit(message)

    def wait(self) -> None:
        """Stop and block until the worker thread has ended (no signal is emitted afterwards)."""
        if self._thread is None:
            return
        worker, thread = self._worker, self._thread
        if worker is not None:
            worker.request_stop()
            for sig in (worker.step, worker.frame, worker.finished, worker.failed):
                with contextlib.suppress(RuntimeError, TypeError):
                    sig.disconnect()
        thread.quit()
        thread.wait()
        self._thread = self._worker = None
