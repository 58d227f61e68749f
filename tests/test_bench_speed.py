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
