"""Typed values outside a field's range: set to the nearest allowed value, and the user is told.

Also the Degradation panel's stacked forms (task, blur kernel, noise) share one label column.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6 import QtCore, QtWidgets

from priorstudio.gui.forms import FieldSpec, ParamsForm
from priorstudio.gui.panels import TASK_LABELS, DegradationPanel
from priorstudio.gui.spin_boxes import DoubleSpinBox, SpinBox, clamp_notice

pytestmark = pytest.mark.gui


def type_into(qtbot, box: QtWidgets.QAbstractSpinBox, text: str) -> None:
    box.lineEdit().selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, QtCore.Qt.Key.Key_Return)


@pytest.fixture
def form(qtbot) -> ParamsForm:
    specs = [
        FieldSpec("sigma_0", "float", 1.0, "σ₀", "start noise", 1e-3, 10.0),
        FieldSpec("steps", "int", 300, "max steps", "cap", 1, 1000),
    ]
    widget = ParamsForm(specs)
    qtbot.addWidget(widget)
    widget.show()
    return widget


@pytest.mark.parametrize(
    ("name", "typed", "value", "notice"),
    [
        ("sigma_0", "20", 10.0, "σ₀: 20 is above the maximum; set to 10"),
        ("sigma_0", "0", 0.001, "σ₀: 0 is below the minimum; set to 0.001"),
        ("steps", "5000", 1000, "max steps: 5000 is above the maximum; set to 1000"),
        ("steps", "0", 1, "max steps: 0 is below the minimum; set to 1"),
    ],
)
def test_a_typed_value_out_of_range_becomes_the_nearest_allowed_one_with_a_notice(
    qtbot, form: ParamsForm, name: str, typed: str, value: float, notice: str
) -> None:
    """Plain Qt boxes drop the keystroke that leaves the range: "20" became 2 and "5000" 500, silently."""
    box = form.widgets[name]
    changed: list[str] = []
    form.changed.connect(changed.append)
    with qtbot.waitSignal(box.clamped, timeout=1000) as blocker:
        type_into(qtbot, box, typed)
    assert blocker.args == [notice]
    assert form.values()[name] == value
    assert changed == [name]  # the corrected value is an edit like any other


def test_values_in_range_and_non_numbers_pass_without_a_notice(qtbot, form: ParamsForm) -> None:
    notices: list[str] = []
    for box in form.widgets.values():
        box.clamped.connect(notices.append)
    type_into(qtbot, form.widgets["sigma_0"], "0.25")
    type_into(qtbot, form.widgets["steps"], "42")
    assert form.values() == {"sigma_0": 0.25, "steps": 42}
    type_into(qtbot, form.widgets["sigma_0"], "abc")  # letters are refused as they are typed
    assert form.values() == {"sigma_0": 0.25, "steps": 42}
    assert notices == []


def test_a_fraction_in_a_count_is_rounded_with_a_notice(qtbot, form: ParamsForm) -> None:
    """A plain QSpinBox drops the "." and reads "7.5" as 75."""
    with qtbot.waitSignal(form.widgets["steps"].clamped, timeout=1000) as blocker:
        type_into(qtbot, form.widgets["steps"], "7.5")
    assert form.values()["steps"] == 8
    assert blocker.args == ["max steps: 7.5 is not a whole number; set to 8"]
    type_into(qtbot, form.widgets["steps"], "12.")  # a whole number with a point: taken as it is
    assert form.values()["steps"] == 12


def test_the_notice_names_the_field_by_its_label_and_keeps_the_unit(qtbot) -> None:
    host = QtWidgets.QMainWindow()
    qtbot.addWidget(host)
    panel = QtWidgets.QWidget()
    layout = QtWidgets.QFormLayout(panel)
    noise = DoubleSpinBox()
    noise.setRange(0.0, 255.0)
    noise.setDecimals(1)
    noise.setSuffix(" /255")
    layout.addRow("noise σ", noise)
    brush = SpinBox()
    brush.setRange(2, 100)
    brush.setSuffix(" px")
    brush.setAccessibleName("brush")  # no form label: the accessible name
    layout.addRow(brush)
    host.setCentralWidget(panel)
    host.show()
    type_into(qtbot, noise, "300")
    assert noise.value() == 255.0
    assert host.statusBar().currentMessage() == "noise σ: 300 /255 is above the maximum; set to 255 /255"
    type_into(qtbot, brush, "1")
    assert brush.value() == 2
    assert host.statusBar().currentMessage() == "brush: 1 px is below the minimum; set to 2 px"


def test_clamp_notice_without_a_name() -> None:
    assert clamp_notice("", 1.5, 1.0, above=True) == "1.5 is above the maximum; set to 1"


def _field_lefts(panel: DegradationPanel) -> set[int]:
    lefts = set()
    for form in panel.findChildren(QtWidgets.QFormLayout):
        for row in range(form.rowCount()):
            label = form.itemAt(row, QtWidgets.QFormLayout.ItemRole.LabelRole)
            field = form.itemAt(row, QtWidgets.QFormLayout.ItemRole.FieldRole)
            if label is None or field is None or field.widget() is None or not field.widget().isVisibleTo(panel):
                continue
            lefts.add(field.widget().mapTo(panel, QtCore.QPoint(0, 0)).x())
    return lefts


@pytest.mark.parametrize("task", list(TASK_LABELS))
def test_the_degradation_forms_line_up(qtbot, task: str) -> None:
    """Task parameters, the blur kernel's fields and the noise fields start at one x."""
    panel = DegradationPanel()
    qtbot.addWidget(panel)
    panel.resize(360, 700)
    panel.show()
    panel.set_task(task)
    if task == "blur":
        panel.kernel_kind.setCurrentIndex(panel.kernel_kind.findData("motion"))
    qtbot.waitUntil(lambda: len(_field_lefts(panel)) > 0)
    QtWidgets.QApplication.processEvents()
    lefts = _field_lefts(panel)
    assert len(lefts) == 1, (task, lefts)
