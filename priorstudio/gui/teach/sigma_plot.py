"""σ_t against the ideal (1 − βh_t) decay: the plot of the gallery and the β comparison.

The measured curve is what the sampler reports, σ_t = ‖d_t‖/√N; the ideal one is σ₀∏(1 − βh_s), the
decay the update rule promises when the denoiser is exact. Where they part, the denoiser is not. A click
on the plot picks a step (``stepClicked``) and a vertical cursor marks the step being looked at.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal

from priorstudio.core.samplers.implicit_prior import ImplicitPriorParams, ideal_sigma_schedule
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.plots import show_until_data

DIM_PEN = (150, 150, 150, 110)
HIGHLIGHT_PEN = (255, 200, 0)


class SigmaPlot(pg.PlotWidget):
    """σ_t per step on a log axis: one faint curve per run or sample, one highlighted, the ideal
    (1 − βh_t) decay dashed, the σ_L target line and a cursor at the step being looked at."""

    stepClicked = Signal(int)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setLogMode(y=True)
        self.setLabel("bottom", "step t")
        self.setLabel("left", "σ_t")
        self.showGrid(x=True, y=True, alpha=0.2)
        self.addLegend(offset=(-10, 10))
        self.setMinimumHeight(160)
        show_until_data(self, (0.0, 50.0), (-3.0, 0.0))  # steps from 0, σ from 0.001 to 1: decade labels only
        self._curves: dict[str, pg.PlotDataItem] = {}
        self.target = pg.InfiniteLine(angle=0, pen=pg.mkPen((200, 80, 80), style=QtCore.Qt.PenStyle.DotLine))
        self.target.setVisible(False)  # until a run says where σ_L is
        self.addItem(self.target, ignoreBounds=True)
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen((255, 255, 255, 140), width=1))
        self.cursor.setVisible(False)
        self.addItem(self.cursor, ignoreBounds=True)
        self.setToolTip("Click to look at a step: the scrub bar jumps there")
        self.scene().sigMouseClicked.connect(self._on_click)

    def set_curve(self, key: str, t: np.ndarray, sigma: np.ndarray, *, highlight: bool = False, **style: Any) -> None:
        mask = np.isfinite(sigma) & (sigma > 0)
        curve = self._curves.get(key)
        if curve is None:
            pen = style.pop("pen", None) or pg.mkPen(DIM_PEN, width=1)
            curve = self.plot([], [], pen=pen, name=style.pop("name", None))
            self._curves[key] = curve
        curve.setData(t[mask], sigma[mask])
        if highlight:
            curve.setPen(pg.mkPen(HIGHLIGHT_PEN, width=2.5))
            curve.setZValue(10)

    def dim(self, key: str) -> None:
        curve = self._curves.get(key)
        if curve is not None:
            curve.setPen(pg.mkPen(DIM_PEN, width=1))
            curve.setZValue(0)

    def set_ideal(self, key: str, params: ImplicitPriorParams, n: int, **style: Any) -> None:
        n = max(int(n), 2)
        sched = np.asarray(ideal_sigma_schedule(params, n))
        pen = style.pop("pen", None) or pg.mkPen((120, 180, 255), width=1.5, style=QtCore.Qt.PenStyle.DashLine)
        self.set_curve(key, np.arange(1, n + 1), sched, pen=pen, name=style.pop("name", "ideal (1 − βh_t) decay"))
        self.target.setValue(math.log10(params.sigma_L))
        self.target.setVisible(True)

    def set_cursor(self, t: int | None) -> None:
        """Mark step ``t`` (None hides the mark)."""
        self.cursor.setVisible(t is not None)
        if t is not None:
            self.cursor.setValue(float(t))

    def clear_curves(self) -> None:
        for curve in self._curves.values():
            self.removeItem(curve)
        self._curves.clear()
        legend = self.getPlotItem().legend
        if legend is not None:
            legend.clear()
        self.set_cursor(None)

    def curve_keys(self) -> list[str]:
        return list(self._curves)

    def step_at(self, scene_pos: QtCore.QPointF) -> int | None:
        """The step under a scene position inside the plot area (None outside it or before step 1)."""
        box = self.getPlotItem().vb
        if not box.sceneBoundingRect().contains(scene_pos):
            return None
        t = round(box.mapSceneToView(scene_pos).x())
        return t if t >= 1 else None

    def _on_click(self, event: Any) -> None:
        if event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        t = self.step_at(event.scenePos())
        if t is not None:
            self.stepClicked.emit(t)
