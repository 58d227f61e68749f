"""Compare mode, offscreen: several methods on one degraded image, tiles side by side, curves on one plot."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("pytestqt")

from gui_support import open_window, structured_photo, tiny_denoiser
from PySide6 import QtGui, QtWidgets

from priorstudio.core.denoisers import Denoiser
from priorstudio.core.metrics import psnr
from priorstudio.core.operators import make_operator
from priorstudio.core.samplers.base import StopReason
from priorstudio.core.samplers.registry import METHODS, compare
from priorstudio.gui.compare import TEXT_LIGHTNESS, ComparePanel, ComparePlot, _readable, compare_params
from priorstudio.gui.compare_worker import CompareJob
from priorstudio.gui.main_window import MainWindow

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

NAMES = tuple(METHODS)
TIMEOUT_MS = 240_000


@pytest.fixture
def photo(tmp_path):
    return structured_photo(tmp_path / "photo.png", 40, 48)


@pytest.fixture
def window(qtbot, settings):
    w = open_window(qtbot, settings, denoiser_factory=tiny_denoiser)
    yield w
    w.shutdown()


def small_panel(panel: ComparePanel, steps: int = 4) -> None:
    """Quick settings: a DIP of width 4 (5 scales still), a few steps of everything."""
    panel.steps.setValue(steps)
    panel.twicing_steps.setValue(3)
    panel.dip_width.setValue(4)
    panel.use_panel.setChecked(False)


def denoise_setup(window: MainWindow, photo) -> None:
    assert window.open_path(photo)
    window.degradation.set_task("denoise")
    window.degradation.set_mode("simulate")


def test_compare_runs_every_method_and_shows_tiles_curves_and_table(window, photo, qtbot):
    denoise_setup(window, photo)
    window.compare_action.trigger()
    assert window.compare_dock.isVisible()
    panel = window.compare
    small_panel(panel)
    assert panel.checked_methods() == list(NAMES)
    assert panel.placeholder.isVisible()  # the empty image row says what will appear in it
    with qtbot.waitSignal(panel.compareFinished, timeout=TIMEOUT_MS) as finished:
        panel.run_button.click()
        assert panel.is_running()
        assert not window.actions["run"].isEnabled(), "one run at a time"
        assert not panel.run_button.isEnabled() and panel.stop_button.isEnabled()
    summaries = finished.args[0]
    assert list(summaries) == list(NAMES)
    assert not window.errors
    # the degraded image, the truth and one tile per method, side by side, each with an image
    assert list(panel.tiles) == ["observed", "truth", *NAMES]
    assert all(tile.has_image() for tile in panel.tiles.values())
    assert not panel.placeholder.isVisible()
    noisy_psnr = psnr(panel.job.init.clamp(0, 1), panel.job.truth)
    assert panel.tiles["observed"].caption.text() == f"48×40, PSNR {noisy_psnr:.2f} dB"
    # one plot, one PSNR curve per method, in the legend under the method's label
    plot = panel.plot
    assert plot.quantity == "psnr"
    assert plot.legend_labels() == [METHODS[n].label for n in NAMES]
    for name, s in summaries.items():
        assert not s.error and s.steps >= 1
        ts, vs = plot.curve_data(name)
        assert len(ts) == len(s.psnr_curve) >= 1
        assert np.allclose(vs, [v for _, v in s.psnr_curve])
        assert max(vs) == pytest.approx(s.best_psnr)
        x, _y = plot.curves[name].getData()
        assert x is not None and len(x) == len(ts), "the curve is drawn"
        mark_x, mark_y = plot.best_marks[name].getData()
        assert list(mark_x) == [s.best_step] and mark_y[0] == pytest.approx(s.best_psnr)
        assert f"{s.best_psnr:.2f} dB" in panel.tiles[name].caption.text()
    # twicing ran 3 steps, the others at most 4
    assert summaries["nlm_twicing"].steps == 3 and summaries["dip_adam"].steps == 4
    rows = panel.table_rows()
    assert [r[0] for r in rows] == [METHODS[n].label for n in NAMES]
    assert rows[1][1] == f"{summaries['dip_adam'].best_psnr:.2f}"
    assert window.actions["run"].isEnabled() and panel.run_button.isEnabled()


def test_the_gui_shows_what_the_registry_computes(window, photo, qtbot):
    """NLM twicing is deterministic: the panel's numbers are those of ``compare`` on the same problem."""
    denoise_setup(window, photo)
    panel = window.compare
    small_panel(panel)
    panel.set_checked_methods(["nlm_twicing"])
    with qtbot.waitSignal(panel.compareFinished, timeout=TIMEOUT_MS) as finished:
        assert window.start_compare()
    job = panel.job
    direct = compare(["nlm_twicing"], job.operator, job.measurement, job.truth, init=job.init, params=job.params)
    gui, ref = finished.args[0]["nlm_twicing"], direct["nlm_twicing"]
    assert [t for t, _ in gui.psnr_curve] == [t for t, _ in ref.psnr_curve] == [1, 2, 3]
    assert [v for _, v in gui.psnr_curve] == pytest.approx([v for _, v in ref.psnr_curve], abs=1e-9)
    assert torch.equal(gui.image, ref.image)
    tile = panel.tiles["nlm_twicing"].array
    assert np.allclose(tile, ref.image[0].permute(1, 2, 0).clamp(0, 1).numpy(), atol=1e-6)


