"""The scripts in benchmarks/ still run: each with tiny settings, checked by its exit status and its JSON.

They are run as a user runs them (a fresh process, offscreen Qt), so a renamed option, a broken import or a
field dropped from the JSON shows up here rather than at the next long benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, *args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_fuzz_loaders_smoke(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    done = run_script("fuzz_loaders.py", "--cases", 300, "--json", out)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(out.read_text(encoding="utf-8"))
    assert summary["cases"] == 300 and summary["calls"] >= 600
    assert summary["unhandled"] == summary["bad_output"] == summary["intact_failures"] == 0
    assert summary["loaded"] + summary["clean_errors"] == summary["calls"]
    assert summary["loaded"] > 0 and summary["clean_errors"] > 0  # both outcomes were exercised
    assert "unhandled 0" in done.stdout


def test_soak_smoke(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    args = ("--steps", 10, "--per-run", 10, "--cycles", 5, "--size", 16, "--json", out)
    done = run_script("soak.py", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert {"steps", "mem_mb_start", "mem_mb_end", "threads_end"} <= set(result)
    assert result["steps"] >= 10 and result["mem_mb_start"] > 0 and result["mem_mb_end"] > 0
    assert result["threads_end"] <= result["threads_start"]
    assert result["ok"] and result["partial_results_kept"] == result["cycles"] == 5
    frames = result["frames_cycles"]
    assert frames["emitted"] == frames["shown"] + frames["dropped"] + frames["replaced_by_final"]
    assert frames["finals_shown"] == 5  # one final result per stopped run, counted apart from live frames
    assert result["final_results_shown"] >= 1 and result["frames_add_up"]
    assert "OK" in done.stdout and "NOT OK" not in done.stdout
