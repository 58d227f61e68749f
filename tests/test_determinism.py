"""The same seed, model and parameters give bit-identical results on the same machine; another seed differs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from priorstudio.cli import main
from priorstudio.core.denoisers import BiasFreeUNet, Denoiser
from priorstudio.core.denoisers.registry import save_weights
from priorstudio.core.problem import build_problem
from priorstudio.core.samplers.implicit_prior import ImplicitPriorParams, implicit_prior_sampler


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny-gray.pt"
    save_weights(path, BiasFreeUNet(1, (8, 16)))
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from priorstudio.core.imageio import save_image

    path = tmp_path_factory.mktemp("photo") / "photo.png"
    img = torch.rand(1, 24, 20, generator=torch.Generator().manual_seed(1))
    save_image(img, path, bit_depth=16, overwrite=True)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _restore(tmp_path: Path, photo: Path, model: Path, name: str, *extra: object) -> Path:
    out = tmp_path / name
    argv = [
        "restore", photo, "-o", out, "--model", model, "--task", "pixels", "--fraction", "0.3",
        "--max-steps", 6, "--bit-depth", 16, "-q", *extra,
    ]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return out


def test_cli_restore_is_bit_identical(tmp_path: Path, photo: Path, model_file: Path) -> None:
    a = _restore(tmp_path, photo, model_file, "a.png", "--seed", 5)
    b = _restore(tmp_path, photo, model_file, "b.png", "--seed", 5)
    c = _restore(tmp_path, photo, model_file, "c.png", "--seed", 6)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_cli_restore_with_samples_and_std_is_bit_identical(tmp_path: Path, photo: Path, model_file: Path) -> None:
    common = ("--seed", 3, "--samples", 2, "--beta", 0.5)
    a = _restore(tmp_path, photo, model_file, "a.png", *common, "--std", tmp_path / "a-std.png")
    b = _restore(tmp_path, photo, model_file, "b.png", *common, "--std", tmp_path / "b-std.png")
    assert _digest(a) == _digest(b)
    assert _digest(tmp_path / "a-std.png") == _digest(tmp_path / "b-std.png")


def test_cli_sample_is_bit_identical(tmp_path: Path, model_file: Path) -> None:
    def sample(folder: str, seed: int) -> list[str]:
        argv = ["sample", "-n", 2, "--size", 16, "-o", tmp_path / folder, "--model", model_file]
        assert main([str(a) for a in [*argv, "--max-steps", 5, "--seed", seed, "-q"]]) == 0
        return [_digest(p) for p in sorted((tmp_path / folder).glob("*.png"))]

    first, again, other = sample("a", 11), sample("b", 11), sample("c", 12)
    assert len(first) == 2 and first == again
    assert first != other


def _run(denoiser: Denoiser, seed: int, task: str, **task_params) -> torch.Tensor:
    image = torch.rand(1, 20, 18, generator=torch.Generator().manual_seed(2))
    problem = build_problem(image, task, mode="simulate", noise_sigma=0.02, seed=seed, **task_params)
    params = ImplicitPriorParams(sigma_0=1.0, sigma_L=0.01, h_0=0.05, beta=0.3, seed=seed, max_steps=8)
    params.validate()
    last = None
    for rec in implicit_prior_sampler(denoiser, problem.operator, problem.measurement, params, truth=problem.truth):
        last = rec
    assert last is not None and last.image is not None
    return last.image


@pytest.mark.parametrize(
    ("task", "task_params"),
    [("random_pixels", {"fraction": 0.25}), ("compressive", {"fraction": 0.3}), ("super_resolution", {"factor": 2})],
)
def test_core_api_is_bit_identical(task: str, task_params: dict) -> None:
    torch.manual_seed(0)
    denoiser = Denoiser(BiasFreeUNet(1, (8, 16)), fast=True, device="cpu")
    torch.manual_seed(123)  # the global generator must not matter: the run's seed decides everything
    a = _run(denoiser, 7, task, **task_params)
    torch.manual_seed(456)
    torch.rand(100)
    b = _run(denoiser, 7, task, **task_params)
    c = _run(denoiser, 8, task, **task_params)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("seed", [-1, 2**63, -(2**63) - 1])
def test_a_noise_seed_outside_what_a_generator_takes_is_a_parameter_error(seed):
    """A seed torch cannot take is refused with a message, not a crash inside the generator."""
    from priorstudio.core.errors import ParameterError
    from priorstudio.core.problem import build_problem

    with pytest.raises(ParameterError, match="seed must be in"):
        build_problem(torch.rand(1, 8, 8), "denoise", seed=seed)
