"""The prior-samples gallery and the β comparison (offscreen, tiny random-weights model)."""

from __future__ import annotations

import math
import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch
from PySide6 import QtCore, QtWidgets

pytest.importorskip("pytestqt")

from teach_oracle import IsotropicOracle

from priorstudio.gui.teach.batch_view import detail, tile_index, tile_rect
from priorstudio.gui.teach.beta_compare import BetaComparisonWidget
from priorstudio.gui.teach.gallery import GalleryWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def factory():
    oracle = IsotropicOracle()
    return lambda channels: oracle


class Gated:
    """The oracle, held after a few calls until ``gate`` opens: the run cannot end before the test looks."""

    def __init__(self, oracle: IsotropicOracle, free_calls: int = 3) -> None:
        self.oracle, self.free_calls, self.calls = oracle, free_calls, 0
        self.gate = threading.Event()
        self.channels, self.device, self.name = oracle.channels, oracle.device, oracle.name

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.free_calls:
            self.gate.wait(timeout=30)
        return self.oracle(y)


def _small(controls, k=4, steps=400):
    controls.k.setValue(k)
    controls.size.setValue(16)
    controls.max_steps.setValue(steps)


def test_tile_rect_and_index_agree():
    for k in range(5):
        x, y, w, h = tile_rect((4, 4), 5, k)
        assert (w, h) == (4, 4)
        assert tile_index((4, 4), 5, y, x) == k and tile_index((4, 4), 5, y + 3, x + 3) == k


def test_tile_index():
    # 5 samples of 4×4 in a 3-column grid with 2-pixel gaps
    assert tile_index((4, 4), 5, 0, 0) == 0
    assert tile_index((4, 4), 5, 0, 6) == 1
    assert tile_index((4, 4), 5, 0, 4) is None  # in the gap
    assert tile_index((4, 4), 5, 6, 7) == 4
    assert tile_index((4, 4), 5, 6, 13) is None  # the empty sixth cell


def test_gallery_runs_fills_in_and_selects(qtbot):
    gated = Gated(IsotropicOracle())
    gallery = GalleryWidget(lambda channels: gated)
    qtbot.addWidget(gallery)
    gallery.show()
    _small(gallery.controls)
    with qtbot.waitSignal(gallery.finished, timeout=30_000) as blocker:
        assert gallery.run()
        assert gallery.is_running() and not gallery.run_button.isEnabled()
        # the grid fills in live: the first steps' samples are shown while the run is still going
        qtbot.waitUntil(lambda: gallery.batch.pane.image_shape() == (34, 34), timeout=20_000)
        assert gallery.is_running() and gallery.batch.last is None
        gated.gate.set()
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
    assert gallery.batch.marker.isVisible() and gallery.batch.marker.rect().topLeft() == QtCore.QPointF(18, 18)
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
    gallery.controls.h_0.setValue(1e-4)  # slow steps down: the run must still be going when stopped
    gallery.controls.beta.setValue(1e-3)
    with qtbot.waitSignal(gallery.finished, timeout=30_000) as blocker:
        gallery.run()
        qtbot.waitUntil(lambda: len(gallery.batch.rows) >= 3, timeout=20_000)
        gallery.stop()
    last = blocker.args[0]
    assert last.stop_reason.value == "cancelled" and last.image.shape == (2, 1, 16, 16)


def _running_gallery(qtbot, factory) -> GalleryWidget:
    """A gallery whose long run has taken its first steps."""
    gallery = GalleryWidget(factory)
    qtbot.addWidget(gallery)
    _small(gallery.controls, k=2, steps=100_000)
    gallery.controls.sigma_L.setValue(1e-4)
    gallery.run()
    qtbot.waitUntil(lambda: len(gallery.batch.history) > 0, timeout=20_000)
    return gallery


def test_closing_mid_run_leaves_no_thread(qtbot, factory):
    gallery = _running_gallery(qtbot, factory)
    gallery.close()
    assert not gallery.is_running()


def test_a_tool_shut_down_mid_run_can_run_again(qtbot, factory):
    """Closing a Teach window shuts its run down; the window is kept and shown again later, ready to run."""
    from priorstudio.gui.teach.integration import _shutdown

    gallery = _running_gallery(qtbot, factory)
    assert not gallery.run_button.isEnabled()
    _shutdown(gallery)
    assert not gallery.is_running()
    assert gallery.run_button.isEnabled() and gallery.controls.isEnabled() and not gallery.stop_button.isEnabled()


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


def test_detail_measures_fine_structure():
    flat = torch.full((2, 1, 6, 6), 0.3)
    checker = ((torch.arange(6)[:, None] + torch.arange(6)[None, :]) % 2).float().expand(2, 1, 6, 6)
    assert detail(flat) == 0.0 and detail(checker) == pytest.approx(1.0)


