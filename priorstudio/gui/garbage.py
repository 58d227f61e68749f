"""Cyclic garbage is collected on the GUI thread only.

Python runs its cycle collector in whichever thread happens to allocate past the threshold. In this app that
is often a worker thread (a sampler run allocates a lot), and a pass there can destroy Qt objects that live
in the GUI thread (widgets and signal closures left in reference cycles); Qt aborts the process when an
object is destroyed off its thread. So, while the app runs, the automatic collector is off and a timer on
the GUI thread runs the same generational passes, with the same thresholds, a few times a second.
"""

from __future__ import annotations

import gc

from PySide6 import QtCore

#: How often the GUI thread looks at the collector's counts (a pass of the young generations takes ~1 ms).
INTERVAL_MS = 250


class GuiThreadCollector(QtCore.QObject):
    """Turns automatic collection off and collects on a GUI-thread timer; :meth:`stop` turns it back on."""

    def __init__(self, parent: QtCore.QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self.passes = 0
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> int | None:
        """Run the pass the collector would have run by now (the oldest generation over its threshold)."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        generation = None
        for g in range(3):
            if counts[g] > thresholds[g]:
                generation = g
        if generation is not None:
            gc.collect(generation)
            self.passes += 1
        return generation

    def stop(self) -> None:
        self.timer.stop()
        if self._was_enabled:
            gc.enable()
