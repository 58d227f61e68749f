"""Spin boxes that say so when they change what was typed.

Qt's spin boxes refuse a keystroke that would leave their range: typing "20" into a box that goes up to 10
leaves "2", and Enter sets 2 without a word. These accept any number while typing and, when the edit ends,
set the nearest allowed value and tell the user — in a tooltip at the box and, in a main window, on the
status bar — naming the field by its accessible name (the label the forms give it).
"""

from __future__ import annotations

import math

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Signal

from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)

#: how long the status bar keeps the notice (ms)
NOTICE_MS = 8000


def _typed_number(box: QtWidgets.QAbstractSpinBox, text: str) -> float | None:
    """The number in ``text`` without the box's prefix and suffix, read in the box's locale; None if none."""
    body = text.strip()
    prefix, suffix = box.prefix().strip(), box.suffix().strip()  # type: ignore[attr-defined]
    if prefix and body.startswith(prefix):
        body = body[len(prefix) :]
    if suffix and body.endswith(suffix):
        body = body[: -len(suffix)]
    body = body.strip()
    number, ok = box.locale().toDouble(body)
    if ok:
        return float(number)
    try:
        return float(body)
    except ValueError:
        return None


def clamp_notice(name: str, typed: float, allowed: float, *, above: bool, unit: str = "") -> str:
    """The sentence shown when a typed value is replaced by the nearest one in range."""
    field = f"{name}: " if name else ""
    where = "above the maximum" if above else "below the minimum"
    return f"{field}{typed:g}{unit} is {where}; set to {allowed:g}{unit}"


def field_name(box: QtWidgets.QWidget) -> str:
    """What the user calls the box: its accessible name, else its label in a form layout, else ""."""
    if box.accessibleName():
        return box.accessibleName()
    parent = box.parentWidget()
    if parent is None:
        return ""
    for layout in parent.findChildren(QtWidgets.QFormLayout):  # nested layouts are children of the widget too
        label = layout.labelForField(box)
        if isinstance(label, QtWidgets.QLabel):
            return label.text().replace("&", "").strip()
    return ""


def _report(box: QtWidgets.QAbstractSpinBox, message: str) -> None:
    QtWidgets.QToolTip.showText(box.mapToGlobal(QtCore.QPoint(0, box.height())), message, box)
    window = box.window()
    if isinstance(window, QtWidgets.QMainWindow):
        window.statusBar().showMessage(message, NOTICE_MS)


def _accept_numbers(box: QtWidgets.QAbstractSpinBox, result: object, text: str, pos: int) -> object:
    """``result`` of Qt's validate, with an out-of-range number let through as Intermediate."""
    state = result[0] if isinstance(result, tuple) else result
    if state == QtGui.QValidator.State.Invalid and _typed_number(box, text) is not None:
        return (QtGui.QValidator.State.Intermediate, text, pos)
    return result


def _fixup(box: QtWidgets.QSpinBox | QtWidgets.QDoubleSpinBox, text: str) -> str:
    """Qt's fixup for an edit that ended on text it did not accept: the nearest allowed value, announced when
    it is not what was typed (a number out of range, or a fraction in a box of whole numbers)."""
    typed = _typed_number(box, text)
    if typed is None or not math.isfinite(typed):
        return text
    whole = isinstance(box, QtWidgets.QSpinBox)
    lo, hi = box.minimum(), box.maximum()
    allowed = min(max(math.floor(typed + 0.5) if whole else typed, lo), hi)
    unit = f" {box.suffix().strip()}" if box.suffix().strip() else ""
    name = field_name(box)
    message = None
    if not lo <= typed <= hi:
        message = clamp_notice(name, typed, allowed, above=typed > hi, unit=unit)
    elif whole and typed != int(typed):
        message = (f"{name}: " if name else "") + f"{typed:g} is not a whole number; set to {allowed:g}{unit}"
    if message is not None:
        box.clamped.emit(message)  # type: ignore[union-attr]
        _report(box, message)
    return box.textFromValue(int(allowed) if whole else allowed)  # type: ignore[arg-type]


class SpinBox(QtWidgets.QSpinBox):
    """An integer spin box that clamps a typed out-of-range value with a notice (``clamped(message)``)."""

    clamped = Signal(str)

    def validate(self, text: str, pos: int) -> object:
        return _accept_numbers(self, super().validate(text, pos), text, pos)

    def fixup(self, text: str) -> str:
        return _fixup(self, text)


class DoubleSpinBox(QtWidgets.QDoubleSpinBox):
    """A decimal spin box that clamps a typed out-of-range value with a notice (``clamped(message)``)."""

    clamped = Signal(str)

    def validate(self, text: str, pos: int) -> object:
        return _accept_numbers(self, super().validate(text, pos), text, pos)

    def fixup(self, text: str) -> str:
        return _fixup(self, text)


class OddSpinBox(SpinBox):
    """Whole numbers that must be odd (the side of a patch or a search window): the arrows step by 2, and a
    typed even number becomes the next odd one, announced like a clamp."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSingleStep(2)

    def validate(self, text: str, pos: int) -> object:
        result = super().validate(text, pos)
        state = result[0] if isinstance(result, tuple) else result
        typed = _typed_number(self, text)
        if state == QtGui.QValidator.State.Acceptable and typed is not None and int(typed) % 2 == 0:
            return (QtGui.QValidator.State.Intermediate, text, pos)  # fixup() makes it odd when editing ends
        return result

    def fixup(self, text: str) -> str:
        fixed = super().fixup(text)
        value = _typed_number(self, fixed)
        if value is None or int(value) % 2:
            return fixed
        odd = int(value) + 1 if int(value) + 1 <= self.maximum() else int(value) - 1
        name = field_name(self)
        message = (f"{name}: " if name else "") + f"{int(value)} is even; set to {odd} (it must be odd)"
        self.clamped.emit(message)
        _report(self, message)
        return self.textFromValue(odd)
