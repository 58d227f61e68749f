"""Shared fixtures: Qt runs offscreen, settings go to a temporary file, and no test may leak a thread.

``QT_QPA_PLATFORM=offscreen`` must be set before Qt is first imported, so it is set here at import time
(pytest imports conftest.py before any test module). Every ``QThread.start`` is recorded so that the
thread-leak check can see Qt threads as well as Python ones.
"""

from __future__ import annotations

import gc
import os
import threading
import weakref

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import pytest

try:  # Qt is optional for the core tests
    from PySide6 import QtCore

    from priorstudio.gui import qt_compat  # noqa: F401  (guards a PySide6 refcount bug on Python < 3.12)
except ImportError:  # pragma: no cover - Qt not installed
    QtCore = None  # type: ignore[assignment]

#: Seconds a thread gets after its test to finish (one sampler step must be able to complete).
THREAD_GRACE_S = 2.0

_started_qthreads: list[weakref.ref] = []

if QtCore is not None:
    _original_start = QtCore.QThread.start

    def _recording_start(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _started_qthreads.append(weakref.ref(self))
        return _original_start(self, *args, **kwargs)

    QtCore.QThread.start = _recording_start  # type: ignore[method-assign]


def _running_qthreads() -> list:
    alive = []
    for ref in _started_qthreads:
        thread = ref()
        try:
            if thread is not None and thread.isRunning():
                alive.append(thread)
        except RuntimeError:  # the C++ object is already gone: not running
            continue
    return alive


@pytest.fixture(autouse=True)
def no_leaked_threads(request):
    """Fail the test if it leaves a QThread or a Python thread running (after a short grace period)."""
    before = set(threading.enumerate())
    _started_qthreads.clear()
    yield
    leaked_q = _running_qthreads()
    for thread in leaked_q:
        thread.wait(int(THREAD_GRACE_S * 1000))
    leaked_q = [t for t in leaked_q if t.isRunning()]
    leaked_py = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not isinstance(t, threading._DummyThread)
    ]
    for t in leaked_py:
        t.join(THREAD_GRACE_S)
    leaked_py = [t for t in leaked_py if t.is_alive()]
    for thread in leaked_q:  # stop them anyway, so a leak cannot crash the interpreter at exit
        thread.requestInterruption()
        thread.quit()
        thread.wait(5000)
    _started_qthreads.clear()
    if leaked_q or leaked_py:
        names = [type(t).__name__ for t in leaked_q] + [t.name for t in leaked_py]
        pytest.fail(f"{request.node.nodeid} left threads running: {', '.join(names)}")


@pytest.fixture(autouse=True)
def qt_garbage_collected_here(request):
    """A Qt test's garbage is collected on the main thread, once its threads have ended.

    Widgets a test drops can sit in reference cycles; left to the automatic collector, a worker thread may be
    the one that happens to run it, and destroying a Qt object off its thread crashes the process. As in the
    app (gui/garbage.py), automatic collection is off while a Qt test runs.
    """
    qt = "qtbot" in request.fixturenames
    was_enabled = gc.isenabled()
    if qt:
        gc.disable()
    yield
    if qt:
        for thread in _running_qthreads():  # a worker still returning from its run
            thread.wait(int(THREAD_GRACE_S * 1000))
        gc.collect()
        if was_enabled:
            gc.enable()


@pytest.fixture(autouse=True)
def temporary_qsettings(tmp_path_factory):
    """Point every QSettings (default-constructed or explicit INI) at a fresh temporary folder."""
    if QtCore is None:
        yield None
        return
    folder = tmp_path_factory.mktemp("qsettings")
    fmt = QtCore.QSettings.Format.IniFormat
    for scope in (QtCore.QSettings.Scope.UserScope, QtCore.QSettings.Scope.SystemScope):
        QtCore.QSettings.setPath(fmt, scope, str(folder))
    QtCore.QSettings.setDefaultFormat(fmt)
    QtCore.QCoreApplication.setOrganizationName("PriorStudioTests")
    QtCore.QCoreApplication.setApplicationName("PriorStudioTests")
    yield folder


@pytest.fixture
def settings(temporary_qsettings):
    """A QSettings stored in a temporary INI file, for widgets that take their settings explicitly."""
    s = QtCore.QSettings(str(temporary_qsettings / "priorstudio.ini"), QtCore.QSettings.Format.IniFormat)
    yield s
    s.sync()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and a busy machine makes two threads wait for each other.

    Use per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
