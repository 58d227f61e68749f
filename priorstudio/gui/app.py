"""Start the desktop application: ``priorstudio`` (no arguments) or ``priorstudio gui [IMAGE] [--model M]``."""

from __future__ import annotations

import gc
import os
import signal
import sys
import traceback
from types import TracebackType
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from priorstudio.core.errors import PriorStudioError
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)

ORGANIZATION = "PriorStudio"
APPLICATION = "PriorStudio"
SAMPLE = ("samples", "chelsea.png")


def make_application(argv: list[str] | None = None) -> QtWidgets.QApplication:
    """The QApplication (created once), with the names QSettings uses."""
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(argv if argv is not None else sys.argv[:1])
    QtCore.QCoreApplication.setOrganizationName(ORGANIZATION)
    QtCore.QCoreApplication.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    icon = _icon()
    if icon is not None:
        app.setWindowIcon(icon)
    return app  # type: ignore[return-value]


def prepare_process(threads: int | None = None) -> None:
    """What the application does to its process before any tensor work (its benchmarks do the same): the
    allocator keeps tensor buffers (core/allocator.py) and the cores go to the worker threads, not to the GUI
    thread (gui/compute_threads.py)."""
    from priorstudio.core.allocator import tune_allocator
    from priorstudio.gui.compute_threads import reserve_for_workers

    tune_allocator()
    reserve_for_workers(threads)


def freeze_startup_heap() -> None:
    """Once the window is built: exempt everything alive now (~200k objects: torch, Qt, pyqtgraph) from the
    garbage collector's full passes. A full pass over them takes 60–200 ms here and, holding the GIL, freezes
    the window and the run alike; afterwards a pass only looks at what the session created since."""
    gc.collect()
    gc.freeze()


def _icon() -> QtGui.QIcon | None:
    try:
        from priorstudio.resources import resource_path

        path = resource_path("icons", "priorstudio.svg")
    except FileNotFoundError:
        return None
    return QtGui.QIcon(str(path)) if path.is_file() else None


def _excepthook(window: QtWidgets.QWidget | None):  # type: ignore[no-untyped-def]
    """Unexpected errors in a slot become a dialog; the application keeps running."""

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        traceback.print_exception(kind, error, tb)
        message = str(error) if isinstance(error, PriorStudioError) else f"{kind.__name__}: {error}"
        QtWidgets.QMessageBox.warning(window, "PriorStudio", message)

    return hook


def run_app(image_path: str | None = None, model: str | None = None) -> int:
    """Open the main window on ``image_path`` (default: the bundled sample photo) and run until it closes.

    ``model`` is a bundled model name or a weights file; by default the bundled gray or colour model
    that matches the image is used. Returns the process exit code.
    """
    # (`priorstudio` checks the display before it imports this module: gui/display_check.py.)
    # Until the event loop runs (the window being built, a question at startup) Ctrl-C ends the process at
    # once: there is nothing to close yet, and a previous session's autosave stays for the next start.
    previous_sigint = signal.signal(signal.SIGINT, signal.SIG_DFL)
    prepare_process()
    app = make_application()
    from priorstudio.gui.garbage import GuiThreadCollector
    from priorstudio.gui.interrupt import TerminalInterrupt
    from priorstudio.gui.main_window import MainWindow

    collector = GuiThreadCollector(app)  # cycles are collected here, never in a worker thread

    window = MainWindow(model=model)
    window.show()
    autosave = _start_autosave(window)
    # work a crash or a kill left behind comes first; otherwise the photo asked for, or the sample
    restored = autosave is not None and autosave.offer_restore()
    if not restored:
        if image_path:
            window.open_path(image_path)
        else:
            window.open_sample()
    freeze_startup_heap()
    previous_hook = sys.excepthook
    sys.excepthook = _excepthook(window)
    interrupt = TerminalInterrupt(window.close, window.isVisible, app)  # from here Ctrl-C closes the window
    try:
        return int(app.exec())
    finally:
        sys.excepthook = previous_hook
        interrupt.stop()
        signal.signal(signal.SIGINT, previous_sigint)
        window.shutdown()
        if autosave is not None:
            autosave.close()
        collector.stop()


def _start_autosave(window: Any) -> Any:
    """The window's autosave, or None (with a note on stderr) where its folder cannot be written."""
    from priorstudio.core.autosave import AutosaveStore
    from priorstudio.gui.autosave_controller import AutosaveController, autosave_folder

    try:
        return AutosaveController(window, AutosaveStore(autosave_folder()))
    except OSError as exc:
        print(f"priorstudio: autosave is off ({exc})", file=sys.stderr)
        return None


def main() -> int:  # pragma: no cover - convenience entry point
    return run_app(sys.argv[1] if len(sys.argv) > 1 else None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