def test_scrubbed_step_shows_each_samples_score_and_explains_it(qtbot, factory):
    gallery = GalleryWidget(factory)
    qtbot.addWidget(gallery)
    gallery.show()
    _small(gallery.controls, k=4)
    assert not gallery.explain_button.isEnabled()
    with qtbot.waitSignal(gallery.finished, timeout=30_000):
        gallery.run()
    batch = gallery.batch
    steps = batch.last_steps()
    assert len(steps) == 4 and max(steps) == batch.last.t
    assert len(set(steps)) > 1  # the samples stop at different steps: the score lookup must follow
    # unconstrained, σ_t = ‖f(y_t)‖/√N: every kept score of every sample has its own σ_t as its size
    rows = {int(r["t"]): r for r in batch.rows}
    checked = 0
    for k in range(4):
        for frame in batch.scores.history.frames():
            if frame.t > steps[k]:
                continue
            t, score = batch.score_of(frame.t, k)
            assert t == frame.t and score.shape == (1, 16, 16)
            size = float(score.double().norm()) / 16
            assert size == pytest.approx(rows[t][f"sigma_{k}"], rel=2e-3), (k, t)
            checked += 1
    assert checked > 20
    # the pane shows the selected sample's score at the scrubbed step; a click on the σ plot scrubs
    gallery.select(2)
    gallery.plot.stepClicked.emit(5)
    assert gallery.player.current_frame().t == 5 and gallery.plot.cursor.value() == 5
    assert f"σ {rows[5]['sigma_2']:.4f}" in gallery.player.step_label.text()  # the sample's own σ_t
    assert gallery.score_pane.image_shape() == (16, 16) and "step 5" in gallery.score_pane.title.text
    assert gallery.explain_button.isEnabled()
    text = gallery.explain()
    assert "Miyasawa" in text and "Step t = 5 " in text
    numbers = gallery.explain_dialog.panel.explanation.numbers
    assert numbers["sigma"] == pytest.approx(rows[5]["sigma_2"])  # sample 3's own σ_t, not the batch mean
    assert numbers["measured_next_sigma"] == pytest.approx(rows[6]["sigma_2"])
    assert numbers["n_values"] == 256
    gallery.player.seek(0)  # the open panel follows the scrub bar
    assert gallery.explain_dialog.panel.explanation.numbers["t"] == 1
    gallery.explain_dialog.close()
    # past a sample's own stop the player says so: the batch's later frames hold that sample still
    early = min(range(4), key=lambda k: steps[k])
    gallery.select(early)
    gallery.player.seek(len(gallery.player.frames()) - 1)
    assert f"stopped at step {steps[early]}" in gallery.player.step_label.text()
    gallery.plot.stepClicked.emit(steps[early])
    assert "stopped" not in gallery.player.step_label.text()


def test_model_choice_fixes_the_channels(qtbot, tmp_path):
    from priorstudio.core.denoisers import BiasFreeUNet
    from priorstudio.core.denoisers.registry import save_weights
    from priorstudio.gui.teach.batch_view import SynthesisControls

    torch.manual_seed(0)
    save_weights(tmp_path / "tiny-color.pt", BiasFreeUNet(3, (8, 16)))
    (tmp_path / "broken.pt").write_bytes(b"not a weights file")
    controls = SynthesisControls()
    qtbot.addWidget(controls)
    combo = controls.model
    combo.clear()
    combo.addItem("the window's model", None)
    combo.addItem("tiny-color", str(tmp_path / "tiny-color.pt"))
    combo.addItem("broken", str(tmp_path / "broken.pt"))
    window_model = IsotropicOracle()
    assert controls.denoiser(lambda channels: window_model) is window_model
    combo.setCurrentIndex(1)
    assert controls.color.isChecked() and not controls.color.isEnabled() and controls.channels() == 3
    chosen = controls.denoiser(lambda channels: pytest.fail("the window's model was used"))
    assert chosen.channels == 3 and chosen.name == "tiny-color"
    assert controls.denoiser(lambda channels: None) is chosen  # loaded once
    combo.setCurrentIndex(2)
    assert combo.currentIndex() == 0 and controls.color.isEnabled()
    assert not controls.model_note.isHidden() and "Cannot use that model" in controls.model_note.text()


def test_beta_comparison_says_what_the_noise_did(qtbot, factory):
    widget = BetaComparisonWidget(factory)
    qtbot.addWidget(widget)
    _small(widget.controls, k=2)
    with qtbot.waitSignal(widget.finished, timeout=30_000):
        widget.run()
    text = widget.summary.text()
    assert f"β = 1: {widget.left.last.t} steps" in text and f"β = 0.5: {widget.right.last.t} steps" in text
    assert f"detail {detail(widget.left.samples()):.4f}" in text


def test_sigma_plot_starts_on_the_range_a_run_fills_then_follows_the_data(qtbot):
    import numpy as np

    from priorstudio.gui.teach.sigma_plot import SigmaPlot

    plot = SigmaPlot()
    qtbot.addWidget(plot)
    plot.resize(400, 300)
    (x0, x1), (y0, y1) = plot.getViewBox().viewRange()
    assert (x0, x1) == (0.0, 50.0) and (y0, y1) == (-3.0, 0.0)  # steps from 0, σ from 0.001 to 1
    assert not plot.target.isVisible()  # no σ_L line until a run sets one
    plot.set_curve("a", np.arange(1, 200), 0.5 ** np.linspace(0, 10, 199))
    plot.getViewBox().updateAutoRange()
    (x0, x1), (y0, y1) = plot.getViewBox().viewRange()
    assert x1 >= 199 and y0 <= -3.0  # the whole curve is shown
    from priorstudio.core.samplers.implicit_prior import ImplicitPriorParams

    plot.set_ideal("ideal", ImplicitPriorParams(sigma_L=0.02), 50)
    assert plot.target.isVisible() and plot.target.value() == pytest.approx(math.log10(0.02))


def test_a_long_status_message_wraps_instead_of_widening_the_window(qtbot, factory):
    gallery = GalleryWidget(factory)
    qtbot.addWidget(gallery)
    gallery.show()
    before = gallery.minimumSizeHint().width()
    gallery.batch.status.setText(
        "9 samples after 48 steps (converged). Click one to see its run. 48 frames (every 1), 1.7 of 200 MB "
        "kept, and then some more words to make quite sure the line is longer than any window is wide"
    )
    QtWidgets.QApplication.processEvents()  # the layout takes in the new text
    assert gallery.minimumSizeHint().width() <= before
