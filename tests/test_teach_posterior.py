"""Posterior mean and std: the spread lights up inside an inpainting hole (Gaussian oracle, tiny image)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators import Inpaint
from priorstudio.core.samplers.gaussian import GaussianBlindDenoiser, GaussianPrior
from priorstudio.core.samplers.implicit_prior import ImplicitPriorParams
from priorstudio.core.teach.posterior import posterior_stream, posterior_summary, sample_posterior


def test_summary_of_known_samples():
    samples = torch.stack([torch.full((1, 2, 2), v) for v in (0.2, 0.4, 0.6)])
    s = posterior_summary(samples)
    assert s.k == 3
    torch.testing.assert_close(s.mean, torch.full((1, 2, 2), 0.4))
    torch.testing.assert_close(s.std, torch.full((1, 2, 2), 0.2))  # unbiased: divides by K − 1
    clipped = posterior_summary(torch.stack([torch.full((1, 1, 1), v) for v in (-1.0, 2.0)]))
    torch.testing.assert_close(clipped.mean, torch.full((1, 1, 1), 0.5))
    color = posterior_summary(torch.rand(4, 3, 5, 5))
    assert color.std_map().shape == (1, 5, 5)
    assert float(color.std_display().max()) == pytest.approx(1.0)
    assert float(color.std_display(scale=10.0).max()) < 0.1
    with pytest.raises(ParameterError):
        posterior_summary(torch.rand(1, 1, 4, 4))
    with pytest.raises(ParameterError):
        posterior_summary(torch.rand(1, 4, 4))
    with pytest.raises(ParameterError):
        s.region_std(torch.zeros(2, 2, dtype=torch.bool))


@pytest.mark.slow  # ~4 s: the oracle's blind noise estimate is a Newton solve per call
def test_std_is_larger_inside_the_hole():
    shape = (1, 8, 8)
    eigenvalues = 0.04 / (1 + torch.arange(64, dtype=torch.float64)) ** 0.8
    prior = GaussianPrior.with_spectrum(0.5, eigenvalues, seed=1)
    denoiser = GaussianBlindDenoiser(prior, shape)
    x = prior.sample(1, torch.Generator().manual_seed(2)).float().reshape(1, *shape)
    missing = torch.zeros(8, 8, dtype=torch.bool)
    missing[2:6, 2:6] = True
    op = Inpaint(shape, missing)
    params = ImplicitPriorParams(beta=0.25, sigma_L=0.01, max_steps=600, emit_every=0, seed=3)
    summary, last = sample_posterior(denoiser, op, op.forward(x), params, k=6)
    assert last.is_last and last.image.shape == (6, *shape)
    inside, outside = summary.region_std(missing)
    assert inside > 3 * outside, (inside, outside)
    # the mean agrees with the data outside the hole
    assert float((summary.mean - x[0])[:, ~missing].abs().max()) < 0.05


def test_stream_needs_two_samples():
    with pytest.raises(ParameterError):
        posterior_stream(None, None, torch.zeros(1, 4), None, 1)


def test_cli_writes_the_std_map_that_lights_up_the_hole(tmp_path, capsys):
    """`priorstudio restore … --samples K --std STD.png`: zero spread on measured pixels, spread in the hole."""
    from priorstudio.cli import main
    from priorstudio.core.denoisers import BiasFreeUNet
    from priorstudio.core.denoisers.registry import save_weights
    from priorstudio.core.imageio import load_image, save_image

    torch.manual_seed(0)
    model = tmp_path / "tiny-gray.pt"
    save_weights(model, BiasFreeUNet(1, (8, 16)))
    photo = tmp_path / "photo.png"
    save_image(torch.rand(1, 24, 24, generator=torch.Generator().manual_seed(1)), photo, bit_depth=16)
    argv = [
        "restore", photo, "-o", tmp_path / "mean.png", "--std", tmp_path / "std.png", "--samples", 3,
        "--model", model, "--task", "inpaint", "--mode", "simulate", "--block", 0.5, "--beta", 0.5,
        "--max-steps", 8, "--final-projection", "--bit-depth", 16, "-q",
    ]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    assert _printed_std_scale(capsys.readouterr().out) > 0
    std = load_image(tmp_path / "std.png", mode="gray")[0]
    hole = torch.zeros(24, 24, dtype=torch.bool)
    hole[6:18, 6:18] = True  # the central block of half of each side
    assert float(std.max()) == pytest.approx(1.0, abs=1e-4)  # scaled to its maximum
    assert float(std[~hole].max()) < 1e-3  # the data fix the measured pixels in every sample
    assert float(std[hole].mean()) > 0.05
    one = ["restore", str(photo), "-o", str(tmp_path / "x.png"), "--model", str(model), "-q"]
    assert main([*one, "--std", str(tmp_path / "s.png")]) != 0  # a spread needs K ≥ 2
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "x.png").exists()


def _printed_std_scale(out: str) -> float:
    match = re.search(r"white = std ([0-9.e+-]+)", out)
    assert match, out
    return float(match.group(1))


def test_cli_std_map_of_a_colour_image_is_the_desktop_apps_map(tmp_path, capsys, monkeypatch):
    """Colour samples give one gray map, the one the desktop app shows, and the line names its scale."""
    from priorstudio.cli import main
    from priorstudio.core.denoisers import BiasFreeUNet
    from priorstudio.core.denoisers.registry import save_weights
    from priorstudio.core.imageio import load_image, save_image
    from priorstudio.core.samplers import implicit_prior
    from priorstudio.core.samplers.base import StepRecord, StopReason

    samples = torch.rand(4, 3, 10, 12, generator=torch.Generator().manual_seed(2)) * 0.5
    samples[:, 1] *= 0.2  # channels spread differently: an RGB map and the app's one map disagree

    def known_samples(*args, **kwargs):
        yield StepRecord(t=1, sigma=0.01, image=samples.clone(), stop_reason=StopReason.CONVERGED)

    monkeypatch.setattr(implicit_prior, "implicit_prior_sampler", known_samples)
    torch.manual_seed(0)
    save_weights(tmp_path / "tiny-color.pt", BiasFreeUNet(3, (8, 16)))
    save_image(torch.rand(3, 10, 12), tmp_path / "photo.png")
    argv = [
        "restore", tmp_path / "photo.png", "-o", tmp_path / "mean.png", "--std", tmp_path / "std.png",
        "--samples", 4, "--beta", 0.5, "--model", tmp_path / "tiny-color.pt", "--bit-depth", 16,
        "--json", tmp_path / "run.json", "-q",
    ]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    summary = posterior_summary(samples)
    scale = float(summary.std_map().max())
    assert _printed_std_scale(capsys.readouterr().out) == pytest.approx(scale, rel=1e-3)
    std = load_image(tmp_path / "std.png")
    assert std.shape == (1, 10, 12)  # one map, not one per channel
    torch.testing.assert_close(std, summary.std_display(scale), atol=1e-4, rtol=0)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["metrics"]["std_scale"] == pytest.approx(scale)
