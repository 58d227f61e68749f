"""Deep Image Prior: step protocol, determinism, fitting, early stopping, optimizers, operators, Lanczos."""

from __future__ import annotations

import copy
import io
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators import gaussian_kernel, make_operator
from priorstudio.core.resample import LanczosDownsample, lanczos_downsample, lanczos_matrix
from priorstudio.core.samplers.base import StopReason
from priorstudio.core.samplers.dip import (
    DIP_PRESETS,
    DIPParams,
    RunningVariance,
    cpu_threads,
    dip_params_for,
    dip_sampler,
)
from priorstudio.core.samplers.dip_network import ReflectConv2d, count_weights, input_code, skip_network

TINY = {"width": 4, "depth": 2, "skip_channels": 2, "input_channels": 4, "threads": 1, "emit_every": 0}


def smooth_image(c: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((1, c, 4, 4), generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0]


def noisy_pair(c: int = 1, size: int = 16, sigma: float = 0.1):
    x = smooth_image(c, size)
    g = torch.Generator().manual_seed(1)
    return x, x + sigma * torch.randn(x.shape, generator=g)


def tiny(**changes) -> DIPParams:
    return DIPParams(**{**TINY, **changes})


# -- network ---------------------------------------------------------------------------------------------
def test_reference_network_has_about_2_2_million_weights():
    assert 2.1e6 < count_weights(skip_network()) < 2.3e6


def test_network_keeps_odd_sizes_and_outputs_in_unit_range():
    net = skip_network(4, 3, width=4, depth=3, skip_channels=2)
    with torch.no_grad():
        out = net(input_code(4, (19, 23), seed=0))
    assert out.shape == (1, 3, 19, 23)
    assert float(out.min()) > 0 and float(out.max()) < 1


def test_input_code_is_seeded_uniform_noise():
    a, b = input_code(32, (8, 8), seed=3), input_code(32, (8, 8), seed=3)
    assert torch.equal(a, b) and a.shape == (1, 32, 8, 8)
    assert float(a.min()) >= 0 and float(a.max()) < 0.1


def test_too_small_image_for_depth_is_refused():
    _, y = noisy_pair(size=8)
    with pytest.raises(ParameterError, match="scales"):
        dip_sampler(None, None, tiny(depth=4), init=y)
    # 5 scales: 32×32 would leave a 1×1 deepest level (batch norm cannot train on it); 33×33 leaves 2×2
    _, y32 = noisy_pair(size=32)
    with pytest.raises(ParameterError, match="33×33"):
        dip_sampler(None, None, tiny(depth=5), init=y32)
    _, y33 = noisy_pair(size=33)
    recs = list(dip_sampler(None, None, tiny(depth=5, max_steps=2), init=y33))
    assert recs[-1].image.shape == (1, 1, 33, 33)


def _reference_copy(net: torch.nn.Module) -> torch.nn.Module:
    """The same network and weights built from plain ``nn.Conv2d`` (PyTorch's own reflection padding)."""
    ref = copy.deepcopy(net)
    for module in ref.modules():
        if isinstance(module, ReflectConv2d):
            module.__class__ = torch.nn.Conv2d
    return ref


@pytest.mark.parametrize("fast", [False, True])
def test_bf16_padding_gives_the_convolutions_the_same_input(fast):
    """The fast path pads in bf16 and keeps channels-last: the output is bit for bit that of PyTorch's own
    reflection padding, and the weight gradients agree to bf16 rounding (plain fp32: exactly)."""
    torch.manual_seed(0)
    net = skip_network(8, 3, width=16, depth=3, skip_channels=4)
    z = input_code(8, (37, 45), seed=0)
    if fast:
        net, z = net.to(memory_format=torch.channels_last), z.contiguous(memory_format=torch.channels_last)
    ref = _reference_copy(net)
    assert sum(isinstance(m, ReflectConv2d) for m in net.modules()) == 9  # three per scale
    assert not any(isinstance(m, ReflectConv2d) for m in ref.modules())
    assert list(net.state_dict()) == list(ref.state_dict())  # saved runs and weights are interchangeable
    results = []
    for model in (net, ref):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            out = model(z)
        out.float().sub(0.5).square().mean().backward()
        results.append((out.detach(), {n: p.grad for n, p in model.named_parameters() if p.dim() == 4}))
    (out, grads), (ref_out, ref_grads) = results
    assert out.dtype == ref_out.dtype and torch.equal(out, ref_out)
    for name, grad in grads.items():
        if fast:
            cos = torch.nn.functional.cosine_similarity(grad.flatten(), ref_grads[name].flatten(), dim=0)
            assert cos > 0.99, name
        else:
            assert torch.equal(grad, ref_grads[name]), name


def test_the_fast_layout_reaches_every_convolution_and_upsampling_channels_last(monkeypatch):
    """A concatenation of channels-last tensors can come out NCHW, its backward hands each branch a channel
    slice, and autocast pads in fp32: each costs the fast path conversion copies or a slow kernel."""
    net = skip_network(8, 3, width=16, depth=3, skip_channels=4).to(memory_format=torch.channels_last)
    z = input_code(8, (40, 40), seed=0).contiguous(memory_format=torch.channels_last)
    seen: list[tuple[bool, torch.dtype]] = []
    for module in net.modules():
        if isinstance(module, ReflectConv2d):
            module.register_forward_pre_hook(
                lambda m, inputs: seen.append(
                    (inputs[0].is_contiguous(memory_format=torch.channels_last), inputs[0].dtype)
                )
            )
    grads: list[torch.Tensor] = []
    interpolate = torch.nn.functional.interpolate

    def upsample(x, *args, **kwargs):  # the gradient that arrives at each upsampling's output
        y = interpolate(x, *args, **kwargs)
        y.register_hook(grads.append)
        return y

    monkeypatch.setattr(torch.nn.functional, "interpolate", upsample)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(z)
    out.float().mean().backward()
    assert len(seen) == 9 and all(nhwc for nhwc, _ in seen)
    assert seen[0][1] == torch.float32  # the first reads the fp32 input code; every later one gets bf16
    assert all(dtype == torch.bfloat16 for _, dtype in seen[1:])
    assert len(grads) == 3 and all(g.is_contiguous(memory_format=torch.channels_last) for g in grads)


# -- protocol --------------------------------------------------------------------------------------------
def test_step_protocol_loss_psnr_and_final_image():
    x, y = noisy_pair()
    recs = list(dip_sampler(None, None, tiny(max_steps=6, metrics_every=2, emit_every=3), truth=x, init=y))
    assert [r.t for r in recs] == list(range(1, 7))
    assert all("loss" in r.extra and math.isfinite(r.extra["loss"]) for r in recs)
    assert [r.t for r in recs if r.psnr is not None] == [2, 3, 4, 6]
    assert [r.t for r in recs if r.image is not None] == [3, 6]
    assert all(r.stop_reason is None for r in recs[:-1])
    last = recs[-1]
    assert last.stop_reason == StopReason.STEP_CAP and last.image.shape == (1, 1, 16, 16)
    assert last.ssim is not None


def test_same_seed_same_result_and_other_seed_differs():
    _, y = noisy_pair()

    def final(seed: int) -> torch.Tensor:
        return list(dip_sampler(None, None, tiny(max_steps=4, seed=seed), init=y))[-1].image

    assert torch.equal(final(0), final(0))
    assert not torch.equal(final(0), final(1))


def test_by_default_the_fit_runs_on_one_thread_whatever_the_caller_has():
    """The thread count changes the last digits, and timing would pick it by the load: one thread keeps a
    seed's result the same on a busy and an idle machine."""
    _, y = noisy_pair()
    defaults = DIPParams(**{k: v for k, v in TINY.items() if k != "threads"}, max_steps=6, metrics_every=1)
    assert defaults.threads == 1
    with cpu_threads(2):
        run = dip_sampler(None, None, defaults, init=y)
        last = list(run)[-1]
        assert torch.get_num_threads() == 2
    assert run.threads == 1 and last.extra["threads"] == 1.0
    with cpu_threads(1):
        again = list(dip_sampler(None, None, defaults, init=y))[-1]
    assert torch.equal(last.image, again.image)


def test_fit_loss_decreases_on_a_tiny_image():
    _, y = noisy_pair()
    recs = list(dip_sampler(None, None, tiny(max_steps=60, width=8, reg_noise_std=0.0), init=y))
    losses = [r.extra["loss"] for r in recs]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_gradient_descent_and_adam_both_run_and_differ():
    _, y = noisy_pair()
    adam = list(dip_sampler(None, None, tiny(max_steps=15), init=y))
    gd = list(dip_sampler(None, None, tiny(max_steps=15, optimizer="gd", lr=2.0), init=y))
    assert adam[-1].stop_reason == gd[-1].stop_reason == StopReason.STEP_CAP
    assert gd[-1].extra["loss"] < gd[0].extra["loss"]
    assert not torch.equal(adam[-1].image, gd[-1].image)


def test_exponential_average_is_the_reported_estimate():
    _, y = noisy_pair()
    recs = list(dip_sampler(None, None, tiny(max_steps=3, ema=0.99, emit_every=1), init=y))
    a1, a2 = recs[0].image, recs[1].image
    # after one step the average moved by only 1% of the difference
    assert (a2 - a1).abs().max() < 0.05 * max(float((a1 - y).abs().max()), 1e-3)


def test_stop_ends_with_a_cancelled_record_that_has_the_image():
    _, y = noisy_pair()
    run = dip_sampler(None, None, tiny(max_steps=100), init=y)
    first = next(run)
    assert first.stop_reason is None
    run.stop()
    last = next(run)
    assert last.stop_reason == StopReason.CANCELLED and last.image is not None
    with pytest.raises(StopIteration):
        next(run)


def test_thread_count_is_restored_after_a_run():
    before = torch.get_num_threads()
    _, y = noisy_pair()
    list(dip_sampler(None, None, tiny(max_steps=7, threads=0), init=y))
    assert torch.get_num_threads() == before
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_fast_path_takes_channels_last_with_bf16_only():
    _, y = noisy_pair()

    def run(**changes):
        r = dip_sampler(None, None, tiny(max_steps=2, **changes), init=y)
        weight = r.net.body.down[0][0].weight  # a 3×3 convolution: (4, 4, 3, 3)
        return r, weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()

    fast, nhwc = run(precision="bf16")
    assert fast.bf16 and fast.channels_last and nhwc
    assert list(fast)[-1].stop_reason == StopReason.STEP_CAP
    plain, nhwc = run(precision="bf16", fast=False)
    assert plain.bf16 and not plain.channels_last and not nhwc
    fp32, nhwc = run(precision="fp32")
    assert not fp32.channels_last and not nhwc
    forced, nhwc = run(precision="fp32", channels_last=True)
    assert forced.channels_last and nhwc


def test_denoising_needs_the_noisy_image():
    with pytest.raises(ParameterError, match="init"):
        dip_sampler(make_operator("denoise", (1, 16, 16)), torch.zeros(1, 0), tiny())


@pytest.mark.parametrize(
    "field_name,value", [("optimizer", "sgd"), ("lr", 0.0), ("max_steps", 0), ("early_stop", "yes"), ("ema", 1.0)]
)
def test_parameters_are_validated(field_name, value):
    with pytest.raises(ParameterError, match=field_name):
        tiny(**{field_name: value}).validate()


def test_presets_follow_the_paper():
    assert DIP_PRESETS["denoise"]["ema"] == 0.99
    assert DIPParams.preset("sr4").max_steps == 2000 and DIPParams.preset("sr8").reg_noise_std == 0.05
    sr8 = dip_params_for(LanczosDownsample((3, 64, 64), 8))
    assert sr8.max_steps == 4000
    assert dip_params_for(None).ema == 0.99
    for name in DIP_PRESETS:
        DIPParams.preset(name).validate()


# -- every operator ----------------------------------------------------------------------------------------
def _operators(shape):
    _, h, w = shape
    missing = torch.zeros(h, w, dtype=torch.bool)
    missing[4:10, 5:11] = True
    return [
        make_operator("inpaint", shape, missing=missing),
        make_operator("random_pixels", shape, fraction=0.5, seed=0),
        make_operator("super_resolution", shape, factor=4),
        make_operator("spectral", shape, fraction=0.2),
        make_operator("compressive", shape, fraction=0.3, seed=0),
        make_operator("blur", shape, kernel=gaussian_kernel(1.0)),
        LanczosDownsample(shape, 4),
    ]


@pytest.mark.parametrize("index", range(7))
def test_works_with_every_operator(index):
    x = smooth_image(3)
    op = _operators(tuple(x.shape))[index]
    c = op.forward(x.unsqueeze(0))
    recs = list(dip_sampler(op, c, tiny(max_steps=3, metrics_every=1), truth=x))
    assert recs[-1].stop_reason == StopReason.STEP_CAP
    assert recs[-1].image.shape == (1, 3, 16, 16)
    assert all(math.isfinite(r.data_error) and math.isfinite(r.psnr) for r in recs)


def test_an_unbatched_measurement_is_one_measurement_and_a_wrong_one_is_refused():
    x = smooth_image(3)
    op = make_operator("super_resolution", tuple(x.shape), factor=2)
    c = op.forward(x.unsqueeze(0))
    batched = list(dip_sampler(op, c, tiny(max_steps=2), truth=x))[-1]
    unbatched = list(dip_sampler(op, c[0], tiny(max_steps=2), truth=x))[-1]
    assert torch.equal(batched.image, unbatched.image)  # every channel fitted to its own data
    with pytest.raises(ParameterError, match="measurement has shape"):
        dip_sampler(op, c[:, :1], tiny())
    with pytest.raises(ParameterError, match="batch of 2"):
        dip_sampler(op, torch.cat([c, c]), tiny())


def test_flash_image_as_network_input():
    flash = smooth_image(3, seed=5)
    _, noflash = noisy_pair(3)
    recs = list(dip_sampler(None, None, tiny(max_steps=3), init=noflash, net_input=flash))
    assert recs[-1].image.shape == (1, 3, 16, 16)


FLASH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "dip" / "flash_no_flash"


@pytest.mark.skipif(not FLASH_DIR.is_dir(), reason="the flash/no-flash pair is not in the shared data")
def test_flash_no_flash_pair_with_the_paper_recipe():
    """The flash image is the fixed input, the no-flash image the target (the paper's recipe, a tiny net)."""
    from priorstudio.bench.dip import centre_crop
    from priorstudio.core.imageio import load_image

    flash = centre_crop(load_image(FLASH_DIR / "cave01_00_flash.jpg", mode="color"), 64)
    noflash = centre_crop(load_image(FLASH_DIR / "cave01_01_noflash.jpg", mode="color"), 64)
    params = DIPParams.preset("flash_no_flash", **{**TINY, "max_steps": 20})
    assert params.lr == 0.1 and params.reg_noise_std == 0.0
    run = dip_sampler(None, None, params, init=noflash, net_input=flash)
    recs = list(run)
    assert torch.equal(run.z[0], flash)  # no noise code: the network sees the flash image
    assert recs[-1].image.shape == (1, 3, 64, 64)
    assert recs[-1].extra["loss"] < recs[0].extra["loss"]


# -- early stopping ----------------------------------------------------------------------------------------
def test_running_variance_finds_the_valley_and_fires():
    """Outputs that settle (steps 1–40) and then drift with growing noise: the valley is near step 40."""
    g = torch.Generator().manual_seed(0)
    rule = RunningVariance(window=5, patience=20)
    fired_at = None
    base = torch.rand(1, 1, 8, 8, generator=g)
    for t in range(1, 121):
        wobble = 0.2 * math.exp(-t / 8) if t <= 40 else 0.002 * (t - 40)
        x = base + wobble * torch.randn(base.shape, generator=g)
        rule.update(x)
        if rule.fired and fired_at is None:
            fired_at = t
    assert 35 <= rule.best_step <= 50
    assert fired_at == rule.best_step + 20
    assert rule.best_image is not None


def test_running_variance_matches_a_direct_computation():
    g = torch.Generator().manual_seed(2)
    rule = RunningVariance(window=4, patience=100)
    xs = [torch.rand(2, 3, generator=g) for _ in range(11)]
    for t, x in enumerate(xs, start=1):
        var = rule.update(x)
        if t < 4:
            assert math.isnan(var)
        else:
            w = torch.stack(xs[t - 4 : t]).double()
            expected = float((w - w.mean(0)).pow(2).sum(dim=(1, 2)).mean()) / x.numel()
            assert var == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_early_stop_monitor_reports_and_stop_mode_ends_the_run():
    x, y = noisy_pair()
    common = {"max_steps": 80, "es_window": 2, "es_patience": 3}
    monitored = list(dip_sampler(None, None, tiny(early_stop="monitor", **common), truth=x, init=y))
    assert len(monitored) == 80 and "es_var" in monitored[-1].extra
    assert "es_psnr" in monitored[-1].extra
    fired = [r.t for r in monitored if r.message.startswith("early stopping")]
    assert fired, "the rule should fire with a patience of 3 steps"
    stopped = list(dip_sampler(None, None, tiny(early_stop="stop", **common), truth=x, init=y))
    assert stopped[-1].stop_reason == StopReason.EARLY_STOP
    assert stopped[-1].t == fired[0] and stopped[-1].image is not None


class Scripted(torch.nn.Module):
    """A "network" whose outputs are given in advance (one per call), for testing the bookkeeping."""

    def __init__(self, outputs: list[torch.Tensor]) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.outputs, self.calls = outputs, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.outputs[min(self.calls, len(self.outputs) - 1)]
        self.calls += 1
        return out.unsqueeze(0) + 0 * self.p


def test_the_early_stopping_choice_is_kept_once_the_rule_fires():
    """Outputs settle (steps 1–10), drift (11–25: the rule fires), then freeze (26–40: a lower variance).

    A run in "stop" mode would have returned the settled image, so that stays the rule's choice even though
    the running variance reaches a new minimum once the outputs freeze."""
    g = torch.Generator().manual_seed(0)
    x = smooth_image()
    outputs = [x + (0.01 if t <= 10 else 0.3) * torch.randn(x.shape, generator=g) for t in range(1, 26)]
    outputs += [outputs[-1]] * 15
    params = tiny(max_steps=40, early_stop="monitor", es_window=3, es_patience=5, precision="fp32", metrics_every=1)
    run = dip_sampler(None, None, params, truth=x, init=x, network=Scripted(outputs))
    recs = list(run)
    assert 3 <= run.es_fired_at - 5 <= 10 and recs[-1].extra["es_fired_at"] == run.es_fired_at
    assert run.monitor.best_step > 25  # the frozen outputs have zero variance
    step, image = run.es_choice
    assert step == run.es_fired_at - 5 and recs[-1].extra["es_step"] == step
    assert torch.equal(image, outputs[step - 1].unsqueeze(0))
    assert recs[-1].extra["es_psnr"] > recs[-1].psnr + 10  # the settled image, not the drifted one
    stopped = list(
        dip_sampler(None, None, replace(params, early_stop="stop"), truth=x, init=x, network=Scripted(outputs))
    )
    assert stopped[-1].t == run.es_fired_at and torch.equal(stopped[-1].image, image)


# -- continuing a run in another process ---------------------------------------------------------------------
def _saved(state: dict) -> dict:
    """``state`` through a file and back, loaded as the bench loads it (plain weights only)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _trace(records) -> list[tuple]:
    return [(r.t, r.extra.get("loss"), r.psnr, r.extra.get("es_var"), r.extra.get("es_step")) for r in records]


@pytest.mark.parametrize(
    "changes",
    [
        {"ema": 0.9, "early_stop": "monitor", "es_window": 3, "es_patience": 4},  # average, running variance
        {"optimizer": "gd", "lr": 0.05, "reg_noise_std": 0.05},  # plain gradient descent, input jitter
        {"fast": True, "precision": "bf16", "ema": 0.5},  # the fast path: bf16, channels_last, fused Adam
    ],
)
@pytest.mark.parametrize("stop_after", [1, 9])
def test_a_run_saved_and_resumed_gives_the_same_steps_as_one_run(changes, stop_after):
    """Stopped after ``stop_after`` steps, saved, loaded in a fresh run: the same losses, PSNRs, monitor
    values and final image, to the bit, as the run that never stopped."""
    x, y = noisy_pair(c=3)
    params = tiny(max_steps=16, emit_every=4, metrics_every=1, **changes)
    whole = list(dip_sampler(None, None, params, truth=x, init=y))
    first = dip_sampler(None, None, params, truth=x, init=y)
    head = [next(first) for _ in range(stop_after)]
    state = _saved(first.state())
    first.close()
    second = dip_sampler(None, None, params, truth=x, init=y)
    second.resume_from(state)
    tail = list(second)
    assert [r.t for r in tail] == list(range(stop_after + 1, 17))
    assert _trace(head + tail) == _trace(whole)
    assert torch.equal(tail[-1].image, whole[-1].image)
    assert whole[-1].extra.get("es_step") == tail[-1].extra.get("es_step")


def test_a_state_kept_in_memory_is_a_snapshot_the_run_does_not_change():
    """Taken mid-run and kept as it is (not saved) while the run goes on, it still resumes at its own step."""
    x, y = noisy_pair(c=3)
    params = tiny(max_steps=12, emit_every=4, metrics_every=1, ema=0.9)
    whole = list(dip_sampler(None, None, params, truth=x, init=y))
    first = dip_sampler(None, None, params, truth=x, init=y)
    head = [next(first) for _ in range(5)]
    state = first.state()
    list(first)  # the run goes on to its end: Adam's moments and the average change in place
    second = dip_sampler(None, None, params, truth=x, init=y)
    second.resume_from(state)
    tail = list(second)
    assert _trace(head + tail) == _trace(whole)
    assert torch.equal(tail[-1].image, whole[-1].image)


def test_a_saved_run_is_refused_for_other_parameters_an_other_image_or_once_started():
    x, y = noisy_pair()
    run = dip_sampler(None, None, tiny(max_steps=6), truth=x, init=y)
    next(run)
    state = run.state()
    assert state["t"] == 1
    with pytest.raises(ParameterError, match="other parameters"):
        dip_sampler(None, None, tiny(max_steps=6, lr=0.02), truth=x, init=y).resume_from(state)
    other = noisy_pair(size=32)
    with pytest.raises(ParameterError, match="image"):
        dip_sampler(None, None, tiny(max_steps=6), truth=other[0], init=other[1]).resume_from(state)
    with pytest.raises(ParameterError, match="before the run's first step"):
        run.resume_from(state)
    with pytest.raises(ParameterError, match="not a saved"):
        dip_sampler(None, None, tiny(max_steps=6), truth=x, init=y).resume_from({"t": 1})
    # what is shown (images, metrics) may differ: it does not change the numbers
    dip_sampler(None, None, tiny(max_steps=6, emit_every=2, metrics_every=3), truth=x, init=y).resume_from(state)


# -- the Lanczos downsampler ---------------------------------------------------------------------------------
def test_lanczos_rows_sum_to_one_and_keep_constants():
    for n, s in ((16, 4), (17, 4), (40, 8), (9, 2)):
        m = lanczos_matrix(n, s)
        assert m.shape == (-(-n // s), n)
        assert torch.allclose(m.sum(1), torch.ones(m.shape[0], dtype=m.dtype))
    assert torch.allclose(lanczos_downsample(torch.full((3, 20, 24), 0.3), 4), torch.full((3, 5, 6), 0.3))


@pytest.mark.parametrize("shape,factor", [((3, 17, 23), 4), ((1, 32, 32), 8), ((2, 10, 12), 2)])
def test_lanczos_adjoint(shape, factor):
    op = LanczosDownsample(shape, factor)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, *shape), generator=g, dtype=torch.float64)
    y = torch.randn((2, shape[0], *op.low_res_shape), generator=g, dtype=torch.float64)
    lhs = (op.forward(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)
    # the pseudo-inverse reproduces the measurement and is a minimum-norm solution (in range of the adjoint)
    assert torch.allclose(op.forward(op.pinv(y)), y, atol=1e-10)
    p = op.pinv(y)
    assert torch.allclose(op.complement(p), torch.zeros_like(p), atol=1e-10)
    # project is the orthogonal projector onto what the data determine: it and complement split x
    px = op.project(x)
    assert torch.allclose(px + op.complement(x), x, atol=1e-10)
    assert torch.allclose(op.project(px), px, atol=1e-10)
    assert float((px * op.complement(x)).sum()) == pytest.approx(0.0, abs=1e-9)


def test_lanczos_rejects_bad_factor_and_wrong_low_res_size():
    with pytest.raises(ParameterError):
        LanczosDownsample((1, 16, 16), 0)
    op = LanczosDownsample((1, 16, 16), 4)
    with pytest.raises(ParameterError, match="low-resolution"):
        op.measurement_from_observed(torch.zeros(1, 1, 5, 5))
    assert op.measurement_from_observed(torch.zeros(1, 1, 4, 4)).shape == (1, 1, 4, 4)


def test_a_nan_between_measured_steps_keeps_the_step_before_it():
    """PSNR is measured every 10 steps; the fit turns NaN at step 4: the run ends there with step 3's image
    (it used to end with no image at all, the last measured step being none)."""
    x = smooth_image()
    outputs = [x * (0.5 + 0.1 * t) for t in range(1, 4)] + [torch.full_like(x, math.nan)]
    params = tiny(max_steps=20, metrics_every=10, emit_every=0, ema=0.0, precision="fp32")
    recs = list(dip_sampler(None, None, params, truth=x, init=x, network=Scripted(outputs)))
    last = recs[-1]
    assert last.stop_reason is StopReason.DIVERGED_NAN and last.t == 4
    assert last.image is not None and torch.equal(last.image, outputs[2].unsqueeze(0))
    assert last.psnr is not None and math.isfinite(last.psnr)


def test_a_parameter_error_names_its_field():
    for changes, field in (({"ema": 1.0}, "ema"), ({"optimizer": "sgd"}, "optimizer"), ({"lr": 0.0}, "lr")):
        with pytest.raises(ParameterError) as info:
            DIPParams(**changes).validate()
        assert info.value.field == field
