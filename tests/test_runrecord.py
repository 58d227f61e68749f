"""Run records: round trips through JSON and CSV, and a reader that never crashes on a bad file."""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from priorstudio.core.atomic import OutputExistsError
from priorstudio.core.errors import RunRecordError
from priorstudio.core.runrecord import FORMAT, VERSION, RunRecord
from priorstudio.core.samplers.base import StepRecord, StopReason


def make_record() -> RunRecord:
    record = RunRecord.new(
        method="implicit_prior",
        task="inpaint",
        parameters={"sigma_0": 1.0, "beta": 0.01, "max_steps": 3000, "final_projection": True, "kernel": (3, 3)},
        model="bfcnn_gray",
        seed=7,
        source=Path("photos/cat.png"),
        shapes={"image": torch.Size([3, 32, 48])},
    )
    record.append_step(StepRecord(t=1, sigma=0.9, h=0.01, gamma=0.5, residual_norm=2.0, data_error=0.1, psnr=12.5))
    record.append_step(StepRecord(t=2, sigma=0.8, h=0.011, gamma=0.4, residual_norm=1.5, extra={"fit_loss": 0.25}))
    record.append_row({"t": 3, "sigma": float("nan"), "psnr": float("inf"), "note": "last"})
    record.finish(stop_reason=StopReason.CONVERGED, metrics={"psnr": 28.25, "ssim": 0.875, "iterations": 3})
    return record


def test_new_fills_in_time_and_versions() -> None:
    record = make_record()
    assert record.started and record.finished and record.finished >= record.started
    assert {"python", "torch", "numpy", "pillow", "priorstudio"} <= set(record.versions)
    assert record.shapes == {"image": [3, 32, 48]}
    assert record.source == str(Path("photos/cat.png"))
    assert record.stop_reason == "converged"


def test_json_round_trip(tmp_path: Path) -> None:
    record = make_record()
    path = record.save_json(tmp_path / "run.json")
    text = path.read_text(encoding="utf-8")
    json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))
    back = RunRecord.load_json(path)
    assert back.method == record.method and back.task == record.task and back.model == record.model
    assert back.seed == 7 and back.source == record.source and back.shapes == record.shapes
    assert back.parameters == {**record.parameters, "kernel": [3, 3]}  # tuples come back as lists
    assert back.started == record.started and back.finished == record.finished
    assert back.stop_reason == "converged" and back.metrics == record.metrics
    assert back.versions == record.versions
    assert len(back.steps) == 3
    assert back.steps[0] == {
        k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.steps[0].items()
    }
    assert back.steps[1]["fit_loss"] == 0.25
    assert back.steps[2]["sigma"] is None  # NaN is stored as null
    assert back.steps[2]["psnr"] == math.inf  # ±∞ survive
    assert back.to_json() == RunRecord.from_json(back.to_json()).to_json()  # stable after one trip


def test_one_line_per_step(tmp_path: Path) -> None:
    text = make_record().to_json()
    step_lines = [line for line in text.splitlines() if line.lstrip().startswith('{"t"')]
    assert len(step_lines) == 3


