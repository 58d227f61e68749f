"""A guard against reference-count bugs of some PySide6 builds on Python < 3.12.

PySide6 6.12's wheels return ``None`` from void methods, and ``True`` from ``Signal.emit``, without taking
a reference. On Python ≥ 3.12 that is harmless (``None``, ``True`` and ``False`` are immortal there), but on
3.11 every such call (``update()``, ``setText()``, ``processEvents()``, every ``emit`` …) lowers the
object's reference count by one, and after some tens of thousands of calls the interpreter aborts with
"none_dealloc: deallocating None" (or "bool_dealloc"). An application that repaints 30 times a second and
emits a signal per sampler step reaches that within minutes.

:func:`guard_singleton_refcounts` detects the bug with a few calls and, only when it is present, gives
``None``, ``True`` and ``False`` an enormous reference count: the immortality Python 3.12 gives them
anyway. Every Qt module of the application imports this module, so the guard is in place before the first
widget exists.
"""

from __future__ import annotations

import ctypes
import sys

#: Added to each singleton's reference count when the bug is present (2⁴⁸ calls before it could matter).
HEADROOM = 1 << 48
_applied = False


def refcounts_drop() -> bool:
    """Whether void PySide6 calls drop a reference to None, or ``emit`` one to True (the bugs)."""
    from PySide6 import QtCore

    class _Probe(QtCore.QObject):
        ping = QtCore.Signal()

    probe = _Probe()
    probe.ping.connect(lambda: None)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(64):
        probe.setObjectName("probe")
        probe.ping.emit()
    none_lost = none_before - sys.getrefcount(None)
    true_lost = true_before - sys.getrefcount(True)
    return none_lost > 32 or true_lost > 32


def guard_singleton_refcounts() -> bool:
    """Make None/True/False immortal if (and only if) this PySide6 build has the bug; True when applied."""
    global _applied
    if _applied:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    if not refcounts_drop():
        return False
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += HEADROOM
    _applied = True
    return True


guard_singleton_refcounts()
