"""What a run did, written so it can be read back, compared and plotted later.

A :class:`RunRecord` holds the method, task, parameters, model, seed, the source image, tensor shapes,
start and finish times, the stop reason, one row of scalars per step (``StepRecord.scalars()``), the final
metrics and the software versions. ``save_json`` writes it, ``save_csv`` writes the step rows; both are
atomic and refuse to replace an existing file unless ``overwrite=True``.

The JSON is strict (RFC 8259): NaN is stored as ``null`` and ±∞ as the strings ``"inf"`` / ``"-inf"``;
the reader turns those strings back into floats in step rows and metrics. :meth:`RunRecord.load_json`
checks every field and raises :class:`RunRecordError` naming the first bad one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from priorstudio.core.atomic import atomic_write_text
from priorstudio.core.errors import RunRecordError

__all__ = ["FORMAT", "VERSION", "RunRecord", "software_versions"]

FORMAT = "priorstudio-run"
VERSION = 1
#: Larger files are refused rather than read (a run record is a few MB at most).
MAX_BYTES = 256 * 1024 * 1024

Scalar = int | float | str | bool | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def software_versions() -> dict[str, str]:
    """Versions that can change a result: Python, torch, numpy, Pillow, PriorStudio, the platform."""
    from importlib import metadata

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("priorstudio", "torch", "numpy", "pillow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


# -- JSON conversion -------------------------------------------------------------------------------------
def _jsonable(value: Any, where: str) -> Any:
    """A value made of dict/list/str/int/float/bool/None, with non-finite floats encoded (see module doc)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return _jsonable(value.value, where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return _jsonable(item(), where)
        except (TypeError, ValueError, RuntimeError):
            pass
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist(), where)
    raise RunRecordError(f"run record field {where} holds a {type(value).__name__}, which JSON cannot store")


_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _scalar_from_json(value: Any, where: str) -> Scalar:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _SPECIAL.get(value, value)
    raise RunRecordError(f"run record field {where} must be a number, string, true/false or null")


