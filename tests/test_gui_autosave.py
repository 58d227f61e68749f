"""The window's work survives a crash or a kill: autosaved on a timer, offered back at the next start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytestqt")

from gui_support import open_window, tiny_fast_denoiser
from PySide6 import QtWidgets

from priorstudio.core.autosave import AutosaveStore
from priorstudio.gui.autosave_controller import AutosaveController, apply_state
from priorstudio.gui.main_window import MainWindow


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    y, x = np.mgrid[0:40, 0:56]
    path = tmp_path / "photo.png"
    Image.fromarray(((x * 4 + y * 2) % 256).astype(np.uint8)).save(path)
    return path


def make_window(qtbot, settings) -> MainWindow:
    return open_window(qtbot, settings, size=None, denoiser_factory=tiny_fast_denoiser)


def dead_pid() -> int:
    """The PID of a process that has exited: what a crashed session's slot names."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def crashed_session(window: MainWindow, folder: Path) -> AutosaveController:
    """The autosave of a session that has since crashed: its slot names a process that no longer runs."""
    controller = AutosaveController(window, AutosaveStore(folder, pid=dead_pid()), interval_ms=60_000)
    controller.timer.stop()
    return controller


def restored_with_yes(window: MainWindow, folder: Path) -> tuple[AutosaveController, list[str]]:
    """A new session's autosave, its restore question answered yes; the controller and the questions asked."""
    controller = AutosaveController(window, AutosaveStore(folder), interval_ms=60_000)
    questions: list[str] = []
    assert controller.offer_restore(lambda text: questions.append(text) or True)
    return controller, questions


def test_work_comes_back_after_a_crash(qtbot, settings, tmp_path: Path, photo: Path) -> None:
    folder = tmp_path / "autosave"
    first = make_window(qtbot, settings)
    try:
        assert first.open_path(photo)
        first.degradation.set_task("inpaint")
        first.mask.central_block(0.3)
        first.mask.begin_stroke(3, 3)
        first.mask.stroke_to(12, 5)
        first.mask.end_stroke()
        first.algorithm.set_values({"beta": 0.25, "seed": 7})
        painted = first.mask.copy()
        crashed = crashed_session(first, folder)
        assert crashed.save_now()
        assert not crashed.save_now()  # nothing changed: nothing written
    finally:
        first.shutdown()

    second = make_window(qtbot, settings)
    try:
        controller, questions = restored_with_yes(second, folder)
        assert "photo.png" in questions[0] and "mask" in questions[0]
        assert second.photo_path == str(photo)
        assert second.degradation.task_name() == "inpaint"
        assert second.algorithm.values()["beta"] == pytest.approx(0.25)
        assert second.algorithm.values()["seed"] == 7
        assert np.array_equal(second.mask.copy(), painted)
        assert second.mask.can_undo()  # the restore is one undo step, not a silent replacement
        # asked once: the orphan is gone, and the live session now has its own slot
        assert AutosaveStore(folder, pid=dead_pid()).pending() == []
        controller.close()
        assert not any(folder.iterdir())  # a clean exit leaves nothing behind
    finally:
        second.shutdown()


def test_the_chosen_model_comes_back_and_a_vanished_one_is_named(qtbot, settings, tmp_path: Path, photo: Path) -> None:
    """The model box's choice is part of the work: a run after the restore must use the same denoiser."""
    folder = tmp_path / "autosave"
    weights = tmp_path / "my-denoiser.pt"
    weights.write_bytes(b"weights")  # chosen, not loaded: the window loads a model only to run it
    first = make_window(qtbot, settings)
    try:
        assert first.open_path(photo)
        assert first.use_model(str(weights))
        assert crashed_session(first, folder).save_now()
        assert first.use_model(None)  # the default is a choice too
        assert crashed_session(first, folder).save_now()
    finally:
        first.shutdown()
    settings.setValue("model", "")  # the window's settings must not be what brings it back

    second = make_window(qtbot, settings)
    try:
        # newest first: the default, declined; then the weights file, accepted
        controller = AutosaveController(second, AutosaveStore(folder), interval_ms=60_000)
        answers = iter([False, True])
        assert controller.offer_restore(lambda _text: next(answers))
        assert second.denoisers.model == str(weights)
        assert second.algorithm.selected_model() == str(weights)
        controller.close()
    finally:
        second.shutdown()

    assert crashed_session_with_model(qtbot, settings, folder, photo, weights)
    weights.unlink()
    third = make_window(qtbot, settings)
    try:
        controller, _ = restored_with_yes(third, folder)
        assert third.photo_path == str(photo), "the rest of the work still comes back"
        assert third.denoisers.model is None and third.algorithm.selected_model() is None
        assert "my-denoiser.pt is no longer there" in third.statusBar().currentMessage()
        controller.close()
    finally:
        third.shutdown()


