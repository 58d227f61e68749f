"""Prior samples: a gallery that fills in live, each sample's σ_t curve, scrubbing, and β = 1 vs β < 1.

``GalleryWidget`` draws K unconditional samples (size, seed, β, σ₀, σ_L, h₀) from the implicit prior as
one batch. The grid shows every sample's current estimate while the batch runs; clicking one highlights
its σ_t curve (against the ideal (1 − βh_t) decay and the σ_L target) and scrubs through its run.
``BetaComparisonWidget`` runs the same seed twice, β = 1 (no injected noise: a deterministic climb to
the nearest mode, smooth and bland) beside β < 1 (fresh noise at every step: more varied, more detailed
samples), to show what the injected noise does.
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
    ideal_sigma_schedule,
    implicit_prior_sampler,
)
from priorstudio.core.teach.animation import GAP, tile
from priorstudio.core.teach.history import FrameHistory
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.teach.common import DenoiserFactory, ImagePane, RecordMailbox, shutdown_run
from priorstudio.gui.teach.history_player import HistoryPlayer
from priorstudio.gui.worker import RunController, StepScalars

MAX_SAMPLES = PER_SAMPLE_SCALARS  # every sample has its own σ_t curve up to this batch size


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


class SynthesisControls(QtWidgets.QWidget):
    """The settings of a batch of unconditional samples; ``params()`` and ``image_shape()`` read them."""

    changed = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, show_beta: bool = True) -> None:
        super().__init__(parent)
        defaults = ImplicitPriorParams.preset(SYNTHESIS_PRESET)
        meta = {f.name: f.metadata for f in dataclasses.fields(ImplicitPriorParams)}
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
        box = QtWidgets.QSpinBox(self)
        box.setRange(lo, hi)
        box.setValue(value)
        box.setToolTip(tip)
        box.valueChanged.connect(self.changed)
        return box

    def _dspin(self, lo: float, hi: float, value: float, decimals: int, tip: str) -> QtWidgets.QDoubleSpinBox:
        box = QtWidgets.QDoubleSpinBox(self)
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

    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels(), self.size.value(), self.size.value())


class SigmaPlot(pg.PlotWidget):
    """σ_t per step on a log axis: one faint curve per run or sample, one highlighted, the ideal
    (1 − βh_t) decay dashed, and the σ_L target line."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setLogMode(y=True)
        self.setLabel("bottom", "step t")
        self.setLabel("left", "σ_t")
        self.showGrid(x=True, y=True, alpha=0.2)
        self.addLegend(offset=(-10, 10))
        self.setMinimumHeight(160)
        self._curves: dict[str, pg.PlotDataItem] = {}
        self.target = pg.InfiniteLine(angle=0, pen=pg.mkPen((200, 80, 80), style=QtCore.Qt.PenStyle.DotLine))
        self.addItem(self.target)

    def set_curve(self, key: str, t: np.ndarray, sigma: np.ndarray, *, highlight: bool = False, **style: Any) -> None:
        mask = np.isfinite(sigma) & (sigma > 0)
        curve = self._curves.get(key)
        if curve is None:
            pen = style.pop("pen", None) or pg.mkPen((150, 150, 150, 110), width=1)
            curve = self.plot([], [], pen=pen, name=style.pop("name", None))
            self._curves[key] = curve
        curve.setData(t[mask], sigma[mask])
        if highlight:
            curve.setPen(pg.mkPen((255, 200, 0), width=2.5))
            curve.setZValue(10)

    def dim(self, key: str) -> None:
        curve = self._curves.get(key)
        if curve is not None:
            curve.setPen(pg.mkPen((150, 150, 150, 110), width=1))
            curve.setZValue(0)

    def set_ideal(self, key: str, params: ImplicitPriorParams, n: int, **style: Any) -> None:
        n = max(int(n), 2)
        sched = np.asarray(ideal_sigma_schedule(params, n))
        pen = style.pop("pen", None) or pg.mkPen((120, 180, 255), width=1.5, style=QtCore.Qt.PenStyle.DashLine)
        self.set_curve(key, np.arange(1, n + 1), sched, pen=pen, name=style.pop("name", "ideal (1 − βh_t) decay"))
        self.target.setValue(math.log10(params.sigma_L))

    def clear_curves(self) -> None:
        for curve in self._curves.values():
            self.removeItem(curve)
        self._curves.clear()
        legend = self.getPlotItem().legend
        if legend is not None:
            legend.clear()

    def curve_keys(self) -> list[str]:
        return list(self._curves)


