"""The implicit-prior sampler as a step stream: records, stop reasons, seeds, batches, cancelling, arguments.

Most tests drive it with the exact blind denoiser of a small Gaussian prior (cheap and well behaved), and
with denoisers broken on purpose to reach the divergence guards; one runs a tiny random bias-free UNet.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import math
import re

import pytest
import torch

from priorstudio.core.denoisers import BiasFreeUNet, Denoiser
from priorstudio.core.errors import ParameterError
from priorstudio.core.operators import Identity, Inpaint
from priorstudio.core.samplers import (
    RESTORE_PRESET,
    SYNTHESIS_PRESET,
    TEACH_PRESET,
    GaussianBlindDenoiser,
    GaussianPrior,
    ImplicitPriorParams,
    ImplicitPriorRun,
    StepRecord,
    StopReason,
    expected_iterations,
    ideal_sigma_schedule,
    implicit_prior_sampler,
    step_size,
)

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def prior() -> GaussianPrior:
    return GaussianPrior.with_spectrum(0.5, torch.logspace(-3, -2, 64, dtype=torch.float64), seed=0)


@pytest.fixture(scope="module")
def oracle(prior) -> GaussianBlindDenoiser:
    return GaussianBlindDenoiser(prior, SHAPE)


def params(**kw) -> ImplicitPriorParams:
    kw.setdefault("beta", 0.5)
    kw.setdefault("divergence_patience", 20)  # 8×8 images: see DIVERGENCE_GROWTH
    return ImplicitPriorParams(**kw)


def synth(denoiser, p: ImplicitPriorParams, k: int = 1, **kw) -> ImplicitPriorRun:
    return implicit_prior_sampler(denoiser, None, None, p, batch=k, image_shape=SHAPE, **kw)


class Counting:
    """Wraps a denoiser: counts calls, remembers batch sizes, and can turn into a broken one."""

    def __init__(self, inner, nan_from_call: int | None = None) -> None:
        self.inner = inner
        self.nan_from_call = nan_from_call
        self.sizes: list[int] = []

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        self.sizes.append(y.shape[0])
        out = self.inner(y)
        if self.nan_from_call is not None and len(self.sizes) >= self.nan_from_call:
            out = torch.full_like(out, math.nan)
        return out


def amplifier(y: torch.Tensor) -> torch.Tensor:
    """A "denoiser" that pushes away from gray: f = 3(y − ½) makes σ_t grow every step."""
    return y + 3.0 * (y - 0.5)


# -- records ----------------------------------------------------------------------------------------------
def test_one_record_per_step_and_the_last_is_marked(oracle):
    counter = Counting(oracle)
    records = list(synth(counter, params()))
    assert [r.t for r in records] == list(range(1, len(records) + 1))
    assert len(counter.sizes) == len(records)  # one denoiser call per step, none for the final D(y)
    assert all(isinstance(r, StepRecord) for r in records)
    assert [r.is_last for r in records] == [False] * (len(records) - 1) + [True]
    last = records[-1]
    assert last.stop_reason is StopReason.CONVERGED and last.sigma <= 0.01
    assert "reached σ_L" in last.message
    assert last.image.dtype == torch.float32 and last.image.device.type == "cpu" and last.image.shape == (1, *SHAPE)
    for r in records[:-1]:
        assert r.sigma > 0.01 and 0 < r.h < 1 and r.gamma > 0 and r.residual_norm > 0 and r.data_error == 0.0
        assert r.h == pytest.approx(step_size(r.t, 0.01))
    assert math.isnan(last.h) and math.isnan(last.gamma)  # the last step applies no update


def test_records_carry_fresh_images(oracle):
    run = synth(oracle, params(emit_every=1))
    first = next(run)
    second = next(run)
    kept = second.image.clone()
    assert not torch.equal(first.image, second.image)  # the estimate moved
    first.image.add_(1.0)  # a caller may scribble on what it got…
    assert torch.equal(second.image, kept)  # …without touching other records
    rest = list(run)
    assert rest[-1].is_last


def test_emit_every(oracle):
    records = list(synth(oracle, params(emit_every=3)))
    for r in records:
        assert (r.image is not None) == (r.t % 3 == 0 or r.is_last), r.t
    records = list(synth(oracle, params(emit_every=0)))
    assert [r.image is not None for r in records] == [False] * (len(records) - 1) + [True]


def test_image_is_the_current_estimate(oracle):
    """Record t shows D(y_t): the first one is the denoised starting image, for free."""
    noisy = torch.full((1, *SHAPE), 0.5) + 0.3 * torch.randn((1, *SHAPE), generator=torch.Generator().manual_seed(1))
    first = next(implicit_prior_sampler(oracle, None, None, params(), init=noisy))
    assert torch.allclose(first.image, oracle(noisy), atol=1e-6)


def test_metrics_when_the_truth_is_known(prior, oracle):
    truth = prior.sample(1, torch.Generator().manual_seed(3)).reshape(SHAPE).float()
    records = list(synth(oracle, params(max_steps=30), truth=truth))
    assert all(isinstance(r.psnr, float) and isinstance(r.ssim, float) for r in records)
    assert all(math.isfinite(r.psnr) and -1 <= r.ssim <= 1 for r in records)
    records = list(synth(oracle, params(max_steps=3)))
    assert all(r.psnr is None and r.ssim is None for r in records)


# -- stop reasons -----------------------------------------------------------------------------------------
def test_step_cap(oracle):
    records = list(synth(oracle, params(beta=0.01, max_steps=5)))
    assert len(records) == 5
    last = records[-1]
    assert last.stop_reason is StopReason.STEP_CAP and last.t == 5
    assert "step cap (5)" in last.message
    assert last.image is not None and bool(torch.isfinite(last.image).all())


def test_nan_denoiser_keeps_the_last_good_image(oracle):
    records = list(synth(Counting(oracle, nan_from_call=6), params(emit_every=1)))
    last = records[-1]
    assert last.stop_reason is StopReason.DIVERGED_NAN and last.t == 6 and len(records) == 6
    assert "NaN" in last.message
    assert bool(torch.isfinite(last.image).all())
    assert torch.equal(last.image, records[4].image)  # the estimate of step 5, the last finite one


def test_nan_from_the_first_step_returns_the_start(oracle):
    records = list(synth(Counting(oracle, nan_from_call=1), params()))
    assert len(records) == 1 and records[0].stop_reason is StopReason.DIVERGED_NAN
    assert bool(torch.isfinite(records[0].image).all())


def test_noise_amplifying_denoiser_diverges(oracle):
    records = list(synth(amplifier, params(emit_every=1, divergence_patience=10)))
    last = records[-1]
    assert last.stop_reason is StopReason.DIVERGED_SIGMA, last.message
    sigmas = [r.sigma for r in records]
    assert all(b > a for a, b in itertools.pairwise(sigmas))
    assert last.t == 11  # 10 rising steps after step 1, and σ has more than doubled by then
    assert torch.equal(last.image, records[0].image)  # the estimate from before σ began to grow
    assert "estimate from step 1 is kept" in last.message


def test_patience_counts_rising_steps(oracle):
    last = list(synth(amplifier, params(divergence_patience=25)))[-1]
    assert last.stop_reason is StopReason.DIVERGED_SIGMA and last.t == 26


def test_stop_ends_with_a_cancelled_record(oracle):
    run = synth(oracle, params(beta=0.01), k=2)
    records = []
    for rec in run:
        records.append(rec)
        if rec.t == 3:
            run.stop()
    assert [r.t for r in records] == [1, 2, 3, 4]
    last = records[-1]
    assert last.stop_reason is StopReason.CANCELLED and "stopped on request" in last.message
    assert last.image.shape == (2, *SHAPE) and bool(torch.isfinite(last.image).all())
    with pytest.raises(StopIteration):
        next(run)


def test_abandoning_a_run_is_fine(oracle):
    run = synth(oracle, params(beta=0.01), k=3)
    for rec in run:
        if rec.t == 4:
            break
    del run, rec
    gc.collect()
    run = synth(oracle, params(beta=0.01))
    next(run)
    run.close()
    with pytest.raises(StopIteration):
        next(run)
    # a run that was never started costs nothing either
    synth(oracle, params()).close()


# -- seeds and batches ------------------------------------------------------------------------------------
def test_same_seed_same_result_bit_for_bit(oracle):
    a = list(synth(oracle, params(seed=7), k=3))
    b = list(synth(oracle, params(seed=7), k=3))
    assert [r.sigma for r in a] == [r.sigma for r in b]
    assert torch.equal(a[-1].image, b[-1].image)
    c = list(synth(oracle, params(seed=8), k=3))
    assert not torch.equal(a[-1].image, c[-1].image)
    # a generator passed in replaces the seed; a fresh one seeded alike reproduces the run
    d = list(synth(oracle, params(seed=123), k=3, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(a[-1].image, d[-1].image)


def test_identity_operator_is_unconstrained(oracle):
    a = list(synth(oracle, params(seed=2), k=2))[-1]
    op = Identity(SHAPE)
    b = list(implicit_prior_sampler(oracle, op, op.forward(torch.zeros(1, *SHAPE)), params(seed=2), batch=2))[-1]
    assert torch.equal(a.image, b.image) and b.data_error == 0.0


def test_batch_of_three_independent_samples(oracle):
    counter = Counting(oracle)
    records = list(synth(counter, params(emit_every=1), k=3))
    x = records[-1].image
    assert x.shape == (3, *SHAPE)
    assert not torch.equal(x[0], x[1]) and not torch.equal(x[1], x[2]) and not torch.equal(x[0], x[2])
    assert {"sigma_0", "sigma_1", "sigma_2", "active", "sigma_max"} <= set(records[0].extra)
    # the denoiser sees only the samples still running, one call per step
    active = [3] + [int(r.extra["active"]) for r in records[:-1]]
    assert counter.sizes == active
    # a sample that stopped is frozen: its image no longer changes
    for r, nxt in itertools.pairwise(records):
        for k in range(3):
            if r.extra[f"sigma_{k}"] <= 0.01:
                assert torch.equal(r.image[k], nxt.image[k])


def test_batch_sigma_is_the_mean_over_running_samples(oracle):
    records = list(synth(oracle, params(max_steps=4), k=3))
    for r in records:
        per_sample = [r.extra[f"sigma_{k}"] for k in range(3)]
        assert r.sigma == pytest.approx(sum(per_sample) / 3)
        assert r.extra["sigma_max"] == pytest.approx(max(per_sample))


def test_large_batch_reports_summaries_only(oracle):
    rec = next(synth(oracle, params(), k=20))
    assert set(rec.extra) == {"active", "sigma_max"}


def test_batch_comes_from_the_measurement(oracle):
    missing = torch.zeros(8, 8, dtype=torch.bool)
    missing[2:6, 2:6] = True
    op = Inpaint(SHAPE, missing)
    c = op.forward(torch.rand(4, *SHAPE))
    run = implicit_prior_sampler(oracle, op, c, params(max_steps=2))
    assert run.batch == 4
    with pytest.raises(ParameterError, match="batch"):
        implicit_prior_sampler(oracle, op, c, params(), batch=3)


def test_measurement_shape_is_checked_before_the_run(oracle):
    missing = torch.zeros(8, 8, dtype=torch.bool)
    missing[2:6, 2:6] = True
    op = Inpaint(SHAPE, missing)
    c = op.forward(torch.rand(1, *SHAPE))
    one = implicit_prior_sampler(oracle, op, c[0], params(max_steps=2))  # unbatched: one measurement
    assert one.batch == 1 and next(one).t == 1
    with pytest.raises(ParameterError, match="measurement has shape"):
        implicit_prior_sampler(oracle, op, c[..., :-3], params())


# -- modes --------------------------------------------------------------------------------------------------
def test_denoising_mode_estimates_sigma_0(prior, oracle):
    gen = torch.Generator().manual_seed(4)
    noisy = (prior.sample(1, gen) + 0.2 * torch.randn(1, 64, generator=gen, dtype=torch.float64)).reshape(SHAPE)
    run = implicit_prior_sampler(oracle, None, None, params(), init=noisy.float())
    first = next(run)
    assert run.sigma_0 == pytest.approx(first.sigma)
    assert 0.1 < run.sigma_0 < 0.3 and "estimated σ₀" in first.message
    last = list(run)[-1]
    assert last.stop_reason is StopReason.CONVERGED


def test_tiny_unet_on_16x16_with_inpainting():
    torch.manual_seed(0)
    den = Denoiser(BiasFreeUNet(1, (8, 16)), fast=False)
    shape = (1, 16, 16)
    missing = torch.zeros(16, 16, dtype=torch.bool)
    missing[4:12, 4:12] = True
    op = Inpaint(shape, missing)
    truth = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    c = op.forward(truth)
    p = ImplicitPriorParams(sigma_L=1e-5, max_steps=6, final_projection=True)
    records = list(implicit_prior_sampler(den, op, c, p, truth=truth, batch=2))
    last = records[-1]
    assert last.t == 6 and last.stop_reason is StopReason.STEP_CAP
    assert last.image.shape == (2, *shape) and bool(torch.isfinite(last.image).all())
    assert all(math.isfinite(r.sigma) and math.isfinite(r.psnr) for r in records)
    assert float((op.forward(last.image) - c).abs().max()) <= 1e-6  # the final projection
    # and unconstrained on the same network
    last = list(implicit_prior_sampler(den, None, None, p, image_shape=shape))[-1]
    assert last.image.shape == (1, *shape)


# -- parameters and arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sigma_0", 0.0),
        ("sigma_0", math.nan),
        ("sigma_L", 0.0),
        ("sigma_L", 1.0),  # not below σ₀
        ("h_0", 0.0),
        ("h_0", 1.0),
        ("beta", 0.0),
        ("beta", 1.5),
        ("seed", -1),
        ("max_steps", 0),
        ("max_steps", 2.5),
        ("emit_every", -1),
        ("divergence_patience", 1),
        ("project_noise", "yes"),
    ],
)
def test_invalid_parameters_are_named(oracle, field, value):
    """The message names the field (by its name or the label the app shows), and ``field`` says which."""
    label = {f.name: f.metadata.get("label", f.name) for f in dataclasses.fields(ImplicitPriorParams)}[field]
    p = ImplicitPriorParams(**{field: value})
    with pytest.raises(ParameterError, match=f"{re.escape(field)}|{re.escape(label)}") as raised:
        p.validate()
    assert raised.value.field == field
    with pytest.raises(
        ParameterError, match=re.escape(str(raised.value))
    ):  # refused when the run is made, not at step 1
        synth(oracle, p)


def test_defaults_and_presets_are_valid():
    ImplicitPriorParams().validate()
    for preset in (RESTORE_PRESET, SYNTHESIS_PRESET, TEACH_PRESET):
        ImplicitPriorParams.preset(preset).validate()
    assert ImplicitPriorParams.preset(RESTORE_PRESET).beta == 0.01
    assert ImplicitPriorParams.preset(SYNTHESIS_PRESET, seed=5).seed == 5
    with pytest.raises(TypeError):
        RESTORE_PRESET["beta"] = 0.5  # type: ignore[index]
    with pytest.raises(ParameterError, match="unknown"):
        ImplicitPriorParams.preset(TEACH_PRESET, sigma=1.0)


def test_every_field_has_form_metadata():
    from dataclasses import fields

    for f in fields(ImplicitPriorParams):
        assert {"label", "help"} <= set(f.metadata), f.name


def test_argument_errors(oracle):
    with pytest.raises(ParameterError, match="image_shape"):
        implicit_prior_sampler(oracle, None, None, params())
    with pytest.raises(ParameterError, match="truth"):
        implicit_prior_sampler(oracle, None, None, params(), image_shape=SHAPE, truth=torch.zeros(1, 4, 4))
    missing = torch.zeros(8, 8, dtype=torch.bool)
    missing[:4] = True
    with pytest.raises(ParameterError, match="measurement"):
        implicit_prior_sampler(oracle, Inpaint(SHAPE, missing), None, params())
    with pytest.raises(ParameterError, match="batch"):
        implicit_prior_sampler(oracle, None, None, params(), image_shape=SHAPE, batch=0)


# -- the ideal schedule ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("beta", "steps"), [(1.0, 33), (0.5, 48), (0.1, 128), (0.01, 660)])
def test_expected_iterations_match_the_documented_decay(beta, steps):
    assert abs(expected_iterations(ImplicitPriorParams(beta=beta)) - steps) <= 2


def test_ideal_schedule():
    p = ImplicitPriorParams(beta=0.5)
    s = ideal_sigma_schedule(p, 50)
    assert len(s) == 50 and s[0] == 1.0
    for t in range(1, 50):
        assert s[t] / s[t - 1] == pytest.approx(1 - 0.5 * step_size(t, 0.01))
    n = expected_iterations(p)
    assert s[n - 1] <= p.sigma_L < s[n - 2]
    assert expected_iterations(ImplicitPriorParams(beta=0.01, max_steps=100)) == 100
