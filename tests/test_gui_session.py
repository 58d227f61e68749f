"""Run planning without Qt: the crop around a mask, working sizes, blending back, progress in log σ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from priorstudio.core.errors import MaskError, ParameterError
from priorstudio.gui import session
from priorstudio.gui.run_progress import RunProgress
from priorstudio.gui.session import (
    DenoiserProvider,
    MethodStepTimer,
    RunSettings,
    estimate_cost,
    estimate_method_cost,
    fit_side,
    format_duration,
    inpaint_region,
    plan_run,
    starting_noise,
)


def photo(c=3, h=300, w=800, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((c, h, w), generator=g)


def test_fit_side():
    assert fit_side(300, 800, 512) == (192, 512)
    assert fit_side(300, 800, None) == (300, 800)
    assert fit_side(100, 50, 512) == (100, 50)


def test_inpaint_region_is_the_mask_box_plus_margin_clipped():
    mask = np.zeros((300, 800), bool)
    mask[100:120, 10:50] = True
    r = inpaint_region(mask)
    assert (r.top, r.left) == (100 - 32, 0)  # margin ≥ 32 px, clipped at the left edge
    assert (r.bottom, r.right) == (120 + 32, 50 + 32)
    with pytest.raises(MaskError):
        inpaint_region(np.zeros((5, 5), bool))


def test_inpainting_runs_on_the_crop_and_blends_back_only_the_hole():
    image = photo()
    mask = np.zeros((300, 800), bool)
    mask[140:160, 400:430] = True
    plan = plan_run(image, RunSettings(task="inpaint", working_side=512), mask)
    assert plan.is_crop and plan.work_shape == (3, 84, 94)
    assert plan.region.height == 84 and plan.region.width == 94
    assert plan.describe() == f"94×84 colour (crop at {plan.region.left},{plan.region.top})"  # the size once
    estimate = torch.zeros((1, *plan.work_shape))  # a black "result"
    out = plan.compose(image, estimate)
    assert out.shape == image.shape
    hole = torch.from_numpy(mask)
    assert torch.all(out[:, hole] == 0)
    assert torch.equal(out[:, ~hole], image[:, ~hole])


def test_inpainting_with_noise_saves_the_estimate_over_the_whole_crop_not_the_clean_photo():
    # in simulate mode the photo is the truth: pasting it onto the crop's known pixels would save clean
    # pixels the run never saw next to its denoised fill; outside the crop nothing was measured or changed
    image = photo()
    mask = np.zeros((300, 800), bool)
    mask[140:160, 400:430] = True
    plan = plan_run(image, RunSettings(task="inpaint", working_side=512, noise_sigma=0.1, mode="simulate"), mask)
    out = plan.compose(image, torch.full((1, *plan.work_shape), 0.25))
    rows, cols = plan.region.slices()
    assert torch.all(out[:, rows, cols] == 0.25)
    outside = torch.ones(300, 800, dtype=torch.bool)
    outside[rows, cols] = False
    assert torch.equal(out[:, outside], image[:, outside])


def test_a_crop_larger_than_the_working_size_is_shrunk_and_the_result_scaled_back():
    image = photo(1, 600, 600)
    mask = np.zeros((600, 600), bool)
    mask[100:500, 100:500] = True
    plan = plan_run(image, RunSettings(task="inpaint", working_side=256), mask)
    assert plan.work_shape == (1, 256, 256) and plan.region.width == 600
    out = plan.compose(image, torch.ones((1, 1, 256, 256)))
    assert torch.allclose(out[:, 100:500, 100:500], torch.ones(1, 400, 400), atol=1e-5)
    assert torch.equal(out[:, :100], image[:, :100])
    full = plan_run(image, RunSettings(task="inpaint", working_side=None), mask)
    assert full.work_shape == (1, 600, 600)
    big = torch.rand(1, 1200, 1200)
    hole = np.zeros((1200, 1200), bool)
    hole[400:800, 400:800] = True
    shrunk = plan_run(big, RunSettings(task="inpaint", working_side=256), hole)
    r = shrunk.region
    assert shrunk.is_crop and shrunk.work_shape == (1, 256, 256)
    assert shrunk.describe() == f"256×256 gray (crop {r.width}×{r.height} at {r.left},{r.top}, scaled)"


def test_a_scattered_mask_keeps_its_share_when_shrunk_and_damaged_pixels_do_not_leak():
    """A working pixel is missing when most photo pixels under it are; a known one averages known pixels only."""
    rng = np.random.default_rng(0)
    scattered = rng.random((600, 900)) < 0.5
    image = torch.full((1, 600, 900), 0.2)
    image[:, torch.from_numpy(scattered)] = 1.0  # damaged pixels, bright: any leak would show
    plan = plan_run(image, RunSettings(task="inpaint", working_side=200), scattered)
    assert plan.is_crop and max(plan.work_shape[1:]) == 200
    op = plan.problem.operator
    assert 0.3 < op.missing_fraction < 0.7  # ("missing if any" made it 0.9999)
    known = op.project(torch.ones(1, *plan.work_shape))[0, 0] > 0.5
    assert torch.allclose(plan.problem.observed[0][known], torch.tensor(0.2), atol=1e-5)
    # a solid hole still covers its interior; its rim pixels are filled from the known pixels beside them
    hole = np.zeros((600, 600), bool)
    hole[100:500, 100:500] = True
    solid = plan_run(torch.full((1, 600, 600), 0.2), RunSettings(task="inpaint", working_side=256), hole)
    m = solid.problem.operator.project(torch.ones(1, 1, 256, 256))[0, 0] < 0.5
    assert bool(m[50:200, 50:200].all()) and not bool(m[:30].any())


def test_a_thin_scratch_survives_the_working_size():
    """A 2-pixel scratch across a large photo covers under half of every working pixel: it vanished, and the
    run refused with "the mask is empty". Its working pixels are now missing where any photo pixel is."""
    mask = np.zeros((800, 1200), bool)
    for x in range(100, 1100):  # a diagonal stroke, 2 px wide
        y = 100 + (x - 100) * 600 // 1000
        mask[y : y + 2, x] = True
    image = torch.full((1, 800, 1200), 0.3)
    image[:, torch.from_numpy(mask)] = 1.0
    plan = plan_run(image, RunSettings(task="inpaint", working_side=256), mask)
    missing = plan.problem.operator.project(torch.ones(1, *plan.work_shape))[0, 0] < 0.5
    assert missing.any() and 0 < float(missing.float().mean()) < 0.05
    known = ~missing
    assert torch.allclose(plan.problem.observed[0][known], torch.tensor(0.3), atol=1e-5)  # no leak either


def test_other_tasks_use_the_working_size():
    image = photo()
    plan = plan_run(image, RunSettings(task="spectral", task_params={"fraction": 0.2}, working_side=256))
    assert plan.work_shape == (3, 96, 256) and not plan.is_crop
    assert plan.problem.truth is not None and tuple(plan.problem.truth.shape) == (3, 96, 256)
    assert plan.scale == pytest.approx(256 / 800)
    out = plan.compose(image, torch.rand(1, 3, 96, 256) * 3)
    assert out.shape == (3, 96, 256) and float(out.max()) <= 1.0
    full = plan_run(image, RunSettings(task="denoise", noise_sigma=0.1, working_side=None))
    assert full.work_shape == (3, 300, 800) and full.problem.init is not None


def test_super_resolution_restore_holds_the_output_to_the_working_size():
    low = photo(3, 100, 200)
    settings = RunSettings(task="super_resolution", mode="restore", task_params={"factor": 4}, working_side=512)
    plan = plan_run(low, settings)
    assert plan.work_shape == (3, 256, 512)
    assert tuple(plan.problem.observed.shape) == (3, 64, 128)
    plan = plan_run(
        low, RunSettings(task="super_resolution", mode="restore", task_params={"factor": 2}, working_side=None)
    )
    assert plan.work_shape == (3, 200, 400)


def test_bad_settings_raise_user_errors():
    with pytest.raises(MaskError):
        plan_run(photo(), RunSettings(task="inpaint"), None)
    with pytest.raises(ParameterError):
        plan_run(photo(), RunSettings(task="spectral", working_side=4))
    with pytest.raises(ParameterError):
        plan_run(photo(), RunSettings(task="random_pixels", task_params={"fraction": 2.0}))


def test_cost_estimate_and_provider():
    from priorstudio.core.denoisers import BiasFreeUNet, Denoiser

    made = []

    def factory(c):
        made.append(c)
        return Denoiser(BiasFreeUNet(c, (8, 16)), fast=False, device="cpu")

    provider = DenoiserProvider(factory=factory)
    d = provider(3)
    assert provider(3) is d and made == [3]  # cached
    plan = plan_run(photo(3, 64, 64), RunSettings(task="compressive", task_params={"fraction": 0.3}))
    cost = estimate_cost(plan, 100, d)
    assert cost.steps == 100 and cost.seconds_per_step > 0 and cost.memory_bytes > 0
    assert "100 steps" in cost.describe() and "memory" in cost.describe()
    assert estimate_cost(plan, 50, None).describe() == "~50 steps"
    assert format_duration(42) == "42 s" and format_duration(125) == "2 min 05 s"


def test_a_weights_file_written_again_is_loaded_again(tmp_path) -> None:
    """A model trained further under the same name while the app is open is not served stale."""
    import os

    from priorstudio.core.denoisers import BiasFreeUNet
    from priorstudio.core.denoisers.registry import save_weights

    path = tmp_path / "mine.pt"
    torch.manual_seed(0)
    save_weights(path, BiasFreeUNet(1, (8, 16)))
    provider = DenoiserProvider(model=str(path))
    first = provider(1)
    assert provider(1) is first  # cached while the file is unchanged
    torch.manual_seed(1)
    save_weights(path, BiasFreeUNet(1, (8, 16)))  # replaced in place, as a training run does
    stamp = os.stat(path).st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))
    second = provider(1)
    y = torch.rand(1, 1, 16, 16)
    assert second is not first and not torch.equal(second(y), first(y))
    assert len(provider._cache) == 1  # the stale one is dropped, not kept beside it


class _ClockedMethod:
    """A method whose every step takes ``fixed + per_pixel × H × W`` seconds of a fake clock."""

    def __init__(self, clock: list[float], fixed: float, per_pixel: float, name: str = "clocked") -> None:
        self.name, self.clock, self.fixed, self.per_pixel = name, clock, fixed, per_pixel
        self.probes: list[tuple[int, int]] = []

    def stream(self, *, denoiser, problem, params):
        h, w = problem.observed.shape[-2:]
        self.probes.append((h, w))
        self.clock[0] += 1.0  # the set-up, paid inside the first step
        for t in range(1, params.max_steps + 1):
            self.clock[0] += self.fixed + self.per_pixel * h * w + (0.5 if t == 2 else 0.0)  # one slow step
            yield t


def test_a_method_without_denoiser_is_timed_on_two_probes_and_extrapolated(monkeypatch):
    from priorstudio.core.samplers.dip import DIPParams

    clock = [0.0]
    monkeypatch.setattr(session.time, "perf_counter", lambda: clock[0])
    method = _ClockedMethod(clock, fixed=0.004, per_pixel=2e-6)
    timer = MethodStepTimer()
    params = DIPParams(width=8, depth=2)
    assert not timer.is_measured(method, params, 3)
    seconds = timer.seconds_per_step(method, params, (3, 300, 400))
    # the set-up and the slow step are left out; fixed cost and per-pixel cost are both recovered
    assert seconds == pytest.approx(0.004 + 2e-6 * 300 * 400)
    assert method.probes == [(48, 48), (96, 96)] and timer.is_measured(method, params, 3)
    # measured once per setting that changes the cost: not again for a new seed or learning rate
    timer.seconds_per_step(method, DIPParams(width=8, depth=2, seed=5, lr=0.1), (3, 10, 10))
    assert len(method.probes) == 2
    timer.seconds_per_step(method, DIPParams(width=16, depth=2), (3, 10, 10))
    assert len(method.probes) == 4
    timer.seconds_per_step(method, params, (1, 10, 10))  # gray is another setting
    assert len(method.probes) == 6
    # DIP's cost also says its memory
    plan = plan_run(photo(3, 64, 80), RunSettings(task="denoise", noise_sigma=0.1))
    cost = estimate_method_cost(plan, 200, method, params, timer)
    assert cost.seconds_per_step == pytest.approx(0.004 + 2e-6 * 64 * 80)
    assert cost.memory_bytes > 0 and "memory" in cost.describe() and "ms/step" in cost.describe()


def test_real_methods_get_a_time_estimate_and_a_failing_probe_none():
    from priorstudio.core.samplers.dip import DIPParams
    from priorstudio.core.samplers.nonlocal_filters import TwicingParams
    from priorstudio.gui.methods import available_methods

    methods = available_methods()
    timer = MethodStepTimer()
    small = DIPParams(width=4, depth=2, skip_channels=2, input_channels=4)
    assert timer.seconds_per_step(methods["dip_adam"], small, (1, 64, 64)) > 0
    assert timer.seconds_per_step(methods["nlm_twicing"], TwicingParams(kernel="nlm"), (3, 64, 64)) > 0
    # a network deeper than the probes allow: no figure rather than an error
    assert timer.seconds_per_step(methods["dip_adam"], DIPParams(width=4, depth=7), (1, 512, 512)) is None


def test_progress_in_log_sigma_rate_and_eta():
    p = RunProgress(sigma_L=0.01, max_steps=10_000)
    now = 0.0
    sigma = 1.0
    for t in range(1, 51):  # σ halves every 10 steps, 20 steps per second
        p.update(t, sigma, now)
        sigma *= 0.5 ** (1 / 10)
        now += 0.05
    # σ_50 = 2^(−4.9): progress = log(σ0/σ)/log(σ0/σL)
    expected = (4.9 * math.log(2)) / math.log(100)
    assert p.fraction == pytest.approx(expected, rel=1e-6)
    assert p.steps_per_second == pytest.approx(20, rel=0.01)
    # steps left: log2(σ/σL)·10 = (log2(100) − 4.9)·10 ≈ 17.4 → ≈ 0.9 s
    assert p.eta_seconds == pytest.approx((math.log2(100) - 4.9) * 10 / 20, rel=0.05)
    capped = RunProgress(sigma_L=None, max_steps=100)
    capped.update(25, math.nan, 0.0)
    assert capped.fraction == pytest.approx(0.25)


def test_a_run_that_starts_at_the_photo_expects_its_noise_level():
    """Denoising starts at the photo and the sampler estimates σ₀ from it, so the preview's step count uses
    the photo's noise level: the one simulated, or in restore mode an estimate from the image."""
    torch.manual_seed(0)
    smooth = torch.linspace(0, 1, 128).repeat(1, 128, 1) * 0.5 + 0.25  # (1, 128, 128), no fine detail
    simulate = plan_run(smooth, RunSettings(task="denoise", mode="simulate", noise_sigma=0.1, working_side=None))
    assert starting_noise(simulate) == pytest.approx(0.1)
    noisy = smooth + 0.05 * torch.randn_like(smooth)
    restore = plan_run(noisy, RunSettings(task="denoise", mode="restore", working_side=None))
    assert starting_noise(restore) == pytest.approx(0.05, rel=0.1)
