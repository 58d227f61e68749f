"""The implicit-prior sampler on a prior whose answer we know: x ~ N(μ, Σ) on 1×8×8 images (N = 64).

The denoiser is the exact least-squares one, made blind the way a trained network is (σ read off y), so
every deviation from the prior's statistics is the algorithm's own. It is a stochastic ascent, not an exact
sampler, so the checks are bands, each with the figure measured when it was set (seed 0, 2000 samples run
as one batch):

- isotropic Σ = 0.01·I, β = 0.5: largest |mean − μ| 0.0071; variance ratio per direction 0.932 on average
  (0.87–1.03 per direction: a 2000-sample variance has a 3.2% standard error).
- eigenvalues log-spaced over two decades, 0.001–0.1, β = 0.5: ratio 0.72–1.00 per direction, 0.78 for
  the 8 smallest and 0.92 for the 8 largest eigenvalues.
- iterations 31.7 / 45.1 / 98.6 for β = 1 / 0.5 / 0.1 (the issue: ≈ 30 / 44 / 99), with Σ = 1e-4·I, and
  σ_{t+1}/σ_t within 1.5% of 1 − βh_t while σ_t > 0.05. This needs a prior the blind estimate can resolve
  down to σ_L: from 64 values it reads σ² only to ≈ λ·√(2/N), so with Σ = 0.01·I σ̂ hits zero early and the
  runs end sooner (27.6 / 35.0 / 58.6 steps). Conversely the final D(y) at σ_L shrinks a prior of
  variance 1e-4 by λ/(λ + σ_L²) ≈ ½, so variances are checked on the larger prior.
- half the values measured (left half of the image, eigenvalues 0.001–0.1, β = 0.5): measured part
  reproduced to 3e-8 (float32) with the final projection; without it max error 0.054, RMS 0.0125. The
  unmeasured mean goes about half-way from μ to the conditional mean (relative distance left 0.51 at
  β = 0.5, 0.42 at β = 0.1): the published update keeps the measured part at noise ≈ σ√(1 − β), less than
  the σ the denoiser assumes, so it under-weights the data; smaller β and more steps bring it closer.

Small tensors make the two CPU threads fight on a loaded machine (measured 20× slower than one thread),
so this module runs on one thread and restores the setting afterwards.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from priorstudio.core.operators import Inpaint
from priorstudio.core.samplers import (
    GaussianBlindDenoiser,
    GaussianPrior,
    ImplicitPriorParams,
    StopReason,
    implicit_prior_sampler,
)

SHAPE = (1, 8, 8)
N = 64
K = 2000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_sampler(prior: GaussianPrior, beta: float, operator=None, measurement=None, k: int = K, **params):
    """All records of one run (images only in the last), and the run (for per-sample steps)."""
    den = GaussianBlindDenoiser(prior, SHAPE)
    params.setdefault("divergence_patience", 20)  # 8×8: σ_t wanders too much for the default of 10
    p = ImplicitPriorParams(beta=beta, seed=0, emit_every=0, **params)
    run = implicit_prior_sampler(
        den, operator, measurement, p, batch=k, image_shape=SHAPE if operator is None else None, dtype=torch.float64
    )
    records = list(run)
    return records, run


def samples_of(records) -> torch.Tensor:
    last = records[-1]
    assert last.stop_reason is StopReason.CONVERGED, last.message
    return last.image.double().reshape(last.image.shape[0], -1)


def variance_ratios(prior: GaussianPrior, x: torch.Tensor) -> torch.Tensor:
    """Sample variance along each eigen-direction of Σ over the prior's variance there (ascending λ)."""
    z = (x - prior.mean) @ prior.eigenvectors
    return z.var(0) / prior.eigenvalues


# -- priors and their runs, shared by the tests ---------------------------------------------------------
@pytest.fixture(scope="module")
def isotropic() -> GaussianPrior:
    return GaussianPrior.isotropic(N, 0.5, 0.01)


@pytest.fixture(scope="module")
def spread() -> GaussianPrior:
    return GaussianPrior.with_spectrum(0.5, torch.logspace(-3, -1, N, dtype=torch.float64), seed=1)


