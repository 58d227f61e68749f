"""Progress of a σ-stopped run, in log σ, with the rate and the time left (Qt-free).

    p = (log σ_0 − log σ_t) / (log σ_0 − log σ_L)

σ_0 is the first σ_t the run reports (the sampler measures σ_1 at its starting point, which is what
matters, and in denoising mode it is estimated from the image anyway). The step cap is honoured too: the
progress is the larger of the σ share and t / max_steps. The time left divides the steps left (from the
recent slope of log σ_t, or the cap) by the recent rate; both come from a sliding window of a few seconds,
so they follow a run that speeds up or slows down.
"""

from __future__ import annotations

import math
import time
from collections import deque


class RunProgress:
    """Feed it ``update(t, sigma)`` every step; read ``fraction``, ``steps_per_second`` and ``eta_seconds``."""

    def __init__(self, sigma_L: float | None, max_steps: int | None, *, window_s: float = 3.0) -> None:
        self.sigma_L = sigma_L if sigma_L and sigma_L > 0 else None
        self.max_steps = max_steps if max_steps and max_steps > 0 else None
        self.window_s = window_s
        self.sigma_0: float | None = None
        self.t = 0
        self.sigma = math.nan
        self._recent: deque[tuple[float, int, float]] = deque()  # (time, t, log σ)
        self.started = time.perf_counter()

    def update(self, t: int, sigma: float, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        self.t = int(t)
        self.sigma = float(sigma)
        log_sigma = math.log(sigma) if sigma > 0 and math.isfinite(sigma) else math.nan
        if self.sigma_0 is None and math.isfinite(log_sigma):
            self.sigma_0 = float(sigma)
        self._recent.append((now, self.t, log_sigma))
        while len(self._recent) > 2 and now - self._recent[0][0] > self.window_s:
            self._recent.popleft()

    @property
    def fraction(self) -> float:
        """0 … 1."""
        parts = [0.0]
        if self.max_steps:
            parts.append(self.t / self.max_steps)
        if self.sigma_L is not None and self.sigma_0 is not None and self.sigma > 0 and self.sigma_0 > self.sigma_L:
            span = math.log(self.sigma_0) - math.log(self.sigma_L)
            parts.append((math.log(self.sigma_0) - math.log(self.sigma)) / span)
        return float(min(max(max(parts), 0.0), 1.0))

    @property
    def steps_per_second(self) -> float:
        if len(self._recent) < 2:
            return math.nan
        (t0, s0, _), (t1, s1, _) = self._recent[0], self._recent[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else math.nan

    def steps_left(self) -> float:
        """Steps to σ_L at the recent slope of log σ_t (or to the cap, whichever comes first)."""
        cap_left = (self.max_steps - self.t) if self.max_steps else math.inf
        sigma_left = math.inf
        if self.sigma_L is not None and len(self._recent) >= 2 and self.sigma > 0:
            finite = [(s, ls) for _, s, ls in self._recent if math.isfinite(ls)]
            if len(finite) >= 2 and finite[-1][0] > finite[0][0]:
                slope = (finite[0][1] - finite[-1][1]) / (finite[-1][0] - finite[0][0])  # log σ drop per step
                gap = math.log(self.sigma) - math.log(self.sigma_L)
                if gap <= 0:
                    sigma_left = 0.0
                elif slope > 0:
                    sigma_left = gap / slope
        return min(cap_left, sigma_left)

    @property
    def eta_seconds(self) -> float:
        rate = self.steps_per_second
        left = self.steps_left()
        if not (rate > 0) or not math.isfinite(left):
            return math.nan
        return left / rate

    def elapsed(self) -> float:
        return time.perf_counter() - self.started
