"""The inpainting mask as a plain, Qt-free model: painting, generated masks and a bounded undo history.

The canvas only translates mouse events into calls on a :class:`MaskModel` (``begin_stroke`` /
``stroke_to`` / ``end_stroke``); everything a user can do to a mask is here and is tested without Qt.

- ``True`` means *missing*: the pixel is to be filled (white in a mask file), as in ``Inpaint``.
- One stroke (press … drag … release) is one undo step, and so is every whole-mask edit (clear, invert,
  import, generated masks).
- Undo records are memory-lean: only the bounding box a step changed is stored, as packed bits (1 bit per
  pixel), before and after. The stacks are bounded by a number of steps *and* by bytes; the oldest steps
  are dropped first.
- Listeners are told which rectangle changed, so a view repaints only that part.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from priorstudio.core.errors import MaskError, ParameterError

#: (row0, row1, col0, col1), half-open: the rectangle of the mask a change touched.
Box = tuple[int, int, int, int]

#: Brush radius limits in image pixels.
MIN_RADIUS = 0.5
MAX_RADIUS = 2000.0


@dataclass(frozen=True)
class _Patch:
    """The packed bits of one rectangle of the mask."""

    box: Box
    bits: np.ndarray  # uint8, np.packbits of the rectangle

    @classmethod
    def of(cls, mask: np.ndarray, box: Box) -> _Patch:
        r0, r1, c0, c1 = box
        return cls(box, np.packbits(mask[r0:r1, c0:c1], axis=None))

    @classmethod
    def from_values(cls, box: Box, values: np.ndarray) -> _Patch:
        return cls(box, np.packbits(values, axis=None))

    def values(self) -> np.ndarray:
        r0, r1, c0, c1 = self.box
        n = (r1 - r0) * (c1 - c0)
        return np.unpackbits(self.bits, count=n).astype(bool).reshape(r1 - r0, c1 - c0)

    @property
    def nbytes(self) -> int:
        return int(self.bits.nbytes)


@dataclass(frozen=True)
class UndoStep:
    """One undoable change: the rectangle it touched, before and after, and what it was (for menus)."""

    label: str
    before: _Patch
    after: _Patch

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes


class MaskModel:
    """A boolean (H, W) mask with a brush, generated masks and undo/redo.

    ``max_undo`` bounds the number of undo steps kept and ``max_undo_bytes`` their total memory.
    """

    def __init__(self, shape: tuple[int, int], *, max_undo: int = 100, max_undo_bytes: int = 64 * 2**20) -> None:
        h, w = (int(v) for v in shape)
        if h < 1 or w < 1:
            raise ParameterError(f"a mask needs a positive size, got {h}×{w}")
        self._mask = np.zeros((h, w), dtype=bool)
        self.max_undo = int(max_undo)
        self.max_undo_bytes = int(max_undo_bytes)
        self._undo: deque[UndoStep] = deque()
        self._redo: list[UndoStep] = []
        self._undo_bytes = 0
        self.radius = 12.0
        self.erasing = False  # the selected tool: False = brush (mark missing), True = eraser
        self._listeners: list[Callable[[Box], None]] = []
        self._stroke: _Stroke | None = None
        #: increases with every change (autosave and "unsaved" checks compare it)
        self.version = 0

    # -- reading -----------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self._mask.shape  # type: ignore[return-value]

    @property
    def array(self) -> np.ndarray:
        """The mask itself (read-only view): True where pixels are missing."""
        view = self._mask.view()
        view.flags.writeable = False
        return view

    def copy(self) -> np.ndarray:
        return self._mask.copy()

    def any(self) -> bool:
        return bool(self._mask.any())

    def fraction(self) -> float:
        """Share of the image marked missing."""
        return float(self._mask.mean())

    def bounding_box(self) -> Box | None:
        """The smallest rectangle holding every missing pixel, or None for an empty mask."""
        rows = np.flatnonzero(self._mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(self._mask.any(axis=0))
        return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

    # -- listeners ---------------------------------------------------------------------------------------
    def add_listener(self, callback: Callable[[Box], None]) -> None:
        """``callback(box)`` after every change, with the rectangle that changed."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[Box], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _changed(self, box: Box) -> None:
        self.version += 1
        for callback in list(self._listeners):
            callback(box)

    # -- brush -------------------------------------------------------------------------------------------
    def set_radius(self, radius: float) -> float:
        """Set the brush radius (image pixels), clamped to the valid range; returns the value used."""
        self.radius = float(min(max(radius, MIN_RADIUS), MAX_RADIUS))
        return self.radius

    def grow_brush(self, steps: int = 1) -> float:
        """Make the brush larger (``steps`` > 0) or smaller (< 0) by about 15% per step."""
        r = self.radius
        for _ in range(abs(int(steps))):
            r = max(r * 1.15, r + 1) if steps > 0 else min(r / 1.15, r - 1)
        return self.set_radius(r)

    @property
    def stroking(self) -> bool:
        return self._stroke is not None

    def begin_stroke(self, x: float, y: float, *, erase: bool | None = None) -> None:
        """Start a stroke at image point (x, y) (x to the right, y down, pixel (r, c) covers [c, c+1)×[r, r+1)).

        ``erase`` overrides the selected tool for this stroke (right-drag erases).
        """
        if self._stroke is not None:
            self.end_stroke()
        value = not (self.erasing if erase is None else erase)
        self._stroke = _Stroke(value=value, last=(x, y))
        self._stamp((x, y), (x, y))

    def stroke_to(self, x: float, y: float) -> None:
        """Continue the stroke to (x, y), painting the whole segment from the last point (no gaps)."""
        if self._stroke is None:
            return
        last = self._stroke.last
        self._stroke.last = (x, y)
        self._stamp(last, (x, y))

    def end_stroke(self) -> bool:
        """Finish the stroke; it becomes one undo step. Returns False when it changed nothing."""
        stroke, self._stroke = self._stroke, None
        if stroke is None or stroke.box is None:
            return False
        box = stroke.box
        before = _Patch.from_values(box, stroke.original(self._mask, box))
        after = _Patch.of(self._mask, box)
        if np.array_equal(before.bits, after.bits):
            return False
        self._push(UndoStep("erase" if not stroke.value else "brush stroke", before, after))
        return True

    def cancel_stroke(self) -> None:
        """Abandon the stroke and put back what it painted."""
        stroke, self._stroke = self._stroke, None
        if stroke is not None and stroke.box is not None:
            r0, r1, c0, c1 = stroke.box
            self._mask[r0:r1, c0:c1] = stroke.original(self._mask, stroke.box)
            self._changed(stroke.box)

    def _stamp(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        """Paint the capsule of radius ``radius`` around the segment p0–p1 with the stroke's value."""
        assert self._stroke is not None
        h, w = self._mask.shape
        r = max(self.radius, MIN_RADIUS)
        (x0, y0), (x1, y1) = p0, p1
        c0 = max(math.floor(min(x0, x1) - r), 0)
        c1 = min(math.ceil(max(x0, x1) + r) + 1, w)
        r0 = max(math.floor(min(y0, y1) - r), 0)
        r1 = min(math.ceil(max(y0, y1) + r) + 1, h)
        if c0 >= c1 or r0 >= r1:
            return
        # distance from every pixel centre in the box to the segment
        cx = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5
        cy = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        if length2 > 0:
            s = np.clip(((cx - x0) * dx + (cy - y0) * dy) / length2, 0.0, 1.0)
        else:
            s = np.zeros((1, 1))
        px, py = cx - (x0 + s * dx), cy - (y0 + s * dy)
        inside = px * px + py * py <= r * r
        # the pixels under the two end points always count, however small the brush
        for x, y in (p0, p1):
            col, row = math.floor(x), math.floor(y)
            if r0 <= row < r1 and c0 <= col < c1:
                inside[row - r0, col - c0] = True
        if not inside.any():
            return
        rows = np.flatnonzero(inside.any(axis=1))
        cols = np.flatnonzero(inside.any(axis=0))
        box = (r0 + int(rows[0]), r0 + int(rows[-1]) + 1, c0 + int(cols[0]), c0 + int(cols[-1]) + 1)
        self._stroke.save_tiles(self._mask, box)
        region = self._mask[r0:r1, c0:c1]
        if self._stroke.value:
            region |= inside
        else:
            region &= ~inside
        self._stroke.grow(box)
        self._changed(box)

    # -- whole-mask edits (each one undo step) -----------------------------------------------------------
    def clear(self) -> bool:
        return self._replace(np.zeros_like(self._mask), "clear")

    def invert(self) -> bool:
        return self._replace(~self._mask, "invert")

    def set_mask(self, mask: np.ndarray, label: str = "import mask") -> bool:
        """Replace the mask by ``mask`` (bool or 0/1, same (H, W)), e.g. one read from a file."""
        arr = np.asarray(mask)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.shape != self._mask.shape:
            h, w = self._mask.shape
            got = "×".join(str(v) for v in arr.shape)
            raise MaskError(f"the mask is {got} but the image is {h}×{w}; use a mask of the image's size")
        return self._replace(arr.astype(bool), label)

    def random_pixels(self, fraction: float, seed: int = 0) -> bool:
        """Mark a random ``fraction`` of the pixels missing (the same seed gives the same pixels)."""
        if not 0.0 < fraction < 1.0:
            raise ParameterError(f"the share of missing pixels must be between 0 and 1 (exclusive), got {fraction}")
        h, w = self._mask.shape
        n = h * w
        k = min(max(round(fraction * n), 1), n - 1) if n > 1 else 1
        rng = np.random.default_rng(int(seed))
        flat = np.zeros(n, dtype=bool)
        flat[rng.choice(n, size=k, replace=False)] = True
        return self._replace(flat.reshape(h, w), f"scattered mask {100 * fraction:g}%")

    def central_block(self, fraction: float = 0.25) -> bool:
        """Mark a centred block of ``fraction`` of each side missing (0.25: a quarter of the width and height)."""
        if not 0.0 < fraction < 1.0:
            raise ParameterError(f"the block's share of each side must be between 0 and 1 (exclusive), got {fraction}")
        h, w = self._mask.shape
        bh, bw = max(round(h * fraction), 1), max(round(w * fraction), 1)
        top, left = (h - bh) // 2, (w - bw) // 2
        new = np.zeros_like(self._mask)
        new[top : top + bh, left : left + bw] = True
        return self._replace(new, "central block")

    def _replace(self, new: np.ndarray, label: str) -> bool:
        if self._stroke is not None:
            self.end_stroke()
        diff = new != self._mask
        if not diff.any():
            return False
        rows = np.flatnonzero(diff.any(axis=1))
        cols = np.flatnonzero(diff.any(axis=0))
        box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        before = _Patch.of(self._mask, box)
        r0, r1, c0, c1 = box
        self._mask[r0:r1, c0:c1] = new[r0:r1, c0:c1]
        self._push(UndoStep(label, before, _Patch.of(self._mask, box)))
        self._changed(box)
        return True

    # -- undo / redo -------------------------------------------------------------------------------------
    def _push(self, step: UndoStep) -> None:
        self._undo.append(step)
        self._undo_bytes += step.nbytes
        self._redo.clear()
        while self._undo and (len(self._undo) > self.max_undo or self._undo_bytes > self.max_undo_bytes):
            self._undo_bytes -= self._undo.popleft().nbytes

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo_label(self) -> str | None:
        return self._undo[-1].label if self._undo else None

    def redo_label(self) -> str | None:
        return self._redo[-1].label if self._redo else None

    @property
    def undo_depth(self) -> int:
        return len(self._undo)

    @property
    def undo_bytes(self) -> int:
        """Memory held by the undo stack (packed bits only)."""
        return self._undo_bytes

    def undo(self) -> bool:
        if self._stroke is not None:
            self.end_stroke()
        if not self._undo:
            return False
        step = self._undo.pop()
        self._undo_bytes -= step.nbytes
        self._apply(step.before)
        self._redo.append(step)
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        step = self._redo.pop()
        self._apply(step.after)
        self._undo.append(step)
        self._undo_bytes += step.nbytes
        return True

    def _apply(self, patch: _Patch) -> None:
        r0, r1, c0, c1 = patch.box
        self._mask[r0:r1, c0:c1] = patch.values()
        self._changed(patch.box)


class _Stroke:
    """A stroke in progress: its value, the last point, the box it touched and the tiles it changed.

    The mask as it was before the stroke is kept tile by tile, copied just before a tile is first painted,
    so a stroke on a huge image costs memory in proportion to what it touches, not to the image.
    """

    TILE = 64

    def __init__(self, value: bool, last: tuple[float, float]) -> None:
        self.value = value
        self.last = last
        self.box: Box | None = None
        self._tiles: dict[tuple[int, int], np.ndarray] = {}

    def save_tiles(self, mask: np.ndarray, box: Box) -> None:
        """Keep the original of every tile under ``box`` not kept yet (call before painting it)."""
        t = self.TILE
        r0, r1, c0, c1 = box
        for tr in range(r0 // t, (r1 - 1) // t + 1):
            for tc in range(c0 // t, (c1 - 1) // t + 1):
                if (tr, tc) not in self._tiles:
                    self._tiles[tr, tc] = mask[tr * t : (tr + 1) * t, tc * t : (tc + 1) * t].copy()

    def original(self, mask: np.ndarray, box: Box) -> np.ndarray:
        """The mask inside ``box`` as it was before the stroke."""
        t = self.TILE
        r0, r1, c0, c1 = box
        out = mask[r0:r1, c0:c1].copy()
        for (tr, tc), tile in self._tiles.items():
            a0, a1 = max(tr * t, r0), min(tr * t + tile.shape[0], r1)
            b0, b1 = max(tc * t, c0), min(tc * t + tile.shape[1], c1)
            if a0 < a1 and b0 < b1:
                out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] = tile[a0 - tr * t : a1 - tr * t, b0 - tc * t : b1 - tc * t]
        return out

    def grow(self, box: Box) -> None:
        if self.box is None:
            self.box = box
        else:
            a = self.box
            self.box = (min(a[0], box[0]), max(a[1], box[1]), min(a[2], box[2]), max(a[3], box[3]))