def test_csv(tmp_path: Path) -> None:
    record = make_record()
    path = record.save_csv(tmp_path / "steps.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert len(rows) == 3
    assert list(rows[0])[:3] == ["t", "sigma", "h"]
    assert "fit_loss" in rows[0] and "note" in rows[0]
    assert rows[0]["t"] == "1" and float(rows[0]["sigma"]) == 0.9
    assert rows[0]["ssim"] == ""  # None → empty cell
    assert rows[2]["sigma"] == "nan" and rows[2]["psnr"] == "inf"
    assert rows[1]["fit_loss"] == "0.25" and rows[0]["fit_loss"] == ""


def test_saves_are_atomic_and_refuse_overwrite(tmp_path: Path) -> None:
    record = make_record()
    path = record.save_json(tmp_path / "run.json")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        record.save_json(path)
    assert path.read_bytes() == before
    record.metrics["extra"] = 1
    record.save_json(path, overwrite=True)
    assert RunRecord.load_json(path).metrics["extra"] == 1
    record.save_csv(tmp_path / "s.csv")
    with pytest.raises(OutputExistsError):
        record.save_csv(tmp_path / "s.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "s.csv"]


def test_unstorable_parameter_is_a_clear_error() -> None:
    record = RunRecord.new(method="m", task="t", parameters={"callback": object()})
    with pytest.raises(RunRecordError, match="callback"):
        record.to_json()


def test_numpy_and_torch_scalars_are_stored() -> None:
    import numpy as np

    record = RunRecord.new(
        method="m", task="t", parameters={"a": np.float32(0.5), "b": torch.tensor(3), "c": np.arange(3)}
    )
    back = RunRecord.from_json(record.to_json())
    assert back.parameters == {"a": 0.5, "b": 3, "c": [0, 1, 2]}


# -- malformed input -----------------------------------------------------------------------------------
def valid_dict() -> dict[str, Any]:
    return json.loads(make_record().to_json())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("method"), "lacks the field 'method'"),
        (lambda d: d.update(method=3), "'method' must be a string"),
        (lambda d: d.update(format="something-else"), "not a PriorStudio run record"),
        (lambda d: d.pop("format"), "not a PriorStudio run record"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(version="1"), "'version' must be a positive integer"),
        (lambda d: d.update(seed=1.5), "'seed' must be an integer"),
        (lambda d: d.update(seed=True), "'seed' must be an integer"),
        (lambda d: d.update(steps={}), "'steps' must be a list"),
        (lambda d: d["steps"].append([1, 2]), r"steps\[3\] must be an object"),
        (lambda d: d["steps"][0].update(sigma=[0.5]), r"steps\[0\].sigma must be a number"),
        (lambda d: d.update(metrics=[]), "metrics must be an object"),
        (lambda d: d["metrics"].update(psnr={"a": 1}), "metrics.psnr"),
        (lambda d: d.update(parameters="beta=1"), "'parameters' must be an object"),
        (lambda d: d.update(shapes={"image": [3, -1]}), "shapes.image"),
        (lambda d: d.update(shapes={"image": "3x4"}), "shapes.image"),
        (lambda d: d.update(started="yesterday"), "'started' is not an ISO 8601 time"),
        (lambda d: d.update(finished=12), "'finished' must be a string"),
        (lambda d: d.update(versions={"torch": 2}), "versions.torch must be a string"),
        (lambda d: d.update(stop_reason=["converged"]), "'stop_reason' must be a string"),
    ],
)
def test_malformed_fields(tmp_path: Path, mutate, message: str) -> None:
    data = valid_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RunRecordError, match=message) as caught:
        RunRecord.load_json(path)
    assert "bad.json" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b'{"format": "priorstudio-run", "version": 1, "x": NaN}', "not valid JSON"),
        (b"[" * 100_000, "nested too deeply|not valid JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_malformed_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(RunRecordError, match=message):
        RunRecord.load_json(path)


def test_truncated_file(tmp_path: Path) -> None:
    text = make_record().to_json()
    for cut in (1, len(text) // 3, len(text) // 2, len(text) - 3):
        path = tmp_path / f"cut{cut}.json"
        path.write_text(text[:cut], encoding="utf-8")
        with pytest.raises(RunRecordError, match=r"truncated|not valid JSON"):
            RunRecord.load_json(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(RunRecordError, match="no such file"):
        RunRecord.load_json(tmp_path / "none.json")
    with pytest.raises(RunRecordError, match="folder"):
        RunRecord.load_json(tmp_path)


def test_unknown_fields_are_ignored_and_optional_ones_default() -> None:
    data = {"format": FORMAT, "version": VERSION, "method": "m", "task": "t", "started": "2024-01-01T00:00:00"}
    data["from_the_future"] = {"anything": [1, 2]}
    record = RunRecord.from_dict(data)
    assert record.steps == [] and record.metrics == {} and record.seed is None and record.finished is None


# -- property-based ------------------------------------------------------------------------------------
json_scalars = (
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
FIELDS = [
    "format",
    "version",
    "method",
    "task",
    "parameters",
    "model",
    "seed",
    "source",
    "shapes",
    "started",
    "finished",
    "stop_reason",
    "metrics",
    "versions",
    "steps",
]


def _expect_record_or_clean_error(text: str) -> None:
    try:
        record = RunRecord.from_json(text)
    except RunRecordError as error:
        assert str(error)
        return
    RunRecord.from_json(record.to_json())  # whatever is accepted can be written and read again


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_fuzz_random_json(value: Any) -> None:
    _expect_record_or_clean_error(json.dumps(value, allow_nan=True))


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FIELDS), json_values | st.just("__delete__")), min_size=1, max_size=4))
def test_fuzz_mutated_records(changes: list[tuple[str, Any]]) -> None:
    data = copy.deepcopy(VALID)
    for key, value in changes:
        if value == "__delete__":
            data.pop(key, None)
        else:
            data[key] = value
    _expect_record_or_clean_error(json.dumps(data, allow_nan=True))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**6), st.binary(max_size=6))
def test_fuzz_damaged_text(position: int, junk: bytes) -> None:
    raw = VALID_TEXT.encode()
    i = position % len(raw)
    damaged = raw[:i] + junk + raw[i + len(junk) :]
    with contextlib.suppress(RunRecordError):
        RunRecord.from_json(damaged)


VALID = valid_dict()
VALID_TEXT = make_record().to_json()
