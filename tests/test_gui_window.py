"""The main window, offscreen, with a tiny random-weight denoiser: open, paint, undo, run, pause, stop, close."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytestqt")

from gui_support import EventCounter, open_window, structured_photo, tiny_denoiser
from PySide6 import QtCore, QtGui, QtWidgets

from priorstudio.core.errors import ParameterError
from priorstudio.core.samplers.base import StopReason
from priorstudio.core.samplers.implicit_prior import expected_iterations
from priorstudio.gui import keymap
from priorstudio.gui.main_window import MainWindow

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]

Qt = QtCore.Qt


@pytest.fixture
def photo(tmp_path):
    return structured_photo(tmp_path / "photo.png", 48, 64)


@pytest.fixture
def window(qtbot, settings):
    w = open_window(qtbot, settings, denoiser_factory=tiny_denoiser)
    yield w
    w.shutdown()


def quick_params(window: MainWindow, **values) -> None:
    """A short, fast run: β = 0.5 (teach preset), σ_L high enough to converge in tens of steps."""
    window.algorithm.apply_preset("teach")
    window.algorithm.set_values({"sigma_L": 0.05, "max_steps": 60, **values})


def view_point(window: MainWindow, x: float, y: float) -> QtCore.QPoint:
    return window.canvas.mapFromScene(QtCore.QPointF(x, y))


def send_mouse(widget, kind, pos: QtCore.QPoint, button, buttons) -> None:
    """A real QMouseEvent with the buttons held (qtbot.mouseMove cannot carry buttons)."""
    local = QtCore.QPointF(pos)
    event = QtGui.QMouseEvent(kind, local, widget.mapToGlobal(local), button, buttons, Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(widget, event)


def drag(window: MainWindow, points, button=Qt.MouseButton.LeftButton) -> None:
    viewport = window.canvas.viewport()
    pts = [view_point(window, x, y) for x, y in points]
    send_mouse(viewport, QtCore.QEvent.Type.MouseButtonPress, pts[0], button, button)
    for p in pts[1:]:
        send_mouse(viewport, QtCore.QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button)
    send_mouse(viewport, QtCore.QEvent.Type.MouseButtonRelease, pts[-1], button, Qt.MouseButton.NoButton)


def run_to_end(qtbot, window: MainWindow, timeout: int = 20_000):
    with qtbot.waitSignal(window.runFinished, timeout=timeout) as blocker:
        assert window.start_run(), window.errors
    return blocker.args[0]


# -- opening ---------------------------------------------------------------------------------------------
def test_open_image_shows_it_and_remembers_it(window, photo, tmp_path, settings):
    assert window.open_path(photo)
    assert tuple(window.photo.shape) == (3, 48, 64)
    assert window.canvas.image_size() == (48, 64)
    assert window.canvas.has_view("observed") and window.canvas.has_view("truth")
    assert "photo.png" in window.windowTitle()
    assert window._recent_files()[0] == str(photo)
    assert [a.text() for a in window.recent_menu.actions()] == [str(photo)]
    # a bad file: a dialog, the photo stays, the application goes on
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert not window.open_path(bad)
    assert window.errors and "bad.png" in window.errors[-1][1]
    assert tuple(window.photo.shape) == (3, 48, 64)


def test_gray_drop_and_paste(window, photo, tmp_path, qtbot):
    gray = tmp_path / "gray.png"
    Image.fromarray((np.arange(40 * 30).reshape(30, 40) % 256).astype(np.uint8), mode="L").save(gray)
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(gray))])
    drop = QtGui.QDropEvent(
        QtCore.QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(drop)
    assert tuple(window.photo.shape) == (1, 30, 40)
    QtWidgets.QApplication.clipboard().setImage(QtGui.QImage(str(photo)))
    window.actions["paste"].trigger()
    assert tuple(window.photo.shape) == (3, 48, 64) and window.photo_path is None


# -- painting --------------------------------------------------------------------------------------------
def test_real_mouse_drag_paints_and_undo_redo(window, photo, qtbot):
    window.open_path(photo)
    window.degradation.set_task("inpaint")
    assert window.canvas.paint_enabled
    window.mask.set_radius(2)
    drag(window, [(10, 24), (20, 24), (30, 24), (40, 24)])
    m = window.mask.array
    assert m[24, 10:41].all(), "the stroke must cover the whole drag"
    assert not m[:15].any() and not m[35:].any()
    assert window.mask.undo_depth == 1 and window.actions["undo"].isEnabled()
    # the menu names the step; the Mask panel's button keeps its short label and names it in its tooltip
    assert window.actions["undo"].text() == "&Undo brush stroke"
    assert window.mask_tools.buttons["undo"].text() == "Undo"
    assert window.mask_tools.buttons["undo"].toolTip().startswith("Undo brush stroke")
    painted = window.mask.copy()
    # right-drag erases part of it: a second undo step
    drag(window, [(25, 24), (35, 24)], button=Qt.MouseButton.RightButton)
    assert not window.mask.array[24, 27:33].any()
    window.actions["undo"].trigger()
    assert np.array_equal(window.mask.array, painted)
    window.actions["undo"].trigger()
    assert not window.mask.any() and not window.actions["undo"].isEnabled()
    window.actions["redo"].trigger()
    assert np.array_equal(window.mask.array, painted)


def test_brush_keys_and_outline_follow_zoom(window, photo, qtbot):
    window.open_path(photo)
    window.degradation.set_task("inpaint")
    window.canvas.setFocus()
    r0 = window.mask.radius
    qtbot.keyClick(window.canvas, Qt.Key.Key_BracketRight)
    assert window.mask.radius > r0
    r1 = window.mask.radius
    qtbot.keyClick(window.canvas, Qt.Key.Key_BraceLeft, Qt.KeyboardModifier.ShiftModifier)  # Shift+[ : ×10
    assert window.mask.radius < r1 / 2
    assert window.mask_tools.size.value() == round(2 * window.mask.radius)
    # the outline is drawn in image pixels: its on-screen size follows the zoom
    window.canvas.update_brush_outline(QtCore.QPointF(20, 20))
    rect = window.canvas.brush_outline_rect()
    assert rect.width() == pytest.approx(2 * window.mask.radius)
    before = window.canvas.mapFromScene(rect).boundingRect().width()
    window.canvas.zoom_by(2.0)
    after = window.canvas.mapFromScene(window.canvas.brush_outline_rect()).boundingRect().width()
    assert after == pytest.approx(2 * before, rel=0.15)


def test_mask_commands_import_export(window, photo, tmp_path):
    window.open_path(photo)
    window.generate_mask("block", 0.25)
    assert window.degradation.task_name() == "inpaint" and window.mask.any()
    block = window.mask.copy()
    out = window.export_mask(tmp_path / "m.png")
    window.actions["mask_invert"].trigger()
    assert np.array_equal(window.mask.array, ~block)
    window.actions["mask_clear"].trigger()
    assert not window.mask.any()
    window.import_mask(out)
    assert np.array_equal(window.mask.array, block)
    window.generate_mask("random", 0.3, seed=2)
    assert window.mask.fraction() == pytest.approx(0.3, abs=0.01)


def test_mask_edits_are_off_while_the_task_does_not_use_the_mask(window, photo, qtbot):
    """Ctrl+I or Ctrl+Z under denoising used to edit the hidden mask with nothing on screen to show it."""
    window.open_path(photo)
    window.generate_mask("block", 0.25)
    block = window.mask.copy()
    editing = ("brush", "eraser", "mask_clear", "mask_invert", "undo")
    assert all(window.actions[key].isEnabled() for key in editing)
    window.degradation.set_task("denoise")
    for key in editing:
        assert not window.actions[key].isEnabled(), key
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(window.mask.array, block), "the mask is kept as it was"
    assert window.actions["mask_export"].isEnabled()
    window.degradation.set_task("inpaint")
    assert all(window.actions[key].isEnabled() for key in editing)
    window.actions["mask_invert"].trigger()
    assert np.array_equal(window.mask.array, ~block)


# -- running ---------------------------------------------------------------------------------------------
def test_run_to_completion_updates_canvas_plots_and_record(window, photo, qtbot, tmp_path):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window)
    hole = window.mask.copy()
    before = window.canvas.layer("estimate", "photo").image.copy()
    record = run_to_end(qtbot, window)
    assert record.stop_reason in (StopReason.CONVERGED, StopReason.STEP_CAP)
    assert not window.is_running()
    steps = record.t
    # plots: one point per step for σ, residual, data error and PSNR; SSIM on a time budget (≥ the last step)
    assert window.plots.series.n == steps
    assert window.plots.point_count("sigma") == steps
    assert window.plots.point_count("psnr") == steps
    assert 1 <= window.plots.point_count("ssim") <= steps
    assert window.plots.ideal.getData()[0] is not None and len(window.plots.ideal.getData()[0]) > 10
    assert "t=" in window.plots.readout_text() and "PSNR=" in window.plots.readout_text()
    # canvas: the estimate view shows the blended result; only the hole changed
    assert window.frames_shown >= 1
    assert window.canvas.current_view == "estimate"
    result = window.result
    assert tuple(result.shape) == (3, 48, 64)
    assert torch.equal(result[:, ~torch.from_numpy(hole)], window.photo[:, ~torch.from_numpy(hole)])
    after = window.canvas.layer("estimate", "photo").image
    assert after != before
    assert window.progress_bar.value() > 0 and "step" in window.progress_bar.format()
    assert "PSNR" in window.run_label.text()
    # the status bar names the network the run used, as the run record does
    assert window.record.model and window.model_label.text() == f"model: {window.record.model}"
    # save the result (8 and 16 bit) and the run record (JSON + CSV)
    p8 = window.save_result(tmp_path / "r8.png")
    p16 = window.save_result(tmp_path / "r16.png", bit_depth=16)
    assert Image.open(p8).size == (64, 48)
    assert p8.read_bytes()[24] == 8 and p16.read_bytes()[24] == 16  # the PNG header's bit depth
    assert window.result_saved
    window.actions["save"].trigger()  # Save after a 16-bit save: the same file, still 16 bits (it became 8)
    assert p16.read_bytes()[24] == 16 and window.errors == []
    j, c = window.save_run_record(tmp_path / "run.json")
    data = json.loads(j.read_text())
    assert data["task"] == "inpaint" and len(data["steps"]) == steps
    assert c.read_text().count("\n") == steps + 1
    window.actions["copy_result"].trigger()
    assert not QtWidgets.QApplication.clipboard().image().isNull()


def test_the_cost_of_denoising_counts_steps_from_the_noise_level(window, photo):
    """Denoising starts at the noisy photo: the expected steps run from its noise level, not from σ₀ = 1."""
    window.open_path(photo)
    window.degradation.set_task("denoise")
    window.update_preview()
    params = window.algorithm.params(emit_every=1)
    from_noise = expected_iterations(dataclasses.replace(params, sigma_0=window.degradation.settings().noise_sigma))
    assert f"~{from_noise} steps" in window.degradation.cost.text() and from_noise < expected_iterations(params)


def test_simulate_other_task_at_working_size_and_restore_mode(window, photo, qtbot):
    window.open_path(photo)
    window.degradation.set_task("super_resolution")
    window.degradation.task_form.set_values({"factor": 2})
    window.degradation.set_working_side(256)
    window.update_preview()
    assert "Run on 64×48" in window.degradation.cost.text() and "steps" in window.degradation.cost.text()
    quick_params(window, max_steps=15)
    record = run_to_end(qtbot, window)
    assert record.psnr is not None and tuple(window.result.shape) == (3, 48, 64)
    # restore mode: the photo is the low-resolution input; the result is twice as large
    window.degradation.set_mode("restore")
    record = run_to_end(qtbot, window)
    assert record.psnr is None and tuple(window.result.shape) == (3, 96, 128)
    assert not window.plots.p_psnr.isVisible()


def test_pause_step_resume_stop_keeps_the_partial_result(window, photo, qtbot):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, sigma_L=1e-4, max_steps=100_000, beta=0.01)
    assert window.start_run()
    qtbot.waitUntil(lambda: window.plots.series.n >= 3, timeout=10_000)
    with qtbot.waitSignal(window.controller.paused, timeout=5_000):
        window.actions["pause"].trigger()
    assert window.actions["step"].isEnabled()
    qtbot.wait(50)
    n = window.plots.series.n
    qtbot.wait(300)
    assert window.plots.series.n == n, "paused: no steps"
    with qtbot.waitSignal(window.controller.paused, timeout=5_000):
        window.actions["step"].trigger()
    qtbot.waitUntil(lambda: window.plots.series.n == n + 1, timeout=5_000)
    window.actions["pause"].trigger()  # resume
    qtbot.waitUntil(lambda: window.plots.series.n >= n + 4, timeout=10_000)
    assert not window.actions["step"].isEnabled()
    with qtbot.waitSignal(window.runFinished, timeout=10_000) as blocker:
        window.actions["stop"].trigger()
    record = blocker.args[0]
    assert record.stop_reason == StopReason.CANCELLED
    assert window.result is not None and not window.result_saved
    assert not window.is_running()


def start_paused_run(window: MainWindow, photo, qtbot) -> None:
    """A long inpainting run on ``photo``, paused after its first steps."""
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, sigma_L=1e-4, max_steps=100_000, beta=0.01)
    window.start_run()
    with qtbot.waitSignal(window.controller.paused, timeout=10_000):
        window.controller.pause(True)


def test_stop_while_paused(window, photo, qtbot):
    """Stopped while paused: cancelled, and no longer shown paused (the progress bar kept saying so)."""
    start_paused_run(window, photo, qtbot)
    assert window.progress_bar.format().endswith("paused")
    with qtbot.waitSignal(window.runFinished, timeout=10_000) as blocker:
        window.actions["stop"].trigger()
    assert blocker.args[0].stop_reason == StopReason.CANCELLED
    assert not window.controller.is_paused()
    assert "paused" not in window.progress_bar.format()


def test_live_frames_keep_zoom_pan_and_levels(window, photo, qtbot):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, max_steps=40, sigma_L=1e-4)
    window.level_low.setValue(0.1)
    window.canvas.zoom_by(3.0, QtCore.QPoint(40, 40))
    window.canvas.horizontalScrollBar().setValue(window.canvas.horizontalScrollBar().value() + 7)
    transform = window.canvas.transform()
    centre = window.canvas.mapToScene(window.canvas.viewport().rect().center())
    run_to_end(qtbot, window)
    assert window.frames_shown >= 2
    assert window.canvas.transform() == transform
    assert window.canvas.mapToScene(window.canvas.viewport().rect().center()) == centre  # the same photo point
    assert window.canvas.levels == (0.1, 1.0)


def test_closing_mid_run_stops_and_joins_the_thread(window, photo, qtbot):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, sigma_L=1e-4, max_steps=100_000, beta=0.01)
    window.start_run()
    qtbot.waitUntil(lambda: window.plots.series.n >= 1, timeout=10_000)
    asked = []
    window.confirm_close = lambda reason: asked.append(reason) or "cancel"
    assert not window.close()
    assert asked == ["running"] and window.is_running()
    window.confirm_close = lambda reason: "discard"
    thread = window.controller._thread
    assert window.close()
    assert not window.is_running() and not thread.isRunning()


def test_closing_mid_run_can_stop_and_save_the_partial_result(window, photo, qtbot, tmp_path, monkeypatch):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, sigma_L=1e-4, max_steps=100_000, beta=0.01)
    window.start_run()
    qtbot.waitUntil(lambda: window.plots.series.n >= 3, timeout=10_000)
    target = tmp_path / "partial.png"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "PNG 8-bit (*.png)"))
    window.confirm_close = lambda reason: "save"
    assert window.close()
    assert not window.is_running()
    assert window.last_record is not None and window.last_record.stop_reason == StopReason.CANCELLED
    assert target.exists() and window.result_saved and window.result_path == str(target)


def test_closing_mid_run_stays_open_when_the_save_is_cancelled(window, photo, qtbot, monkeypatch):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, sigma_L=1e-4, max_steps=100_000, beta=0.01)
    window.start_run()
    qtbot.waitUntil(lambda: window.plots.series.n >= 3, timeout=10_000)
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))
    window.confirm_close = lambda reason: "save"
    assert not window.close()  # the run stopped, its result is kept, the window stays
    assert not window.is_running() and window.result is not None and not window.result_saved


def test_close_asks_about_an_unsaved_result(window, photo, qtbot):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, max_steps=5)
    run_to_end(qtbot, window)
    asked = []
    window.confirm_close = lambda reason: asked.append(reason) or "cancel"
    assert not window.close()
    assert asked == ["unsaved"]


def test_save_as_offers_16_bit_png_for_a_16_bit_photo(window, photo, qtbot, tmp_path, monkeypatch):
    """A 16-bit scan saved through the dialog's first choice used to come out at 8 bits."""
    deep = tmp_path / "deep.png"
    Image.fromarray(np.asarray(Image.open(photo).convert("L"), dtype=np.uint16) * 257).save(deep)
    asked = []

    def dialog(*args, **kwargs):
        asked.append(args[4] if len(args) > 4 else kwargs.get("selectedFilter"))
        return str(tmp_path / f"out{len(asked)}.png"), asked[-1]

    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", dialog)
    for source, depth, mode in ((deep, "16-bit", "I;16"), (photo, "8-bit", "RGB")):
        window.open_path(source)
        window.generate_mask("block", 0.3)
        quick_params(window, max_steps=3)
        run_to_end(qtbot, window)
        window.actions["save_as"].trigger()
        assert depth in asked[-1]
        assert Image.open(window.result_path).mode == mode
        window.result_saved = True  # the next open asks nothing


