"""Hosting the teaching tools in the main window through its public seams, in two lines.

    from priorstudio.gui.teach.integration import install_teach_tools
    self.teach = install_teach_tools(self)          # at the end of MainWindow.__init__

and, so the score of every step can be shown, one line where the run's denoiser is made:

    denoiser = self.teach.tap(denoiser)             # in MainWindow._start_run, after building it

and ``self.teach.shutdown()`` in ``MainWindow.shutdown``. What it uses of the window: the
``record_sink_factories`` list (a per-run observer of every StepRecord), ``denoiser_factory``,
``runStarted`` / ``runFinished``, ``photo``, ``mask``, ``degradation.settings()``, ``algorithm.params()``,
``plots_dock`` (to tabify next to it) and the menu bar.

It adds a *Teach* menu (gallery, β comparison, "Real or sampled?", posterior mean/std, denoiser inspector,
explain) and two docks: *Run history* — the scrub bar with play/pause, export and the memory the history
uses, plus the score f(y_t) = D(y_t) − y_t of the scrubbed step — and *Explain*, which states the update
rule with the numbers of the scrubbed step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt, Slot

from priorstudio.core.errors import PriorStudioError
from priorstudio.core.operators import Identity
from priorstudio.core.samplers.base import StepRecord
from priorstudio.core.samplers.implicit_prior import RESTORE_PRESET, ImplicitPriorParams
from priorstudio.core.teach.history import Frame, FrameHistory, HistorySink
from priorstudio.core.teach.inspector import ScoreTap
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.teach.beta_compare import BetaComparisonWidget
from priorstudio.gui.teach.common import ImagePane
from priorstudio.gui.teach.explain_panel import ExplainPanel
from priorstudio.gui.teach.gallery import GalleryWidget
from priorstudio.gui.teach.game_dialog import RealOrSampledDialog
from priorstudio.gui.teach.history_player import HistoryPlayer
from priorstudio.gui.teach.inspector_dialog import InspectorDialog
from priorstudio.gui.teach.posterior_view import PosteriorPanel

# Every run in the main window keeps a history, so its caps are small: a long session must not grow by more
# than about 50 MB (thinning keeps ≥ 20 evenly spaced frames of a 512² colour run within the cap).
# The frame cap binds for small images: the scrub bar has a few hundred usable positions, so a 256² run
# keeps 128–256 frames (8–16 MB) instead of filling the memory cap with frames nobody could land on.
RUN_HISTORY_MAX_BYTES = 32 * 1024 * 1024
RUN_HISTORY_MAX_FRAMES = 256
# The scores are float16 (they are signed): 2 bytes a value against the frames' 1. They keep a quarter as
# many steps as the frames (both caps a quarter, in frames of their size), so they take half the frames'
# memory at most; both histories keep steps on grids of powers of two, so every kept score is the score of
# a kept frame's own step (the pane names the step it shows).
SCORE_SHARE = 4


def _in_view(dock: QtWidgets.QDockWidget) -> bool:
    """Shown and not a tab behind another dock (which still counts as visible to Qt)."""
    return dock.isVisible() and not dock.visibleRegion().isEmpty()


#: The narrowest the score pane may be beside the scrub bar; in a narrower dock it goes under the bar.
SCORE_BESIDE_MIN_WIDTH = 220


class RunHistoryPanel(QtWidgets.QWidget):
    """The scrub bar of the last run beside the score f(y_t) = D(y_t) − y_t of the scrubbed step."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.player = HistoryPlayer(self, show_preview=True)
        self.score_pane = ImagePane(score_title(None), colormap="CET-D1")
        self.score_pane.setToolTip(
            "Miyasawa: f(y) = σ²∇log p_σ(y) — where the prior pulls the image at this step (zero is mid-colour)"
        )
        # Beside the player when the dock is wide enough, under it when not: the score appearing after a run
        # must never make the dock wider (a re-laid dock area re-lays the plots and the panels around it).
        self.score_pane.setMinimumWidth(0)
        self.score_pane.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Ignored)
        self._layout = QtWidgets.QBoxLayout(QtWidgets.QBoxLayout.Direction.LeftToRight, self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addWidget(self.player, 3)
        self._layout.addWidget(self.score_pane, 2)
        self.score_pane.setVisible(False)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._arrange()

    def _arrange(self) -> None:
        beside = self.width() >= self.player.minimumSizeHint().width() + SCORE_BESIDE_MIN_WIDTH
        direction = QtWidgets.QBoxLayout.Direction.LeftToRight if beside else QtWidgets.QBoxLayout.Direction.TopToBottom
        if self._layout.direction() != direction:
            self._layout.setDirection(direction)

    def show_score(self, score: np.ndarray | None, step: int | None = None) -> None:
        """Show ``score`` (None hides the pane) titled with the step it was kept at."""
        if score is None:
            self.score_pane.setVisible(False)
            return
        s = score[0] if score.ndim == 4 else score
        s = s[0] if s.shape[0] == 1 else s.mean(0)
        m = float(np.abs(s).max()) or 1.0
        self.score_pane.set_image(s, (-m, m))
        self.score_pane.set_title(score_title(step))
        self.score_pane.setVisible(True)


def score_title(step: int | None) -> str:
    """The score pane's title names the step the score is from: it can differ from the frame's while a run
    goes on (between kept steps a score is made a few times a second) or when scores stopped being kept."""
    return "score f(y) = D(y) − y" + (f" at step {step}" if step is not None else "")


class TeachTools(QtCore.QObject):
    """The teaching tools attached to one main window (see the module docstring for the seams used)."""

    def __init__(
        self, window: Any, *, max_bytes: int = RUN_HISTORY_MAX_BYTES, max_frames: int = RUN_HISTORY_MAX_FRAMES
    ) -> None:
        super().__init__(window)
        self.window = window
        self.max_bytes = max_bytes
        self.max_frames = max_frames
        self.history = FrameHistory(max_bytes, max_frames=max_frames)
        self.rows: list[dict[str, Any]] = []
        self.params: Any = None
        self.plan: Any = None
        self._pending_tap: ScoreTap | None = None
        self._frames_sink: HistorySink | None = None
        self.score_tap: ScoreTap | None = None
        self._tools: dict[str, QtWidgets.QWidget] = {}

        self.history_panel = RunHistoryPanel()
        self.player = self.history_panel.player
        self.player.frameSelected.connect(self._on_frame_selected)
        self.explain = ExplainPanel()
        self.history_dock = self._dock("Run history", self.history_panel, "teach_history_dock")
        self.explain_dock = self._dock("Explain", self.explain, "teach_explain_dock")
        self.live_timer = QtCore.QTimer(self)
        self.live_timer.setInterval(500)  # the scrub bar follows a running run twice a second …
        self.live_timer.timeout.connect(self._follow_run)
        for dock in (self.history_dock, self.explain_dock):  # … and catches up when its dock comes into view
            dock.visibilityChanged.connect(lambda shown: shown and self._follow_run())

        window.record_sink_factories.append(self._sink_for_run)
        window.runStarted.connect(self._on_run_started)
        window.runFinished.connect(self._on_run_finished)
        self._inspected: Any = None  # the photo the inspector was given
        window.photoChanged.connect(self._on_problem_changed)
        window.degradation.changed.connect(self._on_problem_changed)
        self.menu = self._build_menu()

    # -- the window's seams ----------------------------------------------------------------------------
    def tap(self, denoiser: Any) -> Any:
        """Wrap the run's denoiser so the score of each kept step is kept too (for the *Run history* dock)."""
        scores = FrameHistory(
            2 * self.max_bytes // SCORE_SHARE, dtype="float16", max_frames=max(2, self.max_frames // SCORE_SHARE)
        )
        self._pending_tap = ScoreTap(denoiser, scores)
        return self._pending_tap

    def _sink_for_run(self, plan: Any) -> Any:
        """Called by the window as a run starts: a fresh history and rows for it; returns the record sink."""
        self.plan = plan
        self.history = FrameHistory(self.max_bytes, max_frames=self.max_frames)
        self.rows = []
        self.score_tap, self._pending_tap = self._pending_tap, None
        try:
            self.params = self.window.algorithm.params(emit_every=1)
        except PriorStudioError:
            self.params = None
        rows = self.rows
        self._frames_sink = frames = HistorySink(self.history)

        def sink(record: StepRecord) -> None:  # in the worker thread: both are thread-safe and quick
            rows.append(record.scalars())
            frames(record)

        return sink

    def _follow_run(self) -> None:
        """Show the newest step of a running run, unless neither dock is in view (a refresh costs the GUI
        thread 10–20 ms, and on two cores whatever the GUI thread spends is taken from the run)."""
        if _in_view(self.history_dock) or _in_view(self.explain_dock):
            self._show_dropped()
            self.player.refresh()

    def _show_dropped(self) -> None:
        """A run whose frames are too large for the history runs on without one; the dock says why."""
        sink = self._frames_sink
        if sink is not None and sink.dropped:
            mb = self.max_bytes / (1024 * 1024)
            self.player.set_note(
                f"No frames kept for this run: one frame is too large for the run history ({mb:.0f} MB). "
                "A smaller working size keeps them."
            )

    @Slot(object)
    def _on_run_started(self, _plan: Any) -> None:
        self.player.set_history(self.history)
        method = self.window.algorithm.current_method()
        if method.plots.sigma:
            self.explain.clear()
        else:  # no update rule with σ_t to work through: say what a step of this method does
            self.explain.show_method(method.name, method.label)
        self.live_timer.start()

    @Slot(object)
    def _on_run_finished(self, _record: Any) -> None:
        self.live_timer.stop()
        if self._frames_sink is not None:
            self._frames_sink.flush()  # the run's last step, if its frame was not kept yet
            self._show_dropped()
        if self.score_tap is not None:
            self.score_tap.flush()  # the last step's score, so the final frame has its own
        self.player.refresh(go_to_end=True)

    # -- reacting to the scrub bar ---------------------------------------------------------------------
    @Slot(object)
    def _on_frame_selected(self, frame: Frame) -> None:
        tap = self.score_tap
        if tap is not None and len(tap.history) and frame.t <= tap.calls:
            kept = tap.history.nearest(frame.t)
            self.history_panel.show_score(kept.image(), kept.t)
        else:
            self.history_panel.show_score(None)
        if self.params is not None and hasattr(self.params, "beta") and math.isfinite(frame.sigma):
            problem = getattr(self.plan, "problem", None)
            constrained = problem is not None and not isinstance(problem.operator, Identity)
            n_values = int(np.prod(problem.image_shape)) if problem is not None else None
            self.explain.explain_rows(list(self.rows), frame.t, self.params, n_values=n_values, constrained=constrained)

    # -- the Teach menu --------------------------------------------------------------------------------
    def _build_menu(self) -> QtWidgets.QMenu:
        menu = self.window.menuBar().addMenu("&Teach")
        entries = [
            ("Prior samples gallery…", "Draw K samples from the prior and watch them form", self.open_gallery),
            ("β = 1 vs β < 1…", "What the injected noise does: the same seed with and without it", self.open_beta),
            ("Real or sampled?…", "Tell photo patches from the prior's samples", self.open_game),
            ("Posterior mean and uncertainty…", "K samples for this problem: mean and spread", self.open_posterior),
            ("Denoiser inspector…", "Adaptive filters and singular values of D(y) = A(y)y", self.open_inspector),
            ("Explain the update rule", "Miyasawa's relation and the step with its numbers", self.show_explain),
        ]
        for text, tip, slot in entries:
            action = menu.addAction(text)
            action.setStatusTip(tip)
            action.setToolTip(tip)
            action.triggered.connect(lambda _=False, s=slot: self._guarded(s))
        menu.addSeparator()
        menu.addAction(self.history_dock.toggleViewAction())
        menu.addAction(self.explain_dock.toggleViewAction())
        return menu

    def _guarded(self, slot: Any) -> None:
        try:
            slot()
        except PriorStudioError as error:
            report = getattr(self.window, "report_error", None)
            if callable(report):
                report("Teach", str(error))
            else:
                QtWidgets.QMessageBox.warning(self.window, "Teach", str(error))

    def _dock(self, title: str, widget: QtWidgets.QWidget, name: str) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self.window)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        anchor = getattr(self.window, "plots_dock", None)
        if anchor is not None:
            self.window.tabifyDockWidget(anchor, dock)
            anchor.raise_()  # the live plots stay the visible tab; the new one waits beside them
        return dock

    def _tool_window(self, key: str, title: str, make: Any) -> QtWidgets.QWidget:
        tool = self._tools.get(key)
        if tool is None:
            tool = make()
            if not isinstance(tool, QtWidgets.QDialog):
                dialog = QtWidgets.QDialog(self.window)
                layout = QtWidgets.QVBoxLayout(dialog)
                layout.addWidget(tool)
                dialog.resize(1100, 680)
                dialog.finished.connect(lambda _r, t=tool: _shutdown(t))
                holder: QtWidgets.QWidget = dialog
            else:
                holder = tool
            holder.setWindowTitle(title)
            self._tools[key] = holder
            tool = holder
        tool.show()
        tool.raise_()
        tool.activateWindow()
        return tool

    def open_gallery(self) -> QtWidgets.QWidget:
        return self._tool_window("gallery", "Prior samples", lambda: GalleryWidget(self.window.denoiser_factory))

    def open_beta(self) -> QtWidgets.QWidget:
        return self._tool_window("beta", "β = 1 vs β < 1", lambda: BetaComparisonWidget(self.window.denoiser_factory))

    def open_game(self) -> QtWidgets.QWidget:
        return self._tool_window("game", "Real or sampled?", lambda: RealOrSampledDialog(self.window.denoiser_factory))

    def open_posterior(self) -> QtWidgets.QWidget:
        """The posterior panel for the current photo, degradation and mask."""
        problem = self.current_problem()
        holder = self._tool_window(
            "posterior", "Posterior mean and uncertainty", lambda: PosteriorPanel(self.window.denoiser_factory)
        )
        panel = holder.findChild(PosteriorPanel)
        if panel is not None:
            panel.set_problem(problem, self._posterior_params())
            panel.set_source(lambda: (self.current_problem(), self._posterior_params()))
        return holder

    def _on_problem_changed(self) -> None:
        """The photo, degradation or mask changed: open tools follow (the posterior's next Draw takes the new
        problem; the inspector looks at the new photo)."""
        tool = self._tools.get("posterior")
        panel = tool.findChild(PosteriorPanel) if tool is not None else None
        if panel is not None:
            panel.source_changed(self.window.degradation.task_name())
        inspector = self._tools.get("inspector")
        photo = getattr(self.window, "photo", None)
        if isinstance(inspector, InspectorDialog) and photo is not None and self._inspected is not photo:
            inspector.set_image(photo)
            self._inspected = photo

    def open_inspector(self) -> InspectorDialog:
        photo = getattr(self.window, "photo", None)
        if photo is None:
            raise PriorStudioError("open an image first: the inspector looks at the denoiser on it")
        dialog = self._tool_window(
            "inspector", "Denoiser inspector", lambda: InspectorDialog(self.window.denoiser_factory)
        )
        assert isinstance(dialog, InspectorDialog)
        dialog.set_image(photo)
        self._inspected = photo
        return dialog

    def show_explain(self) -> None:
        self.explain_dock.show()
        self.explain_dock.raise_()
        frame = self.player.current_frame()
        if frame is not None:
            self._on_frame_selected(frame)

    def current_problem(self) -> Any:
        """The problem the window would run now (its working size), built with the window's planner."""
        from priorstudio.gui.session import plan_run

        w = self.window
        if getattr(w, "photo", None) is None:
            raise PriorStudioError("open an image first, then set up a degradation")
        settings = w.degradation.settings()
        mask = w.mask.copy() if settings.task == "inpaint" and w.mask is not None else None
        return plan_run(w.photo, settings, mask).problem

    def _posterior_params(self) -> ImplicitPriorParams:
        try:
            params = self.window.algorithm.params(emit_every=0)
        except PriorStudioError:
            params = None
        if isinstance(params, ImplicitPriorParams):
            return params
        return ImplicitPriorParams.preset(RESTORE_PRESET, emit_every=0)

    def shutdown(self) -> None:
        """Stop every tool's background work (call from the window's shutdown)."""
        self.live_timer.stop()
        for tool in self._tools.values():
            _shutdown(tool)


def _shutdown(widget: QtWidgets.QWidget) -> None:
    """End the background work of a tool window and of every widget in it that has some."""
    for candidate in [widget, *widget.findChildren(QtWidgets.QWidget)]:
        stop = getattr(candidate, "shutdown", None)
        if callable(stop):
            stop()


def install_teach_tools(window: Any, **options: Any) -> TeachTools:
    """Attach the teaching tools to ``window`` (a MainWindow); returns them (keep a reference)."""
    return TeachTools(window, **options)


__all__ = ["RunHistoryPanel", "TeachTools", "install_teach_tools"]