def test_stop_ends_the_running_method_and_skips_the_rest(window, photo, qtbot):
    denoise_setup(window, photo)
    panel = window.compare
    small_panel(panel, steps=100_000)
    panel.set_checked_methods(["dip_adam", "nlm_twicing"])
    with qtbot.waitSignal(panel.compareFinished, timeout=TIMEOUT_MS) as finished:
        assert window.start_compare()
        qtbot.waitUntil(lambda: panel.plot.point_count("dip_adam") >= 2, timeout=TIMEOUT_MS)
        panel.stop_button.click()
    summaries = finished.args[0]
    assert list(summaries) == ["dip_adam"]
    assert summaries["dip_adam"].stop_reason == StopReason.CANCELLED.value
    assert summaries["dip_adam"].steps < 100_000
    assert "not run" in panel.tiles["nlm_twicing"].caption.text()
    assert panel.tiles["dip_adam"].has_image()


def test_without_ground_truth_the_plot_shows_the_fit_loss(window, photo, qtbot):
    denoise_setup(window, photo)
    window.degradation.set_mode("restore")
    panel = window.compare
    small_panel(panel)
    panel.set_checked_methods(["dip_gd", "ntk_twicing"])
    with qtbot.waitSignal(panel.compareFinished, timeout=TIMEOUT_MS) as finished:
        assert window.start_compare()
    assert panel.plot.quantity == "loss"
    assert "truth" not in panel.tiles
    for name, s in finished.args[0].items():
        assert math.isnan(s.best_psnr)
        assert panel.plot.point_count(name) == len(s.loss_curve) >= 1
    assert panel.table_rows()[0][1] == "n/a"


def test_algorithm_panel_values_are_used_for_its_method(window, photo, qtbot):
    denoise_setup(window, photo)
    algo = window.algorithm
    names = [algo.method.itemData(i) for i in range(algo.method.count())]
    algo.method.setCurrentIndex(names.index("ntk_twicing"))
    algo.set_values({"max_steps": 2, "patch": 3, "window": 5})
    panel = window.compare
    small_panel(panel)
    panel.use_panel.setChecked(True)
    panel.set_checked_methods(["ntk_twicing", "nlm_twicing"])
    with qtbot.waitSignal(panel.compareFinished, timeout=TIMEOUT_MS) as finished:
        assert window.start_compare()
    summaries = finished.args[0]
    assert summaries["ntk_twicing"].steps == 2  # the panel's value, not the compare cap of 3
    assert panel.job.params["ntk_twicing"].window == 5
    assert summaries["nlm_twicing"].steps == 3


def test_missing_denoiser_marks_only_the_implicit_prior(qtbot, settings, photo):
    from priorstudio.core.errors import WeightsError

    def no_model(channels: int) -> Denoiser:
        raise WeightsError("no denoiser for this test")

    w = MainWindow(denoiser_factory=no_model, settings=settings, error_sink=lambda t, m: None)
    w.confirm_close = lambda reason: "discard"
    qtbot.addWidget(w)
    try:
        denoise_setup(w, photo)
        small_panel(w.compare)
        w.compare.set_checked_methods(["implicit_prior", "nlm_twicing"])
        with qtbot.waitSignal(w.compare.compareFinished, timeout=TIMEOUT_MS) as finished:
            assert w.start_compare()
        summaries = finished.args[0]
        assert "no denoiser for this test" in summaries["implicit_prior"].error
        assert not summaries["nlm_twicing"].error
        assert "could not run" in w.compare.tiles["implicit_prior"].caption.text()
        assert "could not run" in w.compare.status.text()
    finally:
        w.shutdown()


