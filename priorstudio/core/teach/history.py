"""A bounded, evenly thinned history of a run's frames, for scrubbing and replay after the run.

A run may take thousands of steps; keeping every frame of a 512² colour batch would take gigabytes. The
history keeps at most ``max_bytes`` by *thinning*: frames are stored on a grid of push indices
0, k, 2k, …; when the next frame would not fit, every other stored frame is dropped and k doubles. So the
stored frames always span the whole run evenly (spacing k), whatever its length, and the memory stays
under the cap. The first frame is always kept (index 0 is on every grid), and so is the latest one (in a
one-frame slot of its own when it is not on the grid). Room for that slot is reserved, so the cap holds
at every moment, not just on average. An optional ``max_frames`` caps the count the same way: a scrub bar
has only a few hundred distinguishable positions, so more frames of a small image would only cost memory.

Frames are stored compactly: ``uint8`` (clipped to [0, 1], 1 byte per value — for display) or
``float16`` (2 bytes, keeps values outside [0, 1], e.g. the noisy start of a synthesis run). Each frame
keeps its step's scalars (t, σ_t, h_t, γ_t …) so a scrubbed frame can be labelled and explained.
This class is plain Python + NumPy and thread-safe (a worker may push while the GUI reads).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from priorstudio.core.errors import ParameterError, ResourceLimitError

StorageDtype = Literal["uint8", "float16"]

#: The default cap, shown to the user next to the scrub bar.
DEFAULT_MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Frame:
    """One stored frame: the estimate at step ``t`` plus that step's scalars.

    ``data`` has the layout it was pushed with ((C, H, W) or (B, C, H, W)) in the compact dtype;
    use :meth:`image` for float32 values.
    """

    index: int  # position in the push sequence (0 for the first frame)
    t: int  # the sampler's step number
    data: np.ndarray
    scalars: Mapping[str, float] = field(default_factory=dict)

    @property
    def sigma(self) -> float:
        """σ_t of this step (NaN when the method does not report one)."""
        return float(self.scalars.get("sigma", float("nan")))

    def sigma_of(self, sample: int | None) -> float:
        """σ_t of one sample of a batch (its own ``sigma_k`` when the run reported it), else the batch's."""
        if sample is not None:
            own = self.scalars.get(f"sigma_{sample}")
            if own is not None:
                return float(own)
        return self.sigma

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def image(self) -> np.ndarray:
        """The frame as float32 (uint8 storage comes back in [0, 1])."""
        if self.data.dtype == np.uint8:
            return self.data.astype(np.float32) / 255.0
        return self.data.astype(np.float32)

    def tensor(self) -> Tensor:
        return torch.from_numpy(self.image())


def _compact(image: Tensor | np.ndarray, dtype: StorageDtype) -> np.ndarray:
    arr = image.detach().to("cpu", torch.float32).numpy() if isinstance(image, Tensor) else np.asarray(image)
    arr = arr.astype(np.float32, copy=False)
    if dtype == "uint8":
        return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    return arr.astype(np.float16)  # astype copies, so the caller's buffer is never shared


def _clean_scalars(scalars: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in scalars.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float, np.floating, np.integer)):
            out[str(key)] = float(value)
    return out


