"""One batch of unconditional samples: its settings and a view that runs it live.

``SynthesisControls`` holds the settings of a batch (model, K, size, seed, β, σ₀, σ_L, h₀, step cap);
``SampleBatchView`` runs it in a background thread as one batch and keeps, for scrubbing afterwards, the
per-step scalars, a thinned history of the estimates and the score f(y_t) of every step. The gallery and
the β comparison are built from these two.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pyqtgraph as pg
import torch
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal, Slot

from priorstudio.core.samplers.base import StepRecord
from priorstudio.core.samplers.implicit_prior import (
    PER_SAMPLE_SCALARS,
    SYNTHESIS_PRESET,
    ImplicitPriorParams,
    ImplicitPriorRun,
    implicit_prior_sampler,
)
from priorstudio.core.teach.animation import GAP, tile
from priorstudio.core.teach.history import FrameHistory
from priorstudio.core.teach.inspector import ScoreTap
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.spin_boxes import DoubleSpinBox, SpinBox
from priorstudio.gui.teach.common import DenoiserFactory, ImagePane, ModelChoice, RecordMailbox, shutdown_run
from priorstudio.gui.worker import RunController, StepScalars

MAX_SAMPLES = PER_SAMPLE_SCALARS  # every sample has its own σ_t curve up to this batch size
SCORE_MAX_BYTES = 64 * 1024 * 1024  # the scores are float16 (signed), thinned under their own cap


def tile_index(shape: tuple[int, int], batch: int, row: int, col: int) -> int | None:
    """Which sample of a ``tile``d batch of ``batch`` (h, w) images the pixel (row, col) of the grid is on."""
    h, w = shape
    cols = math.ceil(math.sqrt(batch))
    r, rr = divmod(row, h + GAP)
    c, cc = divmod(col, w + GAP)
    if rr >= h or cc >= w or c >= cols:
        return None
    k = r * cols + c
    return k if k < batch else None


def tile_rect(shape: tuple[int, int], batch: int, k: int) -> tuple[int, int, int, int]:
    """(x, y, width, height) of sample ``k`` in a ``tile``d grid of ``batch`` (h, w) images."""
    h, w = shape
    r, c = divmod(k, math.ceil(math.sqrt(batch)))
    return c * (w + GAP), r * (h + GAP), w, h


def detail(images: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels of a batch (K, C, H, W): how much fine
    structure the samples have (a smooth, bland sample scores low)."""
    x = images.float()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return float((dx + dy) / 2)


