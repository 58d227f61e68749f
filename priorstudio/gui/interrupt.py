"""Ctrl-C in the terminal that started the app closes the window, as its close button would.

Python's own handler raises KeyboardInterrupt in whatever slot runs next, which the app would report as an
error dialog and then carry on. Instead the first Ctrl-C closes the window the normal way (a running or unsaved
result is asked about first); while that is under way a second Ctrl-C ends the process at once, and the
autosave keeps the work for the next start. Python runs signal handlers only between its own bytecodes, and
the event loop can sit in C++ for as long as nothing calls into Python, so a timer looks in a few times a
second.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore

#: How soon a Ctrl-C is noticed while the event loop is idle.
POLL_MS = 200


class TerminalInterrupt(QtCore.QObject):
    """While alive, SIGINT asks ``close`` (on the GUI thread); :meth:`stop` puts the previous handler back."""

    def __init__(self, close: Callable[[], Any], is_open: Callable[[], bool], parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._close, self._is_open = close, is_open
        self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(lambda: None)  # a call into Python: pending handlers run here
        self.timer.start()

    def _on_interrupt(self, _signum: int, _frame: Any) -> None:
        # a second Ctrl-C while the window is closing (a question on screen, a run stopping) ends the process
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        print("priorstudio: closing (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
        QtCore.QTimer.singleShot(0, self._close_window)

    def _close_window(self) -> None:
        self._close()
        if self._is_open():  # the user chose to stay: the next Ctrl-C asks again
            signal.signal(signal.SIGINT, self._on_interrupt)

    def stop(self) -> None:
        self.timer.stop()
        if signal.getsignal(signal.SIGINT) in (self._on_interrupt, signal.SIG_DFL):
            signal.signal(signal.SIGINT, self._previous)
