"""Training: the saved file, exact resume, Ctrl-C, and data-parallel training with torchrun."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from priorstudio.core.denoisers import BiasFreeUNet, load_denoiser, load_weights_file
from priorstudio.core.denoisers.registry import pack_weights, save_weights
from priorstudio.core.denoisers.training import TrainConfig, checkpoint_path, sigma_weighted_mse, train
from priorstudio.core.errors import ParameterError

TINY = {"widths": [8, 16]}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """A few small structured images (smooth blobs plus edges), as PNG and JPEG."""
    folder = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:56]
    for i in range(6):
        img = 0.5 + 0.3 * np.sin(xx / (3 + i) + rng.uniform(0, 6)) * np.cos(yy / (4 + i))
        img[:, 20 + i :] += 0.2
        arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / (f"im{i}.png" if i % 2 else f"im{i}.jpg"))
    return folder


def _cfg(image_dir: Path, out: Path, steps: int) -> TrainConfig:
    return TrainConfig(
        data_dir=str(image_dir),
        out=str(out),
        channels=1,
        arch_config=TINY,
        val_split=2,
        patch=32,
        batch=4,
        steps=steps,
        steps_per_epoch=3,
        warmup=2,
        threads=1,
    )


def test_training_writes_a_self_describing_safe_file(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    result = train(_cfg(image_dir, out, 6), show_progress=False, log=lambda s: None)
    assert result["step"] == 6
    blob = load_weights_file(out)  # weights_only=True inside
    assert blob["arch"] == "unet" and blob["arch_config"]["widths"] == [8, 16]
    assert blob["training"]["sigma_max"] == pytest.approx(0.4)
    assert blob["training"]["train_files"] == 4
    assert len(blob["data_hash"]) == 64
    assert set(blob["validation"]) >= {"psnr_15", "psnr_25", "psnr_50", "step"}
    assert [h["step"] for h in blob["validation_history"]] == [3, 6]
    d = load_denoiser(out, channels=1, device="cpu")
    assert d(torch.rand(1, 1, 20, 20)).shape == (1, 1, 20, 20)


def test_one_training_image_and_no_validation_folder_says_so(image_dir: Path, tmp_path: Path) -> None:
    """Nothing is held out of a single image: no NaN figures, a message saying how to validate."""
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "only.png").write_bytes((image_dir / "im1.png").read_bytes())
    lines: list[str] = []
    out = tmp_path / "one.pt"
    train(_cfg(folder, out, 3), show_progress=False, log=lines.append)
    blob = load_weights_file(out)
    assert blob["validation_history"] == [{"step": 3, "loss": pytest.approx(blob["validation_history"][0]["loss"])}]
    assert all(np.isfinite(h["loss"]) for h in blob["validation_history"])
    assert any("no validation images" in line and "--val" in line for line in lines)


def _stop_at(step: int):
    """A log that presses Ctrl-C when the run reports its validation at ``step``: it then checkpoints and stops."""

    def log(line: str) -> None:
        if line.lstrip().startswith(f"step {step}:"):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # the handler train() installed

    return log


def test_resume_continues_exactly(image_dir: Path, tmp_path: Path) -> None:
    straight = train(_cfg(image_dir, tmp_path / "a.pt", 6), show_progress=False, log=lambda s: None)
    stopped = train(_cfg(image_dir, tmp_path / "b.pt", 6), show_progress=False, log=_stop_at(3))
    assert stopped["interrupted"] and stopped["step"] == 3
    assert checkpoint_path(tmp_path / "b.pt").exists()
    resumed = train(_cfg(image_dir, tmp_path / "b.pt", 6), resume=True, show_progress=False, log=lambda s: None)
    assert resumed["step"] == 6
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    # the smoothed loss carries on too: the validation history is that of the run that never stopped
    assert [h["step"] for h in resumed["history"]] == [3, 6]
    assert resumed["history"] == straight["history"]
    assert load_weights_file(tmp_path / "b.pt")["validation_history"] == straight["history"]
    fresh = train(_cfg(image_dir, tmp_path / "c.pt", 4), show_progress=False, log=lambda s: None)
    assert fresh["weights_sha256"] != straight["weights_sha256"]


def test_resume_keeps_the_runs_bf16_choice(image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether to compute in bf16 is decided when a run begins, not again on the machine that resumes it."""
    from priorstudio.core.denoisers import training

    monkeypatch.setattr(training, "cpu_has_fast_bf16", lambda: False)
    straight = train(_cfg(image_dir, tmp_path / "a.pt", 6), show_progress=False, log=lambda s: None)
    train(_cfg(image_dir, tmp_path / "b.pt", 6), show_progress=False, log=_stop_at(3))
    monkeypatch.setattr(training, "cpu_has_fast_bf16", lambda: True)
    resumed = train(_cfg(image_dir, tmp_path / "b.pt", 6), resume=True, show_progress=False, log=lambda s: None)
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert load_weights_file(tmp_path / "b.pt")["training"]["bf16"] is False


