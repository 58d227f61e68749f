"""`priorstudio bench speed`: the issue's JSON fields, and the side-by-side timing behind the ratio."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from priorstudio import cli
from priorstudio.bench.speed import time_side_by_side


class _Sleeper:
    """A stand-in denoiser that takes a known time per call and counts its calls."""

    def __init__(self, ms: float, log: list[str], name: str) -> None:
        self.ms, self.log, self.name = ms, log, name

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        time.sleep(self.ms / 1000)
        return y


def test_paths_alternate_and_the_ratio_is_measured() -> None:
    log: list[str] = []
    t = time_side_by_side(_Sleeper(12, log, "plain"), _Sleeper(3, log, "fast"), torch.zeros(1), repeats=4)
    assert log == ["plain", "fast"] * 5  # one warm-up pair, then strictly interleaved
    assert 2.0 < t["ratio"] < 4.5
    assert t["fast_ms_min"] <= t["fast_ms"] <= t["fast_ms_max"]
    assert t["plain_ms"] >= 12


def test_json_rows_have_the_issue_fields(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    argv = ["bench", "speed", "--sizes", "16,24", "--channels", "1", "--arch", "bfcnn", "--repeats", "2"]
    code = cli.main([*argv, "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    assert [(r["arch"], r["size"], r["channels"]) for r in rows] == [("bfcnn", 16, 1), ("bfcnn", 24, 1)]
    for r in rows:
        assert r["plain_ms"] > 0 and r["fast_ms"] > 0 and r["ratio"] > 0
        assert r["fast_ms_min"] <= r["fast_ms"] <= r["fast_ms_max"]


def test_unknown_architectures_and_channel_counts_are_refused(capsys) -> None:
    """Any --arch but bfcnn used to time the UNet under the asked name, and --channels 2 ran a 2-channel net."""
    for extra, message in (
        (["--arch", "foo"], "--arch takes bfcnn, unet"),
        (["--channels", "2"], "--channels takes 1, 3"),
        (["--model", "/nonexistent/model.pt"], "no weights file"),
    ):
        assert cli.main(["bench", "speed", "--sizes", "16", "--repeats", "1", *extra]) == 2
        assert message in capsys.readouterr().err


def test_a_weights_file_is_timed_as_the_unet_of_its_channels(tmp_path: Path, capsys) -> None:
    from priorstudio.core.denoisers import BiasFreeUNet
    from priorstudio.core.denoisers.registry import save_weights

    model = tmp_path / "mine.pt"
    save_weights(model, BiasFreeUNet(1, (8, 16)))
    out = tmp_path / "speed.json"
    argv = ["bench", "speed", "--sizes", "16", "--channels", "1", "--arch", "unet", "--repeats", "1"]
    assert cli.main([*argv, "--model", str(model), "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["params"] == sum(p.numel() for p in BiasFreeUNet(1, (8, 16)).parameters())