class SynthesisControls(QtWidgets.QWidget):
    """The settings of a batch of unconditional samples; ``params()`` and ``image_shape()`` read them."""

    changed = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, show_beta: bool = True) -> None:
        super().__init__(parent)
        defaults = ImplicitPriorParams.preset(SYNTHESIS_PRESET)
        meta = {f.name: f.metadata for f in dataclasses.fields(ImplicitPriorParams)}
        self.model = ModelChoice(self)
        self.model.channelsChanged.connect(self._on_model_channels)
        self.model_note = QtWidgets.QLabel("")
        self.model_note.setWordWrap(True)
        self.model_note.setVisible(False)
        self.model.failed.connect(self._on_model_failed)
        self.k = self._spin(1, MAX_SAMPLES, 9, "Number of samples K, drawn together as one batch")
        self.size = self._spin(16, 512, 64, "Side of each sample in pixels")
        self.size.setSingleStep(16)
        self.color = QtWidgets.QCheckBox("colour")
        self.color.setToolTip("Draw colour samples (needs a colour model)")
        self.seed = self._spin(0, 2**31 - 1, defaults.seed, meta["seed"]["help"])
        self.beta = self._dspin(1e-3, 1.0, defaults.beta, 3, meta["beta"]["help"])
        self.sigma_0 = self._dspin(1e-3, 10.0, defaults.sigma_0, 3, meta["sigma_0"]["help"])
        self.sigma_L = self._dspin(1e-4, 1.0, defaults.sigma_L, 4, meta["sigma_L"]["help"])
        self.h_0 = self._dspin(1e-4, 0.99, defaults.h_0, 4, meta["h_0"]["help"])
        self.max_steps = self._spin(1, 100_000, defaults.max_steps, meta["max_steps"]["help"])
        form = QtWidgets.QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("model", self.model)
        form.addRow(self.model_note)
        form.addRow("samples K", self.k)
        form.addRow("size", self.size)
        form.addRow("", self.color)
        form.addRow("seed", self.seed)
        if show_beta:
            form.addRow("β", self.beta)
        else:
            self.beta.hide()  # the host sets β (e.g. the comparison's two values)
        form.addRow("σ₀", self.sigma_0)
        form.addRow("σ_L", self.sigma_L)
        form.addRow("h₀", self.h_0)
        form.addRow("max steps", self.max_steps)

    def _spin(self, lo: int, hi: int, value: int, tip: str) -> QtWidgets.QSpinBox:
        box = SpinBox(self)
        box.setRange(lo, hi)
        box.setValue(value)
        box.setToolTip(tip)
        box.valueChanged.connect(self.changed)
        return box

    def _dspin(self, lo: float, hi: float, value: float, decimals: int, tip: str) -> QtWidgets.QDoubleSpinBox:
        box = DoubleSpinBox(self)
        box.setDecimals(decimals)
        box.setRange(lo, hi)
        box.setSingleStep(10 ** -(decimals - 1))
        box.setValue(value)
        box.setToolTip(tip)
        box.valueChanged.connect(self.changed)
        return box

    def params(self, **overrides: Any) -> ImplicitPriorParams:
        values = {
            "beta": self.beta.value(),
            "sigma_0": self.sigma_0.value(),
            "sigma_L": self.sigma_L.value(),
            "h_0": self.h_0.value(),
            "seed": self.seed.value(),
            "max_steps": self.max_steps.value(),
            "emit_every": 1,
        }
        values.update(overrides)
        params = ImplicitPriorParams.preset(SYNTHESIS_PRESET, **values)
        params.validate()
        return params

    def channels(self) -> int:
        return 3 if self.color.isChecked() else 1

    def denoiser(self, fallback: DenoiserFactory) -> Any:
        """The picked model for the picked channels (the host's ``fallback`` for the window's model)."""
        return self.model.denoiser(self.channels(), fallback)

    @Slot(object)
    def _on_model_channels(self, channels: int | None) -> None:
        """A bundled model fixes gray or colour; the window's model serves both."""
        self.model_note.setVisible(False)
        if channels is not None:
            self.color.setChecked(channels == 3)
        self.color.setEnabled(channels is None)
        self.changed.emit()

    @Slot(str)
    def _on_model_failed(self, message: str) -> None:
        self.model_note.setText(f"Cannot use that model: {message}")
        self.model_note.setVisible(True)

    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels(), self.size.value(), self.size.value())


