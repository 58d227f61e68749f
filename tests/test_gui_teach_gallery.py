"""The prior-samples gallery and the β comparison (offscreen, tiny random-weights model)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

pytest.importorskip("pytestqt")

from teach_oracle import IsotropicOracle

from priorstudio.gui.teach.gallery import BetaComparisonWidget, GalleryWidget, tile_index

pytestmark = pytest.mark.gui


@pytest.fixture
def factory():
    oracle = IsotropicOracle()
    return lambda channels: oracle


def _small(controls, k=4, steps=400):
    controls.k.setValue(k)
    controls.size.setValue(16)
    controls.max_steps.setValue(steps)


def test_tile_index():
    # 5 samples of 4×4 in a 3-column grid with 2-pixel gaps
    assert tile_index((4, 4), 5, 0, 0) == 0
    assert tile_index((4, 4), 5, 0, 6) == 1
    assert tile_index((4, 4), 5, 0, 4) is None  # in the gap
    assert tile_index((4, 4), 5, 6, 7) == 4
    assert tile_index((4, 4), 5, 6, 13) is None  # the empty sixth cell


def test_gallery_runs_fills_in_and_selects(qtbot, factory):
    gallery = GalleryWidget(factory)
    qtbot.addWidget(gallery)
    gallery.show()
    _small(gallery.controls)
    with qtbot.waitSignal(gallery.finished, timeout=30_000) as blocker:
        assert gallery.run()
        assert gallery.is_running() and not gallery.run_button.isEnabled()
    last = blocker.args[0]
    assert last is not None and last.is_last and last.image.shape == (4, 1, 16, 16)
    assert last.stop_reason.value == "converged" and last.t > 10
    assert not gallery.is_running() and gallery.run_button.isEnabled()
    assert gallery.samples().shape == (4, 1, 16, 16)
    assert gallery.batch.pane.image_shape() == (34, 34)  # 2×2 grid with a gap
    assert len(gallery.batch.rows) == last.t and len(gallery.batch.history) > 0
    # each sample has its own σ_t curve
    t, s0 = gallery.batch.sigma_curve(0)
    _, s1 = gallery.batch.sigma_curve(1)
    assert len(t) == last.t and not torch.allclose(torch.tensor(s0), torch.tensor(s1))
    assert {"ideal", "s0", "s3"} <= set(gallery.plot.curve_keys())
    # clicking sample 3 (bottom right) scrubs its run
    gallery.batch.pane.clicked.emit(20, 20)
    assert gallery.selected == 3
    assert gallery.player.current_frame().t == last.t
    assert gallery.player.slider.maximum() == len(gallery.batch.history) - 1
    assert gallery.player.preview.image_shape() == (16, 16)
    gallery.player.seek(0)
    assert gallery.player.current_frame().t == 1


def test_gallery_stop_keeps_the_partial_result(qtbot, factory):
    gallery = GalleryWidget(factory)
    qtbot.addWidget(gallery)
    _small(gallery.controls, k=2, steps=100_000)
    gallery.controls.sigma_L.setValue(1e-4)
    with qtbot.waitSignal(gallery.finished, timeout=30_000) as blocker:
        gallery.run()
        qtbot.waitUntil(lambda: len(gallery.batch.rows) >= 3, timeout=20_000)
        gallery.stop()
    last = blocker.args[0]
    assert last.stop_reason.value == "cancelled" and last.image.shape == (2, 1, 16, 16)


def test_closing_mid_run_leaves_no_thread(qtbot, factory):
    gallery = GalleryWidget(factory)
    qtbot.addWidget(gallery)
    _small(gallery.controls, k=2, steps=100_000)
    gallery.controls.sigma_L.setValue(1e-4)
    gallery.run()
    qtbot.waitUntil(lambda: len(gallery.batch.history) > 0, timeout=20_000)
    gallery.close()
    assert not gallery.is_running()


def test_beta_comparison(qtbot, factory):
    widget = BetaComparisonWidget(factory)
    qtbot.addWidget(widget)
    _small(widget.controls, k=2)
    widget.beta.setValue(0.3)
    with qtbot.waitSignal(widget.finished, timeout=30_000):
        widget.run()
    a, b = widget.left.samples(), widget.right.samples()
    assert a.shape == b.shape == (2, 1, 16, 16)
    assert widget.left.params.beta == 1.0 and widget.right.params.beta == pytest.approx(0.3)
    assert not torch.allclose(a, b)  # the injected noise changes the samples
    assert {"β1", "β", "ideal β1", "ideal β"} <= set(widget.plot.curve_keys())
    assert widget.left.rows[0]["gamma"] == 0.0 and widget.right.rows[0]["gamma"] > 0
    assert widget.run_button.isEnabled()
