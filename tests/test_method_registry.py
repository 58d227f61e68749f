"""The method registry: every method behind one call, and compare()."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from priorstudio.core.denoisers import BiasFreeUNet, Denoiser
from priorstudio.core.errors import ParameterError
from priorstudio.core.operators import make_operator
from priorstudio.core.samplers.base import StopReason
from priorstudio.core.samplers.dip import DIPParams
from priorstudio.core.samplers.nonlocal_filters import TwicingParams
from priorstudio.core.samplers.registry import METHODS, MethodSpec, compare, get_method, summarize

NAMES = ("implicit_prior", "dip_adam", "dip_gd", "nlm_twicing", "ntk_twicing")
TINY_DIP = {"width": 4, "depth": 2, "skip_channels": 2, "input_channels": 4, "threads": 1}


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand((1, 1, 4, 4), generator=g), size=(16, 16), mode="bilinear")[0]
    missing = torch.zeros(16, 16, dtype=torch.bool)
    missing[5:11, 4:12] = True
    op = make_operator("inpaint", (1, 16, 16), missing=missing)
    return op, op.forward(x.unsqueeze(0)), x


@pytest.fixture(scope="module")
def denoiser():
    torch.manual_seed(0)
    return Denoiser(BiasFreeUNet(1, (8, 16)), fast=False)


def small_params(name: str, op, steps: int = 3):
    params = METHODS[name].default_params(op, max_steps=steps)
    if isinstance(params, DIPParams):
        params = METHODS[name].default_params(op, max_steps=steps, **TINY_DIP)
    if isinstance(params, TwicingParams):
        params = METHODS[name].default_params(op, max_steps=steps, patch=3, window=5)
    return params


def test_registry_lists_the_methods():
    assert tuple(METHODS) == NAMES
    for name, spec in METHODS.items():
        assert isinstance(spec, MethodSpec) and spec.name == name
        assert spec.label and spec.description
        assert isinstance(spec.params_class, type)
    assert METHODS["implicit_prior"].needs_denoiser
    assert not any(METHODS[n].needs_denoiser for n in NAMES[1:])
    assert METHODS["dip_gd"].default_params(None).optimizer == "gd"
    assert METHODS["dip_adam"].default_params(None).optimizer == "adam"
    assert METHODS["ntk_twicing"].default_params(None).kernel == "ntk"
    with pytest.raises(ParameterError, match="unknown method"):
        get_method("bm3d")


@pytest.mark.parametrize("name", NAMES)
def test_every_method_runs_three_steps_on_a_small_inpainting_problem(name, problem, denoiser):
    op, c, x = problem
    spec = METHODS[name]
    stream = spec.run(
        operator=op,
        measurement=c,
        params=small_params(name, op),
        truth=x,
        denoiser=denoiser if spec.needs_denoiser else None,
        emit_every=1,
        init=None,
    )
    records = list(stream)
    assert 1 <= len(records) <= 3
    last = records[-1]
    assert last.stop_reason is not None and last.image.shape == (1, 1, 16, 16)
    assert last.psnr is not None and math.isfinite(last.psnr)


def test_compare_summaries(problem, denoiser):
    op, c, x = problem
    params = {n: small_params(n, op, 4) for n in NAMES}
    seen: list[str] = []
    result = compare(NAMES, op, c, x, denoiser=denoiser, params=params, on_record=lambda n, r: seen.append(n))
    assert list(result) == list(NAMES)
    for name, s in result.items():
        assert s.steps >= 1 and s.seconds > 0 and s.image is not None
        assert math.isfinite(s.best_psnr) and 1 <= s.best_step <= s.steps
        assert s.best_psnr >= s.final_psnr - 1e-9
        assert s.psnr_curve and s.psnr_curve[-1][0] == s.steps
        row = s.row()
        assert row["method"] == name and row["psnr_best"] == pytest.approx(s.best_psnr, abs=1e-3)
    assert set(seen) == set(NAMES)


def test_compare_caps_steps_and_on_record_can_stop_a_method(problem):
    op, c, x = problem
    dip = METHODS["dip_adam"].default_params(op, **TINY_DIP)
    result = compare(["dip_adam"], op, c, x, params={"dip_adam": dip}, max_steps=5)
    assert result["dip_adam"].steps == 5
    stopped = compare(["dip_adam"], op, c, x, params={"dip_adam": dip}, on_record=lambda n, r: r.t < 2)
    assert stopped["dip_adam"].steps == 3  # asked at step 2; step 3 is the final (cancelled) record
    assert stopped["dip_adam"].stop_reason == StopReason.CANCELLED.value


def test_implicit_prior_needs_a_denoiser(problem):
    op, c, x = problem
    with pytest.raises(ParameterError, match="denoiser"):
        METHODS["implicit_prior"].run(operator=op, measurement=c, params=None, truth=x)
    result = compare(["implicit_prior"], op, c, x, skip_errors=True)
    assert "denoiser" in result["implicit_prior"].error
    assert "error" in result["implicit_prior"].row()


def test_wrong_parameter_type_and_unknown_override(problem):
    op, c, x = problem
    with pytest.raises(ParameterError, match="TwicingParams"):
        METHODS["nlm_twicing"].run(operator=op, measurement=c, params=DIPParams(), truth=x)
    with pytest.raises(ParameterError, match="no parameter"):
        METHODS["dip_adam"].default_params(op, sigma_0=1.0)


def test_denoising_through_the_registry_uses_init():
    g = torch.Generator().manual_seed(1)
    x = F.interpolate(torch.rand((1, 1, 4, 4), generator=g), size=(16, 16), mode="bilinear")[0]
    y = x + 0.1 * torch.randn(x.shape, generator=g)
    op = make_operator("denoise", (1, 16, 16))
    c = op.forward(y.unsqueeze(0))
    summary = summarize(
        "nlm_twicing",
        METHODS["nlm_twicing"].run(
            operator=op, measurement=c, params=TwicingParams(patch=3, window=5, max_steps=3), truth=x, init=y
        ),
    )
    assert summary.steps == 3 and math.isfinite(summary.best_psnr)
