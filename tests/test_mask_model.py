"""The mask model without Qt: strokes, one undo step per stroke, bounded lean history, generated masks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from priorstudio.core.errors import MaskError, ParameterError
from priorstudio.gui.mask_model import MaskModel


def stroke(model: MaskModel, points, erase=None) -> bool:
    model.begin_stroke(*points[0], erase=erase)
    for p in points[1:]:
        model.stroke_to(*p)
    return model.end_stroke()


def test_module_is_qt_free():
    # the model is plain Python + NumPy: importing it must not pull in Qt
    code = "import sys, priorstudio.gui.mask_model; print(any(m.startswith('PySide6') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_stroke_paints_a_capsule_without_gaps():
    m = MaskModel((40, 60))
    m.set_radius(2.0)
    assert stroke(m, [(5.5, 20.5), (50.5, 20.5)])
    a = m.array
    # every pixel along the segment is painted (a fast drag must leave no gaps)
    assert a[20, 5:51].all()
    # the stroke's width is about 2r + 1 and it does not bleed further
    assert a[18:23, 30].all() and not a[16, 30] and not a[24, 30]
    assert m.bounding_box() == (18, 23, 3, 53)


def test_tiny_brush_paints_the_pixel_under_the_cursor():
    m = MaskModel((10, 10))
    m.set_radius(0.1)
    assert m.radius == 0.5  # clamped
    stroke(m, [(3.9, 7.2)])
    assert m.array[7, 3] and m.array.sum() >= 1


def test_one_stroke_is_one_undo_step_and_redo_restores_it():
    m = MaskModel((32, 32))
    m.set_radius(3)
    stroke(m, [(5, 5), (10, 10), (20, 12), (25, 25)])
    painted = m.copy()
    assert m.undo_depth == 1 and m.undo_label() == "brush stroke"
    assert m.undo()
    assert not m.any()
    assert m.can_redo() and not m.can_undo()
    assert m.redo()
    assert np.array_equal(m.array, painted)
    assert not m.redo()


def test_eraser_and_right_drag_erase():
    m = MaskModel((20, 20))
    m.set_radius(1.5)
    m.central_block(0.5)
    before = m.fraction()
    m.erasing = True
    stroke(m, [(10, 10)])
    after_tool = m.fraction()
    assert after_tool < before
    m.erasing = False
    stroke(m, [(7, 7)], erase=True)  # right-drag: erase whatever the tool
    assert m.fraction() < after_tool
    m.undo()
    m.undo()
    assert m.fraction() == before


def test_a_stroke_that_changes_nothing_is_not_an_undo_step():
    m = MaskModel((10, 10))
    assert not stroke(m, [(5, 5)], erase=True)
    assert m.undo_depth == 0


def test_new_edit_clears_redo():
    m = MaskModel((16, 16))
    stroke(m, [(4, 4)])
    m.undo()
    stroke(m, [(10, 10)])
    assert not m.can_redo()


def test_undo_records_store_only_the_changed_box_as_bits():
    m = MaskModel((2000, 2000))
    m.set_radius(4)
    stroke(m, [(100, 100), (140, 100)])
    # an 8×48 box, before and after, packed 8 pixels per byte: well under a kilobyte for a 4-Mpixel mask
    assert m.undo_bytes < 200
    step = m._undo[-1]
    r0, r1, c0, c1 = step.before.box
    assert (r1 - r0, c1 - c0) == (8, 48)


def test_undo_stack_is_bounded_by_steps_and_bytes():
    m = MaskModel((64, 64), max_undo=5)
    for i in range(12):
        stroke(m, [(2 + 5 * i, 30)])
    assert m.undo_depth == 5
    n = 0
    while m.undo():
        n += 1
    assert n == 5
    assert m.any()  # the oldest strokes can no longer be undone

    small = MaskModel((256, 256), max_undo=1000, max_undo_bytes=20_000)
    for _ in range(10):
        small.invert()  # each is a full-image step of 2 × 8 kB
    assert small.undo_bytes <= 20_000 and small.undo_depth == 1


def test_clear_invert_are_undoable():
    m = MaskModel((8, 8))
    m.central_block(0.5)
    block = m.copy()
    assert m.invert()
    assert np.array_equal(m.array, ~block)
    assert m.clear()
    assert not m.any()
    assert not m.clear()  # nothing to clear: no step
    m.undo()
    assert np.array_equal(m.array, ~block)
    m.undo()
    assert np.array_equal(m.array, block)


def test_generated_masks():
    m = MaskModel((100, 80))
    m.random_pixels(0.3, seed=1)
    assert m.fraction() == pytest.approx(0.3, abs=1e-3)
    first = m.copy()
    m.random_pixels(0.3, seed=1)
    assert np.array_equal(m.array, first)  # same seed, same pixels
    m.central_block(0.25)
    assert m.bounding_box() == (37, 62, 30, 50)
    assert m.fraction() == pytest.approx(25 * 20 / 8000)
    with pytest.raises(ParameterError):
        m.random_pixels(1.0)
    with pytest.raises(ParameterError):
        m.central_block(0.0)


def test_import_checks_the_size():
    m = MaskModel((4, 5))
    new = np.zeros((4, 5), bool)
    new[1, 2] = True
    assert m.set_mask(new)
    assert m.array[1, 2] and m.undo_label() == "import mask"
    with pytest.raises(MaskError, match=r"5×4|4×5"):
        m.set_mask(np.zeros((5, 4), bool))


def test_listeners_get_the_changed_box_and_version_counts():
    m = MaskModel((30, 30))
    boxes = []
    m.add_listener(boxes.append)
    m.set_radius(2)
    v = m.version
    stroke(m, [(10, 10), (12, 10)])
    assert boxes and all(b[0] >= 7 and b[1] <= 14 for b in boxes)
    assert m.version > v
    boxes.clear()
    m.undo()
    assert boxes == [m._redo[-1].before.box]


def test_cancel_stroke_restores_the_mask():
    m = MaskModel((50, 50))
    m.central_block(0.5)
    before = m.copy()
    m.begin_stroke(0, 0, erase=False)
    m.stroke_to(49, 49)
    m.cancel_stroke()
    assert np.array_equal(m.array, before)
    assert m.undo_label() == "central block"


def test_long_stroke_over_tiles_undoes_exactly():
    rng = np.random.default_rng(0)
    m = MaskModel((300, 300))
    m.random_pixels(0.5, seed=3)
    before = m.copy()
    m.set_radius(9)
    pts = [tuple(p) for p in rng.uniform(0, 300, size=(30, 2))]
    stroke(m, pts, erase=bool(rng.integers(2)))
    assert not np.array_equal(m.array, before)
    m.undo()
    assert np.array_equal(m.array, before)


def test_brush_size_steps():
    m = MaskModel((10, 10))
    m.set_radius(10)
    assert m.grow_brush(1) > 10
    m.set_radius(10)
    assert m.grow_brush(-1) < 10
    m.set_radius(10)
    big = m.grow_brush(10)
    assert big > 30  # ×10 steps: a big jump
    assert m.set_radius(1e9) == 2000.0
