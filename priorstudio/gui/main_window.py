"""The main window: open a photo, describe the degradation, paint a mask, run, watch, save.

The window wires parts that each do one thing: the canvas (:mod:`canvas`), the mask model
(:mod:`mask_model`), the panels (:mod:`panels`), the plots (:mod:`plots`), the run planner
(:mod:`session`) and the run controller (:mod:`worker`). Commands come from the keymap table
(:mod:`keymap`): one QAction per entry, connected by id to a ``_cmd_<id>`` method.

Live updates follow STYLE.md's streaming pattern: the worker's ``step`` signal appends scalars (cheap),
its ``frame`` signal drops the newest image into a one-slot mailbox, and a 30 Hz timer repaints the
canvas and the plots. Nothing is repainted from a worker signal directly.

Seams for what comes next: ``record_sink_factories`` (per-run observers of every StepRecord, e.g. a frame
history for scrubbing), ``session_state()`` (what an autosave needs), ``denoiser_factory`` (what the
teaching tools and an inspector need), and the ``runStarted`` / ``runFinished`` signals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import QRectF, Qt, Signal

from priorstudio.core.allocator import release_free_memory
from priorstudio.core.atomic import OutputExistsError
from priorstudio.core.denoisers import available_models
from priorstudio.core.errors import ParameterError, PriorStudioError, WeightsError
from priorstudio.core.imageio import (
    encode_image,
    has_deep_samples,
    image_from_bytes,
    load_image,
    load_mask,
    save_image,
    save_mask,
)
from priorstudio.core.memory import check_run_fits, estimate_run_memory
from priorstudio.core.runrecord import RunRecord
from priorstudio.core.samplers import expected_iterations, ideal_sigma_schedule
from priorstudio.core.samplers.base import StepRecord, StopReason
from priorstudio.gui import (
    keymap,
    qt_compat,  # noqa: F401  (first: guards a PySide6 refcount bug)
)
from priorstudio.gui.canvas import ImageCanvas
from priorstudio.gui.compare import ComparePanel
from priorstudio.gui.compare_worker import CompareJob
from priorstudio.gui.dialogs import ShortcutSheet, ask_close, ask_overwrite, show_error
from priorstudio.gui.mask_model import MaskModel
from priorstudio.gui.panels import AlgorithmPanel, DegradationPanel, MaskTools
from priorstudio.gui.plots import PLOT_MIN_HEIGHT, RunPlots
from priorstudio.gui.run_progress import RunProgress
from priorstudio.gui.session import (
    DenoiserProvider,
    MethodStepTimer,
    RunPlan,
    StepTimer,
    estimate_cost,
    estimate_method_cost,
    format_duration,
    plan_run,
    starting_noise,
)
from priorstudio.gui.spin_boxes import DoubleSpinBox
from priorstudio.gui.worker import Frame, FrameMailbox, MetricsTap, RecordSink, RunController, StepScalars

# What the GUI thread does during a run is paced: on two cores every millisecond it spends is taken from the
# sampler. Frames are shown as they arrive (the worker sends ≤ max_fps a second) but never closer than
# FRAME_GAP_MS: one that comes sooner waits on a single-shot timer. The plots and the progress are redrawn by a
# slower periodic timer; a 33 ms one that mostly found nothing to do cost ~5 ms of GUI time a second.
REPAINT_MS = 250  # the plots (~4 ms to redraw, see gui/plots.py) and the progress bar: 4 a second look live
FRAME_GAP_MS = 25
WINDOW_SIZE = (1500, 950)  # the window as it first opens, where the screen has room
FRAME_ALLOWANCE = (16, 40)  # room left on a small screen for the window frame and title bar
PLOTS_WIDTH = 440  # the plots column as the window first opens
COMPARE_MIN_HEIGHT = 300  # the compare panel as it first appears docked: images, curves and options in view
ALGORITHM_KEEP_HEIGHT = 320  # the Algorithm panel's least when the Problem panel grows: Run buttons, method, model
RELEASE_AFTER_RUN_MS = 500  # once the run's thread is gone, its free memory goes back (core/allocator.py)
# and during a long run every ten seconds: the allocator keeps what a step frees for the next step, and over
# thousands of steps the pages it keeps but no longer reuses add up (+35–70 MB in 3000 steps, measured).
# Each release costs the run a refault of its step buffers: every 3 s that was ~2% of its speed.
RELEASE_DURING_RUN_MS = 10_000
PREVIEW_DELAY_MS = 250
MAX_RECENT = 10
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp *.webp *.gif *.pgm *.ppm *.pnm);;All files (*)"
SAVE_FILTERS = ("PNG 8-bit (*.png)", "PNG 16-bit (*.png)", "JPEG (*.jpg *.jpeg)", "TIFF (*.tif *.tiff)")
NO_MODEL_NOTE = (
    "No denoiser model is bundled with this copy of PriorStudio (resources/models is empty), so nothing can "
    "run yet. Choose a weights file (.pt) with the … button next to the model, or install the bundled models."
)

DenoiserFactory = Callable[[int], Any]


def _model_findable(model: str) -> bool:
    """A bundled model's name or a weights file that is (still) there."""
    return model in available_models() or Path(model).is_file()