@pytest.fixture(scope="module")
def fine() -> GaussianPrior:
    """Small enough that the blind σ estimate resolves σ_L, so the run follows the ideal decay to the end."""
    return GaussianPrior.isotropic(N, 0.5, 1e-4)


@pytest.fixture(scope="module")
def isotropic_run(isotropic):
    return run_sampler(isotropic, 0.5)


@pytest.fixture(scope="module")
def fine_runs(fine):
    return {beta: run_sampler(fine, beta) for beta in (1.0, 0.5, 0.1)}


@pytest.fixture(scope="module")
def half_measured(spread):
    """The spread prior with the left half of the image measured from one draw, run without and with the
    final projection (same seed, so the unmeasured parts are the same)."""
    x = spread.sample(1, torch.Generator().manual_seed(5)).reshape(1, *SHAPE)
    missing = torch.zeros(8, 8, dtype=torch.bool)
    missing[:, 4:] = True
    op = Inpaint(SHAPE, missing)
    c = op.forward(x)
    plain, _ = run_sampler(spread, 0.5, op, c)
    projected, _ = run_sampler(spread, 0.5, op, c, final_projection=True)
    return op, c, samples_of(plain), samples_of(projected)


# -- the oracle itself ------------------------------------------------------------------------------------
def test_prior_samples_have_its_mean_and_covariance(spread):
    x = spread.sample(20000, torch.Generator().manual_seed(0))
    assert float((x.mean(0) - spread.mean).abs().max()) < 0.01
    assert torch.allclose(torch.cov(x.T), spread.cov, atol=0.006)


def test_conditional_mean_of_two_correlated_values():
    prior = GaussianPrior(torch.tensor([0.2, 0.7]), torch.tensor([[0.04, 0.03], [0.03, 0.09]]))
    out = prior.conditional_mean(torch.tensor([0]), torch.tensor([0.4]))
    assert out[0] == pytest.approx(0.4)
    assert out[1] == pytest.approx(0.7 + 0.03 / 0.04 * (0.4 - 0.2))  # μ₂ + Σ₂₁/Σ₁₁ (x₁ − μ₁)
    assert prior.conditional_cov(torch.tensor([0]))[0, 0] == pytest.approx(0.09 - 0.03**2 / 0.04)


def test_blind_estimate_recovers_the_noise_level(spread):
    gen = torch.Generator().manual_seed(1)
    x = spread.sample(4000, gen)
    den = GaussianBlindDenoiser(spread, SHAPE)
    # (at σ² near the smallest eigenvalues the estimate, clamped at 0, is biased upward: 1.27× at σ = 0.03)
    for sigma in (0.5, 0.2, 0.1):
        y = (x + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)).reshape(-1, *SHAPE)
        s2 = den.estimate_noise_variance(y)
        assert float(s2.mean()) == pytest.approx(sigma**2, rel=0.05)
        # and each estimate solves mean z²/(λ + σ²) = 1
        z = (y.reshape(-1, N) - spread.mean) @ spread.eigenvectors
        lhs = (z**2 / (spread.eigenvalues + s2.unsqueeze(1))).mean(1)
        assert torch.allclose(lhs, torch.ones_like(lhs), atol=1e-9)


def test_denoiser_is_the_least_squares_formula_at_the_estimated_level(spread):
    gen = torch.Generator().manual_seed(2)
    y = (spread.sample(5, gen) + 0.2 * torch.randn(5, N, generator=gen, dtype=torch.float64)).reshape(5, *SHAPE)
    den = GaussianBlindDenoiser(spread, SHAPE)
    s2 = den.estimate_noise_variance(y)
    out = den(y.float())
    assert out.dtype == torch.float32 and out.shape == y.shape
    for k in range(5):
        expected = spread.mean + spread.cov @ torch.linalg.solve(
            spread.cov + s2[k] * torch.eye(N, dtype=torch.float64), y[k].reshape(-1) - spread.mean
        )
        assert torch.allclose(den(y)[k].reshape(-1), expected, atol=1e-10)


