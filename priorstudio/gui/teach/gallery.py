"""Prior samples: a gallery that fills in live, each sample's σ_t curve, its score, scrubbing, explaining.

``GalleryWidget`` draws K unconditional samples (model, size, seed, β, σ₀, σ_L, h₀) from the implicit
prior as one batch. The grid shows every sample's current estimate while the batch runs; clicking one
highlights its σ_t curve (against the ideal (1 − βh_t) decay and the σ_L target) and scrubs through its
run, beside the score f(y_t) = D(y_t) − y_t it stepped along; "Explain this step" states the update rule
with the numbers of the scrubbed step. A click on the σ_t plot jumps to that step.
"""

from __future__ import annotations

from typing import Any

import torch
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal, Slot

from priorstudio.core.errors import PriorStudioError
from priorstudio.core.teach.history import Frame
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.teach.batch_view import SampleBatchView, SynthesisControls
from priorstudio.gui.teach.common import DenoiserFactory, ImagePane
from priorstudio.gui.teach.explain_panel import ExplainDialog
from priorstudio.gui.teach.history_player import HistoryPlayer
from priorstudio.gui.teach.sigma_plot import SigmaPlot


class GalleryWidget(QtWidgets.QWidget):
    """Host API: ``GalleryWidget(denoiser_factory, parent)``; ``run()``, ``stop()``, ``select(k)``,
    ``explain()``; ``samples()`` gives the finished batch (e.g. for the "Real or sampled?" game). Call
    ``shutdown()`` (or close it) before the host window goes away."""

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
        self.explain_button = QtWidgets.QPushButton("Explain this step")
        self.explain_button.setToolTip("Miyasawa's relation and the update rule with the scrubbed step's numbers")
        self.explain_button.setEnabled(False)
        self.explain_button.clicked.connect(self.explain)
        self.batch = SampleBatchView("samples: click one")
        self.batch.selected.connect(self.select)
        self.batch.stepped.connect(self._update_plot)
        self.batch.finished.connect(self._on_finished)
        self.batch.runner.runningChanged.connect(self._on_running)
        self.plot = SigmaPlot()
        self.plot.stepClicked.connect(self._on_plot_clicked)
        self.player = HistoryPlayer(show_preview=True)
        self.player.frameSelected.connect(self._on_frame)
        self.score_pane = ImagePane("score f(y) = D(y) − y", colormap="CET-D1")
        self.score_pane.setToolTip(
            "Miyasawa: f(y) = σ²∇log p_σ(y), the direction this sample stepped along at this step (zero is mid-colour)"
        )
        self.explain_dialog: ExplainDialog | None = None
        self.selected: int | None = None
        self.message = ""  # the last error, also shown in the batch's status line

        side = QtWidgets.QVBoxLayout()
        side.addWidget(self.controls)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        side.addLayout(buttons)
        side.addWidget(self.explain_button)
        side.addStretch(1)
        self.score_pane.setMinimumWidth(200)
        frames = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        frames.addWidget(self.player)
        frames.addWidget(self.score_pane)
        frames.setStretchFactor(0, 3)
        frames.setStretchFactor(1, 2)
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.plot)
        right.addWidget(frames)
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
        if self.batch.is_running():
            return False
        try:
            params = self.controls.params()
            shape = self.controls.image_shape()
            denoiser = self.controls.denoiser(self._factory)
        except PriorStudioError as error:
            self.message = str(error)
            self.batch.status.setText(f"Cannot draw samples: {error}")
            return False
        k = self.controls.k.value()
        self.selected = None
        self.plot.clear_curves()
        self.plot.set_ideal("ideal", params, max(params.max_steps // 4, 60))
        self.player.set_history(None)
        self.score_pane.clear_image()
        return self.batch.start(denoiser, params, k, shape)

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
        self.batch.mark(k if self.batch.batch > 1 else None)
        self._update_plot()
        self.player.set_history(self.batch.history, sample=k if self.batch.batch > 1 else None)

    @Slot()
    def explain(self) -> str:
        """Open the explain panel on the scrubbed step of the selected sample; returns its text."""
        if self.explain_dialog is None:
            self.explain_dialog = ExplainDialog(self)
        self._explain_frame(self.player.current_frame())
        self.explain_dialog.show()
        self.explain_dialog.raise_()
        return self.explain_dialog.panel.text()

    def _explain_frame(self, frame: Frame | None) -> None:
        dialog, params = self.explain_dialog, self.batch.params
        if dialog is None or frame is None or params is None:
            return
        rows = self.batch.sample_rows(self.selected)
        if not rows:
            return
        t = min(frame.t, int(rows[-1]["t"]))  # a sample that stopped is explained at its last step
        c, h, w = frame.data.shape[-3:]
        dialog.panel.explain_rows(rows, t, params, n_values=c * h * w)
        who = f"sample {self.selected + 1}" if self.selected is not None and self.batch.batch > 1 else "the sample"
        dialog.setWindowTitle(f"Explain step {t} of {who}")

    @Slot(object)
    def _on_frame(self, frame: Frame) -> None:
        """The scrubbed frame: its step on the σ_t plot, its score, its explanation."""
        self.plot.set_cursor(frame.t)
        k = self.selected if self.selected is not None else 0
        # a batch runs until its last sample stops: past its own stop, the frame shows a sample held still
        steps = self.batch.last_steps()
        stop = steps[k] if self.batch.batch > 1 and 0 <= k < len(steps) else None
        self.player.set_step_note(f"stopped at step {stop}" if stop is not None and frame.t > stop else "")
        found = self.batch.score_of(frame.t, k)
        if found is None:
            self.score_pane.clear_image()
            self.score_pane.set_title("score f(y) = D(y) − y")
        else:
            t, score = found
            s = score[0] if score.shape[0] == 1 else score.mean(0)
            m = float(s.abs().max()) or 1.0
            self.score_pane.set_image(s, (-m, m))
            self.score_pane.set_title(f"score f(y) = D(y) − y at step {t}  (±{m:.3f})")
        if self.explain_dialog is not None and self.explain_dialog.isVisible():
            self._explain_frame(frame)

    @Slot(int)
    def _on_plot_clicked(self, t: int) -> None:
        if self.player.frames():
            self.player.seek_step(t)

    @Slot()
    def _update_plot(self) -> None:
        n = self.batch.batch
        for k in range(n if n > 1 else 1):
            t, s = self.batch.sigma_curve(k if n > 1 else None)
            name = "measured σ_t (bold: the clicked sample)" if k == 0 else None
            self.plot.set_curve(f"s{k}", t, s, highlight=(k == self.selected), name=name)
        if self.batch.rows and self.batch.params is not None:
            self.plot.set_ideal("ideal", self.batch.params, max(int(self.batch.rows[-1]["t"]), 2))
        self.explain_button.setEnabled(bool(self.batch.rows))
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
        self.explain_button.setEnabled(bool(self.batch.rows))

    def shutdown(self) -> None:
        self.batch.wait()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
