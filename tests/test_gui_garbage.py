"""Cycles are collected on the GUI thread: a worker thread never runs the collector while the app runs."""

from __future__ import annotations

import gc
import threading

import pytest

pytest.importorskip("pytestqt")

from priorstudio.gui.garbage import GuiThreadCollector

pytestmark = pytest.mark.gui


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collection_moves_to_the_gui_thread_and_back(qtbot) -> None:
    was = gc.isenabled()
    gc.enable()
    try:
        collector = GuiThreadCollector(interval_ms=20)
        assert not gc.isenabled()
        seen: list[str] = []

        def note(phase: str, info: dict) -> None:
            if phase == "start":
                seen.append(threading.current_thread().name)

        gc.callbacks.append(note)
        try:
            worker = threading.Thread(target=lambda: [_Cycle() for _ in range(50_000)], name="worker")
            worker.start()
            worker.join()
            assert seen == []  # past every threshold, and still no pass in the worker
            qtbot.waitUntil(lambda: collector.passes > 0, timeout=5_000)
            assert seen and set(seen) == {threading.main_thread().name}
        finally:
            gc.callbacks.remove(note)
        collector.stop()
        assert gc.isenabled()
    finally:
        if not was:
            gc.disable()
