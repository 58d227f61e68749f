"""Posterior mean and uncertainty side by side: K samples for one measurement, as one batch.

``PosteriorView`` only displays a :class:`PosteriorSummary` (observed | mean | std map with a colour bar);
``PosteriorPanel`` adds the controls and runs the K chains in a background thread for the problem and
sampler parameters the host window hands it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
import torch
from PySide6 import QtWidgets
from PySide6.QtCore import Signal, Slot
from torch import Tensor

from priorstudio.core.errors import PriorStudioError
from priorstudio.core.teach.posterior import PosteriorSummary, posterior_stream, posterior_summary
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.spin_boxes import SpinBox
from priorstudio.gui.teach.common import DenoiserFactory, ImagePane, shutdown_run
from priorstudio.gui.worker import RunController, StepScalars


def unmeasured_region(operator: Any) -> Tensor | None:
    """Pixels the measurement says nothing about, (H, W) bool: where (I − MM⁺)1 is not zero.

    This is the hole for inpainting and the missing pixels for random-pixel sampling; for operators that
    see every pixel a little (super-resolution, low-pass) it is empty and None is returned.
    """
    ones = torch.ones((1, *operator.image_shape))
    region = operator.complement(ones)[0].abs().amax(0) > 0.5
    return region if region.any() and not region.all() else None


class PosteriorView(QtWidgets.QWidget):
    """Observed | posterior mean | per-pixel std (colour map, with a colour bar), and a one-line summary."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.observed_pane = ImagePane("observed")
        self.mean_pane = ImagePane("posterior mean")
        self.std_pane = ImagePane("per-pixel standard deviation", colormap="inferno")
        self.colorbar = pg.ColorBarItem(colorMap=pg.colormap.get("inferno"), values=(0, 1), interactive=False)
        self.colorbar.setImageItem(self.std_pane.item)
        self.std_pane.addItem(self.colorbar, row=1, col=1)  # beside the image, not under it
        for pane in (self.observed_pane, self.mean_pane):
            pane.view.setXLink(self.std_pane.view)
            pane.view.setYLink(self.std_pane.view)
        self.summary_label = QtWidgets.QLabel("")
        self.summary_label.setWordWrap(True)
        panes = QtWidgets.QHBoxLayout()
        for pane in (self.observed_pane, self.mean_pane, self.std_pane):
            panes.addWidget(pane, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(panes, 1)
        layout.addWidget(self.summary_label)
        self.summary: PosteriorSummary | None = None

    def set_summary(
        self, summary: PosteriorSummary, *, observed: Tensor | None = None, region: Tensor | None = None
    ) -> str:
        """Show ``summary``; ``region`` (H, W) marks the unmeasured pixels for the inside/outside figures."""
        self.summary = summary
        if observed is not None and observed.shape[-2:] == summary.mean.shape[-2:]:
            self.observed_pane.set_image(observed.clamp(0, 1))
        self.mean_pane.set_image(summary.mean)
        std = summary.std_map()
        top = max(float(std.max()), 1e-6)
        self.std_pane.set_image(std, (0.0, top))
        self.colorbar.setLevels((0.0, top))
        text = f"{summary.k} samples: std ranges 0–{top:.3f} (mean {float(std.mean()):.4f})."
        if region is not None:
            inside, outside = summary.region_std(region)
            text += (
                f" Inside the unmeasured region {inside:.4f}, outside {outside:.4f}"
                f" ({inside / max(outside, 1e-12):.0f}×): the samples disagree where the data say least."
            )
        self.summary_label.setText(text)
        return text


class PosteriorPanel(QtWidgets.QWidget):
    """Host API: ``PosteriorPanel(denoiser_factory, parent)``; ``set_problem(problem, params)`` with the
    window's current Problem and ImplicitPriorParams; the user picks K and presses Run."""

    finished = Signal(object)  # the PosteriorSummary

    def __init__(self, denoiser_factory: DenoiserFactory, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._factory = denoiser_factory
        self._problem: Any = None
        self._params: Any = None
        self.view = PosteriorView(self)
        self.k_spin = SpinBox()
        self.k_spin.setRange(2, 64)
        self.k_spin.setValue(8)
        self.k_spin.setAccessibleName("samples K")
        self.k_spin.setToolTip("Number of samples K, drawn together as one batch")
        self.run_button = QtWidgets.QPushButton("Draw K samples")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.status = QtWidgets.QLabel("Set up a problem in the main window, then draw samples.")
        # a long message wraps within the width there is instead of widening the window under the user
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.runner = RunController(self)
        self.runner.step.connect(self._on_step)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.runningChanged.connect(self._on_running)
        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(QtWidgets.QLabel("K"))
        bar.addWidget(self.k_spin)
        bar.addWidget(self.run_button)
        bar.addWidget(self.stop_button)
        bar.addWidget(self.status, 1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        self.summary: PosteriorSummary | None = None
        self._source: Callable[[], tuple[Any, Any]] | None = None

    def set_problem(self, problem: Any, params: Any) -> None:
        self._problem, self._params = problem, params
        self.status.setText(f"{problem.task}: ready to draw {self.k_spin.value()} samples.")

    def set_source(self, source: Callable[[], tuple[Any, Any]] | None) -> None:
        """Where Draw takes its problem and parameters from, fresh at each press (the main window's photo,
        degradation and mask as they are then): an open panel never samples a photo no longer shown."""
        self._source = source

    def source_changed(self, task: str) -> None:
        """The main window's problem changed: say so (the next Draw takes it), unless samples are drawing."""
        if not self.is_running():
            self.status.setText(f"{task}: ready to draw {self.k_spin.value()} samples (of the photo as it is now).")

    def is_running(self) -> bool:
        return self.runner.is_running()

    @Slot()
    def run(self) -> None:
        if self._source is not None:
            try:
                self.set_problem(*self._source())
            except PriorStudioError as error:
                self.status.setText(str(error))
                return
        if self._problem is None or self._params is None:
            self.status.setText("No problem yet: load an image and set up a degradation first.")
            return
        problem, k = self._problem, self.k_spin.value()
        params = self._params
        if hasattr(params, "emit_every") and dataclasses.is_dataclass(params):
            params = dataclasses.replace(params, emit_every=0)  # only the final images are needed
        denoiser = self._factory(int(problem.image_shape[0]))
        self.status.setText(f"drawing {k} samples…")
        self.runner.start(
            lambda: posterior_stream(
                denoiser, problem.operator, problem.measurement, params, k, init=problem.init, truth=problem.truth
            ),
            max_fps=1,
        )

    @Slot()
    def stop(self) -> None:
        self.runner.stop()

    @Slot(object)
    def _on_step(self, scalars: StepScalars) -> None:
        self.status.setText(f"drawing {self.k_spin.value()} samples… step {scalars.t}, σ = {scalars.sigma:.4f}")

    @Slot(object)
    def _on_finished(self, last: Any) -> None:
        if last is None or last.image is None:
            self.status.setText("Stopped before any sample was finished.")
            return
        try:
            summary = posterior_summary(last.image)
        except PriorStudioError as exc:
            self.status.setText(str(exc))
            return
        self.summary = summary
        region = unmeasured_region(self._problem.operator)
        self.view.set_summary(summary, observed=self._problem.observed, region=region)
        reason = last.stop_reason.value if last.stop_reason is not None else "stopped"
        self.status.setText(f"{summary.k} samples after {last.t} steps ({reason}).")
        self.finished.emit(summary)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.status.setText(f"Sampling failed: {message}")

    @Slot(bool)
    def _on_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.k_spin.setEnabled(not running)

    def shutdown(self) -> None:
        """Stop a run and join its thread (call before the host window goes away)."""
        shutdown_run(self.runner)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
