"""The run history: bounded memory, even coverage, first and latest kept, compact storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from priorstudio.core.errors import ParameterError, ResourceLimitError
from priorstudio.core.samplers.base import StepRecord
from priorstudio.core.teach.history import FrameHistory, KeepPolicy


def _frame(value: float, shape=(1, 4, 4)) -> torch.Tensor:
    return torch.full(shape, value)


def test_memory_never_exceeds_cap_over_10000_pushes_and_coverage_stays_even():
    frame_bytes = 16  # 1×4×4 uint8
    history = FrameHistory(max_bytes=100 * frame_bytes)
    image = _frame(0.5)
    for t in range(10_000):
        history.push(t, image, {"sigma": 1.0 / (t + 1)})
        assert history.memory_bytes <= history.max_bytes
        if t % 997 == 0 or t == 9_999:
            frames = history.frames()
            assert frames[0].t == 0
            assert frames[-1].t == t
            grid = [f.t for f in frames[:-1]] if frames[-1].index % history.interval else [f.t for f in frames]
            gaps = np.diff(grid)
            assert (gaps == history.interval).all(), (t, grid[:5], history.interval)
            assert t - grid[-1] < history.interval  # the latest sits within one spacing of the grid
    # thinning keeps it reasonably full: at least a quarter of the cap is in use
    assert len(history) >= 25
    assert history.interval & (history.interval - 1) == 0  # a power of two
    assert history.pushed == 10_000


def test_frame_cap_holds_at_every_push_and_coverage_stays_even():
    history = FrameHistory(max_bytes=1 << 30, max_frames=50)  # the memory cap never binds here
    image = _frame(0.5)
    for t in range(5_000):
        history.push(t, image)
        assert len(history) <= 50
    frames = history.frames()
    assert frames[0].t == 0 and frames[-1].t == 4_999
    grid = [f.t for f in frames if f.index % history.interval == 0]
    assert (np.diff(grid) == history.interval).all()
    assert len(history) >= 25  # thinning halves: never below half the cap
    assert history.memory_bytes == len(history) * 16


def test_frame_cap_below_two_refused():
    with pytest.raises(ParameterError, match="at least 2 frames"):
        FrameHistory(max_frames=1)


def test_first_and_latest_kept_and_nearest():
    history = FrameHistory(max_bytes=10 * 16)
    for t in range(1, 51):
        history.push(t, _frame(t / 100), {"sigma": 0.5, "h": 0.1})
    assert history.first().t == 1
    assert history.latest().t == 50
    assert history.latest().sigma == 0.5
    assert history.nearest(1000).t == 50
    assert history.nearest(-3).t == 1
    steps = history.steps()
    mid = history.nearest(25)
    assert abs(mid.t - 25) == min(abs(s - 25) for s in steps)
    np.testing.assert_allclose(history.latest().image(), np.full((1, 4, 4), 0.5), atol=1 / 255)


def test_storage_dtypes_compact_and_faithful():
    x = torch.linspace(-0.5, 1.5, 64).reshape(1, 1, 8, 8)
    h8 = FrameHistory(dtype="uint8")
    h8.push(0, x)
    h16 = FrameHistory(dtype="float16")
    h16.push(0, x)
    f8, f16 = h8.latest(), h16.latest()
    assert f8.data.dtype == np.uint8 and f8.nbytes == 64
    assert f16.data.dtype == np.float16 and f16.nbytes == 128
    np.testing.assert_allclose(f8.image(), x.clamp(0, 1).numpy(), atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(f16.image(), x.numpy(), atol=2e-3)  # values outside [0, 1] survive
    assert f16.tensor().shape == (1, 1, 8, 8)


def test_pushed_frames_are_copies():
    x = torch.zeros(1, 4, 4)
    h = FrameHistory(dtype="float16")
    h.push(0, x)
    x += 1
    assert h.latest().image().max() == 0


def test_push_record_and_scalars():
    h = FrameHistory()
    assert not h.push_record(StepRecord(t=1, sigma=0.3))
    assert h.push_record(StepRecord(t=2, sigma=0.3, h=0.02, gamma=0.1, image=torch.rand(2, 1, 4, 4)))
    frame = h.latest()
    assert frame.t == 2 and frame.data.shape == (2, 1, 4, 4)
    assert frame.scalars["h"] == pytest.approx(0.02) and "psnr" not in frame.scalars


def test_evenly_spaced_includes_ends():
    h = FrameHistory()
    for t in range(37):
        h.push(t, _frame(0.1))
    picks = h.evenly_spaced(5)
    assert picks[0].t == 0 and picks[-1].t == 36 and len(picks) == 5
    assert len(h.evenly_spaced(100)) == 37


def test_errors_and_clear():
    with pytest.raises(ParameterError):
        FrameHistory(dtype="float32")  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        FrameHistory(max_bytes=0)
    h = FrameHistory(max_bytes=20)
    with pytest.raises(ResourceLimitError):
        h.push(0, _frame(0.1))  # 16 bytes: two frames do not fit in 20
    h = FrameHistory(max_bytes=1000)
    h.push(0, _frame(0.1))
    assert len(h) == 1 and "1 frames" in h.describe()
    h.clear()
    assert len(h) == 0 and h.memory_bytes == 0
    with pytest.raises(LookupError):
        h.nearest(0)


def test_skipped_pushes_keep_the_grid_of_pushing_every_frame():
    """A producer that makes only the frames :meth:`next_on_grid` asks for ends with the same grid."""
    full = FrameHistory(max_frames=6)
    sparse = FrameHistory(max_frames=6)
    made = 0
    for t in range(1, 201):
        image = torch.full((1, 2, 2), t / 200)
        full.push(t, image)
        if sparse.next_on_grid():
            sparse.push(t, image)
            made += 1
        else:
            sparse.skip()
    grid = [f.t for f in full.frames() if f.index % full.interval == 0]
    assert sparse.steps() == grid and sparse.pushed == full.pushed == 200
    assert made < 40  # the frames that could never be kept were not made
    assert FrameHistory().next_on_grid(10**9)  # an empty history keeps its first frame, whatever its size


def test_history_sink_keeps_the_same_frames_but_compacts_only_those_it_keeps():
    """Fed every record of a run, the sink keeps the frames a plain push of every record keeps (the same
    steps), compacts few more than those, and after flush() ends with the run's last step."""
    from types import SimpleNamespace

    from priorstudio.core.teach.history import HistorySink

    def records(n: int):
        for t in range(1, n + 1):
            yield SimpleNamespace(t=t, image=torch.full((1, 8, 8), t / n), scalars=lambda t=t: {"sigma": 1 / t})

    plain = FrameHistory(64 * 20, max_frames=12)
    for r in records(300):
        plain.push_record(r)
    kept = FrameHistory(64 * 20, max_frames=12)
    pushes = []
    original = kept.push_record
    kept.push_record = lambda r: pushes.append(r.t) or original(r)
    sink = HistorySink(kept, clock=lambda: 0.0)  # the clock stands still: only grid frames are due
    for r in records(300):
        sink(r)
    assert kept.steps() == plain.steps()[:-1]  # the same grid; no latest slot until flush
    assert len(pushes) < 40  # not 300 compactions
    sink.flush()
    assert kept.steps()[-1] == 300 and kept.latest().t == 300
    assert float(kept.latest().image().mean()) == pytest.approx(1.0, abs=1 / 255)


def test_keep_policy_keeps_grid_frames_a_live_one_a_few_times_a_second_and_forced_ones():
    history = FrameHistory(max_bytes=1 << 30, max_frames=4)  # a grid that thins out as frames come
    now = [0.0]
    policy = KeepPolicy(history, latest_every_s=0.2, clock=lambda: now[0])
    kept = []
    for n in range(40):
        now[0] += 0.01  # 100 frames a second: the live view alone would keep one in 20
        keep = policy.keep(64, force=n == 39)
        kept.append(keep)
        if keep:
            history.push(n, torch.zeros(4, 4))
        else:
            history.skip()
    on_grid = [f.index for f in history._grid]
    assert kept[0] and kept[-1]  # the first (due) and the forced last
    assert 3 <= sum(kept) < 20  # far fewer than all, more than the live view alone
    assert all(kept[i] for i in on_grid)  # every frame the grid holds was made
    now[0] += 1.0
    assert policy.keep(64, grid=False)  # due again
    assert not policy.keep(64, grid=False)  # not on the grid's say-so when told to ignore it
