"""Non-local filters: normalisation, linearity, twicing's limit, and the NTK kernel against a wide network."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from priorstudio.core.errors import ParameterError
from priorstudio.core.metrics import psnr
from priorstudio.core.operators import make_operator
from priorstudio.core.samplers.base import StopReason
from priorstudio.core.samplers.nonlocal_filters import (
    INVERSE_SIGMA_FLOOR,
    TwicingParams,
    build_filter,
    estimate_noise_sigma,
    fill_holes,
    filter_image,
    ntk_kernel_vectors,
    twicing_sampler,
    window_taper,
)


def image(c: int = 1, size: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((1, c, 3, 3), generator=g)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0]
    return (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("kernel", ["nlm", "ntk"])
def test_rows_sum_to_one_and_table_shape(kernel):
    y = image(3, 12)
    f = build_filter(y, kernel=kernel, patch=3, window=5)
    assert f.table.shape == (12 * 12, 25)
    assert torch.allclose(f.table.sum(1), torch.ones(144), atol=1e-5)
    assert float(f.table.min()) >= 0
    dense = f.to_dense()
    assert torch.allclose(dense.sum(1), torch.ones(144), atol=1e-5)
    # a constant image is left unchanged
    assert torch.allclose(f.apply(torch.full((3, 12, 12), 0.7)), torch.full((3, 12, 12), 0.7), atol=1e-5)


@pytest.mark.parametrize("kernel", ["nlm", "ntk"])
def test_filter_is_linear_in_the_image_it_is_applied_to(kernel):
    f = build_filter(image(1, 14), kernel=kernel, patch=3, window=7)
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 1, 14, 14, generator=g)
    lhs = f.apply(2.5 * a - 0.7 * b)
    assert torch.allclose(lhs, 2.5 * f.apply(a) - 0.7 * f.apply(b), atol=1e-5)
    # and apply agrees with the dense matrix
    dense = f.to_dense()
    assert torch.allclose(f.apply(a).reshape(-1), dense @ a.reshape(-1), atol=1e-5)


def test_neighbours_outside_the_image_get_no_weight():
    f = build_filter(image(1, 8), patch=3, window=5)
    corner = f.table[0].view(5, 5)  # pixel (0, 0): offsets with dy < 0 or dx < 0 fall outside
    assert float(corner[:2].abs().sum()) == 0 and float(corner[:, :2].abs().sum()) == 0


def test_twicing_converges_to_the_noisy_image():
    """Window covering the whole 8×8 image and no noise offset: K is a full Gaussian Gram matrix (positive
    definite), so W = D⁻¹K is similar to D^-½KD^-½ and its eigenvalues lie in (0, 1]."""
    y = image(1, 8, seed=4)
    p = TwicingParams(
        kernel="nlm", patch=3, window=15, sigma=0.05, h_factor=2.0, noise_offset=False, max_steps=400, emit_every=0
    )
    run = twicing_sampler(None, None, p, init=y)
    eig = torch.linalg.eigvals(run.filter.to_dense().double())
    assert float(eig.imag.abs().max()) < 1e-6
    assert float(eig.real.min()) > 0 and float(eig.real.max()) <= 1 + 1e-6
    recs = list(run)
    errors = [r.residual_norm for r in recs]
    assert errors[-1] < 1e-3 * errors[0]
    assert torch.allclose(recs[-1].image[0], y, atol=2e-3)


@pytest.mark.parametrize("kernel", ["nlm", "ntk"])
def test_tapered_window_keeps_eigenvalues_in_zero_one(kernel):
    """A 5×5 window on a 10×10 image: the triangular taper keeps K positive semi-definite (Schur product)."""
    f = build_filter(image(1, 10, seed=5), kernel=kernel, patch=3, window=5)
    eig = torch.linalg.eigvals(f.to_dense().double())
    assert float(eig.imag.abs().max()) < 1e-6
    assert float(eig.real.min()) > -1e-6 and float(eig.real.max()) <= 1 + 1e-6


def test_a_hard_square_window_would_give_negative_eigenvalues():
    """Why the taper: the same filter with a flat window (a box, whose spectrum has negative lobes)."""
    y = image(1, 10, seed=5)
    f = build_filter(y, patch=3, window=5)
    taper = torch.tensor([window_taper(dy, dx, 2) for dy, dx in f.offsets]).view(-1, 1, 1)
    flat = f._w / taper
    flat = flat / flat.sum(0)
    from priorstudio.core.samplers.nonlocal_filters import NonLocalFilter

    eig = torch.linalg.eigvals(NonLocalFilter(flat, 5, (10, 10)).to_dense().double())
    assert float(eig.real.min()) < -0.05


def test_first_twicing_step_is_the_plain_filter():
    y = image(3, 12)
    p = TwicingParams(patch=3, window=5, max_steps=3)
    run = twicing_sampler(None, None, p, init=y)
    recs = list(run)
    assert torch.allclose(recs[0].image[0], run.filter.apply(y).clamp(0, 1), atol=1e-6)
    assert torch.allclose(filter_image(y, patch=3, window=5), run.filter.apply(y), atol=1e-6)
    assert [r.t for r in recs] == [1, 2, 3] and recs[-1].stop_reason == StopReason.STEP_CAP


def test_twicing_psnr_rises_on_a_noisy_smooth_image():
    g = torch.Generator().manual_seed(0)
    clean = F.interpolate(torch.rand((1, 1, 4, 4), generator=g), size=(24, 24), mode="bilinear")[0]
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g)
    p = TwicingParams(patch=3, window=7, max_steps=4)
    recs = list(twicing_sampler(None, None, p, init=noisy, truth=clean))
    from priorstudio.core.metrics import psnr

    assert recs[0].psnr > psnr(noisy.clamp(0, 1), clean) + 3
    assert recs[-1].ssim is not None


def test_twicing_with_an_operator_and_refreshed_weights():
    x = image(1, 16)
    missing = torch.zeros(16, 16, dtype=torch.bool)
    missing[5:10, 5:10] = True
    op = make_operator("inpaint", (1, 16, 16), missing=missing)
    c = op.forward(x.unsqueeze(0))
    p = TwicingParams(patch=3, window=5, max_steps=30, refresh_every=10, emit_every=0)
    recs = list(twicing_sampler(op, c, p, truth=x))
    assert recs[-1].data_error < recs[0].data_error
    assert recs[-1].image.shape == (1, 1, 16, 16)


def test_fill_holes_keeps_the_known_pixels_and_averages_the_ones_near():
    g = torch.Generator().manual_seed(2)
    x = torch.rand((1, 2, 20, 24), generator=g)
    known = torch.rand((2, 20, 24), generator=g) < 0.3
    filled = fill_holes(x, known, width=1.5)
    assert torch.equal(filled[0][known], x[0][known])
    holes = ~known
    assert bool((filled[0][holes] >= x.min()).all() and (filled[0][holes] <= x.max()).all())
    flat = fill_holes(torch.full((1, 1, 9, 9), 0.3), torch.rand((1, 9, 9), generator=g) < 0.2)
    assert torch.allclose(flat, torch.full_like(flat, 0.3))
    # a hole beyond the Gaussian's reach gets the mean of the known pixels, not mid-gray
    lone = torch.zeros((1, 40, 40), dtype=torch.bool)
    lone[0, 0, :2] = True
    img = torch.zeros((1, 1, 40, 40))
    img[0, 0, 0, :2] = torch.tensor([0.9, 0.7])
    far = fill_holes(img, lone, width=1.0)
    assert float(far[0, 0, 39, 39]) == pytest.approx(0.8)


def test_nlm_twicing_fills_sparse_random_pixels():
    """Noise-free, 10% of the pixels: nothing to estimate σ from, so the floor keeps W from being I."""
    g = torch.Generator().manual_seed(3)
    x = F.interpolate(torch.rand((1, 1, 5, 5), generator=g), size=(32, 32), mode="bilinear")[0]
    op = make_operator("random_pixels", (1, 32, 32), fraction=0.1, seed=0)
    c = op.forward(x.unsqueeze(0))
    run = twicing_sampler(op, c, TwicingParams(patch=3, window=9, max_steps=20, emit_every=0), truth=x)
    recs = list(run)
    assert run.sigma == INVERSE_SIGMA_FLOOR
    observed = psnr(op.observed_image(c)[0].clamp(0, 1), x)
    assert recs[-1].psnr > observed + 3  # with mid-gray holes as the guide and σ = 0 it gained 0.002 dB


def test_refreshed_nlm_filter_keeps_the_data_noise_level():
    """Re-estimated from a smoothed estimate the noise level would collapse and W would approach I."""
    g = torch.Generator().manual_seed(1)
    clean = F.interpolate(torch.rand((1, 1, 6, 6), generator=g), size=(48, 48), mode="bilinear")[0]
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g)
    fixed = TwicingParams(patch=3, window=7, max_steps=5)
    refreshed = TwicingParams(patch=3, window=7, max_steps=5, refresh_every=2)
    run = twicing_sampler(None, None, refreshed, init=noisy, truth=clean)
    recs = list(run)
    assert run.sigma == pytest.approx(estimate_noise_sigma(noisy))
    plain = list(twicing_sampler(None, None, fixed, init=noisy, truth=clean))
    assert recs[2].psnr > plain[2].psnr - 1.0  # one refresh in: still averaging, not back at the noise
    assert recs[2].psnr > recs[-1].psnr - 0.5 and recs[2].psnr > 25.0


def test_measurement_and_truth_shapes_are_checked():
    x = image(3, 12)
    op = make_operator("super_resolution", (3, 12, 12), factor=2)
    c = op.forward(x.unsqueeze(0))
    p = TwicingParams(patch=3, window=5, max_steps=2)
    assert torch.equal(list(twicing_sampler(op, c[0], p))[-1].image, list(twicing_sampler(op, c, p))[-1].image)
    with pytest.raises(ParameterError, match="measurement has shape"):
        twicing_sampler(op, c[:, :1], p)
    with pytest.raises(ParameterError, match="truth has shape"):
        twicing_sampler(op, c, p, truth=x[:, :8])


def test_stop_and_validation():
    y = image(1, 10)
    run = twicing_sampler(None, None, TwicingParams(patch=3, window=5, max_steps=50), init=y)
    next(run)
    run.stop()
    assert next(run).stop_reason == StopReason.CANCELLED
    for bad in ({"patch": 4}, {"window": 0}, {"kernel": "bm3d"}, {"step_size": 2.5}):
        with pytest.raises(ParameterError):
            TwicingParams(**bad).validate()
    with pytest.raises(ParameterError, match="init"):
        twicing_sampler(None, None, TwicingParams())


def test_noise_estimate():
    g = torch.Generator().manual_seed(0)
    noise = 0.1 * torch.randn((1, 64, 64), generator=g) + 0.5
    assert estimate_noise_sigma(noise) == pytest.approx(0.1, rel=0.1)


# -- the neural tangent link --------------------------------------------------------------------------------
def test_ntk_kernel_is_the_gradient_inner_product_of_a_wide_relu_layer():
    """k(y_i, y_j) = ⟨∂f/∂v (y_i), ∂f/∂v (y_j)⟩ for f(y) = √(2/m) Σ v_k relu(w_kᵀy), w_k ~ N(0, I), m → ∞.

    Monte Carlo with m = 200 000 hidden units, gradients by autograd, for pairs of 3×3 patches at angles
    from nearly parallel to opposite.
    """
    torch.manual_seed(0)
    d, m = 9, 200_000
    hidden = torch.nn.Linear(d, m, bias=False)
    out = torch.nn.Linear(m, 1, bias=False)
    torch.nn.init.normal_(hidden.weight, 0.0, 1.0)
    torch.nn.init.normal_(out.weight, 0.0, 1.0)

    def f(y: torch.Tensor) -> torch.Tensor:
        return math.sqrt(2 / m) * out(torch.relu(hidden(y))).sum()

    def grad(y: torch.Tensor) -> torch.Tensor:
        out.weight.grad = None
        f(y).backward()
        return out.weight.grad.flatten().clone()

    g = torch.Generator().manual_seed(1)
    a = torch.rand(d, generator=g)
    pairs = [
        (a, a + 0.05 * torch.randn(d, generator=g)),
        (a, torch.rand(d, generator=g)),
        (a, torch.randn(d, generator=g)),
        (a, -a + 0.3 * torch.randn(d, generator=g)),
        (2 * a, 0.5 * a),
    ]
    for yi, yj in pairs:
        empirical = float(grad(yi) @ grad(yj))
        closed = float(ntk_kernel_vectors(yi, yj))
        scale = float(yi.norm() * yj.norm())
        assert empirical == pytest.approx(closed, abs=0.02 * scale), (empirical, closed)


def test_ntk_filter_weights_are_the_kernel_between_patches():
    """Inside the image, W_ij ∝ taper(i − j)·k(patch_i, patch_j) with the explicit patches (replicated border)."""
    y = image(2, 10, seed=7)
    f = build_filter(y, kernel="ntk", patch=3, window=5)
    padded = F.pad(y.unsqueeze(0), (1, 1, 1, 1), mode="replicate")[0]

    def patch(i: int, j: int) -> torch.Tensor:
        return padded[:, i : i + 3, j : j + 3].reshape(-1)

    i, j = 4, 5
    row = f.table[i * 10 + j].view(5, 5)
    ref = float(ntk_kernel_vectors(patch(i, j), patch(i, j)))
    for dy, dx in ((-2, -2), (0, 1), (1, -1), (2, 2)):
        k = float(ntk_kernel_vectors(patch(i, j), patch(i + dy, j + dx)))
        expected = k * window_taper(dy, dx, 2) / ref
        assert float(row[dy + 2, dx + 2] / row[2, 2]) == pytest.approx(expected, rel=1e-4)


def test_a_nan_keeps_the_estimate_of_the_step_before():
    """A filter that turns NaN at step 3: the last record says so and carries step 2's estimate."""
    y = image(1, 12)
    p = TwicingParams(patch=3, window=5, max_steps=10, emit_every=1)
    run = twicing_sampler(None, None, p, init=y)
    real, calls = run.filter, []

    class Failing:
        def apply(self, r: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            out = real.apply(r)
            return torch.full_like(out, math.nan) if len(calls) == 3 else out

    run.filter = Failing()
    recs = list(run)
    assert [r.t for r in recs] == [1, 2, 3] and recs[-1].stop_reason is StopReason.DIVERGED_NAN
    assert recs[-1].image is not None and torch.equal(recs[-1].image, recs[1].image)


def test_a_parameter_error_names_its_field():
    """The form points at the field an error names: twicing's errors named none."""
    for changes, field in (({"patch": 4}, "patch"), ({"window": 6}, "window"), ({"step_size": 5.0}, "step_size")):
        with pytest.raises(ParameterError) as info:
            TwicingParams(**changes).validate()
        assert info.value.field == field