def test_fine_tune_starts_from_weights_and_keeps_lineage(image_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.pt"
    train(_cfg(image_dir, base, 6), show_progress=False, log=lambda s: None)
    # zero steps of fine-tuning would be the base itself: one step must move away from it, not from random
    cfg = _cfg(image_dir, tmp_path / "ft.pt", 3)
    cfg.init_from, cfg.lr = str(base), 1e-12
    cfg.lr_min = 1e-12
    train(cfg, show_progress=False, log=lambda s: None)
    a, b = load_weights_file(base)["state_dict"], load_weights_file(tmp_path / "ft.pt")["state_dict"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6  # started from base (tiny lr: barely moved)
    blob = load_weights_file(tmp_path / "ft.pt")
    (entry,) = blob["training"]["lineage"]
    assert entry["file"] == "base.pt" and entry["step"] == 6
    assert blob["training"]["total_steps"] == 9
    # a second fine-tune carries the whole history forward
    cfg2 = _cfg(image_dir, tmp_path / "ft2.pt", 2)
    cfg2.init_from = str(tmp_path / "ft.pt")
    train(cfg2, show_progress=False, log=lambda s: None)
    blob2 = load_weights_file(tmp_path / "ft2.pt")
    assert [e["file"] for e in blob2["training"]["lineage"]] == ["base.pt", "ft.pt"]
    assert blob2["training"]["total_steps"] == 11


def test_fine_tune_refuses_another_architecture(image_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.pt"
    train(_cfg(image_dir, base, 2), show_progress=False, log=lambda s: None)
    cfg = _cfg(image_dir, tmp_path / "ft.pt", 2)
    cfg.init_from, cfg.arch_config = str(base), {"widths": [8, 16, 32]}
    with pytest.raises(ParameterError, match=r"init-from base\.pt"):
        train(cfg, show_progress=False, log=lambda s: None)
    cfg.init_from = str(tmp_path / "missing.pt")
    with pytest.raises(ParameterError, match="no weights file"):
        train(cfg, show_progress=False, log=lambda s: None)
    colour = tmp_path / "colour.pt"  # a colour model for a gray run: the command line's missing flag, by name
    save_weights(colour, BiasFreeUNet(3, (8, 16)))
    cfg.init_from, cfg.arch_config = str(colour), {"widths": [8, 16]}
    with pytest.raises(ParameterError, match=r"colour\.pt: it is a colour \(3 channels\) model .*\(add --color"):
        train(cfg, show_progress=False, log=lambda s: None)
    bare = tmp_path / "bare.pt"  # a file whose configuration leaves the channels at the default (1)
    blob = pack_weights(BiasFreeUNet(1, (8, 16)))
    del blob["arch_config"]["channels"]
    torch.save(blob, bare)
    cfg.init_from, cfg.arch_config, cfg.channels = str(bare), {"widths": [8, 16]}, 3
    with pytest.raises(ParameterError, match=r"bare\.pt: it is a gray \(1 channel\) model .*\(drop --color"):
        train(cfg, show_progress=False, log=lambda s: None)
    cfg.channels = 1  # …and it fine-tunes a gray run
    assert train(cfg, show_progress=False, log=lambda s: None)["step"] == 2
    cfg.out = str(tmp_path / "ft2.pt")
    normed = tmp_path / "normed.pt"  # a UNet with batch norm (the command line trains without): refused by name
    save_weights(normed, BiasFreeUNet(1, (8, 16), norm=True))
    cfg.init_from, cfg.arch_config = str(normed), {"widths": [8, 16]}
    with pytest.raises(ParameterError, match=r"normed\.pt: its UNet has batch norm and this run's does not"):
        train(cfg, show_progress=False, log=lambda s: None)


def test_fine_tune_grows_a_unet_without_changing_its_output(image_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.pt"
    train(_cfg(image_dir, base, 3), show_progress=False, log=lambda s: None)
    cfg = _cfg(image_dir, tmp_path / "wide.pt", 1)
    cfg.init_from, cfg.arch_config = str(base), {"widths": [12, 16]}
    cfg.lr = cfg.lr_min = 1e-12  # one step that barely moves: the output is still the base model's
    logged: list[str] = []
    train(cfg, show_progress=False, log=logged.append)
    assert any("grew the network from widths [8, 16] to [12, 16]" in line for line in logged)
    blob = load_weights_file(tmp_path / "wide.pt")
    assert blob["arch_config"]["widths"] == [12, 16]
    assert blob["training"]["lineage"][-1]["widths"] == [8, 16]
    y = torch.rand(1, 1, 24, 24)
    narrow = load_denoiser(base, channels=1, device="cpu", fast=False)
    wide = load_denoiser(tmp_path / "wide.pt", channels=1, device="cpu", fast=False)
    assert torch.allclose(narrow(y), wide(y), atol=1e-5)
    # narrower than the file is not growing: refused
    cfg = _cfg(image_dir, tmp_path / "narrow.pt", 1)
    cfg.init_from, cfg.arch_config = str(base), {"widths": [4, 16]}
    with pytest.raises(ParameterError, match="only be grown"):
        train(cfg, show_progress=False, log=lambda s: None)


def test_fine_tune_deepens_a_unet_without_changing_its_output(image_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.pt"
    train(_cfg(image_dir, base, 3), show_progress=False, log=lambda s: None)
    cfg = _cfg(image_dir, tmp_path / "deep.pt", 1)
    cfg.init_from, cfg.arch_config = str(base), {"widths": [8, 16], "tail": 2}
    cfg.lr = cfg.lr_min = 1e-12
    logged: list[str] = []
    train(cfg, show_progress=False, log=logged.append)
    assert any("grew the network from 0 to 2 tail layers" in line for line in logged)
    blob = load_weights_file(tmp_path / "deep.pt")
    assert blob["arch_config"]["tail"] == 2 and blob["training"]["lineage"][-1]["tail"] == 0
    y = torch.rand(1, 1, 24, 24)
    shallow = load_denoiser(base, channels=1, device="cpu", fast=False)
    deep = load_denoiser(tmp_path / "deep.pt", channels=1, device="cpu", fast=False)
    assert torch.allclose(shallow(y), deep(y), atol=1e-5)
    # a deepened file cannot start a shallower run
    cfg = _cfg(image_dir, tmp_path / "shallow.pt", 1)
    cfg.init_from = str(tmp_path / "deep.pt")
    with pytest.raises(ParameterError, match="no fewer tail layers"):
        train(cfg, show_progress=False, log=lambda s: None)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(cmd: list[str], timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """Run torchrun; a run that hangs is stopped with its workers (which torchrun starts in sessions of their own)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**_env(), **env})
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun then stops its workers: SIGTERM, and SIGKILL half a minute later
        try:
            stdout, stderr = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = "", ""
        pytest.fail(f"torchrun still running after {timeout} s:\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_cleanly(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted.pt"
    cmd = [
        sys.executable,
        "-m",
        "priorstudio",
        "train",
        str(image_dir),
        "--out",
        str(out),
        "--widths",
        "8,16",
        "--patch",
        "32",
        "--batch",
        "2",
        "--steps",
        "100000",
        "--val-split",
        "1",
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=_env(), text=True)
    deadline = time.monotonic() + 60
    seen = ""
    while "step " not in seen and time.monotonic() < deadline:
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout
    blob = load_weights_file(out)
    assert blob["training"]["step"] >= 1
    assert checkpoint_path(out).exists()


@pytest.mark.slow
def test_torchrun_two_processes_agree(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "-m",
        "priorstudio",
        "train",
        str(image_dir),
        "--out",
        str(out),
        "--widths",
        "8,16",
        "--patch",
        "32",
        "--batch",
        "2",
        "--steps",
        "4",
        "--epoch-steps",
        "2",
        "--val-split",
        "1",
        "--threads",
        "1",
        "-q",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    digests = dict(re.findall(r"rank (\d) weights sha256 ([0-9a-f]{64})", done.stdout))
    assert set(digests) == {"0", "1"}, done.stdout
    assert digests["0"] == digests["1"]
    blob = load_weights_file(out)
    assert blob["training"]["world_size"] == 2
    assert load_denoiser(out, channels=1, device="cpu")(torch.rand(1, 1, 16, 16)).shape == (1, 1, 16, 16)

    # Ctrl-C at step 2 (checkpointing every step meanwhile), then --resume: the same weights as the run above
    driver = _torchrun_driver(tmp_path)
    stopped_out = tmp_path / "stopped.pt"
    argv = [a if a != str(out) else str(stopped_out) for a in cmd[cmd.index("train") :]]
    stopped = _torchrun([*cmd[:5], str(driver), *argv, "--checkpoint-minutes", "0"], STOP_AT_STEP="2")
    assert stopped.returncode != 0 and "stopped at step 2" in stopped.stdout, stopped.stdout + stopped.stderr
    checkpoint = load_weights_file(checkpoint_path(stopped_out))
    assert checkpoint["step"] == 2 and checkpoint["generator_states"].shape[0] == 2
    resumed = _torchrun([*cmd[:5], str(driver), *argv, "--resume"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout
    again = dict(re.findall(r"rank (\d) weights sha256 ([0-9a-f]{64})", resumed.stdout))
    assert again == digests, resumed.stdout
    assert load_weights_file(stopped_out)["validation_history"] == blob["validation_history"]


def _torchrun_driver(folder: Path) -> Path:
    """`priorstudio` under torchrun, but rank 0 presses Ctrl-C when it logs step $STOP_AT_STEP, and rank 1 may
    be told to look for its checkpoint beside another --out ($RANK1_OUT)."""
    driver = folder / "driver.py"
    driver.write_text(
        """
import os, signal, sys
from priorstudio import cli
from priorstudio.core.denoisers import training

real_train = training.train
stop_at = os.environ.get("STOP_AT_STEP")

def log(line):
    print(line, flush=True)
    if stop_at and line.lstrip().startswith(f"step {stop_at}:"):
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)

def train(cfg, **kwargs):
    if os.environ.get("RANK1_OUT") and os.environ["RANK"] == "1":
        cfg.out = os.environ["RANK1_OUT"]
    return real_train(cfg, **{**kwargs, "log": log})

training.train = train
sys.exit(cli.main(sys.argv[1:]))
"""
    )
    return driver


@pytest.mark.slow
def test_torchrun_ranks_must_agree_on_the_checkpoint(image_dir: Path, tmp_path: Path) -> None:
    """A rank that finds no checkpoint (say, on another machine) would start afresh: every rank refuses."""
    from priorstudio.cli import main

    out = tmp_path / "model.pt"
    argv = ["train", str(image_dir), "--out", str(out), "--widths", "8,16", "--patch", "32", "--batch", "4"]
    argv += ["--steps", "3", "--epoch-steps", "3", "--val-split", "2", "--threads", "1", "-q"]
    assert main(argv) == 0  # one process: a finished run and its checkpoint, at step 3
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    done = _torchrun([*cmd, str(_torchrun_driver(tmp_path)), *argv, "--resume"], 120, RANK1_OUT=str(tmp_path / "b.pt"))
    assert done.returncode != 0
    # both ranks refuse (torchrun may stop the second before it prints), and neither trains
    message = r"error: --resume: the ranks do not agree on the checkpoint .*\(rank 0: step 3, rank 1: no checkpoint\)"
    assert re.search(message + "; every rank must see the same checkpoint file", done.stderr), done.stderr
    assert "resumed from" not in done.stdout and "weights sha256" not in done.stdout, done.stdout


# -- devices ---------------------------------------------------------------------------------------------------
class _OnDevice(torch.nn.Module):
    """A stand-in network whose weights live on another device (``meta``: no GPU needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1, device="meta"))
        self.inputs: list[torch.device] = []

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        self.inputs.append(y.device)
        return y * self.w


def test_validation_runs_on_the_networks_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from priorstudio.core.denoisers import training

    seen: list[tuple[torch.device, torch.device]] = []

    def fake_psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
        seen.append((x.device, ref.device))
        return 30.0

    monkeypatch.setattr(training, "psnr", fake_psnr)
    net = _OnDevice()
    images = [torch.rand(1, 8, 8), torch.rand(1, 8, 10)]
    assert training.validate(net, images) == {"psnr_15": 30.0, "psnr_25": 30.0, "psnr_50": 30.0}
    meta = torch.device("meta")
    assert net.inputs == [meta] * 6 and seen == [(meta, meta)] * 6


def test_validation_on_the_cpu_is_unchanged() -> None:
    """The figures are those of the noisy images drawn, in order, from the CPU generator seeded 1234."""
    from priorstudio.core.denoisers.training import psnr, validate

    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    images = [torch.rand(1, 8, 8), torch.rand(1, 9, 7)]
    gen = torch.Generator().manual_seed(1234)
    expected = {}
    with torch.no_grad():
        for s in (15, 25, 50):
            vals = [
                psnr(net(x + (s / 255.0) * torch.randn(x.shape, generator=gen)), x) for x in (i[None] for i in images)
            ]
            expected[f"psnr_{s}"] = float(np.mean(vals))
    assert validate(net, images) == expected


def test_each_rank_trains_on_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun the rank's GPU (LOCAL_RANK) is made current, which NCCL needs; without CUDA, the CPU."""
    from priorstudio.core.denoisers import training

    current: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert training._training_device() == torch.device("cuda", 1) and current == [torch.device("cuda", 1)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert training._training_device() == torch.device("cpu") and len(current) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu(image_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(image_dir, tmp_path / "gpu.pt", 6)
    result = train(cfg, show_progress=False, log=lambda s: None)
    assert result["step"] == 6 and [h["step"] for h in result["history"]] == [3, 6]
    assert all(np.isfinite(h["psnr_25"]) for h in result["history"])
    resumed_cfg = _cfg(image_dir, tmp_path / "gpu.pt", 6)
    assert train(resumed_cfg, resume=True, show_progress=False, log=lambda s: None)["step"] == 6


# -- training images -------------------------------------------------------------------------------------------
def test_sixteen_bit_images_keep_their_range(tmp_path: Path) -> None:
    """A 16-bit gray PNG is scaled to 0–255, not clipped to 255 by Pillow's conversion."""
    from priorstudio.core.denoisers.training import PatchSampler, _read

    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")  # Pillow reads it as a 16-bit image, not as "L"
    gray = _read(tmp_path / "deep.png", 1)
    assert gray.dtype == np.uint8 and gray.shape == (64, 64, 1)
    np.testing.assert_array_equal(gray[..., 0], np.rint(ramp / 65535 * 255).astype(np.uint8))
    color = _read(tmp_path / "deep.png", 3)
    assert color.shape == (64, 64, 3) and (color == gray).all()
    patches = PatchSampler([gray], 32, (1.0,)).sample(16, torch.Generator().manual_seed(0))
    assert patches.min() < 0.3 and patches.max() > 0.7 and len(patches.unique()) > 100


def test_eight_bit_images_are_read_as_before(tmp_path: Path) -> None:
    """8-bit gray and RGB files keep Pillow's conversion, so existing runs draw the same patches."""
    from priorstudio.core.denoisers.training import _read

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 1]).save(tmp_path / "gray.png")
    with Image.open(tmp_path / "rgb.png") as im:
        np.testing.assert_array_equal(_read(tmp_path / "rgb.png", 1)[..., 0], np.asarray(im.convert("L")))
    np.testing.assert_array_equal(_read(tmp_path / "rgb.png", 3), rgb)
    np.testing.assert_array_equal(_read(tmp_path / "gray.png", 1)[..., 0], rgb[..., 1])
    np.testing.assert_array_equal(_read(tmp_path / "gray.png", 3), np.repeat(rgb[..., 1:2], 3, axis=2))


# -- resuming safely ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step run: its weights file and, beside it, its checkpoint."""
    out = tmp_path_factory.mktemp("finished") / "model.pt"
    train(_cfg(image_dir, out, 3), show_progress=False, log=lambda s: None)
    return out


def _resume_copy(finished_run: Path, tmp_path: Path, checkpoint: bytes | None = None) -> Path:
    out = tmp_path / "model.pt"
    out.write_bytes(finished_run.read_bytes())
    checkpoint_path(out).write_bytes(checkpoint_path(finished_run).read_bytes() if checkpoint is None else checkpoint)
    return out


def test_resume_refuses_other_settings(image_dir: Path, finished_run: Path, tmp_path: Path) -> None:
    out = _resume_copy(finished_run, tmp_path)

    def resume(**changes) -> dict:
        cfg = _cfg(image_dir, out, 3)
        for key, value in changes.items():
            setattr(cfg, key, value)
        return train(cfg, resume=True, show_progress=False, log=lambda s: None)

    cases = [
        ({"steps": 6}, r"--steps 3 in the checkpoint, 6 now"),  # another cosine schedule
        ({"sigma_max": 90 / 255}, r"--sigma-max 102 in the checkpoint, 90 now"),
        ({"sigma_weight": 1.0}, r"--sigma-weight 0\.0 in the checkpoint, 1\.0 now"),
        ({"lr": 2e-3, "seed": 7}, r"--lr 0\.001 in the checkpoint, 0\.002 now; --seed 0 in the checkpoint, 7 now"),
        ({"lr_min": 1e-4}, r"--lr-min 1e-05 in the checkpoint, 0\.0001 now"),
        ({"warmup": 1}, r"warmup 2 in the checkpoint, 1 now"),
        ({"patch": 16, "batch": 2}, r"--patch 32 in the checkpoint, 16 now; --batch 4 in the checkpoint, 2 now"),
        ({"scales": (1.0, 0.5)}, r"scales \[1\.0, 0\.9, 0\.8, 0\.7\] in the checkpoint, \[1\.0, 0\.5\] now"),
        ({"arch_config": {"widths": [8, 16, 32]}}, r"--widths \[8, 16\] in the checkpoint, \[8, 16, 32\] now"),
        ({"arch_config": {"widths": [8, 16], "tail": 2}}, r"--tail 0 in the checkpoint, 2 now"),
        ({"channels": 3}, r"channels \(--color\) 1 in the checkpoint, 3 now"),
        ({"arch": "bfcnn", "arch_config": {"width": 8, "depth": 3}}, r"--arch unet in the checkpoint, bfcnn now"),
        ({"bf16": True}, r"bf16 False in the checkpoint, True now"),
        ({"val_split": 1}, r"--val-split 2 in the checkpoint, 1 now"),  # named, not blamed on the data
    ]
    before = checkpoint_path(out).read_bytes()
    for changes, message in cases:
        if "bf16" in changes and load_weights_file(out)["training"]["bf16"]:
            changes, message = {"bf16": False}, r"bf16 True in the checkpoint, False now"
        with pytest.raises(ParameterError, match=r"--resume: .*model\.ckpt\.pt was written by a run with other") as exc:
            resume(**changes)
        assert re.search(message, str(exc.value)), (changes, str(exc.value))
        assert "--overwrite" in str(exc.value)
    assert checkpoint_path(out).read_bytes() == before  # nothing was written

    # the data is compared by content: a copy elsewhere resumes, a changed image does not
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in image_dir.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    assert train(_cfg(copy, out, 3), resume=True, show_progress=False, log=lambda s: None)["step"] == 3
    Image.fromarray(np.full((48, 56), 99, np.uint8)).save(copy / "im1.png")
    with pytest.raises(ParameterError, match=r"training data [0-9a-f]{12}… in the checkpoint, [0-9a-f]{12}… now"):
        train(_cfg(copy, out, 3), resume=True, show_progress=False, log=lambda s: None)


def test_resume_refuses_a_damaged_checkpoint(image_dir: Path, finished_run: Path, tmp_path: Path) -> None:
    import struct
    import zipfile

    good = checkpoint_path(finished_run).read_bytes()
    with zipfile.ZipFile(checkpoint_path(finished_run)) as archive:
        members = [m for m in archive.infolist() if "/data/" in m.filename and m.file_size > 0]
        contents = {m.filename: archive.read(m) for m in members}
    assert len(members) > 10  # weights, the optimizer's moments, the generator state…
    for member in (members[0], members[len(members) // 2], members[-1]):
        name_len, extra_len = struct.unpack("<HH", good[member.header_offset + 26 : member.header_offset + 30])
        start = member.header_offset + 30 + name_len + extra_len  # the local header pads its extra field
        assert member.compress_type == zipfile.ZIP_STORED
        assert good[start : start + member.file_size] == contents[member.filename]
        damaged = bytearray(good)
        damaged[start + member.file_size // 2] ^= 0x10  # one flipped bit in the tensor data
        out = _resume_copy(finished_run, tmp_path, bytes(damaged))
        with pytest.raises(ParameterError, match=r"--resume: .*model\.ckpt\.pt.* corrupt.*--overwrite"):
            train(_cfg(image_dir, out, 3), resume=True, show_progress=False, log=lambda s: None)
    out = _resume_copy(finished_run, tmp_path, good[: len(good) // 2])
    with pytest.raises(ParameterError, match=r"--resume: .*model\.ckpt\.pt.* corrupt or truncated"):
        train(_cfg(image_dir, out, 3), resume=True, show_progress=False, log=lambda s: None)
    out = _resume_copy(finished_run, tmp_path, good)
    assert train(_cfg(image_dir, out, 3), resume=True, show_progress=False, log=lambda s: None)["step"] == 3


def test_an_in_place_fine_tune_resumes_with_its_own_lineage(image_dir: Path, tmp_path: Path) -> None:
    """--init-from m.pt --out m.pt, stopped and resumed: the resumed run read m.pt (by then its own partial
    output) as one more earlier run, so the model counted 13 steps for 4 + 6."""
    model = tmp_path / "m.pt"
    train(_cfg(image_dir, model, 4), show_progress=False, log=lambda s: None)
    checkpoint_path(model).unlink()
    cfg = _cfg(image_dir, model, 6)
    cfg.init_from = str(model)
    assert train(cfg, show_progress=False, log=_stop_at(3))["interrupted"]
    train(cfg, resume=True, show_progress=False, log=lambda s: None)
    blob = load_weights_file(model)
    assert [e["step"] for e in blob["training"]["lineage"]] == [4]
    assert blob["training"]["total_steps"] == 10
    # the checkpoint holds the weights: the --init-from file may since have gone
    other = tmp_path / "other.pt"
    base = tmp_path / "base.pt"
    base.write_bytes(model.read_bytes())
    cfg2 = _cfg(image_dir, other, 6)
    cfg2.init_from = str(base)
    assert train(cfg2, show_progress=False, log=_stop_at(3))["interrupted"]
    base.unlink()
    assert train(cfg2, resume=True, show_progress=False, log=lambda s: None)["step"] == 6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps_per_epoch": 0}, "--epoch-steps must be at least 1"),
        ({"val_split": -3}, "--val-split must be 0 or more"),
        ({"checkpoint_minutes": float("nan")}, "--checkpoint-minutes must be 0 or more"),
        ({"sigma_max": 300 / 255}, r"--sigma-max must be in \(0, 255\], got 300"),
        ({"sigma_weight": -1.0}, "--sigma-weight must be between 0 and 2, got -1"),
        ({"sigma_weight": float("nan")}, "--sigma-weight must be between 0 and 2, got nan"),
        ({"lr_min": 1.0}, "--lr-min"),
        ({"arch_config": {"widths": [8]}}, "--widths needs at least two levels"),
        ({"arch_config": {"widths": [-8, 16]}}, "--widths needs at least two levels"),
        ({"arch": "bfcnn", "arch_config": {"width": 8, "depth": 2}}, "--depth must be at least 3"),
        ({"arch": "bfcnn", "arch_config": {"width": 0, "depth": 3}}, "--width must be at least 1"),
    ],
)
def test_settings_that_would_fail_later_are_refused_first(image_dir: Path, tmp_path: Path, changes, message) -> None:
    """Each of these used to fail after the data were read (a traceback, or a division by zero after the
    first step, nothing saved) or to say the wrong option."""
    cfg = _cfg(image_dir, tmp_path / "m.pt", 2)
    for key, value in changes.items():
        setattr(cfg, key, value)
    with pytest.raises(ParameterError, match=message):
        train(cfg, show_progress=False, log=lambda s: None)
    assert not (tmp_path / "m.pt").exists()


def test_weights_of_another_shape_name_the_tensors(tmp_path: Path) -> None:
    from priorstudio.core.denoisers.registry import network_from_blob
    from priorstudio.core.errors import WeightsError

    save_weights(tmp_path / "a.pt", BiasFreeUNet(1, (8, 16)))
    blob = load_weights_file(tmp_path / "a.pt")
    blob["arch_config"] = {**blob["arch_config"], "widths": [8, 32]}
    with pytest.raises(WeightsError, match=r"is \(16, 8, 3, 3\), the network's is \(32, 8, 3, 3\)"):
        network_from_blob(blob, "a.pt")
    blob["arch_config"] = {**blob["arch_config"], "widths": [-8, 16]}
    with pytest.raises(WeightsError, match="invalid architecture configuration"):
        network_from_blob(blob, "a.pt")


def test_sigma_weighting_is_plain_mse_at_zero_and_favours_low_noise_above() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(4, 1, 8, 8, generator=gen)
    out = target + 0.1 * torch.randn(4, 1, 8, 8, generator=gen)
    sigma = torch.tensor([0.0, 10 / 255, 50 / 255, 100 / 255]).view(4, 1, 1, 1)
    assert torch.allclose(sigma_weighted_mse(out, target, sigma, 0.0), F.mse_loss(out, target))
    # An error on the quietest patch costs more than the same error on the noisiest, and the floor keeps the
    # σ = 0 patch's weight finite (that of σ = 5/255).
    errs = torch.zeros(4, 1, 8, 8)
    quiet, loud = errs.clone(), errs.clone()
    quiet[0] += 0.1
    loud[3] += 0.1
    w_quiet = sigma_weighted_mse(target + quiet, target, sigma, 1.0)
    w_loud = sigma_weighted_mse(target + loud, target, sigma, 1.0)
    weights = 1 / torch.tensor([5 / 255, 10 / 255, 50 / 255, 100 / 255])
    assert w_quiet.item() == pytest.approx(0.01 * weights[0].item() / weights.sum().item(), rel=1e-5)
    assert w_quiet.item() / w_loud.item() == pytest.approx(20.0, rel=1e-5)
    assert torch.isfinite(w_quiet)


def test_a_sigma_weighted_run_records_its_weighting(image_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(image_dir, tmp_path / "w.pt", 3)
    cfg.sigma_weight = 1.0
    train(cfg, show_progress=False, log=lambda s: None)
    blob = load_weights_file(tmp_path / "w.pt")
    assert blob["training"]["sigma_weight"] == 1.0
    assert math.isfinite(blob["validation"]["loss"])