def test_nothing_ticked_or_no_photo_is_reported(window, photo):
    assert not window.start_compare()
    assert window.errors and "open an image" in window.errors[-1][1]
    denoise_setup(window, photo)
    window.compare.set_checked_methods([])
    assert not window.start_compare()
    assert "tick at least one" in window.errors[-1][1]


def test_compare_params_caps_steps_width_and_spreads_images():
    missing = torch.zeros(32, 32, dtype=torch.bool)
    missing[8:16, 8:16] = True
    op = make_operator("inpaint", (1, 32, 32), missing=missing)
    params = compare_params(NAMES, op, steps=600, twicing_steps=30, dip_width=16)
    assert params["dip_adam"].max_steps == 600 and params["dip_adam"].width == 16
    assert params["dip_gd"].optimizer == "gd"
    assert params["nlm_twicing"].max_steps == 30 and params["nlm_twicing"].emit_every == 1
    assert params["dip_adam"].emit_every == 10
    assert params["implicit_prior"].max_steps == 600


def test_panel_on_its_own_with_a_controller_run(qtbot):
    """The panel needs no window: a job in, summaries out, and the worker thread ends."""
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand((1, 1, 4, 4), generator=g), size=(16, 16), mode="bilinear")[0]
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    op = make_operator("denoise", (1, 16, 16))
    panel = ComparePanel()
    qtbot.addWidget(panel)
    params = compare_params(["nlm_twicing", "ntk_twicing"], op, steps=3, twicing_steps=4)
    params = {n: dataclasses.replace(p, patch=3, window=5) for n, p in params.items()}
    job = CompareJob(("nlm_twicing", "ntk_twicing"), op, op.forward(y.unsqueeze(0)), x, y, params)
    with qtbot.waitSignal(panel.compareFinished, timeout=TIMEOUT_MS) as finished:
        panel.start(job, observed=y)
        worker = panel.controller.worker
    assert set(finished.args[0]) == {"nlm_twicing", "ntk_twicing"}
    assert worker.job is None and worker.summaries == {}  # the finished worker holds no images
    assert panel.plot.point_count("ntk_twicing") == 4
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=5000)
    assert panel.shutdown()


def test_plot_drops_unplottable_values_and_follows_log_axes(qtbot):
    plot = ComparePlot()
    qtbot.addWidget(plot)
    plot.start([("a", "A"), ("b", "B")], "loss")
    for t, v in ((1, 0.5), (10, 0.1), (20, -1.0), (30, math.nan)):  # a log axis cannot show ≤ 0 or NaN
        plot.add_point("a", t, v)
    plot.add_point("unknown", 1, 1.0)
    assert plot.refresh() and not plot.refresh()
    assert plot.point_count("a") == 2 and plot.point_count("b") == 0
    assert plot.legend_labels() == ["A", "B"]
    plot.set_log_steps(True)
    plot.mark_best("a", 10, 0.1)
    x, _y = plot.curves["a"].getData()
    assert np.allclose(x, [0.0, 1.0])  # log10 of steps 1 and 10
    mx, my = plot.best_marks["a"].getData()
    assert np.allclose(mx, [1.0]) and np.allclose(my, [-1.0])  # the mark follows both log axes
    with pytest.raises(ValueError, match="quantity"):
        plot.start([], "ssim")


def test_the_compare_dock_fits_a_small_screen_and_leaves_the_run_controls(window):
    """Docked at the bottom, the panel asks for little height (the window must still fit a 1000-pixel
    screen), and showing it takes height from the canvas and the plots, not from the run controls."""
    window.resize(1600, 1000)
    QtWidgets.QApplication.processEvents()
    controls = window.algorithm_dock.height()
    window.show_compare()
    QtWidgets.QApplication.processEvents()
    assert window.compare_dock.isVisible()
    assert window.compare.minimumSizeHint().height() <= 260
    assert window.minimumSizeHint().height() <= 900
    assert window.compare_dock.height() >= 300
    assert window.algorithm_dock.height() >= min(controls, 150)
    # the panel's own controls: Compare and Stop are in view without scrolling, at the dock's first height
    for button in (window.compare.run_button, window.compare.stop_button):
        shown = button.visibleRegion().boundingRect()
        assert shown.height() == button.height() and shown.width() == button.width(), button.text()