# -- views, keymap, settings, errors ---------------------------------------------------------------------
def test_views_split_and_before_after(window, photo, qtbot):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, max_steps=5)
    run_to_end(qtbot, window)
    assert window.canvas.shown_view() == "estimate" and not window.canvas.mask_overlay_shown()
    key = QtGui.QKeyEvent(QtCore.QEvent.Type.KeyPress, Qt.Key.Key_Backslash, Qt.KeyboardModifier.NoModifier, "\\")
    QtWidgets.QApplication.sendEvent(window.canvas, key)
    assert window.canvas.shown_view() == "observed"
    key = QtGui.QKeyEvent(QtCore.QEvent.Type.KeyRelease, Qt.Key.Key_Backslash, Qt.KeyboardModifier.NoModifier, "\\")
    QtWidgets.QApplication.sendEvent(window.canvas, key)
    assert window.canvas.shown_view() == "estimate"
    # the keys also work while another widget of the window has the focus (the filter follows the focus)
    window.show()
    window.activateWindow()
    button = window.findChildren(QtWidgets.QPushButton)[0]
    button.setFocus()
    qtbot.waitUntil(lambda: QtWidgets.QApplication.focusWidget() is button)
    key = QtGui.QKeyEvent(QtCore.QEvent.Type.KeyPress, Qt.Key.Key_Backslash, Qt.KeyboardModifier.NoModifier, "\\")
    QtWidgets.QApplication.sendEvent(button, key)
    assert window.canvas.shown_view() == "observed"
    key = QtGui.QKeyEvent(QtCore.QEvent.Type.KeyRelease, Qt.Key.Key_Backslash, Qt.KeyboardModifier.NoModifier, "\\")
    QtWidgets.QApplication.sendEvent(button, key)
    assert window.canvas.shown_view() == "estimate"
    clicked = []
    button.clicked.connect(lambda: clicked.append(True))
    key = QtGui.QKeyEvent(QtCore.QEvent.Type.KeyPress, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier, " ")
    QtWidgets.QApplication.sendEvent(button, key)  # a button takes Space itself unless the filter is on it
    assert window.canvas._space_held and not clicked
    key = QtGui.QKeyEvent(QtCore.QEvent.Type.KeyRelease, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier, " ")
    QtWidgets.QApplication.sendEvent(button, key)
    assert not window.canvas._space_held and not clicked
    window.actions["split"].trigger()
    assert window.canvas.split
    x = window.canvas.mapFromScene(QtCore.QPointF(32, 24))
    viewport = window.canvas.viewport()
    send_mouse(viewport, QtCore.QEvent.Type.MouseButtonPress, x, Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton)
    to = window.canvas.mapFromScene(QtCore.QPointF(16, 24))
    send_mouse(viewport, QtCore.QEvent.Type.MouseMove, to, Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton)
    send_mouse(viewport, QtCore.QEvent.Type.MouseButtonRelease, to, Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton)
    assert window.canvas.divider == pytest.approx(0.25, abs=0.05)
    assert window.mask.undo_depth == 1, "dragging the divider must not paint"
    window.actions["view_truth"].trigger()
    assert window.canvas.current_view == "truth"


