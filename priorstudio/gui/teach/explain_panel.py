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
        return self.explanation.text if self.explanation else ""

    def clear(self) -> None:
        self.explanation = None
        self.browser.clear()


class ExplainDialog(QtWidgets.QDialog):
    """The panel in a small non-modal window, for a menu item or a button on the σ_t plot."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Explain this step")
        self.panel = ExplainPanel(self)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.panel)
        self.resize(560, 420)
