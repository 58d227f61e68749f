"""Parameter forms built from data: a params dataclass's field metadata, or a task's parameter list.

A field declared as ``name: float = field(default=…, metadata={"label", "help", "min", "max", "log"})``
becomes a labelled spin box (a check box for a bool) with the help as its one-line tooltip. The form keeps
no state of its own: :meth:`ParamsForm.values` reads the widgets, :meth:`ParamsForm.set_values` writes them
with signals blocked (no feedback loops), and ``changed`` fires on user edits only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from PySide6 import QtWidgets
from PySide6.QtCore import Signal

from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.spin_boxes import DoubleSpinBox, OddSpinBox, SpinBox

INT_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class FieldSpec:
    """One editable value: what the widget needs to know."""

    name: str
    kind: str  # "float" | "int" | "bool"
    default: Any
    label: str
    help: str = ""
    min: float | None = None
    max: float | None = None
    log: bool = False
    odd: bool = False  # whole numbers that must be odd (a patch or window side): steps of 2, even ones refused


def fields_of_dataclass(cls: type, *, skip: Iterable[str] = ()) -> list[FieldSpec]:
    """FieldSpecs for the fields of a params dataclass (fields without a label in their metadata are skipped)."""
    out = []
    skipped = set(skip)
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, f in hints.items():
        meta = f.metadata
        if name in skipped or "label" not in meta:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, bool):
            kind = "bool"
        elif isinstance(default, int):
            kind = "int"
        elif isinstance(default, float):
            kind = "float"
        else:
            continue
        out.append(
            FieldSpec(
                name,
                kind,
                default,
                meta["label"],
                meta.get("help", ""),
                meta.get("min"),
                meta.get("max"),
                bool(meta.get("log")),
                bool(meta.get("odd")),
            )
        )
    return out


def fields_of_task(params: Iterable[Any]) -> list[FieldSpec]:
    """FieldSpecs for a task's plain parameters (``TaskParam`` with kind "float"/"int"; masks and kernels are
    edited elsewhere)."""
    return [
        FieldSpec(p.name, p.kind, p.default, p.label, p.help, p.min, p.max, p.log)
        for p in params
        if p.kind in ("float", "int")
    ]


def _places(x: float, most: int) -> int:
    """The decimals ``x`` needs to be written exactly, at most ``most``."""
    return next((d for d in range(most + 1) if abs(round(x, d) - x) <= 1e-12 * max(1.0, abs(x))), most)


def _decimals_for(spec: FieldSpec) -> int:
    """Enough decimals to type the smallest allowed value and the largest exactly (a maximum of 0.9999 shown
    with 3 read as 1.0, which the run then refused), and the default to 4 places; at least 2, at most 6."""
    lo = spec.min if spec.min is not None and spec.min > 0 else None
    need = 3 if lo is None else math.ceil(-math.log10(lo)) + 1
    if spec.max is not None:
        need = max(need, _places(float(spec.max), 6))
    if isinstance(spec.default, (int, float)):
        need = max(need, _places(float(spec.default), 4))
    return int(min(max(2, need), 6))


class ParamsForm(QtWidgets.QWidget):
    """A form of FieldSpecs; ``changed(name)`` after a user edit."""

    changed = Signal(str)

    def __init__(self, specs: Iterable[FieldSpec] = (), parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QtWidgets.QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setFieldGrowthPolicy(QtWidgets.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.specs: dict[str, FieldSpec] = {}
        self.widgets: dict[str, QtWidgets.QWidget] = {}
        self.set_specs(specs)

    def set_specs(self, specs: Iterable[FieldSpec]) -> None:
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self.specs, self.widgets = {}, {}
        for spec in specs:
            widget = self._make_widget(spec)
            tip = spec.help + (f" ({_range_text(spec)})" if _range_text(spec) else "")
            widget.setToolTip(tip)
            widget.setObjectName(f"param_{spec.name}")
            widget.setAccessibleName(spec.label)
            label = QtWidgets.QLabel(spec.label)
            label.setToolTip(tip)
            label.setBuddy(widget)
            self._layout.addRow(label, widget)
            self.specs[spec.name] = spec
            self.widgets[spec.name] = widget

    def _make_widget(self, spec: FieldSpec) -> QtWidgets.QWidget:
        if spec.kind == "bool":
            box = QtWidgets.QCheckBox()
            box.setChecked(bool(spec.default))
            box.toggled.connect(lambda _=False, n=spec.name: self.changed.emit(n))
            return box
        if spec.kind == "int":
            spin = OddSpinBox() if spec.odd else SpinBox()
            spin.setRange(
                int(spec.min if spec.min is not None else -INT_LIMIT), int(min(spec.max or INT_LIMIT, INT_LIMIT))
            )
            spin.setValue(int(spec.default))
            if not spec.odd:  # an adaptive step would ignore the odd box's step of 2
                spin.setStepType(QtWidgets.QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
            spin.valueChanged.connect(lambda _=0, n=spec.name: self.changed.emit(n))
            spin.setKeyboardTracking(False)
            return spin
        dspin = DoubleSpinBox()
        dspin.setDecimals(_decimals_for(spec))
        dspin.setRange(spec.min if spec.min is not None else -1e9, spec.max if spec.max is not None else 1e9)
        dspin.setStepType(QtWidgets.QAbstractSpinBox.StepType.AdaptiveDecimalStepType)
        dspin.setValue(float(spec.default))
        dspin.setKeyboardTracking(False)
        dspin.valueChanged.connect(lambda _=0.0, n=spec.name: self.changed.emit(n))
        return dspin

    @property
    def form_layout(self) -> QtWidgets.QFormLayout:
        return self._layout

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, widget in self.widgets.items():
            if isinstance(widget, QtWidgets.QCheckBox):
                out[name] = widget.isChecked()
            elif isinstance(widget, QtWidgets.QSpinBox):
                out[name] = int(widget.value())
            elif isinstance(widget, QtWidgets.QDoubleSpinBox):
                out[name] = float(widget.value())
        return out

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Show ``values`` (unknown names ignored) without emitting ``changed``."""
        for name, value in values.items():
            widget = self.widgets.get(name)
            if widget is None:
                continue
            blocked = widget.blockSignals(True)
            try:
                if isinstance(widget, QtWidgets.QCheckBox):
                    widget.setChecked(bool(value))
                elif isinstance(widget, QtWidgets.QSpinBox):
                    widget.setValue(int(value))
                elif isinstance(widget, QtWidgets.QDoubleSpinBox):
                    places = _places(float(value), 4)  # a task's value finer than the default (1/30 for 0.03)
                    if places > widget.decimals():
                        widget.setDecimals(places)
                    widget.setValue(float(value))
            finally:
                widget.blockSignals(blocked)

    def reset(self) -> None:
        self.set_values({n: s.default for n, s in self.specs.items()})


def align_label_columns(*layouts: QtWidgets.QFormLayout) -> None:
    """Give the label column of form layouts stacked in one panel a common width, so their fields line up."""
    labels = []
    for layout in layouts:
        for row in range(layout.rowCount()):
            item = layout.itemAt(row, QtWidgets.QFormLayout.ItemRole.LabelRole)
            widget = item.widget() if item is not None else None
            if isinstance(widget, QtWidgets.QLabel):
                labels.append(widget)
    width = max((label.sizeHint().width() for label in labels), default=0)
    for label in labels:
        label.setMinimumWidth(width)


def _range_text(spec: FieldSpec) -> str:
    if spec.kind == "bool" or (spec.min is None and spec.max is None):
        return ""
    lo = "−∞" if spec.min is None else f"{spec.min:g}"
    hi = "∞" if spec.max is None else f"{spec.max:g}"
    return f"{lo} … {hi}"