def crashed_session_with_model(qtbot, settings, folder: Path, photo: Path, weights: Path) -> bool:
    window = make_window(qtbot, settings)
    try:
        assert window.open_path(photo) and window.use_model(str(weights))
        return crashed_session(window, folder).save_now()
    finally:
        window.shutdown()


def test_a_pasted_photo_comes_back_from_its_kept_pixels(qtbot, settings, tmp_path: Path, photo: Path) -> None:
    """A pasted photo has no file to reopen: its pixels are autosaved (once, not at every save)."""
    folder = tmp_path / "autosave"
    first = make_window(qtbot, settings)
    try:
        assert first.open_bytes(photo.read_bytes(), "clipboard image")
        first.degradation.set_task("inpaint")
        first.mask.central_block(0.3)
        pasted, painted = first.photo.clone(), first.mask.copy()
        crashed = crashed_session(first, folder)
        assert crashed.save_now()
        first.mask.central_block(0.5)
        painted = first.mask.copy()
        assert crashed.save_now()
        slot = crashed.store.slot
        assert len(list(slot.glob("image-*.png"))) == 1 and len(list(slot.glob("mask-*.npz"))) == 1
    finally:
        first.shutdown()

    second = make_window(qtbot, settings)
    try:
        controller, questions = restored_with_yes(second, folder)
        assert "clipboard image (pasted" in questions[0]
        assert second.photo_path is None and second.photo_name == "clipboard image"
        assert torch.equal(second.photo, pasted)  # 8-bit pixels through a 16-bit PNG: exactly
        assert np.array_equal(second.mask.copy(), painted)
        controller.close()
    finally:
        second.shutdown()


def test_declining_discards_and_keeps_the_window_as_it_was(qtbot, settings, tmp_path: Path, photo: Path) -> None:
    folder = tmp_path / "autosave"
    first = make_window(qtbot, settings)
    try:
        first.open_path(photo)
        first.mask.central_block(0.2)
        crashed_session(first, folder).save_now()
    finally:
        first.shutdown()
    second = make_window(qtbot, settings)
    try:
        controller = AutosaveController(second, AutosaveStore(folder), interval_ms=60_000)
        assert not controller.offer_restore(lambda text: False)
        assert second.photo is None
        assert not controller.offer_restore(lambda text: True)  # not asked twice
        controller.close()
    finally:
        second.shutdown()


def test_every_crashed_session_is_offered_not_only_the_newest(qtbot, settings, tmp_path: Path, photo: Path) -> None:
    """Two sessions crashed: declining the newer one offers the older one; restoring one keeps the rest."""
    import os
    import time

    folder = tmp_path / "autosave"
    other = tmp_path / "other.png"
    Image.fromarray(np.full((40, 56), 90, np.uint8)).save(other)
    first = make_window(qtbot, settings)
    try:
        for path in (photo, other):  # the second one saved later: the newest
            first.open_path(path)
            crashed_session(first, folder).save_now()
            time.sleep(0.05)
        slots = sorted(folder.glob("session-*"), key=lambda p: p.stat().st_mtime)
        os.utime(slots[0], (time.time() - 60, time.time() - 60))
    finally:
        first.shutdown()
    second = make_window(qtbot, settings)
    try:
        controller = AutosaveController(second, AutosaveStore(folder), interval_ms=60_000)
        questions: list[str] = []
        assert controller.offer_restore(lambda text: questions.append(text) or len(questions) == 2)
        assert "other.png" in questions[0] and "photo.png" in questions[1]
        assert second.photo_path == str(photo)
        controller.close()
    finally:
        second.shutdown()