class MainWindow(QtWidgets.QMainWindow):
    """PriorStudio's main window.

    ``denoiser_factory`` (``channels -> Denoiser``) replaces the bundled models (tests, benchmarks);
    ``settings`` defaults to the application's QSettings; ``error_sink(title, message)`` replaces the error
    dialog (tests); ``max_fps`` caps the frames the worker sends.
    """

    runStarted = Signal(object)  # the RunPlan
    runFinished = Signal(object)  # the last StepRecord (None when the run failed)
    photoChanged = Signal()

    def __init__(
        self,
        *,
        denoiser_factory: DenoiserFactory | None = None,
        model: str | None = None,
        settings: QtCore.QSettings | None = None,
        error_sink: Callable[[str, str], None] | None = None,
        max_fps: float = 30.0,
    ) -> None:
        super().__init__()
        self.setWindowTitle("PriorStudio")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else QtCore.QSettings()
        self.error_sink = error_sink
        #: asked before work would be lost — closing the window, or opening another photo (``_pending_action``
        #: says which): "running", "comparing", "comparing unsaved" or "unsaved" → "save", "discard", "cancel"
        self._pending_action = "close the window"
        self.confirm_close: Callable[[str], str] = lambda reason: ask_close(self, reason, self._pending_action)
        #: asked before a save replaces a file the save dialog did not confirm (a suffix added, a companion file)
        self.confirm_overwrite: Callable[[Path], bool] = lambda path: ask_overwrite(self, path)
        self.max_fps = max_fps
        self.denoisers = DenoiserProvider(model, denoiser_factory)
        self.denoiser_factory: DenoiserFactory = self.denoisers
        self.step_timer = StepTimer()
        self.method_timer = MethodStepTimer()
        #: callables (plan) -> sink, each giving an observer of every StepRecord of one run (worker thread)
        self.record_sink_factories: list[Callable[[RunPlan], RecordSink]] = []

        # document
        self.photo: torch.Tensor | None = None
        self.photo_path: str | None = None
        self.photo_name = ""
        self.mask: MaskModel | None = None
        self.plan: RunPlan | None = None
        self.guide: torch.Tensor | None = None  # a flash photo: the network input of a DIP run
        self.guide_name: str | None = None
        self.result: torch.Tensor | None = None
        self.result_saved = True
        self.result_path: str | None = None
        self.result_bit_depth = 8  # as it was last saved: Save writes the same file the same way
        self._previous_result: tuple[torch.Tensor | None, bool, str | None] = (None, True, None)
        self.last_record: StepRecord | None = None
        self.record: RunRecord | None = None
        self.progress: RunProgress | None = None
        self.frames_shown = 0
        self._frame_shown_at = -math.inf
        self._released_at = -math.inf
        self._preview_plan: RunPlan | None = None

        # run machinery
        self.controller = RunController(self)
        self.mailbox = FrameMailbox()
        self.repaint_timer = QtCore.QTimer(self)
        self.repaint_timer.setInterval(REPAINT_MS)
        self.repaint_timer.timeout.connect(self._repaint)
        self.frame_timer = QtCore.QTimer(self)  # a frame that came within FRAME_GAP_MS of the last one
        self.frame_timer.setSingleShot(True)
        self.frame_timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.frame_timer.timeout.connect(self._show_frame)
        self.preview_timer = QtCore.QTimer(self)
        self.preview_timer.setSingleShot(True)
        self.preview_timer.setInterval(PREVIEW_DELAY_MS)
        self.preview_timer.timeout.connect(self.update_preview)
        self.controller.step.connect(self._on_step)
        self.controller.frame.connect(self._on_frame)
        self.controller.finished.connect(self._on_finished)
        self.controller.failed.connect(self._on_failed)
        self.controller.paused.connect(self._on_paused)
        self.controller.resumed.connect(self._on_resumed)

        self._build_widgets()
        self._build_actions()
        self._build_menus()
        self._build_docks()
        self._restore_settings()
        self._update_actions()
        self._watch_keys()
        self._check_models()
        # the Teach menu, run-history and explain docks; they hook in through the window's seams
        from priorstudio.gui.teach.integration import install_teach_tools

        self.teach = install_teach_tools(self)

    # ================================================================================================
    # construction
    # ================================================================================================
    def _build_widgets(self) -> None:
        self.canvas = ImageCanvas()
        self.canvas.strokeFinished.connect(self._on_stroke)
        self.canvas.cursorMoved.connect(self._on_cursor)
        self.canvas.zoomChanged.connect(lambda s: self.zoom_label.setText(f"{100 * s:.0f}%"))
        self.canvas.viewChanged.connect(self._on_canvas_view)
        self.degradation = DegradationPanel()
        self.degradation.changed.connect(self._on_degradation_changed)
        self.algorithm = AlgorithmPanel(model_choice=not self.denoisers.injected)
        self.algorithm.changed.connect(self.schedule_preview)
        self.algorithm.modelChanged.connect(self._on_model_changed)
        self.algorithm.guideRequested.connect(self.choose_guide)
        self.algorithm.guideCleared.connect(self.clear_guide)
        self.algorithm.method.currentIndexChanged.connect(self._apply_flash_recipe)
        self.algorithm.method.currentIndexChanged.connect(self._on_method_chosen)
        self.mask_tools = MaskTools()
        self.plots = RunPlots()
        self.compare = ComparePanel()
        self.compare.runRequested.connect(self.start_compare)
        self.compare.runningChanged.connect(lambda _running: self._update_actions())
        self.keep_overlay = QtWidgets.QCheckBox("keep the previous run as a faint overlay")
        self.keep_overlay.setToolTip("a new run clears the plots; with this on, the last run stays, faint")
        # run controls
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("idle")
        self.run_label = QtWidgets.QLabel("")
        self.run_label.setWordWrap(True)
        # status bar
        self.cursor_label = QtWidgets.QLabel("")
        self.zoom_label = QtWidgets.QLabel("")
        self.model_label = QtWidgets.QLabel("")
        self.statusBar().addPermanentWidget(self.cursor_label)
        self.statusBar().addPermanentWidget(self.zoom_label)
        self.statusBar().addPermanentWidget(self.model_label)
        # centre: a small view bar above the canvas
        centre = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(centre)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.view_bar = QtWidgets.QToolBar("View")
        self.view_bar.setIconSize(QtCore.QSize(16, 16))
        layout.addWidget(self.view_bar)
        layout.addWidget(self.canvas, 1)
        self.setCentralWidget(centre)

    def _build_actions(self) -> None:
        self.actions: dict[str, QtGui.QAction] = {}
        for spec in keymap.ACTIONS:
            action = QtGui.QAction(spec.text, self)
            action.setObjectName(f"action_{spec.id}")
            action.setShortcuts(keymap.key_sequences(spec))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            keys = keymap.key_text(spec)
            action.setToolTip(spec.help + (f" ({keys})" if keys else ""))
            action.setStatusTip(spec.help)
            action.setCheckable(spec.checkable)
            handler = getattr(self, f"_cmd_{spec.id}")
            if spec.checkable:
                action.toggled.connect(handler)
            else:
                title = f"{keymap.command_name(spec)} failed"  # the dialog names the command
                action.triggered.connect(lambda _=False, h=handler, t=title: self._guarded(h, t))
            self.addAction(action)  # shortcuts work even when the menu bar is hidden
            self.actions[spec.id] = action
        views = QtGui.QActionGroup(self)
        for key in ("view_observed", "view_estimate", "view_truth"):
            views.addAction(self.actions[key])
        self.actions["view_observed"].setChecked(True)
        tools = QtGui.QActionGroup(self)
        tools.addAction(self.actions["brush"])
        tools.addAction(self.actions["eraser"])
        self.actions["brush"].setChecked(True)
        self.actions["show_mask"].setChecked(True)
        for key in ("view_observed", "view_estimate", "view_truth", "split", "fit", "actual_size"):
            self.view_bar.addAction(self.actions[key])
        self.view_bar.addSeparator()
        self.view_bar.addWidget(QtWidgets.QLabel(" levels "))
        self.level_low = DoubleSpinBox()
        self.level_high = DoubleSpinBox()
        for spin, value, tip in (
            (self.level_low, 0.0, "display black point"),
            (self.level_high, 1.0, "display white point"),
        ):
            spin.setRange(-1.0, 2.0)
            spin.setDecimals(2)
            spin.setSingleStep(0.05)
            spin.setValue(value)
            spin.setToolTip(tip + " (live frames keep it)")
            spin.setAccessibleName(tip)
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(self._on_levels)
            self.view_bar.addWidget(spin)
        for key in ("brush", "eraser", "mask_clear", "mask_invert", "mask_block", "mask_random", "undo", "redo"):
            self.mask_tools.add_action(key, self.actions[key])
        self.mask_tools.finish()

    def _build_menus(self) -> None:
        menus = {name: self.menuBar().addMenu(f"&{name}") for name in keymap.MENUS}
        self.recent_menu = QtWidgets.QMenu("Open &recent", self)
        for spec in keymap.ACTIONS:
            menus[spec.menu].addAction(self.actions[spec.id])
            if spec.id == "open_sample":
                menus["File"].addMenu(self.recent_menu)
            if spec.id in ("copy_result", "show_mask", "brush_larger10", "mask_block", "step"):
                menus[spec.menu].addSeparator()
        self.menus = menus
        # compare mode: not a keyed command, so it lives here rather than in the keymap table
        self.compare_action = QtGui.QAction("&Compare methods…", self)
        self.compare_action.setObjectName("action_compare")
        self.compare_action.setToolTip("run several methods on the same degraded image, side by side")
        self.compare_action.setStatusTip(self.compare_action.toolTip())
        self.compare_action.triggered.connect(self.show_compare)
        menus["Run"].addSeparator()
        menus["Run"].addAction(self.compare_action)

    def _build_docks(self) -> None:
        def dock(title: str, widget: QtWidgets.QWidget, area: Qt.DockWidgetArea, name: str) -> QtWidgets.QDockWidget:
            d = QtWidgets.QDockWidget(title, self)
            d.setObjectName(name)
            scroll = QtWidgets.QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(widget)
            scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
            d.setWidget(scroll)
            self.addDockWidget(area, d)
            return d

        left = self._problem_column = QtWidgets.QWidget()
        ll = QtWidgets.QVBoxLayout(left)
        ll.addWidget(_group("Degradation", self.degradation))
        ll.addWidget(_group("Mask", self.mask_tools))
        ll.addStretch(1)
        self.problem_dock = dock("Problem", left, Qt.DockWidgetArea.LeftDockWidgetArea, "problem_dock")

        right = QtWidgets.QWidget()
        rl = QtWidgets.QVBoxLayout(right)
        run_box = QtWidgets.QWidget()
        bl = QtWidgets.QGridLayout(run_box)
        for i, key in enumerate(("run", "pause", "step", "stop")):
            button = QtWidgets.QToolButton()
            button.setDefaultAction(self.actions[key])
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
            bl.addWidget(button, 0, i)
        bl.addWidget(self.progress_bar, 1, 0, 1, 4)
        bl.addWidget(self.run_label, 2, 0, 1, 4)
        compare_button = QtWidgets.QToolButton()
        compare_button.setDefaultAction(self.compare_action)
        compare_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        compare_button.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        bl.addWidget(compare_button, 3, 0, 1, 4)
        # Run first: its buttons and progress stay in view when the dock is short and its parameters scroll
        rl.addWidget(_group("Run", run_box))
        rl.addWidget(_group("Algorithm", self.algorithm))
        rl.addStretch(1)
        # the controls in one column on the left (what to restore, then how), the plots alone on the right:
        # both get the height they need, the Run buttons and every parameter in view on a 1000-pixel screen
        self.algorithm_dock = dock("Algorithm", right, Qt.DockWidgetArea.LeftDockWidgetArea, "algorithm_dock")
        self.splitDockWidget(self.problem_dock, self.algorithm_dock, Qt.Orientation.Vertical)

        plots = QtWidgets.QWidget()
        pl = QtWidgets.QVBoxLayout(plots)
        pl.setContentsMargins(2, 2, 2, 2)
        pl.addWidget(self.plots.readout)
        # the plots scroll rather than shrink: a dock squeezed by the compare panel or a small screen keeps
        # every plot at a readable height (its height never depends on its width, so the bar cannot cycle)
        self.plots_scroll = QtWidgets.QScrollArea()
        self.plots_scroll.setObjectName("plots_scroll")
        self.plots_scroll.setWidget(self.plots)
        self.plots_scroll.setWidgetResizable(True)
        self.plots_scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.plots_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.plots_scroll.setMinimumHeight(PLOT_MIN_HEIGHT)
        pl.addWidget(self.plots_scroll, 1)
        pl.addWidget(self.keep_overlay)
        self.plots_dock = QtWidgets.QDockWidget("Plots", self)
        self.plots_dock.setObjectName("plots_dock")
        self.plots_dock.setWidget(plots)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.plots_dock)
        self.compare_dock = QtWidgets.QDockWidget("Compare methods", self)
        self.compare_dock.setObjectName("compare_dock")
        self.compare_dock.setWidget(self.compare)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.compare_dock)
        self.compare_dock.hide()
        self._fit_to_screen()
        # the canvas gets what the panels do not need: the controls' column as wide as its content asks (no
        # sideways scrolling), the Problem panel as tall as its content, and the plots a readable width
        bar = self.style().pixelMetric(QtWidgets.QStyle.PixelMetric.PM_ScrollBarExtent)

        def need(w: QtWidgets.QWidget) -> int:
            return max(w.sizeHint().width(), w.minimumSizeHint().width()) + bar + 12

        plots_width = min(PLOTS_WIDTH, self.width() // 3)  # on a small screen the canvas keeps a third
        widths = [max(need(left), need(right), 380), plots_width]
        self.resizeDocks([self.problem_dock, self.plots_dock], widths, Qt.Orientation.Horizontal)
        problem = self._problem_height()
        self.resizeDocks(
            [self.problem_dock, self.algorithm_dock], [problem, self.height() - problem], Qt.Orientation.Vertical
        )

    def _fit_to_screen(self) -> None:
        """Open at the preferred size where the screen has room for it, and within the screen's free area
        (what the task bar and panels leave) where it has not: a 1366×768 laptop would otherwise get a window
        whose plots and Run buttons lie off screen. A saved window geometry, restored later, takes precedence."""
        screen = self.screen() or QtGui.QGuiApplication.primaryScreen()
        if screen is None:
            self.resize(*WINDOW_SIZE)
            return
        room = screen.availableGeometry()
        # the frame (title bar, borders) comes on top of the size set here; it is not known before the window
        # is shown, so a typical allowance is kept free
        size = QtCore.QSize(
            min(WINDOW_SIZE[0], room.width() - FRAME_ALLOWANCE[0]),
            min(WINDOW_SIZE[1], room.height() - FRAME_ALLOWANCE[1]),
        )
        self.resize(size)
        self.move(room.center() - QtCore.QPoint(size.width() // 2, size.height() // 2))

    def _problem_height(self) -> int:
        """The Problem panel's height with all its content in view: its fields and the dock's frame."""
        return self._problem_column.sizeHint().height() + 28

    # ================================================================================================
    # errors
    # ================================================================================================
    def report_error(self, title: str, message: str) -> None:
        """Tell the user; the application keeps running."""
        self.statusBar().showMessage(message, 10_000)
        if self.error_sink is not None:
            self.error_sink(title, message)
        else:
            show_error(self, title, message)

    def _guarded(self, handler: Callable[[], Any], title: str = "PriorStudio") -> Any:
        """Run a command; a PriorStudioError (or a file error) becomes a dialog titled ``title``, not a crash."""
        try:
            return handler()
        except PriorStudioError as error:
            self.report_error(title, str(error))
        except OSError as error:
            self.report_error(title, f"{error.filename or ''}: {error.strerror or error}".strip(": "))
        return None

    # ================================================================================================
    # opening photos
    # ================================================================================================
    def open_path(self, path: str | os.PathLike[str]) -> bool:
        """Open an image file; a bad file shows a dialog and leaves the current photo as it was."""
        try:
            image = load_image(path)
        except PriorStudioError as error:
            self.report_error("Cannot open the image", str(error))
            return False
        if not self.settle_work("open another photo"):
            return False
        self.set_photo(image, os.fspath(path))
        self._add_recent(os.fspath(path))
        return True

    def open_bytes(self, data: bytes, name: str = "pasted image") -> bool:
        try:
            image = image_from_bytes(data, name=name)
        except PriorStudioError as error:
            self.report_error("Cannot open the image", str(error))
            return False
        if not self.settle_work("open another photo"):
            return False
        self.set_photo(image, None, name)
        return True

    def settle_work(self, action: str) -> bool:
        """Before work would be lost (``action``: "close the window", "open another photo"): with a run or a
        comparison going, or a result not saved, ask what to do and do it. False: stay as things are (the user
        cancelled, or the save asked for did not happen)."""
        self._pending_action = action
        unsaved = self.result is not None and not self.result_saved
        answer = None
        if self.controller.is_running():
            answer = self.confirm_close("running")  # save (stop, keep the partial result, save it), discard, cancel
            if answer == "save":
                self._stop_and_wait()
        elif self.compare.is_running():  # a comparison has no single result to save; the last run's may be
            answer = self.confirm_close("comparing unsaved" if unsaved else "comparing")
        elif unsaved:
            answer = self.confirm_close("unsaved")
        if answer == "cancel":
            return False
        if answer == "save" and self.result is not None and not self.result_saved:
            try:
                self._cmd_save()
            except PriorStudioError as error:
                self.report_error("Cannot save", str(error))
            if not self.result_saved:  # the save dialog was cancelled or the save failed
                return False
        return True

    def set_photo(self, image: torch.Tensor, path: str | None = None, name: str | None = None) -> None:
        """Show a new photo (C, H, W) in [0, 1]; a run or comparison going on the old one is stopped first
        (without asking: :meth:`settle_work` asks, where the user opens a photo)."""
        if self.controller.is_running():
            self.controller.shutdown()
            self._abandon_run()
        if self.compare.is_running():
            self.compare.shutdown()
        image = image.detach().to("cpu", torch.float32).contiguous()
        c, h, w = image.shape
        self.photo = image
        self.photo_path = path
        self.photo_name = name or (Path(path).name if path else "untitled")
        self.plan = None
        self._preview_plan = None
        self.clear_guide()  # it belonged to the previous photo
        self.result = None
        self.result_saved = True
        self.result_path = None
        self.last_record = None
        self.record = None
        self.mailbox.clear()
        if self.mask is not None:
            self.mask.remove_listener(self._on_mask_changed)
        radius = self.mask.radius if self.mask is not None else max(4.0, min(h, w) / 40)
        self.mask = MaskModel((h, w))
        self.mask.set_radius(radius)
        self.mask.erasing = self.actions["eraser"].isChecked()
        self.mask.add_listener(self._on_mask_changed)
        self.mask_tools.set_model(self.mask)
        self.canvas.set_photo_size(h, w)
        self.canvas.set_mask_model(self.mask)
        self.canvas.set_layer("observed", "photo", image, keep=False)
        self.canvas.set_layer("truth", "photo", image, keep=False)
        self.canvas.set_layer("estimate", "photo", image, keep=False)
        self._set_view("observed")
        kind = "gray" if c == 1 else "colour"
        self.setWindowTitle(f"{self.photo_name} — {w}×{h} {kind} — PriorStudio")
        self.plots.new_run(labels=self.algorithm.current_method().plots)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("idle")
        self.run_label.setText("")
        self._on_degradation_changed()
        self._update_actions()
        self.photoChanged.emit()

    # -- flash/no-flash: a second photo as the network input ------------------------------------------
    def choose_guide(self) -> bool:
        if not self._has_photo_for_guide():
            return False
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open the photo taken with flash", os.path.dirname(self.photo_path or ""), IMAGE_FILTER
        )
        return bool(path) and self.open_guide(path)

    def open_guide(self, path: str | os.PathLike[str]) -> bool:
        """Use the photo at ``path`` (the same shot with flash) as the network input of DIP runs: the loaded
        photo is then restored as it is (task Denoise, mode Restore), with the flash preset. A file that does
        not load or is not the photo's size is refused with a message; nothing changes then."""
        if not self._has_photo_for_guide():
            return False
        assert self.photo is not None
        c, h, w = (int(v) for v in self.photo.shape)
        try:
            image = load_image(path, mode="gray" if c == 1 else "color")
        except PriorStudioError as error:
            self.report_error("Cannot open the flash photo", str(error))
            return False
        if tuple(image.shape[1:]) != (h, w):
            self.report_error(
                "Flash photo",
                f"the flash photo is {image.shape[2]}×{image.shape[1]} and the photo {w}×{h}: take both from the "
                "same shot, at the same size",
            )
            return False
        self.guide = image.detach().to("cpu", torch.float32).contiguous()
        self.guide_name = Path(path).name
        self.algorithm.set_guide_name(self.guide_name)
        self.degradation.set_task("denoise")
        self.degradation.set_mode("restore")
        self._apply_flash_recipe()
        self.run_label.setText(f"flash photo {self.guide_name}: press Run to merge it with {self.photo_name}")
        return True

    def _has_photo_for_guide(self) -> bool:
        if self.photo is None:
            self.report_error("Flash photo", "open the photo taken without flash first")
        return self.photo is not None

    def _on_method_chosen(self, *_args: object) -> None:
        """Empty side plots take the chosen method's names at once (a finished run's curves keep the names of
        the method that drew them until the next run starts), and the status bar names the model again."""
        if self.is_running():
            return
        method = self.algorithm.current_method()
        if self.plots.series.n == 0:
            self.plots.set_labels(method.plots)
        if method.needs_denoiser:
            self._check_models()
        else:
            self.model_label.setText(f"no denoiser: {method.label} uses none")

    def _apply_flash_recipe(self, *_args: object) -> None:
        """With a flash photo chosen, a method that takes it starts from the flash recipe, not its defaults
        (also when the method changes: connected to the method list)."""
        method = self.algorithm.current_method()
        if self.guide is not None and method.takes_guide:
            self.algorithm.set_values(_flash_values(method.name))

    def clear_guide(self) -> None:
        """No flash photo any more: a method that took it goes back to its own values where the flash recipe
        still stands (its 600 steps and learning rate would quietly carry over to the next ordinary run)."""
        had = self.guide is not None
        self.guide = None
        self.guide_name = None
        self.algorithm.set_guide_name(None)
        if had:  # the recipe of the method shown (DIP with Adam, unless another DIP method is)
            method = self.algorithm.current_method()
            recipe = _flash_values(method.name if method.takes_guide else "dip_adam")
            self.algorithm.undo_values(recipe, shown=method.takes_guide)

    def open_sample(self) -> bool:
        from priorstudio.resources import resource_path

        return self.open_path(resource_path("samples", "chelsea.png"))

    def _add_recent(self, path: str) -> None:
        recent = [p for p in self._recent_files() if p != path]
        recent.insert(0, path)
        self.settings.setValue("recent_files", recent[:MAX_RECENT])
        self._rebuild_recent_menu()

    def _recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self._recent_files()
        for path in files:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(files))

    # drag and drop, paste
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        self._open_mime(event.mimeData())
        event.acceptProposedAction()

    def _open_mime(self, mime: QtCore.QMimeData) -> bool:
        for url in mime.urls():
            if url.isLocalFile():
                return self.open_path(url.toLocalFile())
        if mime.hasImage():
            image = QtGui.QImage(mime.imageData())
            if not image.isNull():
                return self.open_bytes(_qimage_png_bytes(image))
        text = mime.text().strip() if mime.hasText() else ""
        if text and Path(text).is_file():
            return self.open_path(text)
        self.report_error("Nothing to open", "the clipboard holds no image and no image file")
        return False

    # ================================================================================================
    # commands (named after the keymap ids)
    # ================================================================================================
    def _cmd_open(self) -> None:
        start = str(self.settings.value("last_dir", ""))
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open a photo", start, IMAGE_FILTER)
        if path:
            self.settings.setValue("last_dir", str(Path(path).parent))
            self.open_path(path)

    def _cmd_paste(self) -> None:
        self._open_mime(QtWidgets.QApplication.clipboard().mimeData())

    def _cmd_open_sample(self) -> None:
        self.open_sample()

    def _cmd_save(self) -> None:
        if self.result_path:  # saved before: the same file at the same bit depth
            self.save_result(self.result_path, bit_depth=self.result_bit_depth, overwrite=True)
        else:
            self._cmd_save_as()

    def _cmd_save_as(self) -> None:
        if self.result is None:
            raise PriorStudioError("there is no result to save yet: run first")
        base = Path(self.photo_path).stem if self.photo_path else "result"
        start = Path(str(self.settings.value("last_dir", ""))) / f"{base}-restored.png"
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(
            self, "Save the result", str(start), ";;".join(SAVE_FILTERS), self.default_save_filter()
        )
        if not path:
            return
        target = Path(path)
        if not target.suffix:  # the dialog confirmed the name as typed, not with the suffix added here
            target = target.with_name(target.name + ".png")
            if target.exists() and not self.confirm_overwrite(target):
                return
        self.save_result(target, bit_depth=16 if "16" in chosen else 8, overwrite=True)

    def default_save_filter(self) -> str:
        """PNG 16-bit when the photo's file has more than 8 bits per sample, so that saving keeps its depth."""
        deep = self.photo_path is not None and has_deep_samples(self.photo_path)
        return SAVE_FILTERS[1] if deep else SAVE_FILTERS[0]

    def save_result(self, path: str | os.PathLike[str], *, bit_depth: int = 8, overwrite: bool = False) -> Path:
        """Save the result (full-resolution photo for inpainting, the working-size image otherwise)."""
        if self.result is None:
            raise PriorStudioError("there is no result to save yet: run first")
        depth = 16 if bit_depth == 16 else 8
        out = save_image(self.result, path, bit_depth=depth, overwrite=overwrite)
        self.result_path = os.fspath(out)
        self.result_bit_depth = depth
        self.result_saved = True
        self.settings.setValue("last_dir", str(out.parent))
        self.statusBar().showMessage(f"saved {out}", 5000)
        return out

    def _cmd_save_run(self) -> None:
        if self.record is None:
            raise PriorStudioError("there is no run to save yet")
        base = Path(self.photo_path).stem if self.photo_path else "run"
        start = Path(str(self.settings.value("last_dir", ""))) / f"{base}-run.json"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save the run record", str(start), "JSON (*.json)")
        if not path:
            return
        json_path, csv_path = record_paths(path)
        # the dialog confirmed only the name as typed: ask about any other file this save would replace
        unconfirmed = [p for p in (json_path, csv_path) if p != Path(path) and p.exists()]
        if all(self.confirm_overwrite(p) for p in unconfirmed):
            self.save_run_record(path, overwrite=True)

    def save_run_record(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> tuple[Path, Path]:
        """The run's parameters and outcome as JSON, and one CSV row per step beside it (same name, .csv)."""
        if self.record is None:
            raise PriorStudioError("there is no run to save yet")
        json_path, csv_path = record_paths(path)
        if not overwrite:
            for p in (json_path, csv_path):
                if p.exists():
                    raise OutputExistsError(f"{p}: already exists")
        self.record.save_json(json_path, overwrite=True)
        self.record.save_csv(csv_path, overwrite=True)
        self.statusBar().showMessage(f"saved {json_path} and {csv_path.name}", 5000)
        return json_path, csv_path

    def _cmd_copy_result(self) -> None:
        if self.result is None:
            raise PriorStudioError("there is no result to copy yet: run first")
        image = QtGui.QImage.fromData(encode_image(self.result, "PNG"))
        QtWidgets.QApplication.clipboard().setImage(image)
        self.statusBar().showMessage("result copied to the clipboard", 3000)

    def _cmd_quit(self) -> None:
        self.close()

    def _cmd_undo(self) -> None:
        if self.mask is not None and self.mask.undo():
            self._after_mask_edit()

    def _cmd_redo(self) -> None:
        if self.mask is not None and self.mask.redo():
            self._after_mask_edit()

    def _cmd_fit(self) -> None:
        self.canvas.fit()

    def _cmd_actual_size(self) -> None:
        self.canvas.actual_size()

    def _cmd_zoom_in(self) -> None:
        self.canvas.zoom_by(1.25)

    def _cmd_zoom_out(self) -> None:
        self.canvas.zoom_by(0.8)

    def _cmd_view_observed(self, checked: bool) -> None:
        if checked:
            self.canvas.set_view("observed")

    def _cmd_view_estimate(self, checked: bool) -> None:
        if checked:
            self.canvas.set_view("estimate")

    def _cmd_view_truth(self, checked: bool) -> None:
        if checked:
            self.canvas.set_view("truth")

    def _cmd_split(self, checked: bool) -> None:
        self.canvas.set_split(checked)

    def _cmd_show_mask(self, checked: bool) -> None:
        self.canvas.set_mask_visible(checked)

    def _cmd_brush(self, checked: bool) -> None:
        if self.mask is not None and checked:
            self.mask.erasing = False

    def _cmd_eraser(self, checked: bool) -> None:
        if self.mask is not None and checked:
            self.mask.erasing = True

    def _resize_brush(self, steps: int) -> None:
        if self.mask is not None:
            self.mask.grow_brush(steps)
            self.mask_tools.sync_from_model()
            self.canvas.update_brush_outline()

    def _cmd_brush_smaller(self) -> None:
        self._resize_brush(-1)

    def _cmd_brush_larger(self) -> None:
        self._resize_brush(1)

    def _cmd_brush_smaller10(self) -> None:
        self._resize_brush(-10)

    def _cmd_brush_larger10(self) -> None:
        self._resize_brush(10)

    def _cmd_mask_clear(self) -> None:
        if self.mask is not None and self.mask.clear():
            self._after_mask_edit()

    def _cmd_mask_invert(self) -> None:
        if self.mask is not None and self.mask.invert():
            self._after_mask_edit()

    def _cmd_mask_random(self) -> None:
        if self.mask is None:
            return
        share, ok = QtWidgets.QInputDialog.getDouble(
            self, "Scattered mask", "share of the pixels to mark (%)", 50.0, 0.1, 99.9, 1
        )
        if ok:
            self.generate_mask("random", share / 100)

    def _cmd_mask_block(self) -> None:
        self.generate_mask("block", 0.25)

    def generate_mask(self, kind: str, fraction: float, seed: int = 0) -> None:
        """A generated mask: ``"random"`` pixels (``fraction`` hidden) or a central ``"block"`` (share of each side)."""
        if self.mask is None:
            raise PriorStudioError("open an image first")
        self._refuse_task_change("generate a mask")
        changed = self.mask.random_pixels(fraction, seed) if kind == "random" else self.mask.central_block(fraction)
        self.degradation.set_task("inpaint")
        if changed:
            self._after_mask_edit()

    def _cmd_mask_import(self) -> None:
        if self.mask is None:
            raise PriorStudioError("open an image first")
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Import a mask", "", "PNG (*.png);;Images (*.*)")
        if path:
            self.import_mask(path)

    def import_mask(self, path: str | os.PathLike[str]) -> None:
        if self.mask is None:
            raise PriorStudioError("open an image first")
        self._refuse_task_change("import a mask")
        mask = load_mask(path, self.mask.shape)
        if self.mask.set_mask(mask.numpy()):
            self.degradation.set_task("inpaint")
            self._after_mask_edit()

    def _refuse_task_change(self, what: str) -> None:
        """These mask commands switch the task to inpainting, which a run or a comparison holds locked."""
        if self.controller.is_running() or self.compare.is_running():
            raise PriorStudioError(f"cannot {what} while a run is going: it sets the task; stop the run first")

    def _cmd_mask_export(self) -> None:
        if self.mask is None:
            raise PriorStudioError("open an image first")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export the mask", "mask.png", "PNG (*.png)")
        if path:
            self.export_mask(path, overwrite=True)

    def export_mask(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        if self.mask is None:
            raise PriorStudioError("open an image first")
        return save_mask(self.mask.copy(), path, overwrite=overwrite)

    def _cmd_run(self) -> None:
        self.start_run()

    def _cmd_pause(self, checked: bool) -> None:
        if self.controller.is_running():
            self.controller.pause(checked)
        self._update_actions()

    def _cmd_step(self) -> None:
        if self.controller.is_running() and self.controller.is_paused():
            self.controller.step_once()

    def _cmd_stop(self) -> None:
        if self.controller.is_running():
            self.controller.stop()
            self.run_label.setText("stopping after this step…")

    def _cmd_shortcuts(self) -> None:
        ShortcutSheet(self).exec()

    def _cmd_about(self) -> None:
        from priorstudio import __version__

        QtWidgets.QMessageBox.about(
            self,
            "About PriorStudio",
            f"<b>PriorStudio {__version__}</b><p>Restores images with the prior implicit in a blind, "
            "bias-free denoiser (Kadkhodaie &amp; Simoncelli), and lets you watch it work.</p>",
        )

    # ================================================================================================
    # mask and canvas reactions
    # ================================================================================================
    def _on_stroke(self) -> None:
        self._after_mask_edit()

    def _after_mask_edit(self) -> None:
        self.mask_tools.sync_from_model()
        self._update_actions()
        self.schedule_preview()

    def _on_mask_changed(self, _box: tuple[int, int, int, int]) -> None:
        pass  # the overlay listens itself; stroke ends and commands refresh the rest

    def _on_cursor(self, x: float, y: float) -> None:
        if self.photo is None:
            return
        col, row = math.floor(x), math.floor(y)
        _, h, w = self.photo.shape
        if 0 <= row < h and 0 <= col < w:
            values = self.photo[:, row, col].tolist()
            text = ", ".join(f"{v:.3f}" for v in values)
            self.cursor_label.setText(f"x {col}  y {row}  [{text}]")
        else:
            self.cursor_label.setText("")

    def _on_levels(self, *_args: object) -> None:
        low, high = self.level_low.value(), self.level_high.value()
        if high <= low:
            return
        self.canvas.set_levels(low, high)
        if self.photo is not None:  # the photo layers keep no float copy: give them again
            for view in ("observed", "truth", "estimate"):
                if self.canvas.layer(view, "photo") is not None:
                    source = (
                        self.result
                        if view == "estimate" and self.result is not None and self._result_is_photo()
                        else self.photo
                    )
                    self.canvas.set_layer(view, "photo", source, keep=False)

    def _result_is_photo(self) -> bool:
        return self.plan is not None and self.plan.is_crop

    def _on_canvas_view(self, view: str) -> None:
        action = self.actions.get(f"view_{view}")
        if action is not None and not action.isChecked():
            action.setChecked(True)  # its handler shows the view the canvas already shows: no loop

    def _set_view(self, view: str) -> None:
        self.actions[f"view_{view}"].setChecked(True)
        self.canvas.set_view(view)

    def hold_before_after(self, held: bool) -> None:
        """While ``\\`` is held: show the observed image over the estimate (or the estimate over the others)."""
        if not held:
            self.canvas.hold_view(None)
            return
        current = self.canvas.current_view
        self.canvas.hold_view("observed" if current != "observed" else "estimate")

    def _watch_keys(self) -> None:
        """Space (pan) and backslash (before/after) are *held*, so their releases matter too: no shortcut.

        The key filter sits on the window, the canvas and whichever widget of this window has the focus
        (it follows the focus), not on the application: an application-wide filter would run Python for
        every event of the process — each paint, timer and queued signal — and during a run that time is
        taken from the sampler.
        """
        self._key_watch: tuple[QtWidgets.QWidget, ...] = (self, self.canvas, self.canvas.viewport())
        for widget in self._key_watch:
            widget.installEventFilter(self)
        app = QtWidgets.QApplication.instance()
        app.focusChanged.connect(self._follow_focus)
        self._follow_focus(None, app.focusWidget())

    def _follow_focus(self, old: QtWidgets.QWidget | None, new: QtWidgets.QWidget | None) -> None:
        if old is not None and old not in self._key_watch:
            with contextlib.suppress(RuntimeError):  # already deleted
                old.removeEventFilter(self)
        if new is not None and new not in self._key_watch:
            with contextlib.suppress(RuntimeError):
                if new.window() is self:
                    new.installEventFilter(self)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:
        kind = event.type()
        if kind in (QtCore.QEvent.Type.KeyPress, QtCore.QEvent.Type.KeyRelease) and isinstance(obj, QtWidgets.QWidget):
            key = event.key()  # type: ignore[attr-defined]
            if key in (Qt.Key.Key_Space, Qt.Key.Key_Backslash) and obj.window() is self and not _typing_in(obj):
                if event.isAutoRepeat():  # type: ignore[attr-defined]
                    return True
                pressed = kind == QtCore.QEvent.Type.KeyPress
                if key == Qt.Key.Key_Space:
                    self.canvas.set_space_held(pressed)
                elif not (event.modifiers() & Qt.KeyboardModifier.ControlModifier):  # type: ignore[attr-defined]
                    self.hold_before_after(pressed)
                else:
                    return False
                return True
        return False

    # ================================================================================================
    # degradation, model and the preview
    # ================================================================================================
    def _on_degradation_changed(self) -> None:
        task = self.degradation.task_name()
        notice = self.algorithm.set_task(task, self.degradation.task_form.values())  # factor, fraction …
        if notice:
            self.statusBar().showMessage(notice, 10_000)
        self.canvas.set_paint_enabled(task == "inpaint" and self.photo is not None)
        self.canvas.set_mask_visible(self.actions["show_mask"].isChecked() and task == "inpaint")
        self.plots.set_simulate(self.degradation.mode() == "simulate")
        self.actions["view_truth"].setEnabled(self.degradation.mode() == "simulate")
        self._update_actions()
        QtCore.QTimer.singleShot(0, self._fit_problem_dock)  # once the panel has laid out the task's fields
        self.schedule_preview()

    def _fit_problem_dock(self) -> None:
        """Grow the Problem panel when a task's fields no longer fit it (its mask tools would scroll out of
        view), taking the height from the Algorithm panel down to what keeps its Run buttons and the first
        parameters in view. It never shrinks: a height the user chose stays."""
        if self.problem_dock.isFloating() or self.algorithm_dock.isFloating():
            return
        if self.dockWidgetArea(self.problem_dock) != self.dockWidgetArea(self.algorithm_dock):
            return
        have, spare = self.problem_dock.height(), self.algorithm_dock.height()
        grow = min(self._problem_height() - have, spare - ALGORITHM_KEEP_HEIGHT)
        if grow > 0:
            self.resizeDocks(
                [self.problem_dock, self.algorithm_dock], [have + grow, spare - grow], Qt.Orientation.Vertical
            )

    def _on_model_changed(self, model: str | None) -> None:
        self.denoisers.set_model(model)
        self.settings.setValue("model", model or "")
        self._check_models()
        self.schedule_preview()

    def use_model(self, model: str | None) -> bool:
        """Choose the denoiser as the model box does: a bundled model's name, a weights file, or None for the
        bundled default. A file that is no longer there is refused with a message; the current model stays."""
        if model and not _model_findable(model):
            self.statusBar().showMessage(f"The model {model} is no longer there: the current one is kept.", 15_000)
            return False
        self.algorithm.refresh_models(model)
        self._on_model_changed(model)
        return True

    def _check_models(self) -> None:
        self.model_label.setToolTip("")
        self.algorithm.model_note.setToolTip("")
        if self.denoisers.injected:
            self.algorithm.set_model_note("")
            self.model_label.setText("model: supplied by the caller")
            return
        if self.denoisers.model is None and not available_models():
            self.algorithm.set_model_note(NO_MODEL_NOTE, warning=True)
            self.model_label.setText("no model bundled")
            self.statusBar().showMessage("No denoiser model is bundled: choose a weights file to run.", 15_000)
        else:
            # a weights file by its name (a long path would widen the panel and the window); in full on hover
            model = self.denoisers.model
            shown = Path(model).name if model else None
            self.algorithm.set_model_note(f"model: {shown or 'bundled default for gray/colour'}")
            self.algorithm.model_note.setToolTip(str(model or ""))
            self.model_label.setText(f"model: {shown or 'bundled'}")
            self.model_label.setToolTip(str(model or ""))

    def schedule_preview(self) -> None:
        """Re-plan shortly (debounced): the observed image and the cost shown before running."""
        self.preview_timer.start()

    def update_preview(self) -> None:
        """Plan the run as set now: show the degraded image and the expected cost (errors as text, no dialog)."""
        if self.photo is None or self.controller.is_running():
            return
        settings = self.degradation.settings()
        try:
            mask = self.mask.copy() if settings.task == "inpaint" and self.mask is not None else None
            if settings.task == "inpaint" and (mask is None or not mask.any()):
                self.degradation.set_cost_text("Paint the pixels to fill (or Mask ▸ Central block) to see the cost.")
                self.canvas.set_layer("observed", "photo", self.photo, keep=False)
                self.canvas.remove_layer("observed", "run")
                return
            plan = plan_run(self.photo, settings, mask)
        except PriorStudioError as error:
            self.degradation.set_cost_text(f"⚠ {error}")
            return
        self._preview_plan = plan
        self._show_observed(plan)
        self.degradation.set_cost_text(self._cost_text(plan))

    def _show_observed(self, plan: RunPlan) -> None:
        assert self.photo is not None
        if plan.settings.mode == "restore":
            self.canvas.set_layer("observed", "photo", self.photo, keep=False)
            self.canvas.remove_layer("observed", "run")
            return
        self.canvas.set_layer("observed", "photo", self.photo, keep=False)
        self.canvas.set_layer("observed", "run", plan.problem.observed, _region_rect(plan))

    def _cost_text(self, plan: RunPlan) -> str:
        method = self.algorithm.current_method()
        try:
            params = self.algorithm.params(emit_every=1)
        except PriorStudioError as error:
            return f"{plan.describe()} — ⚠ {error}"
        if hasattr(params, "sigma_L"):
            steps = expected_iterations(_as_started(plan, params))
        else:
            steps = int(getattr(params, "max_steps", 0))
        if not method.needs_denoiser:
            if self.is_running():  # a probe now would slow the run and be slowed by it
                return f"Run on {plan.describe()}: ~{steps} steps"
            measured = self.method_timer.is_measured(method, params, plan.work_shape[0])
            if not measured:  # a few steps on two small images, once per setting: a moment's wait
                QtWidgets.QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                cost = estimate_method_cost(plan, steps, method, params, self.method_timer)
            finally:
                if not measured:
                    QtWidgets.QApplication.restoreOverrideCursor()
            return f"Run on {plan.describe()}: {cost.describe()}"
        try:
            denoiser = self.denoisers(plan.work_shape[0])
        except PriorStudioError:
            denoiser = None
        cost = estimate_cost(plan, steps, denoiser, self.step_timer)
        return f"Run on {plan.describe()}: {cost.describe()}"

    # ================================================================================================
    # the run
    # ================================================================================================
    def _can_start(self, what: str) -> bool:
        """Nothing running and a photo loaded; otherwise False (with a dialog when the photo is missing)."""
        if self.controller.is_running() or self.compare.is_running():
            return False
        if self.photo is None:
            self.report_error(f"Nothing to {what}", "open an image first (File ▸ Open, paste or drop one)")
            return False
        return True

    def start_run(self) -> bool:
        """Plan and start a run with the current settings; False (and a dialog) when something is wrong."""
        if not self._can_start("restore"):
            return False
        try:
            return self._start_run()
        except PriorStudioError as error:
            self.report_error("Cannot run", str(error))
            if isinstance(error, ParameterError) and error.field:
                self.algorithm.point_at(error.field)
            return False

    def _start_run(self) -> bool:
        assert self.photo is not None and self.mask is not None
        settings = self.degradation.settings()
        method = self.algorithm.current_method()
        self.algorithm.params(emit_every=1)  # a bad value is reported before any work is done
        mask = self.mask.copy() if settings.task == "inpaint" else None
        plan = plan_run(self.photo, settings, mask)
        params = self.algorithm.params(plan.problem.operator, emit_every=1)
        denoiser = None
        if method.needs_denoiser:
            try:
                denoiser = self.denoisers(plan.work_shape[0])
            except WeightsError as error:
                if not self.denoisers.injected and self.denoisers.model is None and not available_models():
                    raise WeightsError(NO_MODEL_NOTE) from None
                raise error
            check_run_fits(
                estimate_run_memory(plan.work_shape, denoiser, task=settings.task),
                plan.work_shape[1:],
                what="this run",
            )
        if denoiser is not None:
            denoiser = self.teach.tap(denoiser)  # the score f(y_t) of each step, for the run history
        simulate = settings.mode == "simulate"
        truth = plan.problem.truth if simulate else None
        # the worker measures PSNR/SSIM itself (SSIM on a time budget), so the sampler runs at full speed
        guide = plan.take(self.guide) if self.guide is not None and method.takes_guide else None
        stream = method.stream(denoiser=denoiser, problem=plan.problem, params=params, truth=None, guide=guide)
        metrics = MetricsTap(truth) if truth is not None else None

        self.plan = plan
        # kept until the run gives a result of its own: a run that fails with nothing to show gives it back
        self._previous_result = (self.result, self.result_saved, self.result_path)
        self.result = None
        self.result_saved = True
        self.result_path = None
        self.last_record = None
        self.frames_shown = 0
        self.mailbox = FrameMailbox()
        self.record = RunRecord.new(
            method=method.name,
            task=settings.task,
            parameters={
                **_jsonable_params(params),
                "degradation": self.degradation.state(),
                "work_shape": list(plan.work_shape),
                "region": dataclasses.asdict(plan.region),
                **({"network_input": self.guide_name} if guide is not None else {}),
            },
            model=getattr(denoiser, "description", "") if denoiser is not None else "",
            seed=getattr(params, "seed", None),
            source=self.photo_path or "",
            shapes={"photo": self.photo.shape, "work": plan.work_shape},
        )
        sigma_L = getattr(params, "sigma_L", None)
        max_steps = getattr(params, "max_steps", None)
        ideal: list[float] = []
        expected: int | None = None
        if sigma_L is not None and hasattr(params, "beta"):
            schedule = _as_started(plan, params)  # the ideal decay from where the run really starts
            cap = int(max_steps or 10_000)
            expected = min(expected_iterations(schedule), cap)
            n = min(int(expected * 1.5) + 10, cap)
            ideal = ideal_sigma_schedule(schedule, n)
        self.plots.new_run(
            keep_previous=self.keep_overlay.isChecked(),
            sigma_L=sigma_L,
            ideal=ideal,
            expected_steps=expected,
            labels=method.plots,
        )
        self.plots.set_simulate(simulate)
        self.progress = RunProgress(sigma_L, max_steps)
        self._show_observed(plan)
        # the estimate view: the photo underneath (for a crop), the run's frames on its rectangle
        self.canvas.clear_view("estimate")
        if plan.is_crop:
            self.canvas.set_layer("estimate", "photo", self.photo, keep=False)
        self.canvas.set_layer("estimate", "run", plan.problem.observed, _region_rect(plan))
        if self.canvas.current_view != "estimate":
            self._set_view("estimate")
        sinks = [factory(plan) for factory in self.record_sink_factories]
        self.actions["pause"].setChecked(False)
        self.controller.start(lambda: stream, max_fps=self.max_fps, sinks=sinks, metrics=metrics)
        self._released_at = time.monotonic()
        self.repaint_timer.start()
        self.run_label.setText(f"running on {plan.describe()}")
        if self.record.model:  # the network this run really uses (name, path, precision), not just "bundled"
            self.model_label.setText(f"model: {self.record.model}")
        self._update_actions()
        self.runStarted.emit(plan)
        return True

    def is_running(self) -> bool:
        return self.controller.is_running()

    # ================================================================================================
    # compare mode
    # ================================================================================================
    def show_compare(self) -> None:
        """Show the compare panel; docked and shown for the first time, it takes about a third of the height,
        and the Algorithm panel (the Run buttons) keeps as much of its own as it can."""
        appearing = self.compare_dock.isHidden() and not self.compare_dock.isFloating()
        controls = self.algorithm_dock.height()
        self.compare_dock.show()
        self.compare_dock.raise_()
        if appearing and self.dockWidgetArea(self.compare_dock) == Qt.DockWidgetArea.BottomDockWidgetArea:
            self.resizeDocks(
                [self.compare_dock], [max(COMPARE_MIN_HEIGHT, self.height() // 3)], Qt.Orientation.Vertical
            )
            column = self.problem_dock.height() + self.algorithm_dock.height()
            keep = min(controls, column // 2)
            self.resizeDocks([self.problem_dock, self.algorithm_dock], [column - keep, keep], Qt.Orientation.Vertical)

    def start_compare(self, methods: list[str] | None = None, overrides: dict[str, Any] | None = None) -> bool:
        """Run the compare panel's ticked methods (or ``methods``) on the problem as set now.

        ``overrides`` gives some methods their full parameters; with the panel's box ticked, the Algorithm
        panel's method runs with its values there. False (and a dialog) when something is wrong.
        """
        if not self._can_start("compare"):
            return False
        try:
            job, observed = self._compare_job(methods, overrides)
            self.compare.start(job, observed=observed)
        except PriorStudioError as error:
            self.report_error("Cannot compare", str(error))
            return False
        self.show_compare()
        self._update_actions()
        return True

    def _compare_job(
        self, methods: list[str] | None, overrides: dict[str, Any] | None
    ) -> tuple[CompareJob, torch.Tensor]:
        assert self.photo is not None and self.mask is not None
        from priorstudio.core.samplers.registry import METHODS

        settings = self.degradation.settings()
        names = list(methods) if methods is not None else self.compare.checked_methods()
        if not names:
            raise PriorStudioError("tick at least one method to compare")
        mask = self.mask.copy() if settings.task == "inpaint" else None
        plan = plan_run(self.photo, settings, mask)
        problem = plan.problem
        given = dict(overrides or {})
        current = self.algorithm.current_method()
        if self.compare.use_panel.isChecked() and current.name in names and current.name not in given:
            given[current.name] = self.algorithm.params(problem.operator)
        denoiser, denoiser_error = None, ""
        if any(METHODS[n].needs_denoiser for n in names if n in METHODS):
            try:
                denoiser = self.denoisers(plan.work_shape[0])
            except PriorStudioError as error:
                denoiser_error = str(error)
        job = CompareJob(
            methods=tuple(names),
            operator=problem.operator,
            measurement=problem.measurement,
            truth=problem.truth if settings.mode == "simulate" else None,
            init=problem.init,
            params=self.compare.params_for(names, problem.operator, given),
            denoiser=denoiser,
            denoiser_error=denoiser_error,
        )
        return job, problem.observed

    def _on_step(self, s: StepScalars) -> None:
        if self.progress is not None:
            self.progress.update(s.t, s.sigma)
        self.plots.append(s.t, s.row)
        if self.record is not None:
            self.record.append_row(s.row)

    def _on_frame(self, frame: Frame) -> None:
        self.mailbox.put(frame)
        wait_ms = FRAME_GAP_MS - 1000 * (time.monotonic() - self._frame_shown_at)
        if wait_ms <= 0:
            self._show_frame()  # on arrival, unless the last one was just shown
        elif not self.frame_timer.isActive():
            self.frame_timer.start(math.ceil(wait_ms))  # then as soon as the gap is over

    def _show_frame(self) -> None:
        frame = self.mailbox.take()
        if frame is not None and self.plan is not None:
            self.canvas.set_layer("estimate", "run", frame.image, _region_rect(self.plan), pixels=frame.display)
            self.frames_shown += 1
            self._frame_shown_at = time.monotonic()

    def _repaint(self) -> None:
        """The periodic timer's tick: a frame still waiting, the plots and the progress."""
        self._show_frame()
        self.plots.refresh()
        self._update_progress()
        now = time.monotonic()
        if now - self._released_at >= RELEASE_DURING_RUN_MS / 1000:
            self._released_at = now
            release_free_memory()

    def _update_progress(self) -> None:
        p = self.progress
        if p is None:
            return
        rate = p.steps_per_second
        eta = p.eta_seconds
        parts = [f"step {p.t}"]
        if math.isfinite(p.sigma):
            parts.append(f"σ {p.sigma:.4g}")
        if math.isfinite(rate):
            parts.append(f"{rate:.1f} it/s")
        if self.controller.is_running() and math.isfinite(eta):
            parts.append(f"ETA {format_duration(eta)}")
        if self.controller.is_paused():
            parts.append("paused")
        bar = self.progress_bar
        # QProgressBar.setValue repaints at once (synchronously, ~1.5 ms); with updates off it only stores the
        # value, and turning them back on schedules one repaint for value and text together
        bar.setUpdatesEnabled(False)
        bar.setValue(round(1000 * p.fraction))
        bar.setFormat("  ".join(parts))
        bar.setUpdatesEnabled(True)

    def _on_paused(self, _steps: int) -> None:
        self._show_frame()  # paused: frame, plots and progress all show the step it paused at
        self.plots.refresh()
        self._update_progress()
        self.run_label.setText("paused — N steps once, F6 resumes, Esc stops")
        self._update_actions()

    def _on_resumed(self) -> None:
        self.run_label.setText("running")
        self._update_actions()

    def _run_ended(self) -> None:
        """What every end of a run does first: no more repaint ticks, and its free memory goes back soon."""
        self.repaint_timer.stop()
        self.frame_timer.stop()
        QtCore.QTimer.singleShot(RELEASE_AFTER_RUN_MS, release_free_memory)

    def _on_finished(self, record: StepRecord) -> None:
        self._run_ended()
        self.mailbox.take()  # the final image comes with the record
        plan = self.plan
        self.last_record = record
        if plan is not None and record.image is not None and self.photo is not None:
            self.result = plan.compose(self.photo, record.image)
            self.result_saved = False
            if plan.is_crop:
                self.canvas.set_layer("estimate", "photo", self.result, keep=False)
                self.canvas.remove_layer("estimate", "run")
            else:
                self.canvas.set_layer("estimate", "run", self.result, _region_rect(plan))
            self.frames_shown += 1
        self.plots.refresh()
        if self.progress is not None:
            self._update_progress()
            if record.stop_reason == StopReason.CONVERGED:
                self.progress_bar.setValue(1000)
        reason = record.stop_reason.value if record.stop_reason is not None else "done"
        metrics: dict[str, Any] = {"steps": record.t}
        if record.psnr is not None:
            metrics["psnr"] = record.psnr
        if record.ssim is not None:
            metrics["ssim"] = record.ssim
        if self.record is not None:
            self.record.finish(stop_reason=record.stop_reason, metrics=metrics)
        summary = f"{reason} after {record.t} steps"
        if record.psnr is not None:
            summary += f" — PSNR {record.psnr:.2f} dB"
        if record.ssim is not None:
            summary += f", SSIM {record.ssim:.3f}"
        self.run_label.setText(summary + (f"\n{record.message}" if record.message else ""))
        self.actions["pause"].setChecked(False)
        self._update_actions()
        self.runFinished.emit(record)

    def _abandon_run(self) -> None:
        """A run shut down without its result (a new photo replaces the old): end its timers and progress,
        and tell the listeners (teaching tools) that it is over, as a failed run would."""
        self._run_ended()
        self.progress = None
        self.actions["pause"].setChecked(False)
        self.runFinished.emit(None)

    def _on_failed(self, message: str) -> None:
        self._run_ended()
        partial = self.controller.partial
        plan = self.plan
        if partial is not None and partial.image is not None and plan is not None and self.photo is not None:
            self.result = plan.compose(self.photo, partial.image)  # what the run reached, to look at or save
            self.result_saved = False
            self.last_record = partial
            message += f" (the estimate of step {partial.t} is kept)"
        elif self.result is None:
            self.result, self.result_saved, self.result_path = self._previous_result
        self._previous_result = (None, True, None)
        self._repaint()
        self.actions["pause"].setChecked(False)
        self.run_label.setText(f"failed: {message}")
        self._update_actions()
        self.runFinished.emit(None)
        self.report_error("The run failed", message)

    # ================================================================================================
    # state of the actions
    # ================================================================================================
    def _update_actions(self) -> None:
        comparing = self.compare.is_running()
        running = self.controller.is_running()
        paused = running and self.controller.is_paused()
        has_photo = self.photo is not None
        has_result = self.result is not None
        a = self.actions
        a["run"].setEnabled(has_photo and not running and not comparing)
        self.compare.set_blocked(running or not has_photo)
        a["pause"].setEnabled(running)
        a["step"].setEnabled(paused)
        a["stop"].setEnabled(running)
        for key in ("save", "save_as", "copy_result"):
            a[key].setEnabled(has_result)
        a["save_run"].setEnabled(self.record is not None and not running)
        mask = self.mask
        # the mask is drawn and used only for inpainting: under any other task an edit, or its undo, would
        # change a hidden mask with nothing on screen to show it (it is kept for when inpainting comes back)
        editable = mask is not None and has_photo and self.degradation.task_name() == "inpaint"
        a["undo"].setEnabled(editable and mask.can_undo())
        a["redo"].setEnabled(editable and mask.can_redo())
        # the menu names what would be undone; the Mask panel's buttons keep their short labels (a long one
        # widened the panel) and name it in their tooltips
        undo = f"Undo {mask.undo_label()}" if mask is not None and mask.can_undo() else "Undo"
        redo = f"Redo {mask.redo_label()}" if mask is not None and mask.can_redo() else "Redo"
        for key, word, text in (("undo", "Undo", undo), ("redo", "Redo", redo)):
            a[key].setText("&" + text)
            a[key].setIconText(word)
            keys = keymap.key_text(keymap.BY_ID[key])
            a[key].setToolTip(f"{text} ({keys})" if keys else text)
        for key in ("brush", "eraser", "mask_clear", "mask_invert"):  # the next run's mask: editable during a run
            a[key].setEnabled(editable)
        a["mask_export"].setEnabled(has_photo)
        for key in ("mask_random", "mask_block", "mask_import"):  # these also switch the task to inpainting,
            a[key].setEnabled(has_photo and not running and not comparing)  # which a run holds locked
        self.degradation.setEnabled(not running and not comparing)
        self.algorithm.setEnabled(not running and not comparing)

    # ================================================================================================
    # settings, autosave seam, closing
    # ================================================================================================
    def session_state(self) -> dict[str, Any]:
        """What an autosave keeps: the photo's path (or a pasted photo itself), the panels' values, the mask
        (bool H×W) and its version."""
        return {
            "image_path": self.photo_path,
            "degradation": self.degradation.state(),
            "algorithm": {"method": self.algorithm.current_method().name, **self.algorithm.values()},
            "model": self.denoisers.model,
            "mask": self.mask.copy() if self.mask is not None else None,
            "mask_version": self.mask.version if self.mask is not None else 0,
            # a photo without a file (pasted) can only come back from its pixels
            "photo": self.photo if self.photo_path is None else None,
            "photo_name": self.photo_name,
        }

    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("geometry")
        if isinstance(geometry, (QtCore.QByteArray, bytes)):
            self.restoreGeometry(geometry)
        state = s.value("window_state")
        if isinstance(state, (QtCore.QByteArray, bytes)):
            self.restoreState(state)
        side = s.value("working_side")
        if side not in (None, ""):
            self.degradation.set_working_side(None if str(side) == "full" else int(side))
        task = s.value("task")
        if task:
            self.degradation.set_task(str(task))
        mode = s.value("mode")
        if mode:
            self.degradation.set_mode(str(mode))
        self.keep_overlay.setChecked(str(s.value("keep_overlay", "false")).lower() == "true")
        if not self.denoisers.injected and self.denoisers.model is None:
            model = str(s.value("model", "") or "")
            if model and _model_findable(model):
                self.denoisers.set_model(model)
        if self.denoisers.model:
            self.algorithm.refresh_models(self.denoisers.model)
        self._rebuild_recent_menu()

    def _save_settings(self) -> None:
        s = self.settings
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())
        side = self.degradation.working_side()
        s.setValue("working_side", "full" if side is None else side)
        s.setValue("task", self.degradation.task_name())
        s.setValue("mode", self.degradation.mode())
        s.setValue("keep_overlay", "true" if self.keep_overlay.isChecked() else "false")
        s.sync()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if not self.settle_work("close the window"):
            event.ignore()
            return
        self.shutdown()
        self._save_settings()
        event.accept()

    def _stop_and_wait(self, timeout_ms: int = 30_000) -> None:
        """Stop the run and wait (events still flowing) until its partial result has arrived."""
        if not self.controller.is_running():
            return
        loop = QtCore.QEventLoop()
        self.runFinished.connect(loop.quit)  # the run's last signals are still queued: they arrive in the loop
        QtCore.QTimer.singleShot(timeout_ms, loop.quit)
        self.controller.stop()
        loop.exec()
        self.runFinished.disconnect(loop.quit)

    def shutdown(self) -> None:
        """Stop any run and join its thread; remove the application-wide key filter."""
        self.repaint_timer.stop()
        self.frame_timer.stop()
        self.preview_timer.stop()
        self.controller.shutdown()
        self.compare.shutdown()
        teach = getattr(self, "teach", None)  # absent when construction failed before it
        if teach is not None:
            teach.shutdown()
        if getattr(self, "_key_watch", ()):
            app = QtWidgets.QApplication.instance()
            if app is not None:
                app.focusChanged.disconnect(self._follow_focus)
            self._key_watch = ()


# -- helpers ----------------------------------------------------------------------------------------------
def record_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The run record's JSON file for a chosen name (its suffix made ``.json``) and its CSV beside it."""
    json_path = Path(path)
    if json_path.suffix.lower() != ".json":
        json_path = json_path.with_suffix(".json")
    return json_path, json_path.with_suffix(".csv")


def _group(title: str, widget: QtWidgets.QWidget) -> QtWidgets.QGroupBox:
    box = QtWidgets.QGroupBox(title)
    layout = QtWidgets.QVBoxLayout(box)
    layout.setContentsMargins(6, 6, 6, 6)
    layout.addWidget(widget)
    return box


def _as_started(plan: RunPlan, params: Any) -> Any:
    """The sampler's parameters with σ₀ where the run will start: a run that starts at the photo (denoising)
    reads its σ₀ off the photo, so its steps and ideal decay are those from the photo's noise level."""
    if plan.problem.init is None or not hasattr(params, "sigma_0"):
        return params
    return dataclasses.replace(params, sigma_0=max(starting_noise(plan), 1e-6))


def _region_rect(plan: RunPlan) -> QRectF:
    r = plan.region
    return QRectF(r.left, r.top, r.width, r.height)


def _typing_in(widget: QtWidgets.QWidget) -> bool:
    """Whether keys typed now go into text (a line edit, a spin box, a text box)."""
    focus = QtWidgets.QApplication.focusWidget() or widget
    return isinstance(
        focus, (QtWidgets.QLineEdit, QtWidgets.QAbstractSpinBox, QtWidgets.QTextEdit, QtWidgets.QPlainTextEdit)
    )


def _qimage_png_bytes(image: QtGui.QImage) -> bytes:
    buffer = QtCore.QBuffer()
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(buffer.data())


def _jsonable_params(params: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(params):
        return {k: v for k, v in dataclasses.asdict(params).items() if isinstance(v, (int, float, str, bool))}
    return {}


def _flash_values(method: str) -> dict[str, Any]:
    """The flash/no-flash preset's values for the form: its steps, no input jitter, and (with Adam) its
    learning rate; plain gradient descent keeps its own."""
    from priorstudio.core.samplers.dip import DIPParams

    preset = DIPParams.preset("flash_no_flash")
    values: dict[str, Any] = {"max_steps": preset.max_steps, "reg_noise_std": preset.reg_noise_std}
    if method != "dip_gd":
        values["lr"] = preset.lr
    return values
