"""The denoiser inspector: A(y)y = D(y) for bias-free nets, matrix-free singular values, dimensionality."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from priorstudio.core.denoisers import BFCNN, BiasFreeUNet, Denoiser
from priorstudio.core.errors import ParameterError
from priorstudio.core.teach.inspector import (
    LocalLinearMap,
    active_row,
    add_noise,
    crop_window,
    denoise_fp32,
    effective_dimensionality,
    estimate_effective_dimensionality,
    explicit_jacobian,
    filter_display,
    filter_sweep,
    jacobian_row,
    leading_singular_values,
    participation_ratio,
    score_display,
    score_image,
)


def _shrinker(bias: bool = False) -> nn.Module:
    """A small non-residual net: its Jacobian has a decaying spectrum, like a denoiser at high noise."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.Conv2d(8, 1, 3, padding=1, bias=bias),
    ).eval()


@pytest.mark.parametrize("make", [lambda: BFCNN(1, 8, 4), lambda: BiasFreeUNet(1, (8, 16))])
def test_row_times_y_is_the_output_pixel_for_bias_free_nets(make):
    torch.manual_seed(0)
    denoiser = Denoiser(make(), fast=False, device="cpu")
    y = torch.rand(1, 12, 12)
    out = denoise_fp32(denoiser, y)
    for pixel in [(0, 0, 0), (0, 5, 7), (0, 11, 3)]:
        row = jacobian_row(denoiser, y, pixel)
        assert row.shape == y.shape
        assert float((row * y).sum()) == pytest.approx(float(out[pixel]), abs=1e-5)


def test_a_bias_breaks_the_identity():
    net = _shrinker(bias=True)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d):
                m.bias.fill_(0.05)
    y = torch.rand(1, 8, 8)
    out = denoise_fp32(net, y)
    row = jacobian_row(net, y, (0, 4, 4))
    assert abs(float((row * y).sum()) - float(out[0, 4, 4])) > 1e-2
    # and its bias-free twin satisfies it
    free = _shrinker(bias=False)
    row = jacobian_row(free, y, (0, 4, 4))
    assert float((row * y).sum()) == pytest.approx(float(denoise_fp32(free, y)[0, 4, 4]), abs=1e-6)


def test_jacobian_row_is_a_row_of_the_explicit_jacobian_and_local():
    net = _shrinker()
    y = torch.rand(1, 8, 8)
    jac = explicit_jacobian(net, y)
    row = jacobian_row(net, y, (0, 2, 3))
    torch.testing.assert_close(row.flatten(), jac[2 * 8 + 3], atol=1e-6, rtol=1e-5)
    # three 3×3 layers: the filter is zero beyond 3 pixels
    assert row[0, 6:, :].abs().max() == 0 and row[0, :, 7:].abs().max() == 0


def test_matvec_and_rmatvec_are_adjoint():
    op = LocalLinearMap(BiasFreeUNet(1, (8, 16)), torch.rand(1, 8, 8))
    v, u = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    lhs = (op.matvec(v) * u).flatten(1).sum(1)
    rhs = (v * op.rmatvec(u)).flatten(1).sum(1)
    torch.testing.assert_close(lhs, rhs, atol=1e-4, rtol=1e-4)


def test_randomized_svd_matches_exact_svd():
    net = _shrinker()
    y = torch.rand(1, 8, 8)
    exact = torch.linalg.svdvals(explicit_jacobian(net, y).double()).float()
    # k + oversample ≥ N: the randomized method is exact up to rounding
    full = leading_singular_values(net, y, 6, oversample=64, power_iterations=0)
    torch.testing.assert_close(full, exact[:6], atol=1e-5, rtol=1e-4)
    # a thin sketch with power iterations gets the leading values within a few percent
    approx = leading_singular_values(net, y, 4, oversample=12, power_iterations=3, seed=3)
    assert torch.all(approx <= exact[:4] * (1 + 1e-4))  # a Rayleigh–Ritz estimate never overshoots
    torch.testing.assert_close(approx[0], exact[0], rtol=0.02, atol=0)
    torch.testing.assert_close(approx, exact[:4], rtol=0.05, atol=0)
    result = leading_singular_values(net, y, 3, oversample=64, return_vectors=True)
    assert result.vectors.shape == (3, 1, 8, 8)
    assert result.effective_dimensionality_lower_bound <= effective_dimensionality(exact) + 1e-6


def test_effective_dimensionality_of_a_projection_is_its_rank():
    q, _ = torch.linalg.qr(torch.randn(50, 7, dtype=torch.float64))
    s = torch.linalg.svdvals(q @ q.T)
    assert effective_dimensionality(s) == pytest.approx(7, abs=1e-9)
    assert participation_ratio(s) == pytest.approx(7, abs=1e-6)
    assert participation_ratio(torch.zeros(3)) == 0.0