def test_keymap_feeds_actions_menus_and_sheet(window):
    from priorstudio.gui.dialogs import ShortcutSheet

    seen: dict[str, str] = {}
    for spec in keymap.ACTIONS:
        action = window.actions[spec.id]
        for seq in action.shortcuts():
            text = seq.toString()
            assert text not in seen, f"{text} bound to both {seen[text]} and {spec.id}"
            seen[text] = spec.id
    menu_texts = {a.text() for m in window.menus.values() for a in m.actions()}
    assert "&Run" in menu_texts and "S&top" in menu_texts
    sheet = ShortcutSheet(window)
    assert sheet.table.rowCount() == len(keymap.sheet_rows())
    keys = [sheet.table.item(i, 2).text() for i in range(sheet.table.rowCount())]
    commands = {sheet.table.item(i, 1).text() for i in range(sheet.table.rowCount())}
    assert "Open" in commands and "Run" in commands  # each row names its command, as the menu does
    assert any("F1" in k for k in keys) and any("\\" in k for k in keys) and any("Esc" in k for k in keys)
    sheet.close()


def test_bad_parameters_show_a_dialog_and_the_app_goes_on(window, photo, qtbot):
    window.open_path(photo)
    window.degradation.set_task("inpaint")
    assert not window.start_run()  # empty mask
    assert "mask" in window.errors[-1][1].lower()
    window.generate_mask("block", 0.3)
    window.algorithm.set_values({"sigma_L": 0.5, "sigma_0": 0.1})
    assert not window.start_run()
    assert "σ_L must be above 0 and below σ₀" in window.errors[-1][1]
    quick_params(window, max_steps=3)
    run_to_end(qtbot, window)


