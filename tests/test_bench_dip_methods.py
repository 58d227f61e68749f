"""``priorstudio bench dip`` and ``bench methods`` end to end, at a tiny scale (tiny images, a few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from priorstudio import cli
from priorstudio.bench import dip as bench_dip
from priorstudio.core.errors import ParameterError

TWICING = ("nlm_twicing", "ntk_twicing")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_image(path, size: int, seed: int, channels: int = 3) -> None:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = [0.5 + 0.4 * np.sin(6 * x + k) * np.cos(4 * y - k) for k in range(channels)]
    arr = np.clip(np.stack(base, -1) + 0.02 * rng.standard_normal((size, size, channels)), 0, 1)
    arr = (arr * 255).round().astype(np.uint8)
    Image.fromarray(arr[..., 0] if channels == 1 else arr).save(path)


def image_set(folder, count: int, size: int, seed: int, stem: str = "im"):
    """A folder of ``count`` colour test images."""
    folder.mkdir()
    for i in range(count):
        save_image(folder / f"{stem}{i}.png", size, seed=seed + i)
    return folder


def test_bench_methods_one_line_per_method_and_json_rows(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    save_image(folder / "a.png", 40, seed=0, channels=1)
    out = tmp_path / "rows.json"
    names = ["dip_adam", "dip_gd", *TWICING]
    argv = ["bench", "methods", str(folder), "--task", "denoise", "--methods", ",".join(names)]
    argv += ["--steps", "3", "--twicing-steps", "2", "--crop", "40", "--dip-width", "4", "--json", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if " best " in line]
    assert [line.split()[1] for line in lines] == names
    for line in lines:
        assert "@ step" in line and "final" in line and " s (" in line
    rows = json.loads(out.read_text())
    assert [r["method"] for r in rows] == names
    for r in rows:
        assert r["task"] == "denoise" and r["crop"] == 40
        assert r["steps"] == (2 if r["method"] in TWICING else 3)
        assert 1 <= r["best_step"] <= r["steps"]
        assert r["psnr_best"] >= r["psnr"] and r["seconds"] > 0


@pytest.mark.parametrize("task", ["denoise", "inpaint", "pixels", "sr", "lowpass", "cs"])
def test_bench_methods_runs_every_task(tmp_path, capsys, task):
    folder = tmp_path / "images"
    folder.mkdir()
    save_image(folder / "a.png", 32, seed=3, channels=1)
    out = tmp_path / "rows.json"
    argv = ["bench", "methods", str(folder), "--task", task, "--methods", "nlm_twicing"]
    assert cli.main([*argv, "--twicing-steps", "2", "--crop", "32", "--fraction", "0.25", "--json", str(out)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert ("25%" in header) == (task in ("pixels", "lowpass", "cs"))  # the fraction used, not the default
    (row,) = json.loads(out.read_text())
    assert row["method"] == "nlm_twicing" and row["task"] == task and np.isfinite(row["psnr"])


def final_psnr_per_seed(tmp_path, task: str, method: str, seeds=(0, 0, 1)) -> list[float]:
    """``bench methods`` on one 32×32 gray image with each ``--seed`` in turn: the method's final PSNR."""
    folder = tmp_path / "images"
    folder.mkdir()
    save_image(folder / "a.png", 32, seed=4, channels=1)
    psnrs = []
    for i, seed in enumerate(seeds):
        out = tmp_path / f"rows{i}.json"
        argv = ["bench", "methods", str(folder), "--task", task, "--methods", method, "--seed", str(seed)]
        assert cli.main([*argv, "--steps", "5", "--twicing-steps", "2", "--crop", "32", "--json", str(out)]) == 0
        psnrs.append(json.loads(out.read_text())[0]["psnr"])
    return psnrs


@pytest.mark.parametrize(
    ("task", "method"),
    [
        ("pixels", "nlm_twicing"),  # the seed chooses which pixels are kept
        ("cs", "nlm_twicing"),  # … which projections are measured
        ("inpaint", "implicit_prior"),  # inpainting adds no noise: only the sampler's own seed can act
    ],
)
def test_bench_methods_seed_reaches_the_operator_and_the_sampler(tmp_path, task, method):
    first, again, other = final_psnr_per_seed(tmp_path, task, method)
    assert first == again != other


