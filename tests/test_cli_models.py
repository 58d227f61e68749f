"""`priorstudio models`: what is bundled, each model's history and validation, and unusable files by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from priorstudio.cli import main
from priorstudio.core.denoisers import BiasFreeUNet
from priorstudio.core.denoisers.registry import save_weights


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import priorstudio.core.denoisers.registry as registry

    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setattr(registry, "models_dir", lambda: folder)
    return folder


def test_each_model_with_its_whole_training_history_and_validation(models: Path, capsys) -> None:
    save_weights(
        models / "tuned.pt",
        BiasFreeUNet(1, (8, 16)),
        description="blind bias-free unet, gray, step 2500/2500",
        validation={"psnr_15": 28.741, "psnr_25": 26.262, "psnr_50": 23.538},
        training={"lineage": [{"step": 5000}, {"step": 42000}], "total_steps": 49500, "total_train_seconds": 9000},
    )
    save_weights(models / "single.pt", BiasFreeUNet(1, (8, 16)), description="one run", training={"lineage": []})
    (models / "broken.pt").write_bytes(b"not a weights file")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("tuned") and lines[2].endswith(
        "blind bias-free unet, gray, step 2500/2500 (49,500 steps in all over 3 runs); "
        "validation 28.74 / 26.26 / 23.54 dB"
    )
    assert lines[1].startswith("single") and lines[1].endswith("MB  one run")  # one run: nothing to add
    assert lines[0].startswith("broken") and "unusable: weights file broken.pt is corrupt" in lines[0]


def test_no_models(models: Path, capsys) -> None:
    assert main(["models"]) == 0
    assert capsys.readouterr().out == "no bundled models\n"
