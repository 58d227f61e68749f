"""Compare mode: several methods on the same degraded image, results side by side, curves on one plot.

The lesson of Deep Image Prior and its kin is in the curves: DIP's PSNR rises and then falls as the
network starts to fit the noise, twicing trades bias for variance step by step, the implicit prior climbs
to its σ_L. Seeing them on one plot, with each method's image beside the others, is what this view is for.

:class:`ComparePanel` holds the choices (which methods, step caps, the DIP network's width), a row of
:class:`ResultTile` (the degraded image, the truth when known, one tile per method with its numbers) and a
:class:`ComparePlot` (PSNR against the step when the truth is known, the fit loss otherwise). The window
plans the problem and calls :meth:`ComparePanel.start`; the methods run in a worker thread
(:mod:`compare_worker`) through the same registry as ``priorstudio bench methods``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Signal

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators.base import Operator
from priorstudio.core.samplers.registry import METHODS, MethodSummary
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.canvas import array_to_qimage, to_display_array
from priorstudio.gui.compare_worker import CompareController, CompareJob
from priorstudio.gui.plots import show_until_data
from priorstudio.gui.spin_boxes import SpinBox

#: Side of a result tile's image, in screen pixels.
TILE_PX = 176
#: The least height of each part of the panel (options, images, curves): what the dock asks of the window.
MIN_PART_HEIGHT = 160
#: The greatest lightness (0–255) of coloured text on a light background.
TEXT_LIGHTNESS = 100
#: Images a method's run attaches to its records, spread over its steps (the best-step image comes from them).
IMAGES_PER_RUN = 60
REFRESH_MS = 100
METHOD_COLORS: dict[str, tuple[int, int, int]] = {
    "implicit_prior": (240, 90, 200),
    "dip_adam": (80, 170, 255),
    "dip_gd": (120, 220, 120),
    "nlm_twicing": (255, 170, 60),
    "ntk_twicing": (250, 230, 90),
}


def method_color(name: str, index: int = 0) -> tuple[int, int, int]:
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    color = pg.intColor(index, hues=9)
    return (color.red(), color.green(), color.blue())


def compare_params(
    names: Sequence[str],
    operator: Operator | None,
    *,
    steps: int,
    twicing_steps: int,
    dip_width: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Each method's parameters: its defaults for the task with the step caps (and the DIP width), or the
    given ``overrides`` as they are; every one attaches about ``IMAGES_PER_RUN`` images to its records."""
    overrides = dict(overrides or {})
    out: dict[str, Any] = {}
    for name in names:
        spec = METHODS[name]
        if name in overrides:
            params = overrides[name]
        else:
            changes: dict[str, Any] = {"max_steps": int(twicing_steps if name.endswith("twicing") else steps)}
            if name.startswith("dip") and dip_width:
                changes["width"] = int(dip_width)
            params = spec.default_params(operator, **changes)
        every = max(1, int(getattr(params, "max_steps", IMAGES_PER_RUN)) // IMAGES_PER_RUN)
        params = dataclasses.replace(params, emit_every=every)
        params.validate()
        out[name] = params
    return out


def _readable(color: QtGui.QColor, palette: QtGui.QPalette) -> QtGui.QColor:
    """``color`` as text on the palette's background: the plot colours are chosen for a dark plot, and the
    light ones (yellow, orange) vanish on a light list, so there they are darkened."""
    if palette.color(QtGui.QPalette.ColorRole.Base).lightness() > 128 and color.lightness() > TEXT_LIGHTNESS:
        return color.darker(round(100 * color.lightness() / TEXT_LIGHTNESS))
    return color


class ComparePlot(pg.PlotWidget):
    """One curve per method against the step, each method's best point marked; redrawn from a timer."""

    QUANTITIES: ClassVar[dict[str, str]] = {"psnr": "PSNR (dB)", "loss": "fit loss (no ground truth)"}
    #: Where the legend sits: the corner the curves leave free. PSNR curves rise from the bottom left towards
    #: the top, so bottom right; loss curves fall from the top left towards the bottom right, so top right.
    LEGEND_OFFSET: ClassVar[dict[str, tuple[int, int]]] = {"psnr": (-5, -5), "loss": (-5, 5)}

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(260, MIN_PART_HEIGHT // 2)
        self.showGrid(x=True, y=True, alpha=0.2)
        self.setLabel("bottom", "step")
        self.setMenuEnabled(False)
        # translucent, so a curve passing behind it stays visible; its corner follows the quantity
        self.legend = self.addLegend(offset=self.LEGEND_OFFSET["psnr"], labelTextSize="8pt", brush=(0, 0, 0, 160))
        self.quantity = "psnr"
        self.log_steps = False
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.best_marks: dict[str, pg.PlotDataItem] = {}
        self._points: dict[str, tuple[list[float], list[float]]] = {}
        self._dirty: set[str] = set()
        self.setLabel("left", self.QUANTITIES[self.quantity])
        self._show_empty()

    def _show_empty(self) -> None:
        """Until the first point: steps from 0 and the quantity's usual range, in the axes' own scale."""
        x = (0.0, 2.5) if self.log_steps else (0.0, 300.0)  # log10: 1–300 steps
        y = (-4.0, 0.0) if self.quantity == "loss" else (10.0, 40.0)
        show_until_data(self, x, y)

    def start(self, methods: Sequence[tuple[str, str]], quantity: str) -> None:
        """Clear and prepare a curve per (name, label); ``quantity`` is "psnr" or "loss"."""
        if quantity not in self.QUANTITIES:
            raise ValueError(f"quantity must be one of {', '.join(self.QUANTITIES)}")
        for item in (*self.curves.values(), *self.best_marks.values()):
            self.removeItem(item)
        self.legend.clear()
        self.curves, self.best_marks, self._points, self._dirty = {}, {}, {}, set()
        self.quantity = quantity
        self.setLabel("left", self.QUANTITIES[quantity])
        self.legend.setOffset(self.LEGEND_OFFSET[quantity])
        self._apply_log()
        for i, (name, label) in enumerate(methods):
            color = method_color(name, i)
            self.curves[name] = self.plot([], [], pen=pg.mkPen(color, width=1.6), name=label)
            # a data item, not a scatter item: it follows the plot's log axes like the curves do
            mark = pg.PlotDataItem([], [], pen=None, symbol="o", symbolSize=9, symbolPen="w", symbolBrush=color)
            self.addItem(mark)
            self.best_marks[name] = mark
            self._points[name] = ([], [])
        self._show_empty()

    def add_point(self, name: str, t: int, value: float) -> None:
        if name not in self._points or not math.isfinite(value) or (self.quantity == "loss" and value <= 0):
            return
        ts, vs = self._points[name]
        ts.append(float(t))
        vs.append(float(value))
        self._dirty.add(name)

    def mark_best(self, name: str, t: int, value: float) -> None:
        if name in self.best_marks and math.isfinite(value):
            self.best_marks[name].setData([float(t)], [float(value)])

    def set_log_steps(self, on: bool) -> None:
        self.log_steps = bool(on)
        self._apply_log()
        if not any(ts for ts, _vs in self._points.values()):
            self._show_empty()  # the empty range in the new axis's units (0–300 read as log10 is absurd)

    def _apply_log(self) -> None:
        self.getPlotItem().setLogMode(x=self.log_steps, y=self.quantity == "loss")

    def refresh(self) -> bool:
        """Redraw the curves that have new points; returns whether anything was redrawn."""
        if not self._dirty:
            return False
        for name in self._dirty:
            ts, vs = self._points[name]
            self.curves[name].setData(np.asarray(ts), np.asarray(vs))
        self._dirty.clear()
        return True

    def point_count(self, name: str) -> int:
        return len(self._points.get(name, ((), ()))[0])

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        ts, vs = self._points.get(name, ([], []))
        return np.asarray(ts), np.asarray(vs)

    def legend_labels(self) -> list[str]:
        return [label.text for _sample, label in self.legend.items]


class ResultTile(QtWidgets.QFrame):
    """One image of the comparison with its title (in the method's colour) and a caption of numbers."""

    def __init__(self, title: str, color: tuple[int, int, int] | None = None, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.title = QtWidgets.QLabel(title)
        if color is not None:
            c = _readable(QtGui.QColor(*color), self.palette())
            color = (c.red(), c.green(), c.blue())
        style = "font-weight: bold" + (f"; color: rgb{color}" if color is not None else "")
        self.title.setStyleSheet(style)
        self.image = QtWidgets.QLabel()
        self.image.setFixedSize(TILE_PX, TILE_PX)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setStyleSheet("background: #202020")
        self.caption = QtWidgets.QLabel("waiting")
        self.caption.setWordWrap(True)
        self.caption.setFixedWidth(TILE_PX)
        self.caption.setStyleSheet("color: gray")
        layout.addWidget(self.title)
        layout.addWidget(self.image)
        layout.addWidget(self.caption)
        self.array: np.ndarray | None = None

    def set_image(self, image: Any) -> None:
        """Show a tensor (…, C, H, W) or a display array (H, W[, 3]), scaled to fit (crisp when enlarged)."""
        arr = image if isinstance(image, np.ndarray) else to_display_array(image)
        self.array = arr
        pixmap = QtGui.QPixmap.fromImage(array_to_qimage(arr))
        h, w = arr.shape[:2]
        mode = Qt.TransformationMode.FastTransformation
        if max(h, w) > TILE_PX:
            mode = Qt.TransformationMode.SmoothTransformation
        self.image.setPixmap(pixmap.scaled(TILE_PX, TILE_PX, Qt.AspectRatioMode.KeepAspectRatio, mode))

    def has_image(self) -> bool:
        pixmap = self.image.pixmap()
        return pixmap is not None and not pixmap.isNull()

    def set_caption(self, text: str) -> None:
        self.caption.setText(text)


def observed_caption(observed: Any, truth: Any) -> str:
    """The degraded image's size, and its PSNR when it has the truth's size (the baseline to beat)."""
    h, w = observed.shape[-2:]
    text = f"{w}×{h}"
    if truth is not None and tuple(observed.shape[-3:]) == tuple(truth.shape[-3:]):
        from priorstudio.core.metrics import psnr

        text += f", PSNR {psnr(observed.clamp(0, 1), truth):.2f} dB"
    return text


def summary_caption(s: MethodSummary, with_psnr: bool) -> str:
    if s.error:
        return f"could not run: {s.error}"
    parts = []
    if with_psnr and math.isfinite(s.best_psnr):
        parts.append(f"best {s.best_psnr:.2f} dB @ step {s.best_step}")
        parts.append(f"final {s.final_psnr:.2f} dB" if math.isfinite(s.final_psnr) else "final n/a")
    parts.append(f"{s.steps} steps, {s.seconds:.1f} s")
    if s.stop_reason:
        parts.append(s.stop_reason.replace("_", " "))
    return "\n".join(parts)


class ComparePanel(QtWidgets.QWidget):
    """Choose methods, run them on the window's problem, and see results and curves side by side.

    ``runRequested`` asks the window to plan the problem and call :meth:`start`; ``runningChanged`` and
    ``compareFinished`` (the summaries by name) report back.
    """

    runRequested = Signal()
    runningChanged = Signal(bool)
    compareFinished = Signal(object)

    HEADERS = ("method", "best PSNR", "at step", "final PSNR", "seconds")

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = CompareController(self)
        self.summaries: dict[str, MethodSummary] = {}
        self.tiles: dict[str, ResultTile] = {}
        self.job: CompareJob | None = None
        self._finals: dict[str, Any] = {}
        self._blocked = False
        self._build()
        self.refresh_timer = QtCore.QTimer(self)
        self.refresh_timer.setInterval(REFRESH_MS)
        self.refresh_timer.timeout.connect(self.plot.refresh)
        c = self.controller
        c.methodStarted.connect(self._on_method_started)
        c.point.connect(self._on_point)
        c.frame.connect(self._on_frame)
        c.methodFinished.connect(self._on_method_finished)
        c.finished.connect(self._on_finished)
        c.failed.connect(self._on_failed)
        self._update_buttons()

    # -- construction --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.method_list = QtWidgets.QListWidget()
        self.method_list.setToolTip("the methods to run, one after the other, on the same degraded image")
        for name, spec in METHODS.items():
            item = QtWidgets.QListWidgetItem(spec.label)
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setToolTip(spec.description)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setForeground(_readable(QtGui.QColor(*method_color(name)), self.palette()))
            self.method_list.addItem(item)
        self.method_list.setMaximumHeight(24 * (len(METHODS) + 1))
        self.steps = _spin(1, 100_000, 300, "step cap of the iterative methods (DIP, the implicit prior)")
        self.twicing_steps = _spin(1, 10_000, 30, "step cap of NLM and NTK twicing (step 1 is the plain filter)")
        self.dip_width = _spin(1, 512, 128, "channels of every DIP level (the paper: 128; smaller runs faster)")
        self.use_panel = QtWidgets.QCheckBox("use the Algorithm panel's settings")
        self.use_panel.setToolTip(
            "the method chosen in the Algorithm panel runs with the values set there (its steps included)"
        )
        self.use_panel.setChecked(True)
        self.show_best = QtWidgets.QCheckBox("show each method at its best step")
        self.show_best.setToolTip("the image nearest the step of highest PSNR instead of the final one")
        self.show_best.toggled.connect(self._show_images)
        self.log_steps = QtWidgets.QCheckBox("log step axis")
        self.log_steps.setToolTip("methods run for very different step counts: a log axis shows them all")
        self.log_steps.toggled.connect(lambda on: self.plot.set_log_steps(on))
        self.run_button = QtWidgets.QPushButton("Compare")
        self.run_button.setToolTip("run the ticked methods on the degraded image as set in the Problem panel")
        self.run_button.clicked.connect(self.runRequested)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("end the running method with its current estimate and skip the rest")
        self.stop_button.clicked.connect(self.stop)
        self.status = QtWidgets.QLabel("Tick methods and press Compare.")
        self.status.setWordWrap(True)

        options = QtWidgets.QWidget()
        ol = QtWidgets.QVBoxLayout(options)
        ol.setContentsMargins(0, 0, 0, 0)
        ol.addWidget(self.method_list)
        form = QtWidgets.QFormLayout()
        self.steps_label = QtWidgets.QLabel()
        form.addRow(self.steps_label, self.steps)
        self.use_panel.toggled.connect(self._label_steps)
        self._label_steps(self.use_panel.isChecked())
        form.addRow("twicing steps", self.twicing_steps)
        form.addRow("DIP width", self.dip_width)
        ol.addLayout(form)
        for w in (self.use_panel, self.show_best, self.log_steps):
            ol.addWidget(w)
        ol.addStretch(1)
        # Side by side and each part scrolling on its own, so the dock asks for little height: a docked
        # panel's minimum adds to the window's, and the window must still fit a 1000-pixel screen with the
        # run controls and plots in view.
        options_scroll = QtWidgets.QScrollArea()
        options_scroll.setWidgetResizable(True)
        options_scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        options_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        options_scroll.setWidget(options)
        bar = self.style().pixelMetric(QtWidgets.QStyle.PixelMetric.PM_ScrollBarExtent)
        options_scroll.setMinimumHeight(MIN_PART_HEIGHT // 2)
        # the buttons and the status stay in view above the options, however little height the dock has
        column = QtWidgets.QWidget()
        column.setFixedWidth(250 + bar)
        cl = QtWidgets.QVBoxLayout(column)
        cl.setContentsMargins(0, 0, 0, 0)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        cl.addLayout(buttons)
        cl.addWidget(self.status)
        cl.addWidget(options_scroll, 1)

        self.tile_box = QtWidgets.QWidget()
        self.tile_layout = QtWidgets.QHBoxLayout(self.tile_box)
        self.tile_layout.setContentsMargins(2, 2, 2, 2)
        self.placeholder = QtWidgets.QLabel(
            "Each method's result appears here, side by side with the degraded image, as it runs."
        )
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setEnabled(False)  # drawn in the palette's dimmed text colour
        self.tile_layout.addWidget(self.placeholder, 1)
        self.tile_layout.addStretch(1)
        tiles = QtWidgets.QScrollArea()
        tiles.setWidgetResizable(True)
        tiles.setWidget(self.tile_box)
        tiles.setMinimumSize(TILE_PX + 2 * bar, MIN_PART_HEIGHT)

        self.table = QtWidgets.QTableWidget(0, len(self.HEADERS))
        self.table.setHorizontalHeaderLabels(self.HEADERS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(MIN_PART_HEIGHT // 2)
        self.plot = ComparePlot()

        curves = QtWidgets.QSplitter(Qt.Orientation.Vertical)  # the PSNR curves over the table of figures
        curves.addWidget(self.plot)
        curves.addWidget(self.table)
        curves.setStretchFactor(0, 3)
        curves.setStretchFactor(1, 2)
        right = QtWidgets.QSplitter(Qt.Orientation.Horizontal)  # the images beside them
        right.addWidget(tiles)
        right.addWidget(curves)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        right.setSizes([3 * TILE_PX, 2 * TILE_PX])  # at first: room for three images beside the curves
        layout = QtWidgets.QHBoxLayout(self)
        layout.addWidget(column)
        layout.addWidget(right, 1)

    def _label_steps(self, use_panel: bool) -> None:
        """With the Algorithm panel's settings in use, its method runs its own step cap: say so at the box."""
        self.steps_label.setText("steps (other methods)" if use_panel else "steps")
        self.steps_label.setToolTip(
            "the Algorithm panel's method keeps its own step cap while its settings are used" if use_panel else ""
        )

    # -- choices -------------------------------------------------------------------------------------
    def checked_methods(self) -> list[str]:
        out = []
        for i in range(self.method_list.count()):
            item = self.method_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def set_checked_methods(self, names: Sequence[str]) -> None:
        wanted = set(names)
        for i in range(self.method_list.count()):
            item = self.method_list.item(i)
            on = item.data(Qt.ItemDataRole.UserRole) in wanted
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def params_for(
        self, names: Sequence[str], operator: Operator | None, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The parameters each method runs with, from this panel's caps (see :func:`compare_params`)."""
        return compare_params(
            names,
            operator,
            steps=self.steps.value(),
            twicing_steps=self.twicing_steps.value(),
            dip_width=self.dip_width.value(),
            overrides=overrides,
        )

    # -- running -------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.controller.is_running()

    def set_blocked(self, blocked: bool) -> None:
        """Another run holds the machine: no comparison may start until it ends."""
        self._blocked = bool(blocked)
        self._update_buttons()

    def start(self, job: CompareJob, *, observed: Any = None) -> None:
        """Run ``job`` (its methods must be known to the registry): tiles and curves fill in as it goes."""
        if self.is_running():
            raise ParameterError("a comparison is already running")
        if not job.methods:
            raise ParameterError("tick at least one method to compare")
        for name in job.methods:
            if name not in METHODS:
                raise ParameterError(f"unknown method {name!r}")
        self.job = job
        self.summaries = {}
        self._finals = {}
        self._clear_tiles()
        if observed is not None:
            tile = self._add_tile("observed", "degraded")
            tile.set_image(observed)
            tile.set_caption(observed_caption(observed, job.truth))
        if job.truth is not None:
            tile = self._add_tile("truth", "ground truth")
            tile.set_image(job.truth)
            tile.set_caption("")
        for name in job.methods:
            self._add_tile(name, METHODS[name].label, method_color(name)).set_caption("waiting")
        quantity = "psnr" if job.truth is not None else "loss"
        self.plot.start([(n, METHODS[n].label) for n in job.methods], quantity)
        self.plot.set_log_steps(self.log_steps.isChecked())
        self.table.setRowCount(0)
        self.status.setText(f"running {len(job.methods)} method(s)…")
        self.controller.start(job)
        self.refresh_timer.start()
        self._update_buttons()
        self.runningChanged.emit(True)

    def stop(self) -> None:
        if self.is_running():
            self.controller.stop()
            self.status.setText("stopping: the running method ends with its current estimate…")

    def shutdown(self) -> bool:
        self.refresh_timer.stop()
        return self.controller.shutdown()

    # -- the worker's reports ------------------------------------------------------------------------
    def _on_method_started(self, name: str) -> None:
        done = len(self.summaries)
        total = len(self.job.methods) if self.job is not None else 0
        self.status.setText(f"running {METHODS[name].label} ({done + 1} of {total})…")
        if name in self.tiles:
            self.tiles[name].set_caption("running…")

    def _on_point(self, name: str, t: int, psnr: float, loss: float) -> None:
        self.plot.add_point(name, t, psnr if self.plot.quantity == "psnr" else loss)

    def _on_frame(self, name: str, _t: int, image: np.ndarray) -> None:
        if name in self.tiles and name not in self.summaries:
            self.tiles[name].set_image(image)

    def _on_method_finished(self, name: str, summary: MethodSummary) -> None:
        self.summaries[name] = summary
        with_psnr = self.plot.quantity == "psnr"
        tile = self.tiles.get(name)
        if tile is not None:
            tile.set_caption(summary_caption(summary, with_psnr))
        if with_psnr:
            self.plot.mark_best(name, summary.best_step, summary.best_psnr)
        self._finals[name] = summary.image
        self._show_image(name)
        self._add_row(summary, with_psnr)
        self.plot.refresh()

    def _on_finished(self, summaries: dict[str, MethodSummary]) -> None:
        self.refresh_timer.stop()
        self.plot.refresh()
        skipped = [n for n in (self.job.methods if self.job else ()) if n not in summaries]
        for name in skipped:
            self.tiles[name].set_caption("not run (stopped)")
        failed = [n for n, s in summaries.items() if s.error]
        text = f"done: {len(summaries) - len(failed)} method(s) ran"
        if failed:
            text += f", {len(failed)} could not run"
        if skipped:
            text += f", {len(skipped)} skipped"
        self.status.setText(text)
        self._update_buttons()
        self.runningChanged.emit(False)
        self.compareFinished.emit(summaries)

    def _on_failed(self, message: str) -> None:
        self.refresh_timer.stop()
        self.status.setText(message)
        self._update_buttons()
        self.runningChanged.emit(False)

    # -- tiles and table -----------------------------------------------------------------------------
    def _clear_tiles(self) -> None:
        for tile in self.tiles.values():
            self.tile_layout.removeWidget(tile)
            tile.deleteLater()
        self.tiles = {}
        self.placeholder.show()

    def _add_tile(self, key: str, title: str, color: tuple[int, int, int] | None = None) -> ResultTile:
        tile = ResultTile(title, color)
        self.placeholder.hide()
        self.tile_layout.insertWidget(self.tile_layout.count() - 1, tile)
        self.tiles[key] = tile
        return tile

    def _show_images(self, *_args: object) -> None:
        for name in self.summaries:
            self._show_image(name)

    def _show_image(self, name: str) -> None:
        summary = self.summaries.get(name)
        tile = self.tiles.get(name)
        if summary is None or tile is None:
            return
        image = summary.best_image if self.show_best.isChecked() and summary.best_image is not None else None
        image = image if image is not None else self._finals.get(name)
        if image is not None:
            tile.set_image(image)

    def _add_row(self, s: MethodSummary, with_psnr: bool) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)

        def db(v: float) -> str:
            return f"{v:.2f}" if with_psnr and math.isfinite(v) else "n/a"

        step = str(s.best_step) if with_psnr else "n/a"
        cells = (s.label, db(s.best_psnr), step, db(s.final_psnr), f"{s.seconds:.1f}")
        if s.error:
            cells = (s.label, "—", "—", "—", "could not run")
        for col, text in enumerate(cells):
            item = QtWidgets.QTableWidgetItem(text)
            if s.error and col == len(cells) - 1:
                item.setToolTip(s.error)
            self.table.setItem(row, col, item)

    def table_rows(self) -> list[list[str]]:
        return [
            [self.table.item(r, c).text() for c in range(self.table.columnCount())]
            for r in range(self.table.rowCount())
        ]

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.run_button.setEnabled(not running and not self._blocked)
        self.stop_button.setEnabled(running)
        for w in (self.method_list, self.steps, self.twicing_steps, self.dip_width, self.use_panel):
            w.setEnabled(not running)


def _spin(lo: int, hi: int, value: int, tip: str) -> QtWidgets.QSpinBox:
    spin = SpinBox()
    spin.setRange(lo, hi)
    spin.setValue(value)
    spin.setToolTip(tip)
    spin.setKeyboardTracking(False)
    return spin