def test_empty_plot_shows_steps_and_the_quantitys_range_until_data(qtbot):
    plot = ComparePlot()
    qtbot.addWidget(plot)
    assert plot.getViewBox().viewRange() == [[0.0, 300.0], [10.0, 40.0]]  # PSNR from 10 to 40 dB
    plot.start([("a", "A")], "loss")
    assert plot.getViewBox().viewRange() == [[0.0, 300.0], [-4.0, 0.0]]  # log10 of the fit loss
    plot.set_log_steps(True)  # still empty: the step axis's range in its new units, 1–300 steps
    assert plot.getViewBox().viewRange()[0] == [0.0, 2.5]
    plot.set_log_steps(False)
    assert plot.getViewBox().viewRange()[0] == [0.0, 300.0]
    plot.add_point("a", 5, 0.5)
    plot.add_point("a", 1000, 0.4)
    plot.refresh()
    plot.getViewBox().updateAutoRange()
    (_x0, x1), _ = plot.getViewBox().viewRange()
    assert x1 >= 1000  # the data take over


def test_method_names_stay_readable_on_a_light_background():
    light, dark = QtGui.QPalette(QtGui.QColor("white")), QtGui.QPalette(QtGui.QColor("black"))
    light.setColor(QtGui.QPalette.ColorRole.Base, QtGui.QColor("white"))
    dark.setColor(QtGui.QPalette.ColorRole.Base, QtGui.QColor("black"))
    yellow = QtGui.QColor(255, 220, 40)
    assert _readable(yellow, light).lightness() <= TEXT_LIGHTNESS + 2
    assert _readable(yellow, dark) == yellow  # the plots' dark background keeps the bright colour
    navy = QtGui.QColor(20, 20, 120)
    assert _readable(navy, light) == navy  # already dark enough


def test_the_steps_box_says_when_the_panel_method_keeps_its_own_cap(qtbot):
    panel = ComparePanel()
    qtbot.addWidget(panel)
    panel.use_panel.setChecked(True)
    assert panel.steps_label.text() == "steps (other methods)"
    panel.use_panel.setChecked(False)
    assert panel.steps_label.text() == "steps"


@pytest.mark.parametrize("answer", ["save", "cancel", "discard"])
def test_closing_during_a_comparison_offers_to_save_the_last_runs_result(qtbot, settings, photo, answer):
    """The last run's result is unsaved and a comparison is going: closing says both, and "Stop and save…"
    saves that result (it was thrown away: the answer became "discard"); "Cancel" keeps everything going."""
    w = open_window(qtbot, settings, denoiser_factory=tiny_denoiser)
    try:
        denoise_setup(w, photo)
        w.algorithm.apply_preset("teach")
        w.algorithm.set_values({"sigma_L": 0.05, "max_steps": 20})
        with qtbot.waitSignal(w.runFinished, timeout=TIMEOUT_MS):
            assert w.start_run(), w.errors
        assert w.result is not None and not w.result_saved
        small_panel(w.compare, steps=100_000)
        w.compare.set_checked_methods(["dip_adam"])
        assert w.start_compare()
        qtbot.waitUntil(w.compare.is_running, timeout=10_000)
        asked, saved = [], []
        w.confirm_close = lambda reason: asked.append(reason) or answer

        def save() -> None:
            saved.append(w.result)
            w.result_saved = True

        w._cmd_save = save
        closed = w.close()
        assert asked == ["comparing unsaved"]
        assert saved == ([w.result] if answer == "save" else [])
        assert closed == (answer != "cancel")
        assert w.compare.is_running() == (answer == "cancel")
    finally:
        w.confirm_close = lambda reason: "discard"
        w.shutdown()


def test_closing_during_a_comparison_with_nothing_unsaved_asks_only_to_stop(window, photo, qtbot):
    denoise_setup(window, photo)
    small_panel(window.compare, steps=100_000)
    window.compare.set_checked_methods(["dip_adam"])
    assert window.start_compare()
    asked = []
    window.confirm_close = lambda reason: asked.append(reason) or "discard"
    assert window.close() and asked == ["comparing"] and not window.compare.is_running()


def test_compare_legend_sits_in_the_corner_the_curves_leave_free(qtbot):
    """PSNR curves climb towards the top, so the legend goes bottom right; loss curves fall, so top right."""
    plot = ComparePlot()
    qtbot.addWidget(plot)
    plot.resize(420, 300)
    plot.show()
    qtbot.waitExposed(plot)
    box = plot.getViewBox()

    def legend_in_lower_right() -> tuple[bool, bool]:
        QtWidgets.QApplication.processEvents()
        legend, view = plot.legend.sceneBoundingRect(), box.sceneBoundingRect()
        return legend.center().y() > view.center().y(), legend.center().x() > view.center().x()

    for quantity, lower in (("psnr", True), ("loss", False), ("psnr", True)):
        plot.start([("a", "A"), ("b", "B")], quantity)
        assert legend_in_lower_right() == (lower, True), quantity
