""" "Real or sampled?" — the seed paper's Turing test, playable.

A round: patches cut at random from the bundled photos and patches drawn from the prior at the same size,
shuffled; the player presses R (real) or S (sampled) for each and sees after every answer whether it was
right and where the patch came from; the score states whether the player beats guessing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Slot

from priorstudio.core.teach.animation import tile
from priorstudio.core.teach.game import RealOrSampledRound, Score, real_patches
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.spin_boxes import SpinBox
from priorstudio.gui.teach.common import DenoiserFactory, ImagePane, shutdown_run
from priorstudio.gui.worker import RunController, StepScalars


def default_params() -> Any:
    """The gallery's synthesis settings (β = 0.5), so the game's samples look like the gallery's."""
    from priorstudio.core.samplers.implicit_prior import SYNTHESIS_PRESET, ImplicitPriorParams

    return ImplicitPriorParams.preset(SYNTHESIS_PRESET)


class RealOrSampledDialog(QtWidgets.QDialog):
    """Host API: ``RealOrSampledDialog(denoiser_factory, parent, params=None)``; ``new_round()`` draws the
    prior's patches in the background (or ``new_round(sampled=patches)`` reuses ones already drawn, e.g.
    from the gallery). Keys: R = real, S = sampled."""

    def __init__(
        self, denoiser_factory: DenoiserFactory, parent: QtWidgets.QWidget | None = None, *, params: Any = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Real or sampled?")
        self._factory = denoiser_factory
        self._params = params
        self.round: RealOrSampledRound | None = None
        self._current: int | None = None
        #: every finished round of this session pooled (each answer is a coin toss under guessing)
        self.tally = Score(0, 0, 0, 0, 0, 0)
        self.rounds_played = 0

        self.size_spin = SpinBox()
        self.size_spin.setRange(16, 128)
        self.size_spin.setSingleStep(8)
        self.size_spin.setValue(48)
        self.size_spin.setAccessibleName("patch size")
        self.size_spin.setToolTip("Patch size in pixels (the prior draws its samples at this size)")
        self.items_spin = SpinBox()
        self.items_spin.setRange(4, 40)
        self.items_spin.setSingleStep(2)
        self.items_spin.setValue(20)
        self.items_spin.setAccessibleName("patches per round")
        self.items_spin.setToolTip("Patches per round, half real and half sampled")
        self.color_box = QtWidgets.QCheckBox("colour")
        self.seed_spin = SpinBox()
        self.seed_spin.setRange(0, 1_000_000)
        self.seed_spin.setAccessibleName("seed")
        self.seed_spin.setToolTip("Seed of the round: the same seed gives the same patches in the same order")
        self.new_button = QtWidgets.QPushButton("New round")
        self.new_button.clicked.connect(lambda: self.new_round())

        self.pane = ImagePane("")
        self.pane.view.setMouseEnabled(False, False)
        self.pane.setMinimumSize(280, 280)
        self.real_button = QtWidgets.QPushButton("Real photo  (R)")
        self.sampled_button = QtWidgets.QPushButton("Sampled from the prior  (S)")
        self.real_button.clicked.connect(lambda: self.answer(True))
        self.sampled_button.clicked.connect(lambda: self.answer(False))
        self.feedback = QtWidgets.QLabel("")
        self.feedback.setWordWrap(True)
        self.score_label = QtWidgets.QLabel("Press “New round” to start.")
        self.score_label.setWordWrap(True)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setVisible(False)

        self.runner = RunController(self)
        self.runner.step.connect(self._on_step)
        self.runner.finished.connect(self._on_sampled)
        self.runner.failed.connect(lambda msg: self._set_status(f"Sampling failed: {msg}"))
        self.runner.runningChanged.connect(self._on_running)

        settings = QtWidgets.QHBoxLayout()
        for label, w in (("size", self.size_spin), ("items", self.items_spin), ("seed", self.seed_spin)):
            settings.addWidget(QtWidgets.QLabel(label))
            settings.addWidget(w)
        settings.addWidget(self.color_box)
        settings.addStretch(1)
        settings.addWidget(self.new_button)
        answers = QtWidgets.QHBoxLayout()
        answers.addWidget(self.real_button)
        answers.addWidget(self.sampled_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(settings)
        layout.addWidget(self.progress)
        layout.addWidget(self.pane, 1)
        layout.addLayout(answers)
        layout.addWidget(self.feedback)
        layout.addWidget(self.score_label)
        self._sync_buttons()
        self.resize(520, 640)

    # -- host API ------------------------------------------------------------------------------------
    def channels(self) -> int:
        return 3 if self.color_box.isChecked() else 1

    def new_round(self, sampled: list[np.ndarray] | None = None) -> None:
        """Start a round; without ``sampled`` the prior's patches are drawn first (in the background)."""
        if self.runner.is_running():
            return
        self.round = None
        self._current = None
        self.pane.clear_image()
        self.feedback.setText("")
        if sampled is not None:
            self._build_round(sampled)
            return
        n_sampled = self.items_spin.value() - self.items_spin.value() // 2
        size, channels = self.size_spin.value(), self.channels()
        params = self._params if self._params is not None else default_params()
        if dataclasses.is_dataclass(params):
            fields = {f.name for f in dataclasses.fields(params)}
            changes: dict[str, Any] = {"seed": self.seed_spin.value()} if "seed" in fields else {}
            if "emit_every" in fields:
                changes["emit_every"] = 0
            params = dataclasses.replace(params, **changes)
        self._sigma_range = (float(getattr(params, "sigma_0", 1.0)), float(getattr(params, "sigma_L", 0.01)))
        denoiser = self._factory(channels)
        self._set_status(f"Drawing {n_sampled} patches of {size}×{size} from the prior…")

        def stream():
            from priorstudio.core.samplers.implicit_prior import implicit_prior_sampler

            return implicit_prior_sampler(
                denoiser, None, None, params, batch=n_sampled, image_shape=(channels, size, size)
            )

        self.runner.start(stream, max_fps=1)

    def answer(self, says_real: bool) -> bool | None:
        """Answer the shown patch; returns whether it was right (None when nothing is shown)."""
        if self.round is None or self._current is None:
            return None
        index = self._current
        right = self.round.answer(index, says_real)
        item = self.round.reveal(index)
        kind = "a real photo patch" if item.is_real else "a sample from the prior"
        self.feedback.setText(f"{'✓ Right' if right else '✗ Wrong'}: item {index + 1} was {kind} ({item.source}).")
        self.feedback.setStyleSheet(f"color: {'#2e7d32' if right else '#c62828'}")
        self._current = self.round.next_unanswered()
        self._show_current()
        return right

    # -- internals -----------------------------------------------------------------------------------
    def _build_round(self, sampled: list[np.ndarray]) -> None:
        size = int(sampled[0].shape[-1])
        channels = int(sampled[0].shape[0])
        n = self.items_spin.value()
        n_real = n // 2
        real, sources = real_patches(size, n_real, channels=channels, seed=self.seed_spin.value())
        self.round = RealOrSampledRound(real, sampled, n, seed=self.seed_spin.value(), real_sources=sources)
        self._current = self.round.next_unanswered()
        self._show_current()

    def _show_current(self) -> None:
        assert self.round is not None
        score = self.round.score()
        if self._current is None:
            self._show_review()
            self.tally = self.tally + score
            self.rounds_played += 1
            text = f"Round over. {score.statement()} ({score.breakdown()})"
            if self.rounds_played > 1:
                text += f"\nAll {self.rounds_played} rounds together: {self.tally.statement()}"
            self.score_label.setText(text)
        else:
            self.pane.set_image(np.clip(self.round.patch(self._current), 0, 1))
            self.pane.set_title(f"item {self._current + 1} of {len(self.round)}")
            self.score_label.setText(score.statement())
        self._sync_buttons()

    def _show_review(self) -> None:
        """All patches of the round in order, reals framed white and samples framed black."""
        assert self.round is not None
        framed = []
        for i in range(len(self.round)):
            item = self.round.reveal(i)
            p = np.clip(np.asarray(item.patch, dtype=np.float32), 0, 1)
            border = 1.0 if item.is_real else 0.0
            f = np.full((p.shape[0], p.shape[1] + 4, p.shape[2] + 4), border, np.float32)
            f[:, 2:-2, 2:-2] = p
            framed.append(f)
        self.pane.set_image(tile(np.stack(framed), fill=0.5))
        self.pane.set_title("the round: real patches framed white, the prior's samples framed black")

    def _set_status(self, text: str) -> None:
        self.score_label.setText(text)

    def _sync_buttons(self) -> None:
        playing = self.round is not None and self._current is not None
        self.real_button.setEnabled(playing)
        self.sampled_button.setEnabled(playing)

    @Slot(object)
    def _on_step(self, scalars: StepScalars) -> None:
        sigma = scalars.sigma if scalars.sigma == scalars.sigma else 0.0
        s0, sl = self._sigma_range
        if sigma > 0 and s0 > sl:
            frac = (np.log(s0) - np.log(sigma)) / (np.log(s0) - np.log(sl))
            self.progress.setValue(int(100 * min(max(frac, 0.0), 1.0)))

    @Slot(object)
    def _on_sampled(self, last: Any) -> None:
        if last is None or last.image is None:
            self._set_status("Sampling was stopped; press “New round” to try again.")
            return
        patches = [p.numpy() for p in last.image.clamp(0, 1)]
        self._build_round(patches)

    @Slot(bool)
    def _on_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.progress.setValue(0)
        self.new_button.setEnabled(not running)
        self._sync_buttons()

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        key = event.key()
        if key == QtCore.Qt.Key.Key_R:
            self.answer(True)
        elif key == QtCore.Qt.Key.Key_S:
            self.answer(False)
        else:
            super().keyPressEvent(event)

    def shutdown(self) -> None:
        """Stop drawing the prior's patches and join the thread."""
        shutdown_run(self.runner)

    def done(self, result: int) -> None:  # closing or Esc: end the sampling thread first
        self.shutdown()
        super().done(result)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