class FrameHistory:
    """Keeps at most ``max_bytes`` of frames of one run, thinned evenly; first and latest always kept.

    Typical use: ``history.push_record(rec)`` for every StepRecord that carries an image, then
    ``history.frames()`` / ``history.nearest(t)`` to scrub, and the exporters in
    :mod:`priorstudio.core.teach.animation` to save it.
    """

    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, dtype: StorageDtype = "uint8", *, max_frames: int | None = None
    ) -> None:
        if dtype not in ("uint8", "float16"):
            raise ParameterError(f"frame storage dtype must be 'uint8' or 'float16', not {dtype!r}")
        if max_bytes <= 0:
            raise ParameterError(f"the history's memory cap must be positive, got {max_bytes} bytes")
        if max_frames is not None and max_frames < 2:
            raise ParameterError(f"the history must be allowed at least 2 frames (first and latest), got {max_frames}")
        self._max_bytes = int(max_bytes)
        self._max_frames = None if max_frames is None else int(max_frames)
        self._dtype: StorageDtype = dtype
        self._lock = threading.Lock()
        self.clear()

    # -- state ---------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every frame (a new run starts)."""
        with self._lock:
            self._grid: list[Frame] = []  # frames whose index is a multiple of _interval
            self._latest: Frame | None = None  # the newest frame when it is not on the grid
            self._interval = 1
            self._pushed = 0
            self._grid_bytes = 0

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def max_frames(self) -> int | None:
        return self._max_frames

    @property
    def dtype(self) -> StorageDtype:
        return self._dtype

    @property
    def itemsize(self) -> int:
        """Bytes a stored value takes (1 for uint8, 2 for float16)."""
        return 1 if self._dtype == "uint8" else 2

    @property
    def interval(self) -> int:
        """Spacing of the stored frames, in pushes: doubles at every thinning."""
        return self._interval

    @property
    def pushed(self) -> int:
        """How many frames were pushed in total (stored or not)."""
        return self._pushed

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the stored frames' pixels (the scalars add a few hundred bytes per frame)."""
        with self._lock:
            return self._grid_bytes + (self._latest.nbytes if self._latest is not None else 0)

    def __len__(self) -> int:
        with self._lock:
            return len(self._grid) + (1 if self._latest is not None else 0)

    def describe(self) -> str:
        """One line for the GUI: frames kept, spacing, memory used of the cap."""
        mb = 1024 * 1024
        return (
            f"{len(self)} frames (every {self._interval}), "
            f"{self.memory_bytes / mb:.1f} of {self._max_bytes / mb:.0f} MB"
        )

    # -- writing -------------------------------------------------------------------------------------
    def push(self, t: int, image: Tensor | np.ndarray, scalars: Mapping[str, Any] | None = None) -> None:
        """Add the frame of step ``t``; it is kept as the latest and, if on the grid, for good."""
        data = _compact(image, self._dtype)
        need = 2 * data.nbytes  # the first frame plus the latest must always fit
        if need > self._max_bytes:
            raise ResourceLimitError(
                f"one frame takes {data.nbytes / 1e6:.1f} MB, so the run history needs at least "
                f"{need / 1e6:.1f} MB; raise its memory cap (now {self._max_bytes / 1e6:.1f} MB)"
            )
        with self._lock:
            frame = Frame(self._pushed, int(t), data, _clean_scalars(scalars or {}))
            self._pushed += 1
            while len(self._grid) > 1 and self._over_caps(len(self._grid), self._grid_bytes, frame.nbytes):
                self._thin()
            if self._grid_bytes + frame.nbytes > self._max_bytes:
                raise ResourceLimitError(
                    f"a frame of {frame.nbytes / 1e6:.1f} MB does not fit next to the first one; raise the run "
                    f"history's memory cap (now {self._max_bytes / 1e6:.1f} MB)"
                )
            if frame.index % self._interval == 0:
                self._grid.append(frame)
                self._grid_bytes += frame.nbytes
                self._latest = None
            else:
                self._latest = frame

    def next_on_grid(self, nbytes: int = 0) -> bool:
        """Whether the next push, of a frame of ``nbytes`` bytes when stored, will be kept for good.

        A producer can skip making a frame that would only pass through the latest slot (see :meth:`skip`).
        The thinning that push would do is taken into account; with ``nbytes`` too small the answer errs
        towards True (a frame made for nothing), never towards dropping a frame the grid would keep.
        """
        with self._lock:
            interval, kept = self._interval, self._grid
            size = self._grid_bytes
            while len(kept) > 1 and self._over_caps(len(kept), size, nbytes):
                interval *= 2
                kept = [f for f in kept if f.index % interval == 0]
                size = sum(f.nbytes for f in kept)
            return self._pushed % interval == 0

    def skip(self) -> None:
        """Count a push without storing it (a frame that was not made because it would not be kept), so
        the grid of later pushes stays the same as if every frame had been pushed."""
        with self._lock:
            self._pushed += 1

    def push_record(self, record: Any) -> bool:
        """Push a StepRecord (anything with ``t``, ``image`` and ``scalars()``); False when it has no image."""
        image = getattr(record, "image", None)
        if image is None:
            return False
        self.push(record.t, image, record.scalars())
        return True

    def _over_caps(self, count: int, size: int, nbytes: int) -> bool:
        """Whether a grid of ``count`` frames and ``size`` bytes must thin before a frame of ``nbytes`` is
        pushed: it plus that frame plus room for the next latest one must fit under both caps."""
        too_many = self._max_frames is not None and count + 2 > self._max_frames
        return size + 2 * nbytes > self._max_bytes or too_many

    def _thin(self) -> None:
        """Drop every other stored frame and double the spacing; index 0 always survives."""
        self._interval *= 2
        kept = [f for f in self._grid if f.index % self._interval == 0]
        self._grid = kept
        self._grid_bytes = sum(f.nbytes for f in kept)

    # -- reading -------------------------------------------------------------------------------------
    def frames(self) -> list[Frame]:
        """The stored frames in run order (first … latest)."""
        with self._lock:
            out = list(self._grid)
            if self._latest is not None:
                out.append(self._latest)
            return out

    def steps(self) -> list[int]:
        """Step numbers of the stored frames, in order: the positions a scrub bar can land on."""
        return [f.t for f in self.frames()]

    def first(self) -> Frame | None:
        frames = self.frames()
        return frames[0] if frames else None

    def latest(self) -> Frame | None:
        frames = self.frames()
        return frames[-1] if frames else None

    def nearest(self, t: float) -> Frame:
        """The stored frame whose step is closest to ``t`` (the earlier one on a tie)."""
        frames = self.frames()
        if not frames:
            raise LookupError("the run history is empty")
        return min(frames, key=lambda f: (abs(f.t - t), f.t))

    def evenly_spaced(self, n: int) -> list[Frame]:
        """``n`` stored frames evenly spaced over the run, always including the first and the latest."""
        frames = self.frames()
        if n <= 0 or not frames:
            return []
        if n >= len(frames):
            return frames
        if n == 1:
            return [frames[-1]]
        picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
        return [frames[i] for i in dict.fromkeys(int(p) for p in picks)]


