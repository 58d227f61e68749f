"""The "Real or sampled?" dialog (offscreen): a full round with keys and buttons, and the review."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore

from priorstudio.gui.teach.game_dialog import RealOrSampledDialog

pytestmark = pytest.mark.gui


def _no_denoiser(channels):
    raise AssertionError("this test supplies its own sampled patches")


def test_a_round_played_with_keys_and_buttons(qtbot):
    dialog = RealOrSampledDialog(_no_denoiser)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.items_spin.setValue(6)
    assert not dialog.real_button.isEnabled()
    sampled = [np.full((1, 16, 16), 0.5, np.float32) for _ in range(3)]  # flat gray: easy to spot
    dialog.new_round(sampled=sampled)
    assert dialog.round is not None and len(dialog.round) == 6 and dialog.real_button.isEnabled()
    results = []
    while dialog._current is not None:
        patch = dialog.round.patch(dialog._current)
        is_flat = float(np.std(patch)) == 0.0
        if len(results) % 2 == 0:
            qtbot.keyClick(dialog, QtCore.Qt.Key.Key_S if is_flat else QtCore.Qt.Key.Key_R)
        else:
            (dialog.sampled_button if is_flat else dialog.real_button).click()
        results.append(dialog.feedback.text())
    assert all(text.startswith("✓ Right") for text in results), results
    score = dialog.round.score()
    assert score.correct == 6 and dialog.round.finished
    assert "Round over" in dialog.score_label.text() and "beats guessing" in dialog.score_label.text()
    assert not dialog.real_button.isEnabled()
    assert dialog.pane.image_shape() is not None  # the review grid
    assert dialog.answer(True) is None
    dialog.close()


def test_rounds_add_up_to_a_running_score(qtbot):
    dialog = RealOrSampledDialog(_no_denoiser)
    qtbot.addWidget(dialog)
    dialog.items_spin.setValue(4)
    for seed in (0, 1):
        dialog.seed_spin.setValue(seed)
        dialog.new_round(sampled=[np.full((1, 16, 16), 0.5, np.float32) for _ in range(2)])
        while dialog._current is not None:
            dialog.answer(True)  # always "real": half right
    assert dialog.rounds_played == 2
    assert (dialog.tally.correct, dialog.tally.answered) == (4, 8)
    assert (dialog.tally.real_called_real, dialog.tally.sampled_called_sampled) == (4, 0)
    text = dialog.score_label.text()
    assert "All 2 rounds together: 4 of 8 right" in text and "prior samples spotted 0 of 2" in text
    dialog.close()


def test_new_round_draws_the_prior_patches_in_the_background(qtbot):
    from teach_oracle import IsotropicOracle

    from priorstudio.core.samplers.implicit_prior import SYNTHESIS_PRESET, ImplicitPriorParams

    oracle = IsotropicOracle()
    params = ImplicitPriorParams.preset(SYNTHESIS_PRESET, max_steps=300)
    dialog = RealOrSampledDialog(lambda channels: oracle, params=params)
    qtbot.addWidget(dialog)
    dialog.items_spin.setValue(4)
    dialog.size_spin.setValue(16)
    dialog.new_round()
    assert not dialog.new_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.round is not None, timeout=30_000)
    assert len(dialog.round) == 4 and dialog.new_button.isEnabled()
    sampled = [dialog.round.reveal(i) for i in range(4) if dialog.answer(True) is not None]
    assert sum(not item.is_real for item in sampled) == 2
    assert all(item.patch.shape == (1, 16, 16) for item in sampled)
    dialog.close()