def test_no_bundled_model_is_said_clearly(qtbot, settings, photo, tmp_path, monkeypatch):
    import priorstudio.core.denoisers.registry as registry

    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setattr(registry, "models_dir", lambda: empty)
    errors = []
    w = MainWindow(settings=settings, error_sink=lambda t, m: errors.append(m))
    qtbot.addWidget(w)
    assert "No denoiser model is bundled" in w.algorithm.model_note.text()
    w.open_path(photo)
    w.generate_mask("block", 0.3)
    assert not w.start_run()
    assert "No denoiser model is bundled" in errors[-1]
    w.shutdown()


def test_a_chosen_weights_file_is_shown_by_its_name_not_its_path(qtbot, settings, tmp_path):
    """A long path would widen the Algorithm panel and the status bar, and with them the window."""
    from priorstudio.core.denoisers import BiasFreeUNet
    from priorstudio.core.denoisers.registry import save_weights

    folder = tmp_path / ("experiments-" * 6) / ("run-with-a-long-name-" * 4)
    folder.mkdir(parents=True)
    path = folder / "my-model.pt"
    save_weights(path, BiasFreeUNet(1, (8, 16)))
    w = MainWindow(settings=settings, error_sink=lambda t, m: None)
    qtbot.addWidget(w)
    w.show()
    QtWidgets.QApplication.processEvents()
    before = w.minimumSizeHint().width()
    w.algorithm.refresh_models(str(path))
    w.algorithm.modelChanged.emit(str(path))
    QtWidgets.QApplication.processEvents()
    assert w.minimumSizeHint().width() <= before
    assert w.model_label.text() == "model: my-model.pt" and w.model_label.toolTip() == str(path)
    assert w.algorithm.model_note.text() == "model: my-model.pt" and w.algorithm.model_note.toolTip() == str(path)
    w.shutdown()


def test_settings_are_kept(qtbot, settings, photo):
    w = MainWindow(denoiser_factory=tiny_denoiser, settings=settings)
    qtbot.addWidget(w)
    w.degradation.set_working_side(None)
    w.degradation.set_task("spectral")
    w.keep_overlay.setChecked(True)
    w.close()
    w2 = MainWindow(denoiser_factory=tiny_denoiser, settings=settings)
    qtbot.addWidget(w2)
    assert w2.degradation.working_side() is None
    assert w2.degradation.task_name() == "spectral"
    assert w2.keep_overlay.isChecked()
    w2.close()


def test_window_grab_is_not_blank(window, photo, qtbot):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, max_steps=8)
    run_to_end(qtbot, window)
    image = window.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    arr = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    assert arr.std() > 10
    canvas = window.canvas.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    c = np.frombuffer(canvas.constBits(), np.uint8).reshape(canvas.height(), canvas.bytesPerLine())
    assert len(np.unique(c)) > 50, "the canvas shows the photo"
    assert math.isfinite(window.plots.series.last("sigma"))


def test_methods_come_from_the_registry(window):
    panel = window.algorithm
    names = [panel.method.itemData(i) for i in range(panel.method.count())]
    assert names[0] == "implicit_prior"
    assert panel.preset_buttons["teach"].isEnabled()
    registry = pytest.importorskip("priorstudio.core.samplers.registry")
    for name in registry.METHODS:
        assert name in names
    if "dip_gd" in names:
        panel.method.setCurrentIndex(names.index("dip_gd"))
        assert "lr" in panel.form.widgets and not panel.preset_buttons["teach"].isEnabled()
        params = panel.params(None, emit_every=1)
        assert params.optimizer == "gd"  # a field the form does not show keeps the method's value
        tips = [w.toolTip() for w in panel.form.widgets.values()]
        assert all(t and "\n" not in t for t in tips)


def test_a_run_does_not_re_lay_out_the_docks(window, photo, qtbot):
    """Texts that change during a run (the history's memory line, the progress) never widen a dock: a
    re-laid dock area re-lays every plot beside it too, a visible jump and a stall at the run's start."""
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window)
    qtbot.wait(300)  # settled, as when a user presses Run
    docks = [d for d in window.findChildren(QtWidgets.QDockWidget) if d.isVisible()]
    assert docks
    before = {d.objectName(): d.width() for d in docks}
    run_to_end(qtbot, window)
    qtbot.wait(300)
    assert {d.objectName(): d.width() for d in docks} == before
    # the score of the run's steps still shows: under the scrub bar in this narrow dock, beside it in a wide one
    panel = window.teach.history_panel
    window.teach.history_dock.raise_()
    qtbot.waitUntil(lambda: panel.score_pane.isVisible())
    pane = panel.score_pane.geometry()
    assert pane.height() > 50 and pane.width() > 50
    bar = panel.player.geometry()
    assert pane.top() >= bar.bottom() if panel.width() < bar.width() + 220 else pane.left() >= bar.right()


def test_a_frame_that_comes_too_soon_is_shown_once_the_gap_is_over(window, photo, qtbot):
    """Frames closer than FRAME_GAP_MS are not shown at once, nor lost: a single-shot timer shows the newest."""
    from priorstudio.gui import main_window as mw
    from priorstudio.gui.worker import Frame

    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, max_steps=5)
    run_to_end(qtbot, window)
    qtbot.wait(2 * mw.FRAME_GAP_MS)  # the gap after the run's last frame is over
    shown = window.frames_shown
    hole = window.plan.problem.image_shape[1:]
    window._on_frame(Frame(1, np.zeros(hole, np.float32)))
    assert window.frames_shown == shown + 1
    window._on_frame(Frame(2, np.ones(hole, np.float32)))
    assert window.frames_shown == shown + 1  # too soon: it waits …
    assert window.frame_timer.isActive() and window.frame_timer.remainingTime() <= mw.FRAME_GAP_MS
    qtbot.waitUntil(lambda: window.frames_shown == shown + 2, timeout=1_000)  # … and is shown after the gap
    assert window.mailbox.take() is None
    assert window.canvas.layer("estimate", "run").source.max() == 1.0  # the newer frame


def test_the_progress_bar_takes_a_new_step_without_painting_at_once(window, photo, qtbot):
    """QProgressBar.setValue paints synchronously; the progress line is set with updates off and painted
    once, later, by the event loop."""
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, max_steps=8, sigma_L=1e-4)
    run_to_end(qtbot, window)
    bar = window.progress_bar
    counter = EventCounter(QtCore.QEvent.Type.Paint)
    bar.installEventFilter(counter)
    bar.setValue(0)
    qtbot.wait(50)
    counter.count = 0
    window._update_progress()
    assert counter.count == 0  # nothing painted inside the call …
    assert bar.updatesEnabled() and bar.value() == 1000 and bar.format().startswith("step 8")
    qtbot.waitUntil(lambda: counter.count >= 1, timeout=1_000)  # … the event loop paints it