class SampleBatchView(QtWidgets.QWidget):
    """One batch of samples running in its own thread: a live grid, its records and its frame history.

    Emits ``selected(k)`` when a sample is clicked, ``stepped()`` after new records arrived (at most at
    the repaint rate) and ``finished(last_record)``."""

    selected = Signal(int)
    stepped = Signal()
    finished = Signal(object)

    def __init__(self, title: str = "", parent: QtWidgets.QWidget | None = None, max_bytes: int | None = None):
        super().__init__(parent)
        self.pane = ImagePane(title)
        self.pane.clicked.connect(self._on_click)
        self.history = FrameHistory(max_bytes) if max_bytes else FrameHistory()
        self.rows: list[dict[str, Any]] = []
        self.params: ImplicitPriorParams | None = None
        self.batch = 0
        self.last: StepRecord | None = None
        self.mailbox = RecordMailbox()  # the newest record with the whole batch's images
        self._rows_dirty = False
        self.runner = RunController(self)
        self.runner.step.connect(self._on_step)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.status = QtWidgets.QLabel("")
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
        self.params, self.batch, self.last = params, int(k), None
        self._image_hw = image_shape[1:]
        self.status.setText("running…")
        self.timer.start()
        self.runner.start(
            lambda: implicit_prior_sampler(denoiser, None, None, params, batch=k, image_shape=image_shape),
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
        self._repaint()
        self.last = last
        if last is not None and last.image is not None:
            self._show(last)
            reason = last.stop_reason.value if last.stop_reason is not None else "stopped"
            self.status.setText(f"{self.batch} samples after {last.t} steps ({reason}). Click one to see its run.")
        self.stepped.emit()
        self.finished.emit(last)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.timer.stop()
        self.status.setText(f"Sampling failed: {message}")
        self.finished.emit(None)

    @Slot(int, int)
    def _on_click(self, row: int, col: int) -> None:
        if self.batch and getattr(self, "_image_hw", None):
            k = tile_index(self._image_hw, self.batch, row, col)
            if k is not None:
                self.selected.emit(k)

    def closeEvent(self, event) -> None:
        self.wait()
        super().closeEvent(event)


class GalleryWidget(QtWidgets.QWidget):
    """Host API: ``GalleryWidget(denoiser_factory, parent)``; ``run()``, ``stop()``, ``select(k)``;
    ``samples()`` gives the finished batch (e.g. for the "Real or sampled?" game). Call ``shutdown()``
    (or close it) before the host window goes away."""

    finished = Signal(object)

    def __init__(self, denoiser_factory: DenoiserFactory, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._factory = denoiser_factory
        self.controls = SynthesisControls(self)
        self.run_button = QtWidgets.QPushButton("Draw samples")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.batch = SampleBatchView("samples: click one")
        self.batch.selected.connect(self.select)
        self.batch.stepped.connect(self._update_plot)
        self.batch.finished.connect(self._on_finished)
        self.batch.runner.runningChanged.connect(self._on_running)
        self.plot = SigmaPlot()
        self.player = HistoryPlayer(show_preview=True)
        self.selected: int | None = None

        side = QtWidgets.QVBoxLayout()
        side.addWidget(self.controls)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        side.addLayout(buttons)
        side.addStretch(1)
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.plot)
        right.addWidget(self.player)
        center = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        center.addWidget(self.batch)
        center.addWidget(right)
        center.setStretchFactor(0, 3)
        center.setStretchFactor(1, 2)
        layout = QtWidgets.QHBoxLayout(self)
        layout.addLayout(side)
        layout.addWidget(center, 1)

    @Slot()
    def run(self) -> bool:
        params = self.controls.params()
        shape = self.controls.image_shape()
        k = self.controls.k.value()
        self.selected = None
        self.plot.clear_curves()
        self.plot.set_ideal("ideal", params, max(params.max_steps // 4, 60))
        self.player.set_history(None)
        return self.batch.start(self._factory(shape[0]), params, k, shape)

    @Slot()
    def stop(self) -> None:
        self.batch.stop()

    def is_running(self) -> bool:
        return self.batch.is_running()

    def samples(self) -> torch.Tensor | None:
        return self.batch.samples()

    @Slot(int)
    def select(self, k: int) -> None:
        """Highlight sample ``k``'s σ_t curve and scrub through its run."""
        if not 0 <= k < max(self.batch.batch, 1):
            return
        if self.selected is not None:
            self.plot.dim(f"s{self.selected}")
        self.selected = k
        self._update_plot()
        self.player.set_history(self.batch.history, sample=k if self.batch.batch > 1 else None)

    @Slot()
    def _update_plot(self) -> None:
        n = self.batch.batch
        for k in range(n if n > 1 else 1):
            t, s = self.batch.sigma_curve(k if n > 1 else None)
            self.plot.set_curve(f"s{k}", t, s, highlight=(k == self.selected))
        if self.batch.rows and self.batch.params is not None:
            self.plot.set_ideal("ideal", self.batch.params, max(int(self.batch.rows[-1]["t"]), 2))
        if self.player.isVisible() and self.selected is not None:
            self.player.refresh()

    @Slot(object)
    def _on_finished(self, last: Any) -> None:
        self.select(self.selected if self.selected is not None else 0)
        self.finished.emit(last)

    @Slot(bool)
    def _on_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.controls.setEnabled(not running)

    def shutdown(self) -> None:
        self.batch.wait()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)


class BetaComparisonWidget(QtWidgets.QWidget):
    """β = 1 beside β < 1 from the same seed and settings; their σ_t curves and ideal decays on one plot.

    Host API: ``BetaComparisonWidget(denoiser_factory, parent)``; ``run()``, ``stop()``, ``shutdown()``."""

    finished = Signal()

    def __init__(self, denoiser_factory: DenoiserFactory, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._factory = denoiser_factory
        self.controls = SynthesisControls(self, show_beta=False)
        self.controls.k.setValue(4)
        self.beta = QtWidgets.QDoubleSpinBox()
        self.beta.setDecimals(3)
        self.beta.setRange(1e-3, 0.999)
        self.beta.setSingleStep(0.05)
        self.beta.setValue(0.5)
        self.beta.setToolTip("β of the right-hand batch; the left one uses β = 1 (no injected noise)")
        self.run_button = QtWidgets.QPushButton("Compare")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.left = SampleBatchView("β = 1: no injected noise")
        self.right = SampleBatchView("β = 0.5")
        self.plot = SigmaPlot()
        self._done = 0
        for view in (self.left, self.right):
            view.stepped.connect(self._update_plot)
            view.finished.connect(self._on_finished)
            view.runner.runningChanged.connect(self._on_running)
        side = QtWidgets.QVBoxLayout()
        side.addWidget(self.controls)
        form = QtWidgets.QFormLayout()
        form.addRow("β (right)", self.beta)
        side.addLayout(form)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        side.addLayout(buttons)
        side.addStretch(1)
        grids = QtWidgets.QHBoxLayout()
        grids.addWidget(self.left, 1)
        grids.addWidget(self.right, 1)
        main = QtWidgets.QVBoxLayout()
        main.addLayout(grids, 3)
        main.addWidget(self.plot, 2)
        layout = QtWidgets.QHBoxLayout(self)
        layout.addLayout(side)
        layout.addLayout(main, 1)

    @Slot()
    def run(self) -> bool:
        if self.is_running():
            return False
        shape = self.controls.image_shape()
        k = self.controls.k.value()
        beta = self.beta.value()
        self.right.pane.set_title(f"β = {beta:g}: fresh noise at every step")
        self.plot.clear_curves()
        self._params = (self.controls.params(beta=1.0), self.controls.params(beta=beta))
        self._done = 0
        denoiser = self._factory(shape[0])
        ok = self.left.start(denoiser, self._params[0], k, shape)
        return self.right.start(denoiser, self._params[1], k, shape) and ok

    @Slot()
    def stop(self) -> None:
        self.left.stop()
        self.right.stop()

    def is_running(self) -> bool:
        return self.left.is_running() or self.right.is_running()

    @Slot()
    def _update_plot(self) -> None:
        colors = ((90, 200, 120), (255, 150, 60))
        for view, params, color, key in zip((self.left, self.right), getattr(self, "_params", ()), colors, ("β1", "β")):
            t, s = view.sigma_curve(None)
            self.plot.set_curve(key, t, s, pen=pg.mkPen(color, width=2), name=f"measured, β = {params.beta:g}")
            if len(t):
                pen = pg.mkPen(color, width=1, style=QtCore.Qt.PenStyle.DashLine)
                self.plot.set_ideal(f"ideal {key}", params, int(t[-1]), pen=pen, name=f"ideal, β = {params.beta:g}")

    @Slot(object)
    def _on_finished(self, _last: Any) -> None:
        self._done += 1
        if self._done == 2:
            self.finished.emit()

    @Slot(bool)
    def _on_running(self, _running: bool) -> None:
        running = self.is_running()
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.controls.setEnabled(not running)
        self.beta.setEnabled(not running)

    def shutdown(self) -> None:
        self.left.wait()
        self.right.wait()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