def test_bench_methods_inpainting_a_too_small_crop_and_an_unknown_method(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    save_image(folder / "a.png", 36, seed=1)
    argv = ["bench", "methods", str(folder), "--task", "inpaint", "--methods", "nlm_twicing,dip_adam"]
    assert cli.main([*argv, "--twicing-steps", "3", "--crop", "32", "--dip-width", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("nlm_twicing" in line and " best " in line for line in lines)
    # 32×32 is too small for the 5-scale network: the method is skipped with the reason, the others run
    assert any("dip_adam" in line and "skipped" in line and "33×33" in line for line in lines)
    with pytest.raises(SystemExit, match="unknown method"):
        cli.main(["bench", "methods", str(folder), "--methods", "bm3d"])


def test_bench_dip_end_to_end_with_side_by_side_timing(tmp_path, capsys):
    sr_set = image_set(tmp_path / "set", 1, 70, seed=2)  # cropped to 64×64 (a multiple of 32)
    noisy_set = image_set(tmp_path / "denoise", 2, 64, seed=3, stem="n")
    out = tmp_path / "dip.json"
    argv = ["bench", "dip", str(sr_set), "--steps", "3", "--crop", "64", "--every", "1", "--width", "4"]
    argv += ["--timing-steps", "1", "--es-window", "2", "--es-patience", "1"]
    argv += ["--denoise-image", str(noisy_set), "--denoise-steps", "3", "--ema", "0", "--json", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "mean over 2" in text and "early stopping kept" in text
    rows = json.loads(out.read_text())
    assert [r["task"] for r in rows] == ["sr4", "denoise25", "denoise25"]
    assert rows[0]["size"] == "64x64" and rows[0]["set"] == "set" and rows[1]["set"] == "denoise"
    for r in rows:
        assert {"set", "task", "psnr", "psnr_best", "best_step", "seconds", "plain_seconds"} <= set(r)
        assert r["steps"] == 3 and r["width"] == 4
        assert 1 <= r["best_step"] <= 3 and r["psnr_best"] >= r["psnr"]
        assert r["plain_seconds"] > 0 and r["speedup"] > 0 and r["fast_step_s"] > 0
        assert 1 <= r["es_step"] <= 3 and np.isfinite(r["es_psnr"])


def test_bench_dip_without_timing_has_no_plain_seconds(tmp_path):
    noisy = tmp_path / "one.png"
    save_image(noisy, 64, seed=5)
    argv = ["bench", "dip", "--no-sr", "--width", "4", "--denoise-image", str(noisy), "--denoise-steps", "2"]
    out = tmp_path / "rows.json"
    assert cli.main([*argv, "--timing-steps", "0", "--every", "1", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["plain_seconds"] is None and row["set"] == "one" and row["steps"] == 2


def test_bench_dip_resumes_from_its_rows(tmp_path, capsys, monkeypatch):
    """Rows are written as each image finishes; --resume keeps those with the same settings and measures the
    rest (here: an image the first run did not reach, and one whose settings changed)."""
    folder = image_set(tmp_path / "set", 2, 64, seed=7)
    out = tmp_path / "dip.json"
    base = ["bench", "dip", str(folder), "--crop", "64", "--every", "1", "--width", "4", "--timing-steps", "0"]
    base += ["--denoise-image", "", "--json", str(out)]
    real_run_one, measured = bench_dip._run_one, []

    def counting(*a, **k):
        measured.append(a[4].shape)
        return real_run_one(*a, **k)

    monkeypatch.setattr(bench_dip, "_run_one", counting)
    assert cli.main([*base, "--steps", "2", "--limit", "1"]) == 0  # stops after the first image
    first = json.loads(out.read_text())
    assert [r["image"] for r in first] == ["im0.png"] and len(measured) == 1
    capsys.readouterr()
    assert cli.main([*base, "--steps", "2"]) == ParameterError.exit_code  # refused: neither flag given
    assert "--resume to continue" in capsys.readouterr().err
    assert cli.main([*base, "--steps", "2", "--resume"]) == 0
    assert len(measured) == 2  # only im1 was run
    rows = json.loads(out.read_text())
    assert [r["image"] for r in rows] == ["im0.png", "im1.png"] and rows[0] == first[0]
    assert "kept from the earlier run" in capsys.readouterr().out
    assert cli.main([*base, "--steps", "3", "--resume"]) == 0  # other settings: both measured again
    assert len(measured) == 4
    assert [r["steps"] for r in json.loads(out.read_text())] == [3, 3]
    assert cli.main([a for a in base if a not in ("--json", str(out))] + ["--resume"]) == ParameterError.exit_code
    assert "needs --json" in capsys.readouterr().err


def test_bench_dip_goes_on_with_an_interrupted_image_to_the_same_numbers(tmp_path, capsys, monkeypatch):
    """Ctrl-C in the middle of an image saves it beside the rows; --resume continues it from that step (not
    from step 1) and the row has the numbers of a run that was never stopped; the saved run is then removed."""
    folder = image_set(tmp_path / "set", 1, 64, seed=3)
    base = ["bench", "dip", str(folder), "--crop", "64", "--every", "1", "--width", "4", "--steps", "12"]
    base += ["--denoise-image", "", "--es-window", "2", "--es-patience", "3", "--timing-steps", "1"]
    whole_json, parts_json = tmp_path / "whole.json", tmp_path / "parts.json"
    assert cli.main([*base, "--json", str(whole_json)]) == 0
    (whole,) = json.loads(whole_json.read_text())

    real_sampler, real_drive, steps_run = bench_dip.dip_sampler, bench_dip.drive, []

    def stepping(stop_in_step: int = 0):
        """Runs that note each step they take and get Ctrl-C in the middle of step ``stop_in_step``."""

        def sampler(*args, **kwargs):
            run = real_sampler(*args, **kwargs)
            if kwargs["truth"] is None or run.params.max_steps < 12:  # not the side-by-side timing runs
                return run
            step = run._step

            def noted():
                steps_run.append(run.t_done + 1)
                if run.t_done + 1 == stop_in_step:
                    raise KeyboardInterrupt
                return step()

            run._step = noted
            return run

        return sampler

    monkeypatch.setattr(bench_dip, "dip_sampler", stepping(7))
    assert cli.main([*base, "--json", str(parts_json), "--checkpoint-minutes", "60"]) == 130
    saved = parts_json.with_name("parts.json.run.pt")
    assert saved.exists() and not parts_json.exists()  # no row yet: the image is not done
    assert "saved the run at step 6" in capsys.readouterr().out
    before = torch.load(saved, weights_only=True)["progress"]
    monkeypatch.setattr(bench_dip, "dip_sampler", stepping())
    steps_run.clear()
    assert cli.main([*base, "--json", str(parts_json), "--resume"]) == 0
    assert steps_run == list(range(7, 13)) and "continuing the saved run at step 6" in capsys.readouterr().out
    (row,) = json.loads(parts_json.read_text())
    same = ("psnr", "psnr_best", "best_step", "steps", "es_step", "es_psnr", "es_fired_at")
    assert {k: row.get(k) for k in same} == {k: whole.get(k) for k in same}
    assert row["fast_step_s"] > 0 and row["plain_seconds"] > 0  # the timing made before the stop is kept
    assert row["cpu_seconds"] > before["cpu_seconds"] > 0 and row["seconds"] > before["seconds"] > 0
    assert not saved.exists()

    # stopped while a record was being measured: the last whole save counts (here every step is saved)
    def measured_until(step: int):
        def drive(run, metric, *args, **kwargs):
            def watch(image):
                if run.t_done == step:
                    raise KeyboardInterrupt
                return metric(image)

            return real_drive(run, watch, *args, **kwargs)

        return drive

    monkeypatch.setattr(bench_dip, "drive", measured_until(4))
    assert cli.main([*base, "--json", str(tmp_path / "b.json"), "--checkpoint-minutes", "0"]) == 130
    assert "saved the run at step 3" in capsys.readouterr().out
    # a saved run of other settings is not taken for this one
    monkeypatch.setattr(bench_dip, "drive", real_drive)
    steps_run.clear()
    other = [a if a != "12" else "13" for a in base]
    assert cli.main([*other, "--json", str(tmp_path / "b.json"), "--resume"]) == 0
    assert steps_run[0] == 1 and "of another image or other settings" in capsys.readouterr().out


@pytest.mark.parametrize("minutes", ["-1", "nan", "inf"])
def test_bench_dip_refuses_an_absurd_checkpoint_interval(tmp_path, capsys, minutes):
    argv = ["bench", "dip", "--no-sr", "--denoise-image", str(tmp_path / "x.png"), "--checkpoint-minutes", minutes]
    assert cli.main(argv) == ParameterError.exit_code
    assert "--checkpoint-minutes must be a number ≥ 0" in capsys.readouterr().err


def test_bench_dip_threads_are_used_and_recorded(tmp_path):
    """--threads reaches the fit and the row; the default (one thread) leaves the settings as rows measured
    before the option existed have them, so --resume still matches those."""
    noisy = tmp_path / "one.png"
    save_image(noisy, 64, seed=5)
    base = ["bench", "dip", "--no-sr", "--width", "4", "--denoise-image", str(noisy), "--denoise-steps", "2"]
    base += ["--timing-steps", "0", "--every", "1"]
    rows = {}
    for threads in ("1", "2"):
        out = tmp_path / f"rows{threads}.json"
        assert cli.main([*base, "--threads", threads, "--json", str(out)]) == 0
        (rows[threads],) = json.loads(out.read_text())
    assert rows["1"]["threads"] == 1 and "threads" not in rows["1"]["settings"]
    assert rows["2"]["threads"] == 2 and rows["2"]["settings"]["threads"] == 2


@pytest.mark.parametrize("threads", ["-1", "257"])
def test_bench_dip_refuses_an_absurd_thread_count(tmp_path, capsys, threads):
    argv = ["bench", "dip", "--no-sr", "--denoise-image", str(tmp_path / "x.png"), "--threads", threads]
    assert cli.main(argv) == ParameterError.exit_code
    assert "--threads must be between 0" in capsys.readouterr().err


def test_summary_line_reports_the_early_stopping_gap():
    rows = [
        {"psnr": 20.0, "psnr_best": 24.0, "best_step": 100, "es_step": 140, "es_psnr": 23.0},
        {"psnr": 22.0, "psnr_best": 26.0, "best_step": 200, "es_step": 180, "es_psnr": 26.0},
    ]
    text = bench_dip.summary_line(rows)
    assert "final 21.00 dB" in text and "best 25.00 dB" in text
    assert "kept 24.50 dB (0.50 dB below the best, 30 steps from it" in text
    # a pick between the curve's sampled steps can score above its best sample: said so, not "−0.02 below"
    above = [{"psnr": 25.6, "psnr_best": 25.617, "best_step": 1950, "es_step": 1996, "es_psnr": 25.637}]
    assert "(0.02 dB above the best of the curve, 46 steps from it" in bench_dip.summary_line(above)


def test_default_data_paths_resolve_from_the_source_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = bench_dip.data_path("pyproject.toml")
    assert p == bench_dip.SOURCE_ROOT / "pyproject.toml" and p.is_file()
    assert bench_dip.data_path("no/such/file.png").as_posix() == "no/such/file.png"


def test_flash_command_writes_the_result_and_refuses_mismatched_pairs(tmp_path, capsys):
    from priorstudio.core.imageio import load_image, save_image

    gen = torch.Generator().manual_seed(0)
    scene = torch.rand(3, 40, 48, generator=gen)
    save_image(scene, tmp_path / "flash.png")
    save_image((0.4 * scene + 0.1 * torch.rand(3, 40, 48, generator=gen)).clamp(0, 1), tmp_path / "noflash.png")
    out = tmp_path / "out.png"
    argv = ["flash", str(tmp_path / "flash.png"), str(tmp_path / "noflash.png"), "-o", str(out)]
    assert cli.main([*argv, "--steps", "3", "--width", "4", "--json", str(tmp_path / "run.json"), "-q"]) == 0
    assert load_image(out, mode="color").shape == (3, 40, 48)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["method"] == "dip" and len(record["steps"]) == 3
    assert cli.main([*argv, "--steps", "3", "--width", "4", "-q"]) == 2  # no silent overwrite
    assert "exists" in capsys.readouterr().err
    save_image(torch.rand(3, 36, 48, generator=gen), tmp_path / "small.png")
    bad = ["flash", str(tmp_path / "flash.png"), str(tmp_path / "small.png"), "-o", str(tmp_path / "x.png")]
    assert cli.main([*bad, "-q"]) == 2
    assert "same size" in capsys.readouterr().err
    assert cli.main([*argv[:4], str(tmp_path / "y.png"), "--steps", "0", "-q"]) == 2