# -- flash/no-flash ------------------------------------------------------------------------------------------
def test_a_flash_photo_becomes_the_network_input_of_a_dip_run(window, photo, tmp_path, qtbot, monkeypatch):
    """Deep Image Prior's flash/no-flash in the window: the loaded photo is the target, the flash photo (same
    size) the network's fixed input, with the flash preset; the run record names it; a new photo drops it."""
    import priorstudio.core.samplers.registry as registry

    seen: list = []
    real = registry.dip_sampler

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("net_input"))
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "dip_sampler", spy)
    window.open_path(photo)
    assert window.algorithm.set_method("dip_adam")
    assert window.algorithm.guide_row.isVisibleTo(window.algorithm)
    flash = structured_photo(tmp_path / "flash.png", 48, 64)
    assert window.open_guide(flash)
    assert "flash.png" in window.algorithm.guide_label.text()
    assert window.degradation.settings().task == "denoise" and window.degradation.settings().mode == "restore"
    values = window.algorithm.values()
    assert values["max_steps"] == 600 and values["reg_noise_std"] == 0.0 and values["lr"] == 0.1
    assert window.algorithm.set_method("dip_gd")  # another DIP method keeps the flash recipe (and its own lr)
    values = window.algorithm.values()
    assert values["max_steps"] == 600 and values["reg_noise_std"] == 0.0 and values["lr"] != 0.1
    assert window.algorithm.set_method("dip_adam")
    window.algorithm.set_values({"max_steps": 2, "width": 8})
    record = run_to_end(qtbot, window, timeout=60_000)
    assert record.t == 2
    (net_input,) = [x for x in seen if x is not None]  # the cost line's timing probes take no network input
    assert net_input is not None and tuple(net_input.shape) == (3, 48, 64)
    assert torch.allclose(net_input, window.guide)  # working size = photo size here: the flash photo itself
    assert window.record.parameters["network_input"] == "flash.png"
    window.open_path(photo)  # another photo: the flash photo belonged to the last one
    assert window.guide is None and "random code" in window.algorithm.guide_label.text()


def test_the_flash_photo_is_cut_and_scaled_as_the_run_sees_the_photo():
    from priorstudio.gui.session import RunSettings, plan_run

    photo = torch.rand(1, 40, 80)
    guide = torch.linspace(0, 1, 80).expand(1, 40, 80).contiguous()
    plan = plan_run(photo, RunSettings(task="denoise", mode="restore", working_side=40))
    taken = plan.take(guide)
    assert tuple(taken.shape) == (1, 20, 40)
    assert taken[0, 0, 0] < 0.05 and taken[0, 0, -1] > 0.95  # the whole width, scaled
    mask = np.zeros((40, 80), dtype=bool)
    mask[10:20, 50:60] = True
    plan = plan_run(photo, RunSettings(task="inpaint", mode="simulate"), mask)
    taken = plan.take(guide)
    r = plan.region
    assert tuple(taken.shape[1:]) == (r.height, r.width)
    assert torch.equal(taken, guide[:, r.top : r.bottom, r.left : r.right])
    with pytest.raises(ParameterError, match="same size"):
        plan.take(torch.rand(1, 40, 81))


def test_the_algorithm_panel_shows_the_model_only_for_methods_that_use_one(qtbot):
    from priorstudio.gui.panels import AlgorithmPanel

    panel = AlgorithmPanel()
    qtbot.addWidget(panel)
    assert panel.model_row.isVisibleTo(panel) and not panel.guide_row.isVisibleTo(panel)
    assert panel.set_method("dip_adam")
    assert not panel.model_row.isVisibleTo(panel) and panel.guide_row.isVisibleTo(panel)
    assert panel.set_method("nlm_twicing")
    assert not panel.model_row.isVisibleTo(panel) and not panel.guide_row.isVisibleTo(panel)
    assert panel.set_method("implicit_prior")
    assert panel.model_row.isVisibleTo(panel) and panel.model_note.isVisibleTo(panel)


def test_an_opened_photo_stays_whole_as_the_canvas_resizes_until_the_user_zooms(window, photo, qtbot):
    window.open_path(photo)
    canvas = window.canvas

    def photo_on_screen() -> QtCore.QRect:
        return canvas.mapFromScene(QtCore.QRectF(0, 0, 64, 48)).boundingRect()

    assert canvas.is_fitting()
    for width, height in ((700, 500), (300, 260), (900, 400)):
        canvas.resize(width, height)  # the docks settling after the photo opened, or a dock dragged
        qtbot.wait(1)
        shown, viewport = photo_on_screen(), canvas.viewport().rect()
        assert viewport.adjusted(-1, -1, 1, 1).contains(shown)
        # and it fills the tighter side (fitInView keeps a few pixels of margin)
        assert max(shown.width() / viewport.width(), shown.height() / viewport.height()) > 0.95
    canvas.zoom_by(2.0)
    assert not canvas.is_fitting()
    scale = canvas.scale_factor()
    canvas.resize(500, 300)
    qtbot.wait(1)
    assert canvas.scale_factor() == scale  # a zoom the user chose is kept
    window.actions["fit"].trigger()
    assert canvas.is_fitting()


def test_the_side_plots_name_what_each_method_reports(window, photo, qtbot):
    """Deep Image Prior has no noise level and reports its fit error; twicing a data residual: their plots
    say so, and the step axes stay linked to the topmost plot shown."""
    window.open_path(photo)
    plots = window.plots
    assert plots.p_sigma.isVisible() and plots.x_master is plots.p_sigma
    window.algorithm.set_method("dip_adam")  # nothing plotted yet: the names change at once
    assert window.model_label.text() == "no denoiser: DIP (Adam) uses none"
    assert not plots.p_sigma.isVisible() and plots.x_master is plots.p_resid
    assert plots.p_resid.titleLabel.text.startswith("fit error")
    window.algorithm.set_values({"max_steps": 4, "width": 8, "depth": 2})
    run_to_end(qtbot, window)
    readout = plots.readout_text()
    assert readout.startswith("t=4  fit=") and "σ=" not in readout and "PSNR=" in readout
    assert [label.text for _, label in plots.p_resid.legend.items] == ["fit error"]  # it has no data error
    # … nor a second curve (its records' data error is the fit error again) or a "data=" in the readout
    assert plots.curves["residual_norm"].isVisible() and not plots.curves["data_error"].isVisible()
    assert "data=" not in readout
    assert window.model_label.text() == "no denoiser: DIP (Adam) uses none"
    qtbot.wait(50)  # the layout settles, then linked views line up on screen (pyqtgraph's linking)

    def screen_x(plot, t: float) -> float:
        return plot.getViewBox().mapViewToScene(QtCore.QPointF(t, 0)).x()

    assert screen_x(plots.p_psnr, 3.0) == pytest.approx(screen_x(plots.p_resid, 3.0), abs=1.5)
    # a finished run keeps its names when another method is chosen; the next run takes the new ones
    window.algorithm.set_method("nlm_twicing")
    assert plots.p_resid.titleLabel.text.startswith("fit error")
    window.algorithm.set_values({"max_steps": 3})
    run_to_end(qtbot, window)
    assert plots.p_resid.titleLabel.text.startswith("data residual") and plots.readout_text().startswith("t=3  resid=")
    window.algorithm.set_method("implicit_prior")
    assert window.model_label.text() == "model: supplied by the caller"  # the denoiser is back in play
    quick_params(window, max_steps=5)
    run_to_end(qtbot, window)
    assert plots.p_sigma.isVisible() and plots.x_master is plots.p_sigma
    assert (
        "  σ=" in plots.readout_text()
        and "  resid=" in plots.readout_text()
        and plots.p_resid.titleLabel.text.startswith("residual ‖D(y)")
    )
    assert [label.text for _, label in plots.p_resid.legend.items] == ["residual", "data error"]
    assert plots.curves["data_error"].isVisible() and "  data=" in plots.readout_text()
    # SSIM comes only with the images shown: each measured value is a dot, not just a bend in a line
    ssim = plots.series["ssim"]
    assert len(plots.curves["ssim"].scatter.points()) == int(np.isfinite(ssim).sum()) >= 1