def test_blind_estimate_is_zero_for_a_clean_image(spread):
    den = GaussianBlindDenoiser(spread, SHAPE)
    y = spread.mean.reshape(1, *SHAPE).clone()
    assert float(den.estimate_noise_variance(y)[0]) == 0.0
    assert torch.equal(den(y), y)


# -- the sampler on the known prior -----------------------------------------------------------------------
def test_unconditional_mean_is_the_prior_mean(isotropic, isotropic_run):
    x = samples_of(isotropic_run[0])
    assert x.shape == (K, N)
    assert float((x.mean(0) - isotropic.mean).abs().max()) < 0.01  # measured 0.0071


def test_variance_per_direction_isotropic(isotropic, isotropic_run):
    ratio = variance_ratios(isotropic, samples_of(isotropic_run[0]))
    assert 0.87 <= float(ratio.mean()) <= 1.00, float(ratio.mean())  # measured 0.932
    # every direction alike, up to the 3.2% standard error of a 2000-sample variance (3 standard errors)
    se = math.sqrt(2 / (K - 1))
    assert float(ratio.min()) >= 0.87 - 3 * se * 0.87, float(ratio.min())  # measured 0.869
    assert float(ratio.max()) <= 1.00 + 3 * se, float(ratio.max())  # measured 1.029


def test_variance_per_direction_two_decades(spread):
    records, _ = run_sampler(spread, 0.5)
    x = samples_of(records)
    ratio = variance_ratios(spread, x)
    # groups of 8 neighbouring eigenvalues (standard error 1.1%) must each lie in the band
    groups = ratio.reshape(8, 8).mean(1)
    assert float(groups.min()) >= 0.7 and float(groups.max()) <= 1.0, groups  # measured 0.78 … 0.92
    se = math.sqrt(2 / (K - 1))
    assert float(ratio.min()) >= 0.7 - 3 * se * 0.7 and float(ratio.max()) <= 1.0 + 3 * se  # 0.716 … 0.996
    # the mean, in each eigen-direction, within 4 standard errors of μ
    z = (x - spread.mean) @ spread.eigenvectors
    assert bool((z.mean(0).abs() <= 4 * (spread.eigenvalues / K).sqrt()).all())


@pytest.mark.parametrize(("beta", "expected"), [(1.0, 30), (0.5, 44), (0.1, 99)])
def test_iterations_follow_the_schedule(fine_runs, beta, expected):
    records, run = fine_runs[beta]
    assert all(r is StopReason.CONVERGED for r in run.reasons)
    mean_steps = float(run.steps.double().mean())
    assert expected * 0.85 <= mean_steps <= expected * 1.15, mean_steps  # measured 31.7 / 45.1 / 98.6
    assert records[-1].t == int(run.steps.max())


@pytest.mark.parametrize("beta", [1.0, 0.5, 0.1])
def test_sigma_decays_as_one_minus_beta_h(fine_runs, beta):
    records, _ = fine_runs[beta]
    checked = 0
    for a, b in itertools.pairwise(records):
        if b.is_last or b.extra["active"] < K or a.sigma <= 0.05:
            break
        ratio = b.sigma / a.sigma
        assert ratio == pytest.approx(1 - beta * a.h, rel=0.03), (a.t, ratio, 1 - beta * a.h)  # measured ≤ 1.4%
        checked += 1
    assert checked >= 20  # most of the run: 25 / 37 / 64 steps for β = 1 / 0.5 / 0.1
    assert records[0].sigma == pytest.approx(1.0, abs=0.01)  # σ_1 measured at y_0 is σ_0


def test_measured_part_is_reproduced(half_measured):
    op, c, plain, projected = half_measured
    known = op.index
    err = plain[:, known] - c[0].double()
    rms = float(err.pow(2).mean().sqrt())
    assert rms <= 0.02 and float(err.abs().max()) <= 0.1, (rms, float(err.abs().max()))  # 0.0125, 0.054
    # with the final projection: exact up to float32 rounding of the returned image
    assert float((projected[:, known] - c[0].double()).abs().max()) <= 1e-6
    # the projection touches the measured values only
    hidden = torch.nonzero(~op.known_mask().reshape(-1)).squeeze(1)
    assert torch.equal(plain[:, hidden], projected[:, hidden])


