"""Pacing what the GUI thread does during a run: frames, plot redraws, and the cores for the worker."""

from __future__ import annotations

import math
import sys
import threading

import numpy as np
import pytest
import torch
from gui_support import EventCounter
from PySide6 import QtCore, QtGui, QtWidgets

from priorstudio.core.allocator import tune_allocator
from priorstudio.core.samplers.base import StepRecord, StopReason
from priorstudio.gui import compute_threads
from priorstudio.gui.plots import RunPlots
from priorstudio.gui.worker import FramePacer, RunController


def sent(pacer: FramePacer, step_s: float, seconds: float) -> int:
    n, t = 0, 0.0
    while t < seconds:
        n += pacer.ready(t)
        t += step_s
    return n


def test_pacer_sends_every_step_of_a_sampler_slower_than_the_rate():
    # 28 steps/s against 30 frames/s: a fixed 33 ms gap would skip about every other step
    assert sent(FramePacer(30), 1 / 28, 10.0) == 280


def test_pacer_caps_a_fast_sampler_at_the_rate():
    n = sent(FramePacer(30), 1 / 200, 10.0)
    assert 295 <= n <= 302  # the rate, plus at most the first frame and a burst


def test_pacer_burst_is_bounded_and_zero_rate_sends_everything():
    pacer = FramePacer(10, burst=2)
    assert pacer.ready(0.0)
    assert [pacer.ready(10.0), pacer.ready(10.0), pacer.ready(10.0)] == [True, True, False]  # a long gap: 2
    everything = FramePacer(0)
    assert all(everything.ready(0.0) for _ in range(100))


def test_plots_redraw_at_most_at_the_asked_interval(qtbot):
    plots = RunPlots()
    qtbot.addWidget(plots)
    plots.append(1, {"sigma": 0.5, "residual_norm": 0.1})
    assert plots.refresh(min_interval=60.0)
    plots.append(2, {"sigma": 0.4, "residual_norm": 0.1})
    assert not plots.refresh(min_interval=60.0)  # too soon: the new point waits
    assert plots.point_count("sigma") == 1
    assert plots.refresh()  # no interval (a pause, the end of a run): drawn now
    assert plots.point_count("sigma") == 2
    assert not plots.refresh()  # nothing new


def _y_range(plot) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    return tuple(plot.vb.viewRange()[1])


def test_axes_grow_to_round_bounds_and_rarely_change_during_a_run(qtbot):
    plots = RunPlots()
    qtbot.addWidget(plots)
    plots.resize(300, 600)
    ideal = 0.5 * np.cumprod(np.full(400, 0.99))
    plots.new_run(sigma_L=0.01, ideal=ideal, expected_steps=380)
    assert tuple(plots.p_sigma.vb.viewRange()[0]) == (0.0, 500.0)  # the step axis is set once, at the start
    changes = {p: 0 for p in plots.plots}
    seen = {p: _y_range(p) for p in plots.plots}
    for t in range(1, 401):
        sigma = 0.5 * 0.99**t
        plots.append(t, {"sigma": sigma, "residual_norm": 3 * sigma, "data_error": 0.02 * sigma, "psnr": 12 + t / 20})
        plots.refresh()
        for p in plots.plots:
            now = _y_range(p)
            changes[p] += now != seen[p]
            seen[p] = now
        lo, hi = _y_range(plots.p_sigma)
        assert lo <= math.log10(sigma) <= hi  # the data always fit
        assert lo == math.floor(lo) and hi == math.ceil(hi)  # whole decades
    lo, hi = _y_range(plots.p_psnr)
    assert lo == 10.0 and hi % 5 == 0 and hi >= 32  # 12 … 32 dB, to multiples of 5
    assert _y_range(plots.p_ssim) == (0.0, 1.0)
    assert max(changes.values()) <= 5, changes  # 400 redraws, a handful of axis changes
    assert tuple(plots.p_sigma.vb.viewRange()[0]) == (0.0, 500.0)
    plots.append(600, {"sigma": 0.001})
    plots.refresh()
    assert tuple(plots.p_sigma.vb.viewRange()[0]) == (0.0, 1000.0)  # a longer run than expected: it grows


def test_empty_plots_show_steps_from_zero_and_whole_decades(qtbot):
    """Before the first run the axes read like the run's will: no pile of 1–10 labels on the log axes."""
    plots = RunPlots()
    qtbot.addWidget(plots)
    plots.resize(300, 600)
    assert tuple(plots.p_sigma.vb.viewRange()[0]) == (0.0, 100.0)
    for p in (plots.p_sigma, plots.p_resid):
        lo, hi = _y_range(p)
        assert lo == math.floor(lo) and hi == math.ceil(hi) and hi - lo >= 3  # decades, several of them
        assert hi == 0.0  # nothing above 1: σ and the residual are on the image's 0–1 scale
    assert _y_range(plots.p_psnr) == (10.0, 40.0) and _y_range(plots.p_ssim) == (0.0, 1.0)


