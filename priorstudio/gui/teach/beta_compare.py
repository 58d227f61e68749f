"""β = 1 vs β < 1: what the injected noise does, shown on two batches from the same seed.

β = 1 injects no noise (γ_t = 0): once the starting noise is drawn, the climb is deterministic. β < 1 adds
fresh noise γ_t at every step: σ_t falls more slowly and each sample keeps exploring on its way down.
Both batches run side by side with the same settings; their σ_t curves and ideal decays share one plot,
and a line under the grids gives each batch's steps and a measure of its fine detail.
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal, Slot

from priorstudio.core.errors import PriorStudioError
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.spin_boxes import DoubleSpinBox
from priorstudio.gui.teach.batch_view import SampleBatchView, SynthesisControls, detail
from priorstudio.gui.teach.common import DenoiserFactory
from priorstudio.gui.teach.sigma_plot import SigmaPlot


class BetaComparisonWidget(QtWidgets.QWidget):
    """β = 1 beside β < 1 from the same seed and settings; their σ_t curves and ideal decays on one plot.

    Host API: ``BetaComparisonWidget(denoiser_factory, parent)``; ``run()``, ``stop()``, ``shutdown()``."""

    finished = Signal()

    def __init__(self, denoiser_factory: DenoiserFactory, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._factory = denoiser_factory
        self.controls = SynthesisControls(self, show_beta=False)
        self.controls.k.setValue(4)
        self.beta = DoubleSpinBox()
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
        self.left.hint = self.right.hint = ""
        self.plot = SigmaPlot()
        self.summary = QtWidgets.QLabel(
            "β = 1 injects no noise (γ_t = 0): every step climbs straight up the density. β < 1 adds fresh "
            "noise γ_t at every step, so σ_t falls more slowly and a sample can leave the nearest mode."
        )
        self.summary.setWordWrap(True)
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
        main.addWidget(self.summary)
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
        try:
            params = (self.controls.params(beta=1.0), self.controls.params(beta=beta))
            denoiser = self.controls.denoiser(self._factory)
        except PriorStudioError as error:
            self.left.status.setText(f"Cannot draw samples: {error}")
            return False
        self.right.pane.set_title(f"β = {beta:g}: fresh noise at every step")
        self.plot.clear_curves()
        self._params = params
        self._done = 0
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
            self.summary.setText(self.describe())
            self.finished.emit()

    def describe(self) -> str:
        """Steps and detail of both batches, once they have run."""
        parts = []
        for view in (self.left, self.right):
            samples, params = view.samples(), view.params
            if samples is None or params is None or view.last is None:
                continue
            parts.append(f"β = {params.beta:g}: {view.last.t} steps, detail {detail(samples):.4f}")
        if not parts:
            return "Stopped before any sample was finished."
        return (
            "; ".join(parts) + ". Detail is the mean difference between neighbouring pixels. β = 1 injects no "
            "noise (γ_t = 0); β < 1 adds fresh noise at every step, so σ_t falls more slowly (dashed: the "
            "ideal (1 − βh_t) decays) and a sample can leave the nearest mode."
        )

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
