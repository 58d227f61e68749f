"""The side panels: the degradation (task, mode, parameters, working size), the algorithm (method, model,
presets, parameters), the mask tools and the run controls.

Panels hold widgets only. They say what the user chose (``settings()``, ``params()``) and emit ``changed``;
the window decides what to do with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal

from priorstudio.core.denoisers import available_models
from priorstudio.core.operators import TASKS, box_kernel, gaussian_kernel, motion_kernel
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.forms import FieldSpec, ParamsForm, align_label_columns, fields_of_dataclass, fields_of_task
from priorstudio.gui.mask_model import MAX_RADIUS, MIN_RADIUS, MaskModel
from priorstudio.gui.methods import MethodChoice, available_methods
from priorstudio.gui.session import DEFAULT_WORKING_SIDE, WORKING_SIDES, RunSettings
from priorstudio.gui.spin_boxes import DoubleSpinBox, SpinBox

TASK_LABELS = {
    "denoise": "Denoise",
    "inpaint": "Inpaint (painted mask)",
    "random_pixels": "Random pixels",
    "super_resolution": "Super-resolution",
    "spectral": "Spectral low-pass",
    "compressive": "Compressive sensing",
    "blur": "Deblur",
}

KERNELS: dict[str, tuple[str, list[FieldSpec]]] = {
    "gaussian": ("Gaussian", [FieldSpec("sigma", "float", 2.0, "σ (px)", "standard deviation of the blur", 0.1, 30.0)]),
    "box": ("Box", [FieldSpec("size", "int", 5, "size (px)", "side of the uniform square", 1, 101)]),
    "motion": (
        "Motion",
        [
            FieldSpec("length", "float", 9.0, "length (px)", "length of the straight motion", 1.0, 101.0),
            FieldSpec("angle", "float", 0.0, "angle (°)", "direction of the motion", -180.0, 180.0),
        ],
    ),
}


def make_kernel(kind: str, values: Mapping[str, Any]) -> Any:
    if kind == "gaussian":
        return gaussian_kernel(float(values["sigma"]))
    if kind == "box":
        return box_kernel(int(values["size"]))
    return motion_kernel(float(values["length"]), float(values["angle"]))


class DegradationPanel(QtWidgets.QWidget):
    """Task, mode (simulate/restore), task parameters, measurement noise and working size."""

    changed = Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        modes = QtWidgets.QHBoxLayout()
        self.simulate = QtWidgets.QRadioButton("Simulate")
        self.simulate.setToolTip("the photo is the truth: degrade it, restore it, and track PSNR/SSIM")
        self.restore = QtWidgets.QRadioButton("Restore")
        self.restore.setToolTip("the photo is already degraded (for super-resolution: the low-resolution input)")
        self.simulate.setChecked(True)
        modes.addWidget(self.simulate)
        modes.addWidget(self.restore)
        layout.addLayout(modes)
        self.task = QtWidgets.QComboBox()
        for name, info in TASKS.items():
            self.task.addItem(TASK_LABELS.get(name, name), name)
            self.task.setItemData(self.task.count() - 1, info.description, QtCore.Qt.ItemDataRole.ToolTipRole)
        self.task.setToolTip("what happened to the photo (or, in simulate mode, what to do to it)")
        layout.addWidget(self.task)
        self.description = QtWidgets.QLabel()
        self.description.setWordWrap(True)
        self.description.setStyleSheet("color: gray")
        layout.addWidget(self.description)
        self.task_form = ParamsForm()
        layout.addWidget(self.task_form)
        # blur kernel
        self.kernel_box = QtWidgets.QWidget()
        self._kernel_layout = kl = QtWidgets.QFormLayout(self.kernel_box)
        kl.setContentsMargins(0, 0, 0, 0)
        self.kernel_kind = QtWidgets.QComboBox()
        for key, (label, _specs) in KERNELS.items():
            self.kernel_kind.addItem(label, key)
        self.kernel_kind.setToolTip("the blur kernel the photo was (or is to be) blurred with")
        kl.addRow("kernel", self.kernel_kind)
        self.kernel_form = ParamsForm()
        kl.addRow(self.kernel_form)
        layout.addWidget(self.kernel_box)
        self.mask_hint = QtWidgets.QLabel(
            "Paint the pixels to fill on the image: B brush, E eraser, right-drag erases."
        )
        self.mask_hint.setWordWrap(True)
        layout.addWidget(self.mask_hint)
        self._noise_layout = form = QtWidgets.QFormLayout()
        self.noise = DoubleSpinBox()
        self.noise.setRange(0.0, 255.0)
        self.noise.setDecimals(1)
        self.noise.setSuffix(" /255")
        self.noise.setKeyboardTracking(False)
        self.noise.setToolTip("simulate: standard deviation of the noise added to the measurements (0–255 scale)")
        form.addRow("noise σ", self.noise)
        self.noise_seed = SpinBox()
        self.noise_seed.setRange(0, 2**31 - 1)
        self.noise_seed.setToolTip("seed of the simulated noise: the same seed gives the same degraded image")
        form.addRow("noise seed", self.noise_seed)
        self.working = QtWidgets.QComboBox()
        for side in WORKING_SIDES:
            self.working.addItem(f"{side} px", side)
        self.working.addItem("Full image", None)
        self.working.setCurrentIndex(WORKING_SIDES.index(DEFAULT_WORKING_SIDE))
        self.working.setToolTip(
            "longest side the run works at (inpainting: the crop around the mask is shrunk only if larger)"
        )
        form.addRow("working size", self.working)
        layout.addLayout(form)
        self.cost = QtWidgets.QLabel("")
        self.cost.setWordWrap(True)
        self.cost.setObjectName("cost_label")
        layout.addWidget(self.cost)
        layout.addStretch(1)
        self._noise_touched = False
        # what each task's and each kernel's fields held when the user left them: switching back gives them back
        self._task_values: dict[str, dict[str, Any]] = {}
        self._kernel_values: dict[str, dict[str, Any]] = {}
        self._shown_task: str | None = None
        self._shown_kernel: str | None = None

        self.task.currentIndexChanged.connect(self._on_task)
        self.simulate.toggled.connect(self._on_mode)
        self.task_form.changed.connect(lambda _n: self.changed.emit())
        self.kernel_kind.currentIndexChanged.connect(self._on_kernel_kind)
        self.kernel_form.changed.connect(lambda _n: self.changed.emit())
        self.noise.valueChanged.connect(self._on_noise)
        self.noise_seed.valueChanged.connect(lambda _v: self.changed.emit())
        self.working.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self._on_kernel_kind()
        self._on_task()

    # -- reading -------------------------------------------------------------------------------------
    def task_name(self) -> str:
        return str(self.task.currentData())

    def mode(self) -> str:
        return "simulate" if self.simulate.isChecked() else "restore"

    def working_side(self) -> int | None:
        return self.working.currentData()

    def settings(self) -> RunSettings:
        task = self.task_name()
        params: dict[str, Any] = dict(self.task_form.values())
        if task == "blur":
            params["kernel"] = make_kernel(str(self.kernel_kind.currentData()), self.kernel_form.values())
        noise = self.noise.value() / 255.0 if self.mode() == "simulate" else 0.0
        return RunSettings(
            task=task,
            mode=self.mode(),
            task_params=params,
            noise_sigma=noise,
            seed=int(self.noise_seed.value()),
            working_side=self.working_side(),
        )

    def state(self) -> dict[str, Any]:
        """JSON-able description (for settings, autosave and run records)."""
        return {
            "task": self.task_name(),
            "mode": self.mode(),
            "task_params": self.task_form.values(),
            "kernel": {"kind": self.kernel_kind.currentData(), **self.kernel_form.values()},
            "noise_255": self.noise.value(),
            "noise_seed": self.noise_seed.value(),
            "working_side": self.working_side(),
        }

    # -- writing -------------------------------------------------------------------------------------
    def set_task(self, task: str) -> None:
        index = self.task.findData(task)
        if index >= 0:
            self.task.setCurrentIndex(index)

    def set_mode(self, mode: str) -> None:
        (self.simulate if mode == "simulate" else self.restore).setChecked(True)

    def set_working_side(self, side: int | None) -> None:
        index = self.working.findData(side)
        if index < 0 and side is not None:
            self.working.addItem(f"{side} px", side)
            index = self.working.count() - 1
        self.working.setCurrentIndex(index)

    def restore_state(self, state: Mapping[str, Any]) -> None:
        if "task" in state:
            self.set_task(str(state["task"]))
        if "mode" in state:
            self.set_mode(str(state["mode"]))
        if "working_side" in state:
            side = state["working_side"]
            self.set_working_side(None if side in (None, "", "None") else int(side))
        if "noise_255" in state:
            self.noise.setValue(float(state["noise_255"]))
            self._noise_touched = True
        if "noise_seed" in state:
            self.noise_seed.setValue(int(state["noise_seed"]))
        if isinstance(state.get("task_params"), Mapping):  # after set_task: the form holds this task's fields
            self.task_form.set_values(state["task_params"])
        kernel = state.get("kernel")
        if isinstance(kernel, Mapping):
            index = self.kernel_kind.findData(kernel.get("kind"))
            if index >= 0:
                self.kernel_kind.setCurrentIndex(index)
            self.kernel_form.set_values({k: v for k, v in kernel.items() if k != "kind"})

    def set_cost_text(self, text: str) -> None:
        self.cost.setText(text)

    # -- reactions -----------------------------------------------------------------------------------
    def _on_task(self, *_args: object) -> None:
        info = TASKS[self.task_name()]
        self.description.setText(info.description)
        if self._shown_task is not None:
            self._task_values[self._shown_task] = self.task_form.values()
        self._shown_task = self.task_name()
        self.task_form.set_specs(fields_of_task(info.params))
        self.task_form.set_values(self._task_values.get(self._shown_task, {}))
        self.kernel_box.setVisible(self.task_name() == "blur")
        self.mask_hint.setVisible(self.task_name() == "inpaint")
        self._align()
        if not self._noise_touched:  # a sensible default until the user sets one: 25/255 to denoise, else none
            blocked = self.noise.blockSignals(True)
            self.noise.setValue(25.0 if self.task_name() == "denoise" else 0.0)
            self.noise.blockSignals(blocked)
        self.changed.emit()

    def _on_mode(self, *_args: object) -> None:
        self.noise.setEnabled(self.mode() == "simulate")
        self.noise_seed.setEnabled(self.mode() == "simulate")
        self.changed.emit()

    def _on_kernel_kind(self, *_args: object) -> None:
        if self._shown_kernel is not None:
            self._kernel_values[self._shown_kernel] = self.kernel_form.values()
        self._shown_kernel = str(self.kernel_kind.currentData())
        self.kernel_form.set_specs(KERNELS[self._shown_kernel][1])
        self.kernel_form.set_values(self._kernel_values.get(self._shown_kernel, {}))
        self._align()
        self.changed.emit()

    def _align(self) -> None:
        """One label column for the task's, the kernel's and the noise fields (rebuilt forms get new labels)."""
        align_label_columns(
            self.task_form.form_layout, self._kernel_layout, self.kernel_form.form_layout, self._noise_layout
        )

    def _on_noise(self, *_args: object) -> None:
        self._noise_touched = True
        self.changed.emit()


def _same(a: Any, b: Any) -> bool:
    """Equal as form values: a spin box shows a few decimals (1/30 reads back as 0.033), so floats within 2%."""
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=0.02, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class AlgorithmPanel(QtWidgets.QWidget):
    """Method, model, presets and the method's parameters (a form built from its params dataclass)."""

    changed = Signal()
    modelChanged = Signal(object)  # the model name/path, or None for the bundled default
    guideRequested = Signal()  # "Flash photo…": the window asks for a file
    guideCleared = Signal()

    #: fields the window sets itself (every record must carry an image for the live view)
    HIDDEN_FIELDS = ("emit_every",)

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, model_choice: bool = True) -> None:
        super().__init__(parent)
        self.methods: dict[str, MethodChoice] = available_methods()
        # the Degradation panel's task and its parameters, as set_task last heard them
        self._task, self._task_params = "", {}
        self._method_edits: dict[str, dict[str, Any]] = {}  # per method: the values the user set, kept on a switch
        self._shown_method: str | None = None
        layout = QtWidgets.QVBoxLayout(self)
        self.method = QtWidgets.QComboBox()
        for name, m in self.methods.items():
            self.method.addItem(m.label, name)
            self.method.setItemData(self.method.count() - 1, m.description, QtCore.Qt.ItemDataRole.ToolTipRole)
        self.method.setToolTip("the restoration method")
        self.method.setVisible(len(self.methods) > 1)
        layout.addWidget(self.method)
        model_row = QtWidgets.QHBoxLayout()
        self.model = QtWidgets.QComboBox()
        self.model.setToolTip("the trained blind denoiser whose prior the sampler uses")
        self.model_browse = QtWidgets.QToolButton()
        self.model_browse.setText("…")
        self.model_browse.setToolTip("use a weights file (.pt)")
        model_row.addWidget(QtWidgets.QLabel("model"))
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.model_browse)
        self.model_row = QtWidgets.QWidget()
        self.model_row.setLayout(model_row)
        model_row.setContentsMargins(0, 0, 0, 0)
        self._model_choice = model_choice
        self.model_row.setVisible(model_choice)
        layout.addWidget(self.model_row)
        self.model_note = QtWidgets.QLabel("")
        self.model_note.setWordWrap(True)
        self.model_note.setObjectName("model_note")
        layout.addWidget(self.model_note)
        presets = QtWidgets.QHBoxLayout()
        presets.addWidget(QtWidgets.QLabel("preset"))
        self.preset_buttons: dict[str, QtWidgets.QPushButton] = {}
        for name, tip in (
            ("restore", "inverse problems: β = 0.01, careful and slow (a few hundred steps); denoising: β = 1"),
            ("teach", "watch it work: β = 0.5, an image every step, short"),
        ):
            button = QtWidgets.QPushButton(name.capitalize())
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, n=name: self.apply_preset(n))
            presets.addWidget(button)
            self.preset_buttons[name] = button
        presets.addStretch(1)
        layout.addLayout(presets)
        # the network input of methods that can take an image (Deep Image Prior: flash/no-flash)
        guide_row = QtWidgets.QHBoxLayout()
        guide_row.setContentsMargins(0, 0, 0, 0)
        self.guide_label = QtWidgets.QLabel("")
        self.guide_label.setWordWrap(True)
        self.guide_button = QtWidgets.QPushButton("Flash photo…")
        self.guide_button.setToolTip(
            "flash/no-flash: a photo of the same shot taken with flash becomes the network's input; the loaded "
            "photo (without flash) is the target, so the result keeps its light with the flash photo's low noise"
        )
        self.guide_clear = QtWidgets.QPushButton("Clear")
        self.guide_clear.setToolTip("back to the random network input")
        guide_row.addWidget(self.guide_label, 1)
        guide_row.addWidget(self.guide_button)
        guide_row.addWidget(self.guide_clear)
        self.guide_row = QtWidgets.QWidget()
        self.guide_row.setLayout(guide_row)
        layout.addWidget(self.guide_row)
        self.guide_button.clicked.connect(self.guideRequested)
        self.guide_clear.clicked.connect(self.guideCleared)
        self.set_guide_name(None)
        self.form = ParamsForm()
        layout.addWidget(self.form)
        layout.addStretch(1)
        self.method.currentIndexChanged.connect(self._on_method)
        self.form.changed.connect(lambda _n: self.changed.emit())
        self.model.activated.connect(self._on_model_activated)
        self.model_browse.clicked.connect(self.browse_model)
        self.refresh_models()
        self._on_method()

    # -- methods and parameters ------------------------------------------------------------------------
    def current_method(self) -> MethodChoice:
        return self.methods[str(self.method.currentData())]

    def _on_method(self, *_args: object) -> None:
        left = self._shown_method
        if left is not None and left in self.methods:  # what the user set there comes back with it
            own = self.methods[left].task_values(self._task, self._task_params)
            self._method_edits[left] = {n: v for n, v in self.values().items() if n in own and not _same(v, own[n])}
        m = self.current_method()
        self._shown_method = m.name
        self.form.set_specs(fields_of_dataclass(m.params_type, skip=self.HIDDEN_FIELDS))
        self.form.set_values(m.task_values(self._task, self._task_params))  # its defaults for the task at hand
        self.form.set_values(self._method_edits.get(m.name, {}))
        for name, button in self.preset_buttons.items():
            button.setEnabled(name in m.presets)
        self.guide_row.setVisible(m.takes_guide)
        self.model_row.setVisible(self._model_choice and m.needs_denoiser)  # DIP and twicing use no denoiser
        self.model_note.setVisible(m.needs_denoiser)
        self.changed.emit()

    def set_guide_name(self, name: str | None) -> None:
        """Show which image the network takes as its input (None: its random code)."""
        self.guide_label.setText(f"network input: flash photo {name}" if name else "network input: random code")
        self.guide_clear.setEnabled(name is not None)

    def set_task(self, task: str, task_params: Mapping[str, Any] | None = None) -> str:
        """Follow the Degradation panel's task: fields still at the method's default for the previous task take
        the new task's (Deep Image Prior's per-task recipe; the implicit prior denoises with β = 1, since
        injected noise would carry the run away from the photo). Values the user set stay. Returns a notice
        naming what changed, else ""."""
        old = (self._task, self._task_params)
        self._task, self._task_params = task, dict(task_params or {})
        m = self.current_method()
        if old == (self._task, self._task_params):
            return ""
        before, after = m.task_values(*old), m.task_values(self._task, self._task_params)
        values = self.values()
        changed = {
            name: value
            for name, value in after.items()
            if name in values and name in before and before[name] != value and _same(values[name], before[name])
        }
        if not changed:
            return ""
        self.form.set_values(changed)
        self.changed.emit()
        shown = ", ".join(f"{self.form.specs[n].label} = {_short(v)}" for n, v in changed.items())
        why = m.task_notes.get(task, "its defaults for this task; values you set stay")
        return f"{m.label} for {TASK_LABELS.get(task, task)}: {shown} ({why})"

    def undo_values(self, applied: Mapping[str, Any], *, shown: bool = True) -> None:
        """Put back the task's own values in the fields that still hold ``applied`` (a recipe laid over them,
        such as flash/no-flash's, once it no longer applies); fields the user changed since stay. Methods
        left meanwhile forget it too; ``shown=False`` leaves the method shown now as it is."""
        m = self.current_method()
        own = m.task_values(self._task, self._task_params)
        values = self.values()
        back = {n: own[n] for n, v in applied.items() if n in own and n in values and _same(values[n], v)}
        for edits in self._method_edits.values():  # nor does it come back with a method left meanwhile
            for name, value in applied.items():
                if name in edits and _same(edits[name], value):
                    del edits[name]
        if back and shown:
            self.form.set_values(back)
            self.changed.emit()

    def apply_preset(self, name: str) -> None:
        m = self.current_method()
        preset = m.presets.get(name)
        if preset is None:
            return
        self.form.set_values({**m.task_values(self._task, self._task_params), **preset})
        self.changed.emit()

    def set_method(self, name: str) -> bool:
        """Select a method by its registry name; False when this build does not offer it."""
        index = self.method.findData(name)
        if index < 0:
            return False
        self.method.setCurrentIndex(index)
        return True

    def values(self) -> dict[str, Any]:
        return self.form.values()

    def set_values(self, values: Mapping[str, Any]) -> None:
        self.form.set_values(values)

    def params(self, operator: Any = None, **forced: Any) -> Any:
        """The method's params for ``operator``'s task with the form's values, validated (ParameterError
        names a bad field)."""
        return self.current_method().make_params({**self.values(), **forced}, operator)

    def point_at(self, name: str) -> bool:
        """Put the cursor in the field ``name`` (a ParameterError's field), its text selected; False if absent."""
        widget = self.form.widgets.get(name)
        if widget is None or not widget.isVisible():
            return False
        widget.setFocus(QtCore.Qt.FocusReason.OtherFocusReason)
        if isinstance(widget, QtWidgets.QAbstractSpinBox):
            widget.selectAll()
        return True

    # -- model -------------------------------------------------------------------------------------------
    def refresh_models(self, current: str | None = None) -> None:
        blocked = self.model.blockSignals(True)
        self.model.clear()
        self.model.addItem("bundled default", None)
        for name in available_models():
            self.model.addItem(name, name)
        if current is not None:
            index = self.model.findData(current)
            if index < 0:
                self.model.addItem(current.rsplit("/", 1)[-1], current)
                index = self.model.count() - 1
            self.model.setCurrentIndex(index)
        self.model.blockSignals(blocked)

    def selected_model(self) -> str | None:
        return self.model.currentData()

    def _on_model_activated(self, _index: int) -> None:
        self.modelChanged.emit(self.selected_model())

    def browse_model(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Choose denoiser weights", "", "Weights (*.pt)")
        if path:
            self.refresh_models(path)
            self.modelChanged.emit(path)

    def set_model_note(self, text: str, *, warning: bool = False) -> None:
        self.model_note.setText(text)
        self.model_note.setStyleSheet("color: #d9534f; font-weight: bold" if warning else "color: gray")


class MaskTools(QtWidgets.QWidget):
    """Brush/eraser, brush size bound to the mask model, and the mask commands as tool buttons."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QGridLayout(self)
        self.buttons: dict[str, QtWidgets.QToolButton] = {}
        self.size = SpinBox()
        self.size.setRange(int(MIN_RADIUS * 2), int(MAX_RADIUS * 2))
        self.size.setSuffix(" px")
        self.size.setAccessibleName("brush")
        self.size.setToolTip("brush diameter in image pixels ([ and ] change it, Shift for ×10)")
        self.size.setKeyboardTracking(False)
        layout.addWidget(QtWidgets.QLabel("brush"), 0, 0)
        layout.addWidget(self.size, 0, 1, 1, 3)
        self._row = 1
        self._col = 0
        self._model: MaskModel | None = None
        self.size.valueChanged.connect(self._on_size)
        self.info = QtWidgets.QLabel("")
        self.info.setStyleSheet("color: gray")
        self._layout = layout

    def add_action(self, key: str, action: QtWidgets.QWidgetAction | Any) -> None:
        button = QtWidgets.QToolButton()
        button.setDefaultAction(action)
        button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        button.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self._layout.addWidget(button, self._row, self._col)
        self.buttons[key] = button
        self._col += 1
        if self._col == 4:
            self._col, self._row = 0, self._row + 1

    def finish(self) -> None:
        self._layout.addWidget(self.info, self._row + 1, 0, 1, 4)

    # model ↔ widget binding: model changes update the widget with signals blocked; edits go to the model
    def set_model(self, model: MaskModel | None) -> None:
        self._model = model
        self.sync_from_model()

    def sync_from_model(self) -> None:
        if self._model is None:
            return
        blocked = self.size.blockSignals(True)
        self.size.setValue(round(2 * self._model.radius))
        self.size.blockSignals(blocked)
        self.info.setText(f"{100 * self._model.fraction():.2f}% of the image marked")

    def _on_size(self, value: int) -> None:
        if self._model is not None:
            self._model.set_radius(value / 2)