def test_unmeasured_mean_approaches_the_conditional_mean(spread, half_measured):
    op, c, plain, _ = half_measured
    target = spread.conditional_mean(op.index, c[0].double())
    hidden = torch.nonzero(~op.known_mask().reshape(-1)).squeeze(1)
    left = (plain[:, hidden].mean(0) - target[hidden]).norm()
    start = (spread.mean[hidden] - target[hidden]).norm()
    assert float(start) > 0.3  # the measurement says a lot about the hidden half (0.75 here)
    assert float(left / start) <= 0.6, float(left / start)  # measured 0.51: about half-way from μ


def test_denoising_from_the_photo_stays_near_the_least_squares_answer_only_without_injected_noise():
    """Blind denoising (start at y = x + σz, nothing pins the run to the data) with the exact oracle on the
    0.001–0.1 spectrum, 400 images, against the least-squares answer E[x|y]. Measured (seed 1), MSE relative
    to E[x|y] at σ = 0.05 / 0.1 / 0.2: β = 1 (DENOISE_PRESET) 0.99 / 1.07 / 1.19; β = 0.01 (RESTORE_PRESET)
    1.21 / 1.57 / 2.12 — injected noise carries the run away from the photo."""
    from priorstudio.core.samplers import DENOISE_PRESET, RESTORE_PRESET, restore_preset

    assert restore_preset("denoise") is DENOISE_PRESET and restore_preset("inpaint") is RESTORE_PRESET
    prior = GaussianPrior.with_spectrum(0.5, torch.logspace(-3, -1, N), seed=0)
    gen = torch.Generator().manual_seed(1)
    k = 400
    x = prior.sample(k, gen)
    den = GaussianBlindDenoiser(prior, SHAPE)
    for sigma in (0.05, 0.1, 0.2):
        y = (x + sigma * torch.randn(x.shape, generator=gen, dtype=torch.float64)).reshape(k, *SHAPE)
        best = (den(y).reshape(k, -1) - x).pow(2).mean()
        mse = {}
        for name, preset in (("denoise", DENOISE_PRESET), ("restore", RESTORE_PRESET)):
            p = ImplicitPriorParams(**{**preset, "seed": 0, "emit_every": 0, "divergence_patience": 20})
            records = list(implicit_prior_sampler(den, None, None, p, batch=k, init=y, dtype=torch.float64))
            mse[name] = (samples_of(records) - x).pow(2).mean()
        assert mse["denoise"] < 1.25 * best, sigma
        assert mse["restore"] > 1.15 * mse["denoise"], sigma


def test_the_registry_and_the_command_line_denoise_with_beta_one(tmp_path):
    import json

    from priorstudio.cli import main
    from priorstudio.core.denoisers import BiasFreeUNet
    from priorstudio.core.denoisers.registry import save_weights
    from priorstudio.core.imageio import save_image
    from priorstudio.core.operators import make_operator
    from priorstudio.core.samplers.registry import METHODS

    model, photo = tmp_path / "tiny.pt", tmp_path / "photo.png"
    save_weights(model, BiasFreeUNet(1, (8, 16)))
    save_image(torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(1)), photo)
    for task, beta, more in (("denoise", 1.0, []), ("sr", 0.01, []), ("denoise", 0.3, ["--beta", "0.3"])):
        record = tmp_path / f"{task}{beta}.json"
        argv = ["restore", photo, "-o", tmp_path / "out.png", "--task", task, "--mode", "simulate", "--model", model]
        argv += ["--max-steps", "3", "--json", record, "--overwrite", "-q", *more]
        assert main([str(a) for a in argv]) == 0
        assert json.loads(record.read_text())["parameters"]["beta"] == beta  # an explicit --beta is kept

    spec = METHODS["implicit_prior"]
    assert spec.default_params(None).beta == 1.0
    assert spec.default_params(make_operator("denoise", (1, 8, 8))).beta == 1.0
    assert spec.default_params(make_operator("super_resolution", (1, 8, 8), factor=2)).beta == 0.01