def test_a_plot_zoomed_by_hand_is_left_alone_until_the_next_run(qtbot):
    plots = RunPlots()
    qtbot.addWidget(plots)
    plots.resize(300, 600)
    plots.show()
    plots.new_run()
    plots.append(1, {"sigma": 0.5, "residual_norm": 1.0, "psnr": 20.0})
    plots.refresh()
    centre = plots.mapFromScene(plots.p_psnr.vb.sceneBoundingRect().center())
    wheel = QtGui.QWheelEvent(
        QtCore.QPointF(centre),
        QtCore.QPointF(plots.mapToGlobal(centre)),
        QtCore.QPoint(0, 0),
        QtCore.QPoint(0, 120),
        QtCore.Qt.MouseButton.NoButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
        QtCore.Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QtWidgets.QApplication.sendEvent(plots.viewport(), wheel)
    zoomed = _y_range(plots.p_psnr)
    assert zoomed != (10.0, 40.0)
    plots.append(2, {"sigma": 0.4, "residual_norm": 1.0, "psnr": 80.0})
    plots.refresh()
    assert _y_range(plots.p_psnr) == zoomed  # the user's view stays
    plots.new_run()
    plots.append(1, {"sigma": 0.5, "residual_norm": 1.0, "psnr": 80.0})
    plots.refresh()
    lo, hi = _y_range(plots.p_psnr)
    assert lo == 10.0 and hi > 80.0 and hi % 5 == 0  # a new run: managed again, grown past its 10–40 dB start


@pytest.fixture
def reserved():
    before = torch.get_num_threads()
    count = compute_threads.reserve_for_workers(2)
    yield count
    compute_threads.release()
    torch.set_num_threads(before)


def test_the_gui_thread_keeps_one_thread_and_workers_get_the_rest(reserved, qtbot):
    assert reserved == 2 and torch.get_num_threads() == 1
    seen: list[int] = []

    class Probe:  # a stream whose first step reports the thread count the worker thread runs with
        def __iter__(self):
            return self

        def __next__(self):
            seen.append(torch.get_num_threads())
            return StepRecord(t=1, sigma=0.1, stop_reason=StopReason.CONVERGED)

    controller = RunController()
    with qtbot.waitSignal(controller.finished, timeout=10_000):
        controller.start(lambda: Probe())
    assert seen == [2]
    assert torch.get_num_threads() == 1  # the worker's count did not leak into the GUI thread

    plain: list[int] = []
    thread = threading.Thread(target=lambda: (compute_threads.enter_worker(), plain.append(torch.get_num_threads())))
    thread.start()
    thread.join()
    assert plain == [2]


def test_nothing_changes_unless_reserved():
    assert compute_threads.worker_threads() is None
    before = torch.get_num_threads()
    compute_threads.enter_worker()
    assert torch.get_num_threads() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is a glibc call")
def test_allocator_tuning_takes_effect_on_glibc_and_is_idempotent():
    import platform

    first = tune_allocator()
    assert tune_allocator() is first
    if platform.libc_ver()[0] == "glibc":
        assert first is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is a glibc call")
def test_freed_memory_is_kept_during_work_and_handed_back_after():
    import platform

    from priorstudio.core.allocator import release_free_memory
    from priorstudio.core.memory import current_rss_bytes

    if platform.libc_ver()[0] != "glibc" or not tune_allocator() or current_rss_bytes() is None:
        pytest.skip("needs glibc and a readable RSS")
    blocks = [bytearray(1 << 20) for _ in range(28)]  # 28 MB of 1 MB blocks: under both thresholds
    full = current_rss_bytes()
    del blocks
    kept = current_rss_bytes()
    assert kept > full - (8 << 20)  # kept for reuse, not handed back block by block
    assert release_free_memory()
    assert current_rss_bytes() < kept - (16 << 20)


def test_the_startup_heap_is_frozen_out_of_full_collections():
    import gc

    from priorstudio.gui.app import freeze_startup_heap

    gc.unfreeze()
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # torch, Qt and pyqtgraph are imported by now
        assert len(gc.get_objects(generation=2)) < frozen // 10  # what a full pass still walks
    finally:
        gc.unfreeze()


def test_step_axis_grows_in_round_chunks_not_with_every_point(qtbot):
    plots = RunPlots()
    qtbot.addWidget(plots)
    plots.new_run(sigma_L=1e-3, ideal=[0.5, 0.4, 0.3])
    ends = []
    for t in range(1, 301):
        plots.append(t, {"sigma": 0.5 / t, "residual_norm": 0.1})
        plots.refresh()
        ends.append(plots.p_sigma.viewRange()[0][1])
    assert sorted(set(ends)) == [10.0, 20.0, 50.0, 100.0, 200.0, 500.0]  # six ranges for 300 steps
    assert all(end >= t for t, end in enumerate(ends, start=1))  # every point is in view


def test_a_layer_covered_whole_by_a_live_frame_is_not_drawn(qtbot):
    from priorstudio.gui.canvas import ImageCanvas

    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.set_photo_size(64, 48)
    photo = np.full((64, 48), 0.5, dtype=np.float32)
    canvas.set_layer("estimate", "photo", photo, keep=False)
    canvas.set_view("estimate")
    items = canvas._pane_a.items
    canvas.set_layer("estimate", "run", photo[:32, :24], QtCore.QRectF(8, 8, 24, 32))  # a crop: photo shows around
    assert items["photo"].isVisible() and items["run"].isVisible()
    canvas.set_layer("estimate", "run", photo, QtCore.QRectF(0, 0, 48, 64))  # the whole photo: nothing under shows
    assert not items["photo"].isVisible() and items["run"].isVisible()
    canvas.remove_layer("estimate", "run")
    assert items["photo"].isVisible()


def test_a_live_frame_s_ready_pixels_are_shown_only_at_the_default_levels(qtbot):
    """The worker makes a frame's 8-bit pixels; the canvas wraps them as they are while the levels are
    (0, 1), and converts the float image itself under other levels (the pixels would be wrong there)."""
    from priorstudio.gui.canvas import ImageCanvas

    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.set_photo_size(16, 8)
    image = np.full((16, 8), 0.25, dtype=np.float32)
    marker = np.full((16, 8), 7, dtype=np.uint8)  # not what 0.25 converts to: shows which path ran

    def shown() -> int:
        return QtGui.QColor(canvas._layers["estimate"]["run"].image.pixel(3, 3)).red()

    canvas.set_layer("estimate", "run", image, pixels=marker)
    assert shown() == 7
    canvas.set_layer("estimate", "run", image)
    assert shown() == 64  # rint(0.25 · 255)
    canvas.set_levels(0.0, 0.5)
    canvas.set_layer("estimate", "run", image, pixels=marker)
    assert shown() == 128  # converted at the new levels, the ready pixels ignored


def test_a_colour_frame_s_pixels_show_its_colours(qtbot):
    """Colour frames come as the screen's 32-bit pixels (B, G, R, 255): the canvas shows the same colours
    as when it converts the float image itself."""
    from priorstudio.gui.canvas import ImageCanvas
    from priorstudio.gui.worker import display_frame

    image = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(3))
    image[0, :, 0, 0] = torch.tensor([1.0, 0.5, 0.0])
    frame = display_frame(7, image)
    assert frame.display.shape == (6, 5, 4) and frame.display.dtype == np.uint8
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.set_photo_size(6, 5)
    canvas.set_layer("estimate", "run", frame.image, pixels=frame.display)
    ready = canvas._layers["estimate"]["run"].image
    canvas.set_layer("estimate", "run", frame.image)
    converted = canvas._layers["estimate"]["run"].image
    assert QtGui.QColor(ready.pixel(0, 0)).getRgb()[:3] == (255, 128, 0)
    for y in range(6):
        for x in range(5):
            assert ready.pixel(x, y) == converted.pixel(x, y)