def test_deep_image_prior_and_twicing_show_their_time_and_memory_before_a_run(window, photo, qtbot):
    window.open_path(photo)
    window.algorithm.set_method("dip_adam")
    window.algorithm.set_values({"max_steps": 40, "width": 8, "depth": 2})
    window.update_preview()
    text = window.degradation.cost.text()
    assert "~40 steps" in text and " ms/step ≈ " in text and "memory ≈ " in text, text
    window.algorithm.set_method("nlm_twicing")
    window.algorithm.set_values({"max_steps": 7})
    window.update_preview()
    text = window.degradation.cost.text()
    assert "~7 steps" in text and " ms/step ≈ " in text and "memory" not in text, text


def test_denoising_runs_with_beta_one_unless_the_user_chose_a_beta(window, photo, qtbot):
    window.open_path(photo)
    algorithm = window.algorithm
    start = window.degradation.task_name()
    assert algorithm.values()["beta"] == (1.0 if start == "denoise" else 0.01)  # also for the task it opens with
    window.degradation.set_task("inpaint")
    assert algorithm.values()["beta"] == 0.01
    window.degradation.set_task("denoise")  # nothing pins a denoising run to the photo but the start
    assert algorithm.values()["beta"] == 1.0
    assert "for Denoise: β = 1 (no noise is injected" in window.statusBar().currentMessage()
    window.degradation.set_task("super_resolution")
    assert algorithm.values()["beta"] == 0.01
    window.degradation.set_task("denoise")
    algorithm.apply_preset("restore")  # the preset in its version for the task
    assert algorithm.values()["beta"] == 1.0
    algorithm.set_method("dip_adam")
    algorithm.set_method("implicit_prior")  # the method's defaults, for the task at hand
    assert algorithm.values()["beta"] == 1.0
    algorithm.set_values({"beta": 0.2})  # the user's own choice stays, whatever the task
    window.degradation.set_task("inpaint")
    window.degradation.set_task("denoise")
    assert algorithm.values()["beta"] == 0.2
    algorithm.apply_preset("teach")
    assert algorithm.values()["beta"] == 0.5


def test_a_denoising_run_plots_the_ideal_decay_from_the_photos_noise_level(window, photo, qtbot):
    window.open_path(photo)
    window.degradation.set_task("denoise")  # noise σ 25/255 ≈ 0.098; σ₀ in the form stays 1
    assert window.algorithm.values()["sigma_0"] == 1.0
    run_to_end(qtbot, window)
    _, log_ideal = window.plots.ideal.getData()  # the σ_t plot is logarithmic: its curves hold log10 values
    ideal = 10.0**log_ideal
    assert 0.05 < ideal[0] < 0.12 and ideal[-1] < 0.01  # from the photo's noise level down past σ_L
    assert window.plots.x_master.viewRange()[0][1] <= 50  # the step axis of a ~20-step run, not of σ₀ = 1


def test_deep_image_prior_takes_the_papers_recipe_for_each_task(window, photo, qtbot):
    window.open_path(photo)
    algorithm = window.algorithm
    algorithm.set_method("dip_adam")

    def recipe() -> tuple:
        v = algorithm.values()
        return v["max_steps"], round(v["reg_noise_std"], 3), v["ema"]

    window.degradation.set_task("denoise")
    assert recipe() == (3000, 0.033, 0.99)  # 1/30 in a box of 3 decimals; the paper's output average
    window.degradation.set_task("super_resolution")
    assert recipe() == (2000, 0.03, 0.0)
    assert "DIP (Adam) for Super-resolution: steps = 2000" in window.statusBar().currentMessage()
    window.degradation.task_form.set_values({"factor": 8})
    window._on_degradation_changed()
    assert recipe() == (4000, 0.05, 0.0)
    algorithm.set_values({"max_steps": 123})  # the user's own step count stays; the rest follows the task
    window.degradation.set_task("inpaint")
    assert recipe() == (123, 0.03, 0.0)
    algorithm.set_method("dip_gd")  # a method chosen starts from its defaults for the task at hand
    assert recipe() == (5000, 0.03, 0.0) and algorithm.values()["lr"] > 0.01  # with gradient descent's step


def test_the_application_has_its_icon(qapp):
    """The icon ships in resources/ (and so in the wheel) and Qt can draw it at a task-bar size."""
    from priorstudio.gui.app import make_application
    from priorstudio.resources import resource_path

    assert resource_path("icons", "priorstudio.svg").is_file()
    app = make_application()
    pixmap = app.windowIcon().pixmap(32, 32)
    assert not pixmap.isNull()
    image = pixmap.toImage()
    colours = {image.pixelColor(x, y).rgba() for x in range(0, 32, 2) for y in range(0, 32, 2)}
    assert len(colours) > 10  # drawn, not an empty square


def test_the_problem_panel_grows_to_show_a_tasks_fields_and_the_mask_tools(window, photo):
    """The inpainting task adds a hint; the Problem panel grows so the mask tools stay in view, and the
    Algorithm panel keeps its Run buttons."""
    window.resize(1500, 950)
    window.show()
    window.open_path(photo)
    QtWidgets.QApplication.processEvents()
    window.degradation.set_task("inpaint")
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
    info = window.mask_tools.info
    shown = info.visibleRegion().boundingRect()
    assert shown.height() == info.height() and shown.width() == info.width()
    run = window.actions["run"].associatedObjects()
    buttons = [w for w in run if isinstance(w, QtWidgets.QToolButton)]
    assert buttons and all(b.visibleRegion().boundingRect().height() == b.height() for b in buttons)