class KeepPolicy:
    """Which frames of a run a producer should make for a :class:`FrameHistory`, and which to skip.

    Making a frame costs the run's thread (a copy off the device, a compaction), and most frames would only
    pass through the history's latest slot before the next replaced them. So a frame is made when it lands
    on the history's grid, and between those at most every ``latest_every_s`` seconds (the live view of a
    running run). The producer counts the ones it skips with :meth:`FrameHistory.skip`, so the grid is the
    same as if every frame had been pushed.
    """

    def __init__(
        self, history: FrameHistory, *, latest_every_s: float = 0.2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.history = history
        self.latest_every_s = float(latest_every_s)
        self._clock = clock
        self._kept_at = -math.inf

    def keep(self, nbytes: int, *, force: bool = False, grid: bool = True) -> bool:
        """Whether to make the next frame (``nbytes`` when stored): forced, due for the live view, or (with
        ``grid``) on the history's grid. True counts as kept now."""
        now = self._clock()
        if force or now - self._kept_at >= self.latest_every_s or (grid and self.history.next_on_grid(nbytes)):
            self._kept_at = now
            return True
        return False


class HistorySink:
    """A run's records into a :class:`FrameHistory`, compacting only the frames it will keep.

    Which frames are compacted is the :class:`KeepPolicy`'s choice (the grid's, a live one a few times a
    second, and the run's last step). The newest skipped record is held (records own their images) and
    :meth:`flush` pushes it once the run has ended, so the history always ends with the run's last step.
    """

    def __init__(
        self, history: FrameHistory, *, latest_every_s: float = 0.2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.history = history
        self.policy = KeepPolicy(history, latest_every_s=latest_every_s, clock=clock)
        self._held: Any = None
        #: why this run's frames stopped being kept (frames larger than the cap allows), or "" while they are
        self.dropped = ""

    def __call__(self, record: Any) -> None:
        image = getattr(record, "image", None)
        if image is None or self.dropped:
            return
        self._held = None
        nbytes = int(image.numel() if isinstance(image, Tensor) else np.asarray(image).size) * self.history.itemsize
        if self.policy.keep(nbytes, force=bool(getattr(record, "is_last", False))):
            self._push(record)
        else:
            self.history.skip()
            self._held = record

    def flush(self) -> None:
        """Push the newest record if it was skipped (call once the run has ended)."""
        held, self._held = self._held, None
        if held is not None:
            self._push(held)  # after the run: no later push, so the grid it took is no one's

    def _push(self, record: Any) -> None:
        try:
            self.history.push_record(record)
        except ResourceLimitError as error:  # the history is for replay: never fail the run for it
            self.dropped = str(error)
            self._held = None