@pytest.mark.parametrize("channels", [1, 3])
def test_frames_of_a_tensor_and_of_an_array_are_the_same(channels):
    """The torch conversion (for sampler tensors) gives exactly the pixels and floats of the NumPy one:
    values clipped, NaN black in the pixels and kept in the floats, halves rounded to even — in buffers
    of its own, never views of the sampler's."""
    from priorstudio.gui.worker import display_frame

    image = torch.rand(1, channels, 9, 7, generator=torch.Generator().manual_seed(5)) * 1.4 - 0.2
    image[0, 0, 0, 0] = math.nan
    image[0, -1, 1, 1] = 0.5 / 255  # exactly half a level: rounds to even (0)
    image[0, -1, 1, 2] = 1.5 / 255  # (2)
    a, b = display_frame(3, image), display_frame(3, image.numpy().copy())
    np.testing.assert_array_equal(a.display, b.display)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.display.shape == ((9, 7) if channels == 1 else (9, 7, 4))
    assert a.image.flags.c_contiguous and a.display.flags.c_contiguous
    image.fill_(0.25)  # the sampler reuses its buffer: the frame must not change
    assert not np.any(a.image == 0.25)


def test_a_live_frame_moved_or_resized_is_placed_again(qtbot):
    """Frames in the same place only swap pixels; one over another rectangle, or of another size, is
    placed (and scaled) anew, and a layer removed and shown again is placed from scratch."""
    from priorstudio.gui.canvas import ImageCanvas

    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.set_photo_size(64, 48)
    canvas.set_view("estimate")
    items = canvas._pane_a.items
    frame = np.zeros((32, 24), dtype=np.float32)

    def placed() -> QtCore.QRectF:
        item = items["run"]
        return item.mapRectToParent(item.boundingRect())

    canvas.set_layer("estimate", "run", frame, QtCore.QRectF(8, 8, 24, 32))
    assert placed() == QtCore.QRectF(8, 8, 24, 32)
    canvas.set_layer("estimate", "run", frame + 1.0, QtCore.QRectF(8, 8, 24, 32))
    assert placed() == QtCore.QRectF(8, 8, 24, 32)
    assert QtGui.QColor(items["run"].pixmap().toImage().pixel(0, 0)).red() == 255  # the new pixels
    canvas.set_layer("estimate", "run", frame, QtCore.QRectF(16, 0, 24, 32))  # moved
    assert placed() == QtCore.QRectF(16, 0, 24, 32)
    canvas.set_layer("estimate", "run", np.zeros((16, 12), np.float32), QtCore.QRectF(16, 0, 24, 32))  # other size
    assert placed() == QtCore.QRectF(16, 0, 24, 32)
    canvas.remove_layer("estimate", "run")
    canvas.set_layer("estimate", "run", frame, QtCore.QRectF(0, 0, 48, 64))
    assert placed() == QtCore.QRectF(0, 0, 48, 64)