def test_a_new_window_fits_a_screen_smaller_than_its_preferred_size(qtbot, settings):
    """On a laptop-sized screen the first window lies within the screen's free area, room kept for its frame,
    with the plots and the Run button in view (it used to open at 1500×950 whatever the screen)."""
    from priorstudio.gui.main_window import FRAME_ALLOWANCE, WINDOW_SIZE

    room = QtGui.QGuiApplication.primaryScreen().availableGeometry()
    if room.width() >= WINDOW_SIZE[0] and room.height() >= WINDOW_SIZE[1]:
        pytest.skip("this screen has room for the preferred size")  # the offscreen screen is 800×800
    w = open_window(qtbot, settings, size=None, denoiser_factory=tiny_denoiser)
    try:
        w.show()
        qtbot.waitExposed(w)
        QtWidgets.QApplication.processEvents()
        assert w.width() <= room.width() - FRAME_ALLOWANCE[0] and w.height() <= room.height() - FRAME_ALLOWANCE[1]
        assert room.contains(w.geometry())
        plots = w.plots_dock.geometry()
        assert plots.right() < w.width() and plots.width() >= 150
        assert w.canvas.width() >= plots.width() // 2
        run = [b for b in w.actions["run"].associatedObjects() if isinstance(b, QtWidgets.QToolButton)]
        assert run and all(b.visibleRegion().boundingRect().height() == b.height() for b in run)
    finally:
        w.shutdown()


def test_a_new_window_opens_at_its_preferred_size_where_the_screen_has_room(qtbot, settings, monkeypatch):
    from priorstudio.gui.main_window import WINDOW_SIZE

    big = QtCore.QRect(0, 0, 2560, 1440)
    monkeypatch.setattr(QtGui.QScreen, "availableGeometry", lambda self: big)
    w = open_window(qtbot, settings, size=None, denoiser_factory=tiny_denoiser)
    try:
        assert (w.width(), w.height()) == WINDOW_SIZE
        centre = w.geometry().center()
        assert abs(centre.x() - big.center().x()) <= 1 and abs(centre.y() - big.center().y()) <= 1
    finally:
        w.shutdown()


def test_the_plots_scroll_rather_than_flatten_when_the_compare_panel_takes_their_height(window):
    """With the compare panel open in a laptop-sized window the four plots used to share ~340 pixels, about
    20 of them curves each; now each keeps a readable height and the column scrolls."""
    from priorstudio.gui.plots import PLOT_MIN_HEIGHT

    def curve_heights() -> list[float]:
        return [p.vb.sceneBoundingRect().height() for p in window.plots.shown_plots()]

    window.resize(1200, 1000)
    QtWidgets.QApplication.processEvents()
    assert len(window.plots.shown_plots()) == 4
    assert min(curve_heights()) >= 80

    window.resize(1200, 700)
    window.show_compare()
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
    assert min(curve_heights()) >= 60, curve_heights()
    assert window.plots.height() >= 4 * PLOT_MIN_HEIGHT
    view = window.plots_scroll.viewport()
    bar = window.plots_scroll.verticalScrollBar()
    assert view.height() < 4 * PLOT_MIN_HEIGHT and bar.isVisible() and bar.maximum() > 0
    bar.setValue(bar.maximum())  # the last plot comes into view
    QtWidgets.QApplication.processEvents()
    ssim = window.plots.p_ssim.vb.sceneBoundingRect().toRect()
    assert view.rect().contains(window.plots.mapTo(view, ssim.center()))

    window.compare_dock.hide()
    window.resize(1200, 1000)
    for _ in range(3):
        QtWidgets.QApplication.processEvents()
    assert not bar.isVisible(), "room for every plot again: nothing to scroll"


def test_mask_commands_that_set_the_task_wait_for_the_run(window, photo, qtbot):
    """Central block, scattered mask and import switch the task to inpainting: during a denoising run they
    are off (Central block used to switch the locked Problem panel under the run); painting stays on."""
    window.open_path(photo)
    window.degradation.set_task("denoise")
    quick_params(window, sigma_L=1e-4, max_steps=100_000)
    assert window.start_run()
    try:
        for key in ("mask_random", "mask_block", "mask_import"):
            assert not window.actions[key].isEnabled(), key
        assert window.actions["mask_export"].isEnabled()
        for key in ("mask_clear", "mask_invert"):  # a denoising run: the mask is not in play
            assert not window.actions[key].isEnabled(), key
        with pytest.raises(Exception, match="while a run is going"):
            window.generate_mask("block", 0.3)
        assert window.degradation.task_name() == "denoise"
    finally:
        with qtbot.waitSignal(window.runFinished, timeout=10_000):
            window.actions["stop"].trigger()
    assert window.actions["mask_block"].isEnabled()
    window.generate_mask("block", 0.3)
    assert window.degradation.task_name() == "inpaint"


def test_opening_a_photo_while_paused_leaves_no_stale_running_label(window, photo, qtbot, tmp_path):
    """The stopped run's "resumed", still queued, used to arrive after the new photo and say "running"."""
    start_paused_run(window, photo, qtbot)
    assert window.open_path(structured_photo(tmp_path / "other.png", 40, 56))
    for _ in range(5):
        QtWidgets.QApplication.processEvents()
        qtbot.wait(20)
    assert not window.is_running()
    assert window.run_label.text() != "running"
    assert window.actions["run"].isEnabled() and not window.actions["pause"].isEnabled()


@pytest.mark.parametrize("answer", ["cancel", "discard", "save"])
def test_opening_another_photo_asks_about_an_unsaved_result(window, photo, qtbot, tmp_path, answer):
    """Opening, pasting or dropping a photo replaced an unsaved result without a word; now it asks as
    closing does, and Cancel keeps the photo and the result."""
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, max_steps=20)
    run_to_end(qtbot, window)
    result = window.result
    asked, saved = [], []
    window.confirm_close = lambda reason: asked.append((reason, window._pending_action)) or answer

    def save() -> None:
        saved.append(window.result)
        window.result_saved = True

    window._cmd_save = save
    other = structured_photo(tmp_path / "other.png", 40, 56)
    opened = window.open_path(other)
    assert asked == [("unsaved", "open another photo")]
    assert opened == (answer != "cancel")
    if answer == "cancel":
        assert window.result is result and window.photo_path == str(photo)
    else:
        assert window.photo_path == str(other) and window.result is None
    assert saved == ([result] if answer == "save" else [])
    asked.clear()
    pasted = window.open_bytes(other.read_bytes(), "pasted")  # a paste asks the same way
    assert pasted == (answer != "cancel")
    assert asked == ([("unsaved", "open another photo")] if answer == "cancel" else [])  # else: nothing unsaved


def test_opening_another_photo_mid_run_asks_first(window, photo, qtbot, tmp_path):
    window.open_path(photo)
    window.generate_mask("block", 0.3)
    quick_params(window, sigma_L=1e-4, max_steps=100_000)
    assert window.start_run()
    asked = []
    window.confirm_close = lambda reason: asked.append(reason) or "cancel"
    assert not window.open_path(structured_photo(tmp_path / "other.png", 40, 56))
    assert asked == ["running"] and window.is_running() and window.photo_path == str(photo)
    window.confirm_close = lambda reason: "discard"
    assert window.open_path(tmp_path / "other.png") and not window.is_running()


