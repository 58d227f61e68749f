"""A small text progress bar for stderr with rate and ETA (no dependency needed for one line of output)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """``bar.update(fraction, note)`` redraws one line at most ``max_hz`` times a second."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 28, max_hz: float = 5.0) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.min_interval = 1.0 / max_hz
        self.start = time.monotonic()
        self._last_draw = 0.0
        self.enabled = True

    def update(self, fraction: float, note: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        fraction = min(max(fraction, 0.0), 1.0)
        elapsed = now - self.start
        eta = elapsed * (1 - fraction) / fraction if fraction > 1e-6 else float("nan")
        filled = round(self.width * fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"\r{self.label} [{bar}] {100 * fraction:5.1f}% {format_seconds(elapsed)}<{format_seconds(eta)} {note}"
        self.stream.write(line[:160].ljust(100))
        self.stream.flush()

    def close(self, note: str = "") -> None:
        if self.enabled:
            self.update(1.0, note, force=True)
            self.stream.write("\n")
            self.stream.flush()