def test_a_moved_photo_can_be_pointed_to(qtbot, settings, tmp_path: Path, photo: Path) -> None:
    folder = tmp_path / "autosave"
    first = make_window(qtbot, settings)
    try:
        first.open_path(photo)
        first.mask.central_block(0.2)
        painted = first.mask.copy()
        crashed_session(first, folder).save_now()
    finally:
        first.shutdown()
    moved = tmp_path / "moved" / "photo.png"
    moved.parent.mkdir()
    photo.rename(moved)
    second = make_window(qtbot, settings)
    try:
        controller = AutosaveController(second, AutosaveStore(folder), interval_ms=60_000)
        asked: list[str] = []
        assert controller.offer_restore(lambda text: True, lambda old: asked.append(old) or str(moved))
        assert asked == [str(photo)] and second.photo_path == str(moved)
        assert np.array_equal(second.mask.copy(), painted)  # the same photo, found: the mask comes back too
        controller.close()
    finally:
        second.shutdown()


def test_a_live_session_is_never_offered(qtbot, settings, tmp_path: Path, photo: Path) -> None:
    folder = tmp_path / "autosave"
    w = make_window(qtbot, settings)
    try:
        w.open_path(photo)
        live = AutosaveController(w, AutosaveStore(folder), interval_ms=60_000)  # this very process: alive
        assert live.save_now()
        other = AutosaveStore(folder, pid=dead_pid())
        assert other.pending() == []
        live.close()
    finally:
        w.shutdown()


def test_timer_saves_changes(qtbot, settings, tmp_path: Path, photo: Path) -> None:
    w = make_window(qtbot, settings)
    try:
        controller = AutosaveController(w, AutosaveStore(tmp_path / "a"), interval_ms=20)
        w.open_path(photo)
        qtbot.waitUntil(lambda: controller.saves >= 1, timeout=5000)
        w.mask.central_block(0.3)
        qtbot.waitUntil(lambda: controller.saves >= 2, timeout=5000)
        qtbot.wait(100)
        assert controller.saves == 2  # no change, no write
        controller.close()
    finally:
        w.shutdown()


def test_missing_photo_restores_nothing(qtbot, settings, tmp_path: Path, photo: Path, monkeypatch) -> None:
    from PySide6 import QtWidgets

    from priorstudio.core.autosave import AutosaveState

    warnings: list[str] = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    w = make_window(qtbot, settings)
    try:
        assert not apply_state(w, AutosaveState(image_path=str(tmp_path / "gone.png")), lambda old: None)
        assert "no longer there" in warnings[0]
        # a mask that no longer fits the photo is refused with a message, the photo still opens
        state = AutosaveState(image_path=str(photo), mask=np.ones((5, 5), bool))
        assert apply_state(w, state)
        assert "does not fit" in warnings[1] and not w.mask.any()
    finally:
        w.shutdown()


def test_a_killed_app_is_offered_back(tmp_path: Path, photo: Path) -> None:
    """The real program, killed with SIGKILL mid-session: its photo comes back at the next start."""
    import os
    import signal
    import time

    folder = tmp_path / "autosave"
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "PRIORSTUDIO_AUTOSAVE_DIR": str(folder),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "priorstudio", "gui", str(photo)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(folder.glob("session-*/state.json")):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the app never autosaved"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (orphan,) = AutosaveStore(folder).pending()
    assert orphan.image_path == str(photo)


def test_every_pasted_photo_is_autosaved_with_its_own_pixels(qtbot, settings, tmp_path: Path) -> None:
    """The autosave knew a pasted photo by its id(), which a later photo reuses once the first is freed: a
    paste then looked unchanged (not saved) or was saved with the earlier photo's pixels."""
    import gc
    import io

    from priorstudio.core.imageio import image_from_bytes

    window = make_window(qtbot, settings)
    controller = AutosaveController(window, AutosaveStore(tmp_path / "autosave"), interval_ms=10**8)
    controller.timer.stop()
    rng = np.random.default_rng(0)
    try:
        for i in range(60):
            colour = [int(v) for v in rng.integers(0, 256, 3)]
            data = io.BytesIO()
            Image.new("RGB", (40, 30), tuple(colour)).save(data, "PNG")
            assert window.open_bytes(data.getvalue(), f"paste {i}")
            QtWidgets.QApplication.processEvents()
            gc.collect()
            if i % 2 == 0:
                assert controller.save_now(), i
                kept = controller.store.restore(controller.store.slot)
                pixel = (image_from_bytes(kept.image_png, name="kept")[:, 0, 0] * 255).round().int().tolist()
                assert pixel == colour, i
        controller.close()
    finally:
        window.shutdown()