def test_clearing_the_flash_photo_gives_back_the_methods_own_values(window, photo, tmp_path):
    """The flash recipe (600 steps, lr 0.1, no jitter) outlived the flash photo: after Clear or another photo
    the next ordinary DIP run quietly used it. Values the user changed meanwhile stay."""
    window.open_path(photo)
    assert window.algorithm.set_method("dip_adam")
    window.degradation.set_task("inpaint")
    own = {k: window.algorithm.values()[k] for k in ("max_steps", "lr", "reg_noise_std")}
    assert own["max_steps"] != 600
    assert window.open_guide(structured_photo(tmp_path / "flash.png", 48, 64))
    assert window.algorithm.values()["max_steps"] == 600
    window.clear_guide()
    task = window.degradation.settings().task
    back = window.algorithm.current_method().task_values(task, {})
    values = window.algorithm.values()
    assert values["max_steps"] == back["max_steps"] and values["lr"] == back["lr"]
    assert values["reg_noise_std"] == pytest.approx(back["reg_noise_std"], rel=1e-3)  # 1/30 to 4 places
    assert window.open_guide(structured_photo(tmp_path / "flash.png", 48, 64))
    window.algorithm.set_values({"max_steps": 1234})  # the user's own choice survives the clear
    window.open_path(photo)  # another photo clears the flash photo too
    values = window.algorithm.values()
    assert values["max_steps"] == 1234 and values["lr"] == back["lr"]


def test_a_fields_largest_value_can_be_typed(window, photo):
    """DIP's output averaging goes up to 0.9999; its box showed 3 decimals, so 0.9999 became 1.0 and the
    run refused it."""
    window.open_path(photo)
    assert window.algorithm.set_method("dip_adam")
    box = window.algorithm.form.widgets["ema"]
    box.lineEdit().setText("0.9999")
    box.interpretText()
    assert box.value() == pytest.approx(0.9999, abs=1e-9)
    assert window.algorithm.params(emit_every=0).ema == pytest.approx(0.9999, abs=1e-9)


def test_odd_only_fields_step_by_two_and_make_a_typed_even_number_odd(window, photo, qtbot):
    """Twicing's patch and window must be odd: one arrow click from 5 gave 6, which the run then refused."""
    window.open_path(photo)
    assert window.algorithm.set_method("nlm_twicing")
    box = window.algorithm.form.widgets["patch"]
    assert box.value() == 5
    box.stepBy(1)
    assert box.value() == 7
    box.stepBy(-1)
    assert box.value() == 5
    notices = []
    box.clamped.connect(notices.append)
    box.lineEdit().setText("4")
    box.interpretText()
    assert box.value() == 5 and notices and "even" in notices[-1]
    window.algorithm.form.widgets["window"].lineEdit().setText("41")
    window.algorithm.form.widgets["window"].interpretText()
    assert window.algorithm.params(emit_every=0).window == 41


def test_every_standard_binding_of_a_command_works(window, photo, qtbot):
    """Redo answered only the first of its platform bindings: Ctrl+Shift+Z did nothing where Ctrl+Y came first."""
    redo = {s.toString() for s in window.actions["redo"].shortcuts()}
    assert {s.toString() for s in QtGui.QKeySequence.keyBindings(QtGui.QKeySequence.StandardKey.Redo)} <= redo
    assert len(redo) >= 2
    paste = {s.toString() for s in window.actions["paste"].shortcuts()}
    assert {s.toString() for s in QtGui.QKeySequence.keyBindings(QtGui.QKeySequence.StandardKey.Paste)} <= paste
    assert "Ctrl+=" in {s.toString() for s in window.actions["zoom_in"].shortcuts()}


def test_values_come_back_when_switching_method_task_or_kernel_and_back(window, photo, tmp_path):
    """Switching method, task or blur kernel reset the fields to defaults: going back lost what was typed."""
    window.open_path(photo)
    window.algorithm.set_values({"max_steps": 777, "seed": 42})
    assert window.algorithm.set_method("dip_adam")
    assert window.algorithm.values()["seed"] != 42
    assert window.algorithm.set_method("implicit_prior")
    assert window.algorithm.values()["max_steps"] == 777 and window.algorithm.values()["seed"] == 42
    degradation = window.degradation
    degradation.set_task("super_resolution")
    degradation.task_form.set_values({"factor": 2})
    degradation.set_task("blur")
    degradation.kernel_kind.setCurrentIndex(degradation.kernel_kind.findData("motion"))
    degradation.kernel_form.set_values({"length": 21.0})
    degradation.kernel_kind.setCurrentIndex(degradation.kernel_kind.findData("gaussian"))
    degradation.kernel_kind.setCurrentIndex(degradation.kernel_kind.findData("motion"))
    assert degradation.kernel_form.values()["length"] == 21.0
    degradation.set_task("super_resolution")
    assert degradation.task_form.values()["factor"] == 2
    # a flash photo's recipe, left on a method the user switched away from, does not come back after Clear
    assert window.algorithm.set_method("dip_adam")
    assert window.open_guide(structured_photo(tmp_path / "flash.png", 48, 64))
    assert window.algorithm.set_method("implicit_prior")
    window.clear_guide()
    assert window.algorithm.set_method("dip_adam")
    assert window.algorithm.values()["max_steps"] != 600


@pytest.mark.parametrize(
    ("reason", "buttons"),
    [
        ("running", {"Stop and save…", "Stop and open", "Cancel"}),
        ("comparing", {"Stop and open", "Cancel"}),
        ("comparing unsaved", {"Stop and save…", "Stop and open", "Cancel"}),
        ("unsaved", {"Save", "Discard", "Cancel"}),
    ],
)
def test_the_question_before_losing_work_names_what_is_going_on(qtbot, reason, buttons):
    from priorstudio.gui.dialogs import ask_close

    seen = []

    def answer() -> None:
        box = QtWidgets.QApplication.activeModalWidget()
        seen.append((box.informativeText(), {b.text() for b in box.buttons()}))
        box.button(QtWidgets.QMessageBox.StandardButton.Cancel).click()

    QtCore.QTimer.singleShot(100, answer)
    assert ask_close(None, reason, "open another photo") == "cancel"
    ((question, shown),) = seen
    assert "open another photo" in question and shown == buttons


def test_log_axes_label_one_two_five_not_every_minor_tick(window):
    """Two decades of residual: 0.02, 0.05, 0.1, 0.2, 0.5 are labelled, not the pile of 0.02 … 0.09."""
    plots = window.plots
    plots.new_run()
    for t in range(1, 40):
        plots.append(t, {"sigma": 0.5 / t, "residual_norm": 0.9 / t, "data_error": 0.02, "psnr": 20.0})
    plots.refresh()
    axis = plots.p_resid.getAxis("left")

    def labels() -> list[str]:
        image = QtGui.QImage(200, 400, QtGui.QImage.Format.Format_ARGB32)
        painter = QtGui.QPainter(image)
        try:
            _axis, _ticks, texts = axis.generateDrawSpecs(painter)
        finally:
            painter.end()
        return [text for _rect, _flags, text in texts]

    def mantissa(text: str) -> int:
        v = float(text)
        return round(v / 10 ** math.floor(math.log10(v) + 1e-9))

    shown = labels()
    assert len(shown) >= 3 and {mantissa(v) for v in shown} <= {1, 2, 5}, shown
    plots.p_resid.setYRange(math.log10(0.025), math.log10(0.085), padding=0)  # zoomed in: only 0.05 of those
    shown = labels()
    assert len(shown) >= 3 and {mantissa(v) for v in shown} - {1, 2, 5}, shown


def test_every_side_plot_gets_the_shared_setup(window):
    """Grid, peak downsampling, clipping to the view and no context menu on all four plots, not only the log ones."""
    for p in window.plots.plots:
        assert p.clipToViewMode() and p.downsampleMode()[2] == "peak" and not p.menuEnabled()
        assert p.ctrl.xGridCheck.isChecked() and p.ctrl.yGridCheck.isChecked()