def test_hutchinson_estimate_matches_frobenius_norm():
    net = _shrinker()
    y = torch.rand(1, 8, 8)
    exact = float((explicit_jacobian(net, y).double() ** 2).sum())
    estimate = estimate_effective_dimensionality(net, y, probes=256, seed=0)
    assert estimate == pytest.approx(exact, rel=0.15)


def test_score_and_displays():
    denoiser = Denoiser(BFCNN(1, 8, 3), fast=False, device="cpu")
    y = torch.rand(1, 1, 8, 8)
    s = score_image(denoiser, y)
    torch.testing.assert_close(s, denoiser(y) - y)
    assert score_image(_shrinker(), y[0]).shape == (1, 8, 8)
    shown = score_display(torch.tensor([-2.0, 0.0, 1.0]))
    torch.testing.assert_close(shown, torch.tensor([0.0, 0.5, 0.75]))
    assert filter_display(torch.zeros(4)).eq(0.5).all()


def test_noise_helper_and_window():
    x = torch.zeros(1, 6, 6)
    a, b = add_noise(x, 0.1, seed=4), add_noise(x, 0.2, seed=4)
    torch.testing.assert_close(2 * a, b)  # same pattern, scaled: what the noise slider relies on
    with pytest.raises(ParameterError):
        add_noise(x, -1)
    assert crop_window((100, 80), (50, 40), 32) == (slice(34, 66), slice(24, 56))
    assert crop_window((100, 80), (2, 79), 32) == (slice(0, 32), slice(48, 80))
    assert crop_window((10, 10), (5, 5), 32) == (slice(0, 10), slice(0, 10))


def test_input_checks():
    net = _shrinker()
    with pytest.raises(ParameterError):
        jacobian_row(net, torch.rand(1, 8, 8), (0, 8, 0))
    with pytest.raises(ParameterError):
        jacobian_row(net, torch.rand(2, 1, 8, 8), (0, 0, 0))
    with pytest.raises(ParameterError):
        leading_singular_values(net, torch.rand(1, 8, 8), 0)


def test_score_tap_records_each_call():
    from priorstudio.core.teach.inspector import ScoreTap

    denoiser = Denoiser(BFCNN(1, 8, 3), fast=False, device="cpu")
    tap = ScoreTap(denoiser)
    assert tap.channels == 1 and tap.device.type == "cpu" and tap.name == denoiser.name
    assert tap.description == denoiser.description
    ys = [torch.rand(2, 1, 8, 8) for _ in range(3)]
    outs = [tap(y) for y in ys]
    assert tap.calls == 3 and len(tap.history) == 3
    torch.testing.assert_close(outs[1], denoiser(ys[1]))
    torch.testing.assert_close(tap.score_at(2), outs[1] - ys[1], atol=2e-3, rtol=1e-2)  # float16 storage
    torch.testing.assert_close(tap.latest, outs[2] - ys[2])


def test_filter_sweep_uses_one_noise_pattern_and_keeps_the_identity():
    net = _shrinker()
    x = torch.rand(1, 10, 10)
    sigmas = [0.05, 0.2, 0.6]
    rows = filter_sweep(net, x, (0, 4, 5), sigmas, seed=7)
    assert rows.shape == (3, 1, 10, 10)
    for row, s in zip(rows, sigmas):
        y = add_noise(x, s, seed=7)  # the slider's image at that level
        torch.testing.assert_close(row, jacobian_row(net, y, (0, 4, 5)))
        assert float((row * y).sum()) == pytest.approx(float(denoise_fp32(net, y)[0, 4, 5]), abs=1e-5)
    z = torch.randn(1, 10, 10)
    torch.testing.assert_close(
        filter_sweep(net, x, (0, 4, 5), [0.3], noise=z)[0], jacobian_row(net, x + 0.3 * z, (0, 4, 5))
    )
    with pytest.raises(ParameterError):
        filter_sweep(net, x, (0, 4, 5), [])
    with pytest.raises(ParameterError):
        filter_sweep(net, x, (0, 4, 5), [0.1], noise=torch.zeros(1, 4, 4))


def test_active_row_follows_the_samples_still_running():
    last_steps = [5, 2, 9, 2]  # samples 1 and 3 stop after step 2, sample 0 after step 5
    assert [active_row(last_steps, 1, k) for k in range(4)] == [0, 1, 2, 3]
    assert [active_row(last_steps, 3, k) for k in range(4)] == [0, None, 1, None]
    assert [active_row(last_steps, 7, k) for k in range(4)] == [None, None, 0, None]