def test_the_values_line_changes_without_re_laying_out_its_panel(qtbot):
    """The values line under the plots gets new text with every redraw during a run; that must repaint the
    line only, not ask the panel (and the dock around it) to lay itself out again."""
    panel = QtWidgets.QWidget()
    qtbot.addWidget(panel)
    layout = QtWidgets.QVBoxLayout(panel)
    plots = RunPlots()
    layout.addWidget(plots)
    layout.addWidget(plots.readout)
    panel.resize(400, 600)
    panel.show()
    qtbot.waitExposed(panel)
    requests = EventCounter(QtCore.QEvent.Type.LayoutRequest)
    panel.installEventFilter(requests)
    for t in range(1, 30):
        plots.append(t, {"sigma": 0.5 / t, "residual_norm": 0.1, "psnr": 10.0})
        plots.refresh()
        QtWidgets.QApplication.processEvents()
        if t == 5:  # the first redraws may size the axes
            requests.count = 0
    assert "t=29" in plots.readout_text()
    assert requests.count == 0
    assert plots.readout.isReadOnly()
    assert plots.readout.cursorPosition() == 0  # a line too long for the dock shows its start


def test_to_bytes_writes_the_same_values_into_a_given_buffer_at_any_levels():
    from priorstudio.gui.canvas import to_bytes

    arr = np.random.default_rng(0).uniform(-0.2, 1.2, (5, 7, 3)).astype(np.float32)
    arr[0, 0, 0] = np.nan
    for levels in ((0.0, 1.0), (0.1, 0.9), (-0.5, 2.0)):
        lo, hi = levels
        expected = np.rint(np.clip(np.nan_to_num((arr - lo) * (255.0 / (hi - lo)), nan=0.0), 0, 255))
        made = to_bytes(arr, levels)
        assert made.dtype == np.uint8 and np.array_equal(made, expected.astype(np.uint8))
        pixels = np.zeros((5, 7, 4), dtype=np.uint8)
        to_bytes(arr, levels, out=pixels[..., 2::-1])
        assert np.array_equal(pixels[..., 2::-1], made) and not pixels[..., 3].any()
    assert to_bytes(arr)[0, 0, 0] == 0  # NaN shows black


@pytest.mark.parametrize(("expected", "end"), [(23, 30.0), (380, 500.0), (5, 10.0), (1244, 1500.0), (95, 120.0)])
def test_a_run_of_known_length_fills_most_of_the_step_axis(qtbot, expected, end):
    """The first step axis leaves ~10% room past the expected end and rounds finely: a ~23-step run is drawn
    on 0–30 (it was 0–50, half the plot empty)."""
    plots = RunPlots()
    qtbot.addWidget(plots)
    plots.new_run(sigma_L=0.01, ideal=0.5 * np.cumprod(np.full(expected + 10, 0.9)), expected_steps=expected)
    assert tuple(plots.p_sigma.vb.viewRange()[0]) == (0.0, end)
