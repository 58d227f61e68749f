"""Ctrl-C in the terminal closes the window the normal way (gui/interrupt.py), in-process and for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from priorstudio.gui.interrupt import TerminalInterrupt

pytestmark = pytest.mark.gui


class FakeWindow:
    def __init__(self, stays_open: bool = False) -> None:
        self.open, self.stays_open, self.close_calls = True, stays_open, 0

    def close(self) -> None:
        self.close_calls += 1
        self.open = self.stays_open

    def is_open(self) -> bool:
        return self.open


def _ctrl_c() -> None:
    handler = signal.getsignal(signal.SIGINT)
    assert callable(handler)
    handler(signal.SIGINT, None)


def test_ctrl_c_closes_the_window_and_a_second_one_would_end_the_process(qtbot, capsys) -> None:
    before = signal.getsignal(signal.SIGINT)
    window = FakeWindow()
    interrupt = TerminalInterrupt(window.close, window.is_open)
    try:
        _ctrl_c()
        # while the window closes, the next Ctrl-C is the system's: it ends the process at once
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
        qtbot.waitUntil(lambda: window.close_calls == 1, timeout=5000)
        assert "closing (Ctrl-C again to quit at once)" in capsys.readouterr().err
    finally:
        interrupt.stop()
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back


def test_a_close_the_user_declines_leaves_ctrl_c_asking_again(qtbot) -> None:
    before = signal.getsignal(signal.SIGINT)
    window = FakeWindow(stays_open=True)  # e.g. "Cancel" in the close question
    interrupt = TerminalInterrupt(window.close, window.is_open)
    try:
        _ctrl_c()
        qtbot.waitUntil(lambda: window.close_calls == 1, timeout=5000)
        assert signal.getsignal(signal.SIGINT) == interrupt._on_interrupt
        _ctrl_c()
        qtbot.waitUntil(lambda: window.close_calls == 2, timeout=5000)
    finally:
        interrupt.stop()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a process is POSIX")
def test_ctrl_c_ends_the_real_app_cleanly(tmp_path: Path) -> None:
    """`priorstudio`, then Ctrl-C: exit code 0, no KeyboardInterrupt dialog or traceback, no autosave left."""
    autosave = tmp_path / "autosave"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), OMP_NUM_THREADS="1")
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):  # the user's own settings stay untouched
        env[name] = str(tmp_path / name.lower())
    env["PRIORSTUDIO_AUTOSAVE_DIR"] = str(autosave)
    proc = subprocess.Popen(
        [sys.executable, "-m", "priorstudio"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (autosave.is_dir() and any(autosave.iterdir())):  # the window is up and autosaving
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "closing (Ctrl-C again to quit at once)" in err
    assert "KeyboardInterrupt" not in err and "Traceback" not in err
    assert not any(p.is_dir() and any(p.iterdir()) for p in autosave.iterdir())  # a clean exit: nothing to restore


def test_ctrl_c_is_the_windows_only_while_the_event_loop_runs(qtbot, monkeypatch, tmp_path: Path) -> None:
    """During startup (the window being built, "Restore unsaved work?") Ctrl-C ends the process at once;
    while the event loop runs it closes the window; afterwards the caller's handler is back."""
    from PySide6 import QtWidgets

    from priorstudio.gui import app as app_module
    from priorstudio.gui import main_window

    seen: dict[str, object] = {}

    class FakeAutosave:
        def offer_restore(self) -> bool:
            seen["startup question"] = signal.getsignal(signal.SIGINT)
            return True  # "restored": no sample photo to open

        def close(self) -> None:
            pass

    def fake_exec() -> int:
        seen["event loop"] = signal.getsignal(signal.SIGINT)
        return 0

    monkeypatch.setenv("PRIORSTUDIO_AUTOSAVE_DIR", str(tmp_path))
    monkeypatch.setattr(app_module, "_start_autosave", lambda window: FakeAutosave())
    monkeypatch.setattr(app_module, "freeze_startup_heap", lambda: None)
    monkeypatch.setattr(app_module, "prepare_process", lambda threads=None: None)
    monkeypatch.setattr(QtWidgets.QApplication, "exec", staticmethod(fake_exec))
    built: list[main_window.MainWindow] = []
    real_window = main_window.MainWindow

    def window(**kwargs):  # type: ignore[no-untyped-def]
        w = real_window(**kwargs)
        built.append(w)
        qtbot.addWidget(w)
        return w

    monkeypatch.setattr(main_window, "MainWindow", window)
    before = signal.getsignal(signal.SIGINT)
    assert app_module.run_app() == 0
    assert seen["startup question"] is signal.SIG_DFL
    handler = seen["event loop"]
    assert callable(handler) and getattr(handler, "__self__", None).__class__ is TerminalInterrupt
    assert signal.getsignal(signal.SIGINT) is before
    assert built and not built[0].controller.is_running()