def test_score_tap_gives_each_sample_its_own_score_as_samples_stop():
    """Fed the batches a sampler feeds it (only the samples still running), the tap finds sample k."""
    from priorstudio.core.teach.inspector import ScoreTap

    tap = ScoreTap(lambda y: 0.5 * y)  # score = −y/2: each row tells which sample and step it was
    last_steps = [3, 1, 4]

    def state(k: int, t: int) -> torch.Tensor:
        return torch.full((1, 2, 2), float(10 * k + t))

    for t in range(1, 5):
        running = [k for k in range(3) if last_steps[k] >= t]
        tap(torch.stack([state(k, t) for k in running]))
    for k in range(3):
        for t in range(1, last_steps[k] + 1):
            step, score = tap.sample_score(t, k, last_steps)
            assert step == t
            torch.testing.assert_close(score, -0.5 * state(k, t))
    step, score = tap.sample_score(4, 1, last_steps)  # after sample 1 stopped: its last score
    assert step == 1 and float(score.mean()) == pytest.approx(-0.5 * 11)
    with pytest.raises(ParameterError):
        tap.sample_score(1, 3, last_steps)


def test_score_tap_never_fails_a_run_over_its_memory_cap():
    from priorstudio.core.teach.history import FrameHistory
    from priorstudio.core.teach.inspector import ScoreTap

    tap = ScoreTap(lambda y: y, FrameHistory(max_bytes=100, dtype="float16"))
    out = tap(torch.zeros(1, 1, 16, 16))  # 512 bytes a frame: cannot be kept
    assert out.shape == (1, 1, 16, 16) and tap.calls == 1 and len(tap.history) == 0
    assert "memory cap" in tap.dropped and tap.latest is not None


def _counting(history):
    """``history`` with the steps of its pushes recorded in ``history.pushed_steps``."""
    history.pushed_steps = []
    push = history.push

    def counted(t, image, scalars=None):
        history.pushed_steps.append(t)
        push(t, image, scalars)

    history.push = counted
    return history


def test_score_tap_makes_only_the_scores_the_history_keeps():
    from priorstudio.core.teach.history import FrameHistory
    from priorstudio.core.teach.inspector import ScoreTap

    reference = FrameHistory(dtype="float16", max_frames=8)  # what keeping every score would keep
    tap = ScoreTap(lambda y: 0.5 * y, _counting(FrameHistory(dtype="float16", max_frames=8)), clock=lambda: 0.0)
    on_grid = []
    for t in range(1, 121):
        y = torch.full((1, 1, 2, 2), float(t))
        on_grid.append(reference.next_on_grid())
        reference.push(t, -0.5 * y)
        tap(y)
    history = tap.history
    assert history.pushed_steps == [t for t, kept in enumerate(on_grid, 1) if kept]  # time stands still
    assert len(history.pushed_steps) < 30 and tap.calls == 120
    grid = [f.t for f in reference.frames() if f.index % reference.interval == 0]
    assert set(grid) <= set(history.steps()) and tap.latest_t == history.steps()[-1] < 120
    tap.flush()  # the run ended: its last step's score is made now
    assert history.steps() == reference.steps() == [*grid, 120] and tap.latest_t == 120
    for frame in history.frames():
        assert float(frame.image().mean()) == -0.5 * frame.t
    tap.flush()
    assert history.pushed_steps.count(120) == 1


def test_score_tap_refreshes_the_latest_score_a_few_times_a_second():
    from priorstudio.core.teach.history import FrameHistory
    from priorstudio.core.teach.inspector import ScoreTap

    now = [0.0]
    history = _counting(FrameHistory(dtype="float16", max_frames=4))
    tap = ScoreTap(lambda y: 0.5 * y, history, latest_every_s=0.2, clock=lambda: now[0])
    for t in range(1, 201):
        now[0] = t / 16  # a step every 62.5 ms: a fresh latest score every 4 steps
        tap(torch.full((1, 1, 2, 2), float(t)))
        assert t - tap.latest_t < 4 and history.latest().t == tap.latest_t
        torch.testing.assert_close(tap.latest, torch.full((1, 1, 2, 2), -0.5 * tap.latest_t))
    assert len(history.pushed_steps) <= 200 // 4 + 10  # a quarter of the steps, plus a few on the grid


def test_score_tap_skipping_keeps_each_samples_score_in_a_batch():
    """Thinned and skipping, the tap still finds sample k's row in the batches of the samples still running."""
    from priorstudio.core.teach.history import FrameHistory
    from priorstudio.core.teach.inspector import ScoreTap

    tap = ScoreTap(lambda y: 0.5 * y, _counting(FrameHistory(dtype="float16", max_frames=5)), clock=lambda: 0.0)
    last_steps = [40, 13, 37]

    def state(k: int, t: int) -> torch.Tensor:
        return torch.full((1, 2, 2), float(100 * k + t))

    for t in range(1, 41):
        running = [k for k in range(3) if last_steps[k] >= t]
        tap(torch.stack([state(k, t) for k in running]))
    tap.flush()
    assert len(tap.history.pushed_steps) < 20 and tap.history.interval > 1
    checked = 0
    for k in range(3):
        for frame in tap.history.frames():
            if frame.t > last_steps[k]:
                continue
            step, score = tap.sample_score(frame.t, k, last_steps)
            assert step == frame.t
            torch.testing.assert_close(score, -0.5 * state(k, step))
            checked += 1
    assert checked >= 8
