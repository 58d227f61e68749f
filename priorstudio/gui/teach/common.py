"""Small shared pieces of the teaching widgets: an image pane, background threads, conversions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
import torch
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import QObject, QThread, Signal, Slot

from priorstudio.core.denoisers import available_models
from priorstudio.core.denoisers.inference import Denoiser
from priorstudio.core.errors import ParameterError, PriorStudioError
from priorstudio.core.samplers.base import StepRecord
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.worker import worker_thread

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


class ModelChoice(QtWidgets.QComboBox):
    """Whose prior to draw from: the host window's model (the default) or a bundled model by name.

    The gallery compares priors, so it may use another model than the window's. A bundled model is loaded
    when it is picked (so a broken file is reported at once, not mid-run) and kept for the next run.
    ``channelsChanged(int | None)`` gives the picked model's channels (None: the window's model, any).
    """

    channelsChanged = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None, models: Mapping[str, Path] | None = None) -> None:
        super().__init__(parent)
        self.addItem("the window's model", None)
        for name, path in (available_models() if models is None else models).items():
            self.addItem(name, str(path))
        self.setToolTip("The denoiser whose prior is sampled: the main window's model, or a bundled one")
        self._cache: dict[str, Denoiser] = {}
        self.currentIndexChanged.connect(self._on_changed)

    def loaded(self) -> Denoiser | None:
        """The picked bundled model, loaded (None for the window's model); raises WeightsError."""
        path = self.currentData()
        if path is None:
            return None
        if path not in self._cache:
            from priorstudio.core.denoisers import load_denoiser

            self._cache[path] = load_denoiser(path)
        return self._cache[path]

    def denoiser(self, channels: int, fallback: DenoiserFactory) -> Denoiser:
        """The denoiser for ``channels``-channel images: the picked model, or ``fallback(channels)``."""
        model = self.loaded()
        if model is None:
            return fallback(channels)
        if model.channels != channels:
            raise ParameterError(f"{model.name} works on {model.channels}-channel images, not {channels}")
        return model

    @Slot(int)
    def _on_changed(self, _index: int) -> None:
        try:
            model = self.loaded()
        except PriorStudioError as error:
            blocked = self.blockSignals(True)
            self.setCurrentIndex(0)  # back to the window's model, then say why
            self.blockSignals(blocked)
            self.channelsChanged.emit(None)
            self.failed.emit(str(error))
            return
        self.channelsChanged.emit(model.channels if model is not None else None)


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
        worker = _CallWorker(fn)
        thread = worker_thread(worker, "priorstudio-call")
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
            self.busyChanged.emit(False)  # a widget shown again later must not keep its button disabled


class RecordMailbox:
    """A one-slot, thread-safe box for the newest StepRecord that carries an image.

    Used as a ``sink`` of :class:`priorstudio.gui.worker.RunController` when a widget needs the whole
    batch (the controller's ``frame`` signal carries the first sample only): the worker thread puts, a
    GUI timer takes, so a fast sampler can never queue up images.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._record: StepRecord | None = None

    def put(self, record: StepRecord) -> None:
        if record.image is not None:
            with self._lock:
                self._record = record

    def take(self) -> StepRecord | None:
        with self._lock:
            record, self._record = self._record, None
            return record


def shutdown_run(controller: Any, timeout_ms: int = 30_000) -> bool:
    """Stop a RunController's run and join its thread, promptly.

    The controller quits its thread through a queued call that the GUI thread delivers; while the GUI
    thread is blocked joining, it cannot. Asking the worker's thread to quit directly first (thread-safe:
    the thread then ends as soon as the worker's loop returns) makes the join take one sampler step.
    """
    worker = controller.worker
    if worker is not None and controller.is_running():
        controller.stop()
        thread = worker.thread()
        if thread is not None:
            thread.quit()
    return controller.shutdown(timeout_ms)
