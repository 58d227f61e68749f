"""The one-click "explain" panel: Miyasawa's relation and the update rule with a step's numbers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6 import QtWidgets

from priorstudio.core.samplers.base import StepRecord
from priorstudio.core.teach.explain import Explanation, SamplerParamsLike, explain_step
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)


def as_record(row: StepRecord | Mapping[str, Any]) -> StepRecord:
    """A StepRecord from a record or from a CSV-style row of scalars (what the plots keep)."""
    if isinstance(row, StepRecord):
        return row
    nan = float("nan")

    def num(key: str) -> float:
        v = row.get(key)
        return float(v) if v is not None else nan

    return StepRecord(t=int(row.get("t", 0)), sigma=num("sigma"), h=num("h"), gamma=num("gamma"))


#: What one step of a method other than the implicit prior does (the panel's worked numbers are the sampler's).
METHOD_NOTES = {
    "dip_adam": (
        "<p><b>Deep Image Prior</b> has no denoiser and no noise level. Each step is one Adam step on the "
        "weights θ of an untrained network, to reduce the fit error ‖A f<sub>θ</sub>(z) − y‖²/N between its "
        "output, measured, and the data; z is fixed noise, jittered a little at every step.</p>"
        "<p>The network reproduces the image's structure long before its noise: with the truth known, PSNR "
        "rises, peaks, then falls as the fit goes on. That curve, and when to stop it, is the lesson.</p>"
    ),
    "dip_gd": (
        "<p><b>Deep Image Prior, plain gradient descent</b>: each step moves the network's weights θ against "
        "the gradient of the fit error ‖A f<sub>θ</sub>(z) − y‖²/N with a fixed step size. Trained this way, "
        "a wide network's output follows a linear filter of the data built from its tangent kernel, which is "
        "what NTK twicing computes in closed form.</p>"
    ),
    "nlm_twicing": (
        "<p><b>Twicing</b> with a non-local means filter W (weights from patch similarities of the noisy image): "
        "z<sub>k+1</sub> = z<sub>k</sub> + W(y − z<sub>k</sub>). The first step is the plain filter W y; each "
        "later one filters what is left over and adds it back, so detail returns step by step, and then "
        "noise.</p>"
    ),
    "ntk_twicing": (
        "<p><b>Twicing</b> with the tangent kernel of a one-hidden-layer ReLU network on patches: "
        "z<sub>k+1</sub> = z<sub>k</sub> + W(y − z<sub>k</sub>), W the normalised kernel matrix. It is the "
        "closed form of what gradient descent on such a network does to the data.</p>"
    ),
}


class ExplainPanel(QtWidgets.QWidget):
    """Shows :func:`explain_step` for one step as rich text. Host API: ``explain(step, params, …)``."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.browser = QtWidgets.QTextBrowser(self)
        self.browser.setOpenExternalLinks(False)
        self.browser.setPlaceholderText("Run the sampler, then pick a step to see the update rule with its numbers.")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.browser)
        self.explanation: Explanation | None = None

    def explain(
        self,
        step: StepRecord | Mapping[str, Any],
        params: SamplerParamsLike,
        *,
        next_step: StepRecord | Mapping[str, Any] | None = None,
        n_values: int | None = None,
        constrained: bool = False,
    ) -> Explanation:
        self.explanation = explain_step(
            as_record(step),
            params,
            next_record=as_record(next_step) if next_step is not None else None,
            n_values=n_values,
            constrained=constrained,
        )
        self.browser.setHtml(self.explanation.html)
        return self.explanation

    def explain_rows(
        self,
        rows: list[Mapping[str, Any]],
        t: int,
        params: SamplerParamsLike,
        *,
        n_values: int | None = None,
        constrained: bool = False,
    ) -> Explanation | None:
        """Explain step ``t`` of a run kept as per-step rows (the next row supplies the measured σ_{t+1})."""
        for k, row in enumerate(rows):
            if int(row.get("t", -1)) == t:
                nxt = rows[k + 1] if k + 1 < len(rows) else None
                return self.explain(row, params, next_step=nxt, n_values=n_values, constrained=constrained)
        return None

    def text(self) -> str:
        return self.explanation.text if self.explanation else self.browser.toPlainText()

    def clear(self) -> None:
        self.explanation = None
        self.browser.clear()

    def show_method(self, name: str, label: str) -> None:
        """For a method without the sampler's update rule: what one of its steps does, in place of numbers."""
        self.explanation = None
        note = METHOD_NOTES.get(name, f"<p><b>{label}</b>: the worked numbers here are the implicit prior's.</p>")
        self.browser.setHtml(note)


class ExplainDialog(QtWidgets.QDialog):
    """The panel in a small non-modal window, for a menu item or a button on the σ_t plot."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Explain this step")
        self.panel = ExplainPanel(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.panel)
        self.resize(560, 420)