# -- validation ------------------------------------------------------------------------------------------
def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _need_str(d: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    if key not in d:
        if optional:
            return None
        raise RunRecordError(f"run record lacks the field {key!r}")
    value = d[key]
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise RunRecordError(f"run record field {key!r} must be a string, not {_type_name(value)}")
    return value


def _need_time(d: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = _need_str(d, key, optional=optional)
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise RunRecordError(f"run record field {key!r} is not an ISO 8601 time: {value[:40]!r}") from None
    return value


def _need_dict(d: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key, {})
    if not isinstance(value, dict):
        raise RunRecordError(f"run record field {key!r} must be an object, not {_type_name(value)}")
    return value


def _scalar_dict(value: Any, where: str) -> dict[str, Scalar]:
    if not isinstance(value, dict):
        raise RunRecordError(f"run record field {where} must be an object, not {_type_name(value)}")
    return {k: _scalar_from_json(v, f"{where}.{k}") for k, v in value.items()}


def _check_json_value(value: Any, where: str, depth: int = 0) -> Any:
    if depth > 64:
        raise RunRecordError(f"run record field {where} is nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_check_json_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _check_json_value(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    raise RunRecordError(f"run record field {where} holds {_type_name(value)}")  # pragma: no cover


def _shapes(value: Any) -> dict[str, list[int]]:
    if not isinstance(value, dict):
        raise RunRecordError(f"run record field 'shapes' must be an object, not {_type_name(value)}")
    shapes: dict[str, list[int]] = {}
    for name, shape in value.items():
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise RunRecordError(f"run record field shapes.{name} must be a list of sizes (integers ≥ 0)")
        shapes[name] = list(shape)
    return shapes


# -- the record ------------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One run: its set-up, its per-step scalars and its outcome."""

    method: str
    task: str
    parameters: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    seed: int | None = None
    source: str = ""  # the image's path ("" for synthesis or pasted images)
    shapes: dict[str, list[int]] = field(default_factory=dict)  # e.g. {"image": [3, 256, 256]}
    started: str = field(default_factory=_now)  # ISO 8601, UTC
    finished: str | None = None
    stop_reason: str | None = None
    steps: list[dict[str, Scalar]] = field(default_factory=list)
    metrics: dict[str, Scalar] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        *,
        method: str,
        task: str,
        parameters: Mapping[str, Any] | None = None,
        model: str = "",
        seed: int | None = None,
        source: str | os.PathLike[str] = "",
        shapes: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """A record started now, with the software versions filled in."""
        record = cls(
            method=method,
            task=task,
            parameters=dict(parameters or {}),
            model=str(model),
            seed=seed,
            source=os.fspath(source),
            versions=software_versions(),
        )
        for name, shape in (shapes or {}).items():
            record.set_shape(name, shape)
        return record

    def set_shape(self, name: str, shape: Any) -> None:
        """Remember a tensor's shape (a torch.Size, tuple or list)."""
        self.shapes[str(name)] = [int(n) for n in shape]

    def append_row(self, row: Mapping[str, Any]) -> None:
        """Add one step's scalars (a dict as ``StepRecord.scalars()`` makes)."""
        self.steps.append(dict(row))

    def append_step(self, step: Any) -> None:
        """Add a :class:`~priorstudio.core.samplers.base.StepRecord` (its scalars) or a row dict."""
        self.append_row(step if isinstance(step, Mapping) else step.scalars())

    def finish(self, *, stop_reason: Any = None, metrics: Mapping[str, Any] | None = None) -> None:
        """Mark the run finished now with its stop reason (a StopReason or a string) and final metrics."""
        self.finished = _now()
        if isinstance(stop_reason, Enum):
            stop_reason = stop_reason.value
        self.stop_reason = None if stop_reason is None else str(stop_reason)
        if metrics:
            self.metrics.update(metrics)

    # -- writing --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-ready dict (non-finite numbers encoded as the module notes say)."""
        body = {
            "format": FORMAT,
            "version": VERSION,
            "method": self.method,
            "task": self.task,
            "parameters": self.parameters,
            "model": self.model,
            "seed": self.seed,
            "source": self.source,
            "shapes": self.shapes,
            "started": self.started,
            "finished": self.finished,
            "stop_reason": self.stop_reason,
            "metrics": self.metrics,
            "versions": self.versions,
            "steps": self.steps,
        }
        return _jsonable(body, "record")

    def to_json(self) -> str:
        """Strict JSON, indented, with one line per step row (so long runs stay readable)."""
        body = self.to_dict()
        steps = body.pop("steps")
        head = json.dumps(body, indent=1, allow_nan=False, ensure_ascii=False)
        rows = ",\n  ".join(json.dumps(row, allow_nan=False, ensure_ascii=False) for row in steps)
        tail = f'"steps": [\n  {rows}\n ]' if steps else '"steps": []'
        return f"{head[:-2]},\n {tail}\n}}\n"

    def save_json(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the whole record as JSON, atomically."""
        return atomic_write_text(path, self.to_json(), overwrite)

    def csv_columns(self) -> list[str]:
        """Column names of :meth:`save_csv`: every key of every row, in order of first appearance."""
        columns: dict[str, None] = {}
        for row in self.steps:
            columns.update(dict.fromkeys(row))
        return list(columns)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        columns = self.csv_columns()
        writer.writerow(columns)
        for row in self.steps:
            writer.writerow(["" if row.get(c) is None else _csv_cell(row.get(c)) for c in columns])
        return buf.getvalue()

    def save_csv(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the per-step rows as CSV (header + one line per step; empty cell = no value), atomically."""
        return atomic_write_text(path, self.to_csv(), overwrite)

    # -- reading --------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        """Validate a decoded JSON object and build the record; :class:`RunRecordError` if anything is off."""
        if not isinstance(data, dict):
            raise RunRecordError(f"a run record must be a JSON object, not {_type_name(data)}")
        if data.get("format") != FORMAT:
            raise RunRecordError(f"not a PriorStudio run record (its 'format' is not {FORMAT!r})")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RunRecordError("run record field 'version' must be a positive integer")
        if version > VERSION:
            raise RunRecordError(f"this run record is format version {version}; this PriorStudio reads up to {VERSION}")
        seed = data.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise RunRecordError(f"run record field 'seed' must be an integer or null, not {_type_name(seed)}")
        steps_raw = data.get("steps", [])
        if not isinstance(steps_raw, list):
            raise RunRecordError(f"run record field 'steps' must be a list, not {_type_name(steps_raw)}")
        versions = _need_dict(data, "versions")
        for name, v in versions.items():
            if not isinstance(v, str):
                raise RunRecordError(f"run record field versions.{name} must be a string")
        return cls(
            method=_need_str(data, "method") or "",
            task=_need_str(data, "task") or "",
            parameters=_check_json_value(_need_dict(data, "parameters"), "parameters"),
            model=_need_str(data, "model", optional=True) or "",
            seed=seed,
            source=_need_str(data, "source", optional=True) or "",
            shapes=_shapes(data.get("shapes", {})),
            started=_need_time(data, "started") or "",
            finished=_need_time(data, "finished", optional=True),
            stop_reason=_need_str(data, "stop_reason", optional=True),
            steps=[_scalar_dict(row, f"steps[{i}]") for i, row in enumerate(steps_raw)],
            metrics=_scalar_dict(data.get("metrics", {}), "metrics"),
            versions=dict(versions),
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, name: str = "run record") -> RunRecord:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise RunRecordError(f"{name}: not UTF-8 text, so not a run record") from None
        if not text.strip():
            raise RunRecordError(f"{name}: the file is empty")
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as error:
            raise RunRecordError(
                f"{name}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                "the file may be truncated"
            ) from None
        except RecursionError:
            raise RunRecordError(f"{name}: nested too deeply to be a run record") from None
        except (ValueError, TypeError) as error:  # e.g. a NaN token, or a huge integer literal
            raise RunRecordError(f"{name}: not valid JSON ({error})") from None
        try:
            return cls.from_dict(data)
        except RunRecordError as error:
            raise RunRecordError(f"{name}: {error}") from None
        except RecursionError:
            raise RunRecordError(f"{name}: nested too deeply to be a run record") from None

    @classmethod
    def load_json(cls, path: str | os.PathLike[str]) -> RunRecord:
        """Read a record written by :meth:`save_json`; every problem is a :class:`RunRecordError`."""
        name = os.fspath(path)
        p = Path(name)
        try:
            if p.stat().st_size > MAX_BYTES:
                raise RunRecordError(f"{name}: larger than {MAX_BYTES >> 20} MB, so not a run record")
            data = p.read_bytes()
        except FileNotFoundError:
            raise RunRecordError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise RunRecordError(f"{name}: is a folder, not a run record") from None
        except OSError as error:
            raise RunRecordError(f"{name}: cannot read the file ({error.strerror or error})") from None
        return cls.from_json(data, name=name)


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not allowed in strict JSON")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else str(value))
    return value
