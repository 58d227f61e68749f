"""Scrub bar, replay and export of a run's history; the explain panel (offscreen)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch
from PIL import Image

pytest.importorskip("pytestqt")

from PySide6 import QtWidgets

from priorstudio.core.errors import PriorStudioError
from priorstudio.core.samplers.base import StepRecord
from priorstudio.core.teach.animation import mp4_encoder
from priorstudio.core.teach.history import FrameHistory
from priorstudio.gui.teach.explain_panel import ExplainPanel
from priorstudio.gui.teach.history_player import HistoryPlayer

pytestmark = pytest.mark.gui


def _history(n=12, batch=None) -> FrameHistory:
    h = FrameHistory()
    shape = (1, 8, 8) if batch is None else (batch, 1, 8, 8)
    for t in range(1, n + 1):
        h.push(t, torch.full(shape, t / n), {"sigma": 1.0 / t})
    return h


def test_scrub_play_and_signal(qtbot):
    player = HistoryPlayer()
    qtbot.addWidget(player)
    assert not player.export_buttons["gif"].isEnabled() and player.current_frame() is None
    seen = []
    player.frameSelected.connect(lambda f: seen.append(f.t))
    player.set_history(_history())
    assert player.current_frame().t == 12 and player.slider.maximum() == 11
    assert "12 frames" in player.memory_label.text()
    player.seek(0)
    assert player.current_frame().t == 1 and seen[-1] == 1
    assert "step 1" in player.step_label.text() and "σ 1.0000" in player.step_label.text()
    player.seek_step(7)
    assert player.current_frame().t == 7
    player.fps.setValue(60)
    player.play()
    assert player.is_playing()
    qtbot.waitUntil(lambda: not player.is_playing(), timeout=5_000)  # stops at the end
    assert player.current_frame().t == 12 and seen[-1] == 12
    player.play()  # from the end it restarts at the beginning
    assert player.current_frame().t <= 2
    player.pause()
    assert not player.is_playing()


def test_refresh_follows_a_growing_run(qtbot):
    player = HistoryPlayer(show_preview=False)
    qtbot.addWidget(player)
    h = FrameHistory()
    h.push(1, torch.zeros(1, 4, 4))
    player.set_history(h)
    h.push(2, torch.ones(1, 4, 4))
    player.refresh()
    assert player.current_frame().t == 2  # it was at the end, so it stays at the end
    player.seek(0)
    h.push(3, torch.ones(1, 4, 4))
    player.refresh()
    assert player.current_frame().t == 1  # a user scrubbing back is not dragged forward


def test_batched_history_one_sample(qtbot):
    player = HistoryPlayer()
    qtbot.addWidget(player)
    player.set_history(_history(5, batch=4), sample=2)
    assert player.preview.image_shape() == (8, 8)
    player.set_history(_history(5, batch=4))
    assert player.preview.image_shape() == (18, 18)  # a 2×2 grid with gaps


def test_export_buttons_and_api(qtbot, tmp_path, monkeypatch):
    player = HistoryPlayer()
    qtbot.addWidget(player)
    with pytest.raises(PriorStudioError):
        player.export("gif", tmp_path / "none.gif")
    player.set_history(_history())
    target = tmp_path / "run.gif"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    player.export_buttons["gif"].click()
    with Image.open(target) as im:
        assert im.n_frames == 12
    strip = tmp_path / "strip"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(strip), ""))
    player.export_buttons["filmstrip"].click()
    assert (tmp_path / "strip.png").exists()
    player.export("webp", tmp_path / "run.webp")
    assert (tmp_path / "run.webp").stat().st_size > 0
    assert player.export_buttons["mp4"].isEnabled() == (mp4_encoder() is not None)


def test_explain_panel(qtbot):
    panel = ExplainPanel()
    qtbot.addWidget(panel)
    params = type("P", (), {"sigma_0": 1.0, "sigma_L": 0.01, "h_0": 0.01, "beta": 0.5})()
    rows = [StepRecord(t=t, sigma=0.9**t).scalars() for t in range(1, 6)]
    e = panel.explain_rows(rows, 3, params, n_values=64)
    assert e is not None and e.numbers["measured_next_sigma"] == pytest.approx(0.9**4)
    assert "Miyasawa" in panel.browser.toPlainText() and "measured" in panel.text()
    assert panel.explain_rows(rows, 99, params) is None
    panel.explain(StepRecord(t=2, sigma=0.5), params, constrained=True)
    assert "MMᵀ" in panel.browser.toPlainText()
    panel.clear()
    assert panel.text() == ""