class SampleBatchView(QtWidgets.QWidget):
    """One batch of samples running in its own thread: a live grid, its records, its frame history and the
    score f(y_t) of every step (the sampler's denoiser is wrapped in a :class:`ScoreTap`).

    Emits ``selected(k)`` when a sample is clicked, ``stepped()`` after new records arrived (at most at
    the repaint rate) and ``finished(last_record)``."""

    selected = Signal(int)
    stepped = Signal()
    finished = Signal(object)

    def __init__(self, title: str = "", parent: QtWidgets.QWidget | None = None, max_bytes: int | None = None):
        super().__init__(parent)
        self.pane = ImagePane(title)
        self.pane.clicked.connect(self._on_click)
        self.marker = QtWidgets.QGraphicsRectItem()  # frames the sample being looked at
        self.marker.setPen(pg.mkPen((255, 200, 0), width=2, cosmetic=True))
        self.marker.setVisible(False)
        self.pane.view.addItem(self.marker)
        self.history = FrameHistory(max_bytes) if max_bytes else FrameHistory()
        self.rows: list[dict[str, Any]] = []
        self.params: ImplicitPriorParams | None = None
        self.batch = 0
        self.last: StepRecord | None = None
        self.mailbox = RecordMailbox()  # the newest record with the whole batch's images
        self.hint = "Click one to see its run."  # shown when the batch is done (empty: clicks do nothing)
        self.scores: ScoreTap | None = None
        self.run: ImplicitPriorRun | None = None
        self._rows_dirty = False
        self.runner = RunController(self)
        self.runner.step.connect(self._on_step)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.status = QtWidgets.QLabel("")
        # a long message wraps within the width there is instead of widening the window under the user
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(33)
        self.timer.timeout.connect(self._repaint)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pane, 1)
        layout.addWidget(self.status)

    def start(self, denoiser: Any, params: ImplicitPriorParams, k: int, image_shape: tuple[int, int, int]) -> bool:
        if self.runner.is_running():
            return False
        self.history.clear()
        self.rows = []
        self.marker.setVisible(False)
        self.params, self.batch, self.last = params, int(k), None
        self._image_hw = image_shape[1:]
        self.status.setText("running…")
        self.scores = tap = ScoreTap(denoiser, FrameHistory(SCORE_MAX_BYTES, dtype="float16"))
        self.run = None

        def stream() -> ImplicitPriorRun:  # called in the worker thread
            self.run = implicit_prior_sampler(tap, None, None, params, batch=k, image_shape=image_shape)
            return self.run

        self.timer.start()
        self.runner.start(
            stream,
            max_fps=1,  # the controller's frame signal shows one sample; the grid reads the mailbox instead
            sinks=(self.history.push_record, self.mailbox.put),
        )
        return True

    def stop(self) -> None:
        self.runner.stop()

    def wait(self) -> None:
        shutdown_run(self.runner)
        self.timer.stop()

    def is_running(self) -> bool:
        return self.runner.is_running()

    def sigma_curve(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(t, σ_t) of sample ``k`` (its own σ when the batch reports it), or the batch mean for None."""
        key = f"sigma_{k}" if k is not None and self.batch > 1 else "sigma"
        t = np.array([r["t"] for r in self.rows], dtype=float)
        s = np.array([float(r.get(key, r.get("sigma")) or np.nan) for r in self.rows], dtype=float)
        return t, s

    def last_steps(self) -> list[int]:
        """Each sample's last step so far (the step it stopped at, or the current one while it runs)."""
        run = self.run
        return [int(v) for v in run.steps.tolist()] if run is not None else []

    def score_of(self, t: int, k: int) -> tuple[int, torch.Tensor] | None:
        """(step, f(y) of sample ``k``) at the kept step nearest ``t`` (None before a run)."""
        steps = self.last_steps()
        if self.scores is None or not 0 <= k < len(steps):
            return None
        return self.scores.sample_score(t, k, steps)

    def sample_rows(self, k: int | None) -> list[dict[str, Any]]:
        """The per-step rows as sample ``k`` saw them: its own σ_t (and γ_t recomputed from it), up to
        the step it stopped at. None (or a batch of one) gives the rows as reported."""
        if k is None or self.batch <= 1 or f"sigma_{k}" not in (self.rows[0] if self.rows else {}):
            return list(self.rows)
        steps = self.last_steps()
        stop = steps[k] if 0 <= k < len(steps) else math.inf
        return [{**r, "sigma": r[f"sigma_{k}"], "gamma": None} for r in self.rows if r["t"] <= stop]

    def samples(self) -> torch.Tensor | None:
        """The latest estimates (K, C, H, W), clamped to [0, 1] (the finished samples after the run)."""
        rec = self.last
        return rec.image.clamp(0, 1) if rec is not None and rec.image is not None else None

    @Slot(object)
    def _on_step(self, scalars: StepScalars) -> None:
        self.rows.append(scalars.row)
        self._rows_dirty = True

    @Slot()
    def _repaint(self) -> None:
        rec = self.mailbox.take()
        if rec is not None and rec.image is not None:
            self._show(rec)
        if self._rows_dirty:
            self._rows_dirty = False
            self.stepped.emit()
            if self.rows:
                r = self.rows[-1]
                self.status.setText(f"step {r['t']}, σ = {r['sigma']:.4f}, {int(r.get('active', self.batch))} running")

    def _show(self, rec: StepRecord) -> None:
        self.pane.set_image(np.clip(tile(rec.image.numpy()), 0, 1))

    @Slot(object)
    def _on_finished(self, last: StepRecord | None) -> None:
        self.timer.stop()
        if self.scores is not None:
            self.scores.flush()  # the final step's score (the run's thread is done with the tap)
        self._repaint()
        self.last = last
        if last is not None and last.image is not None:
            self._show(last)
            reason = last.stop_reason.value if last.stop_reason is not None else "stopped"
            self.status.setText(f"{self.batch} samples after {last.t} steps ({reason}). {self.hint}".strip())
        self.stepped.emit()
        self.finished.emit(last)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.timer.stop()
        self.status.setText(f"Sampling failed: {message}")
        self.finished.emit(None)

    def mark(self, k: int | None) -> None:
        """Frame sample ``k`` on the grid (None: no frame)."""
        hw = getattr(self, "_image_hw", None)
        if k is None or hw is None or not 0 <= k < self.batch:
            self.marker.setVisible(False)
            return
        self.marker.setRect(QtCore.QRectF(*tile_rect(hw, self.batch, k)))
        self.marker.setVisible(True)

    @Slot(int, int)
    def _on_click(self, row: int, col: int) -> None:
        if self.batch and getattr(self, "_image_hw", None):
            k = tile_index(self._image_hw, self.batch, row, col)
            if k is not None:
                self.selected.emit(k)

    def closeEvent(self, event) -> None:
        self.wait()
        super().closeEvent(event)
