"""Side plots of a run (pyqtgraph): σ_t with the σ_L target and the ideal decay, residual and data
consistency, PSNR and SSIM, values under the mouse, and the previous run as a faint overlay.

Scalars arrive every step and are appended to :class:`ScalarSeries` (plain NumPy, amortised growth); the
curves are redrawn from the window's repaint timer, never per step, and during a run at most a few times a
second: redrawing four plots with their axes costs the GUI thread ~8 ms, and on a two-core machine every
millisecond it takes is taken from the sampler.

The axes do not follow every new point either. Re-laying an axis (its ticks, labels and grid) is most of a
redraw, so each range only ever grows, and then to round bounds (whole decades on the log plots, 5 dB on
PSNR, quarters on SSIM) with the step axis growing in 1-2-5 steps: during a run the axes change a handful of
times and otherwise repaint from their cached pixmaps. Zooming or panning a plot by hand hands that plot
back to the user until the next run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.methods import SAMPLER_PLOTS, PlotLabels

SERIES = ("sigma", "residual_norm", "data_error", "psnr", "ssim")
#: The finest tick level drawn (and given a grid line) per axis: decades and their minor ticks on the log
#: axes, the labelled steps only along the step axis.
GRID_TICK_LEVEL = {"left": 1, "bottom": 0}
#: The least height (pixels) one plot gets, title and axes included: about 80 pixels of curves. Where the
#: dock is shorter than the shown plots need, they scroll.
PLOT_MIN_HEIGHT = 140


class DecadeAxis(pg.AxisItem):
    """A log axis labelled at 1, 2 and 5 × 10ᵏ, with the other minor ticks unlabelled.

    pyqtgraph puts the decades and the minor ticks into one level when the range spans a few decades, and
    labels them all: 0.02 … 0.09 crowd into an unreadable pile below every decade. The decades alone are too
    few (the ranges are whole decades, and the labels at the two ends do not fit), so the levels here are
    the decades, then 2 and 5 × 10ᵏ, then the rest, and the axis labels the first two (``maxTextLevel=1``).
    Zoomed in where fewer than two of those show, every minor tick is labelled instead.
    """

    def __init__(self, orientation: str = "left", **kwargs: object) -> None:
        super().__init__(orientation, **kwargs)
        self.setStyle(maxTextLevel=1)  # the decades and 2, 5 × 10ᵏ

    def logTickValues(self, minVal: float, maxVal: float, size: float, stdTicks: list) -> list:
        lo, hi = math.floor(minVal), math.ceil(maxVal)

        def inside(factors: Sequence[int]) -> list[float]:
            values = (v + math.log10(k) for v in range(lo, hi + 1) for k in factors)
            return [x for x in values if minVal <= x <= maxVal]

        decades, two_five, rest = inside((1,)), inside((2, 5)), inside((3, 4, 6, 7, 8, 9))
        if len(decades) + len(two_five) < 2:
            return [(None, sorted(decades + two_five + rest))]
        return [(1.0, decades), (None, two_five), (None, rest)]


class ScalarSeries:
    """Per-step values in growing float64 arrays (NaN where a step did not report a value)."""

    def __init__(self, names: Sequence[str] = SERIES, capacity: int = 1024) -> None:
        self.names = tuple(names)
        self._cap = max(int(capacity), 16)
        self._t = np.empty(self._cap)
        self._v = {n: np.empty(self._cap) for n in self.names}
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def append(self, t: float, values: dict[str, float | None]) -> None:
        if self.n == self._cap:
            self._cap *= 2
            self._t = np.resize(self._t, self._cap)
            self._v = {k: np.resize(v, self._cap) for k, v in self._v.items()}
        self._t[self.n] = t
        for name in self.names:
            value = values.get(name)
            self._v[name][self.n] = math.nan if value is None else float(value)
        self.n += 1

    @property
    def t(self) -> np.ndarray:
        return self._t[: self.n]

    def __getitem__(self, name: str) -> np.ndarray:
        return self._v[name][: self.n]

    def copy(self) -> ScalarSeries:
        other = ScalarSeries(self.names, self.n or 16)
        for i in range(self.n):
            other.append(self._t[i], {k: self._v[k][i] for k in self.names})
        return other

    def nearest_index(self, t: float) -> int | None:
        if self.n == 0:
            return None
        i = int(np.searchsorted(self.t, t))
        if i >= self.n:
            return self.n - 1
        if i > 0 and abs(self.t[i - 1] - t) < abs(self.t[i] - t):
            return i - 1
        return i

    def last(self, name: str) -> float:
        return float(self._v[name][self.n - 1]) if self.n else math.nan


#: Mantissas a step-axis end is rounded up to: coarse while a run grows past its axis (few re-layouts), fine
#: for the first axis of a run of known length (it fills most of the width).
COARSE_ENDS = (1.0, 2.0, 5.0, 10.0)
FINE_ENDS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _round_up(x: float, mantissas: tuple[float, ...] = COARSE_ENDS) -> float:
    """The next of ``mantissas`` × 10^k at or above ``x`` (≥ 10): a step-axis end that reads well."""
    x = max(float(x), 10.0)
    base = 10.0 ** math.floor(math.log10(x))
    return next(m * base for m in mantissas if m * base >= x)


def _first_end(expected_steps: float) -> float:
    """The step axis's end at the start of a run expected to last ``expected_steps``: 10% room, finely rounded,
    so the run fills most of the width (a ~23-step run gets 0–30, not 0–50) and one that ends near its
    expected length never re-lays the axes."""
    return _round_up(1.1 * float(expected_steps), FINE_ENDS)


def show_until_data(plot: pg.PlotItem | pg.PlotWidget, x: tuple[float, float], y: tuple[float, float]) -> None:
    """Show ``x`` × ``y`` (log10 bounds on a log axis) while ``plot`` is empty; its first data takes over.

    Empty, pyqtgraph shows 0–1, which a log axis draws as 1–10 with a label at every integer, piled up.
    """
    plot.setXRange(*x, padding=0)
    plot.setYRange(*y, padding=0)
    plot.enableAutoRange()


def _log_span(lo: float, hi: float) -> tuple[float, float]:
    """log10 bounds of [lo, hi] widened to whole decades (a log axis: values must be positive)."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return float(a), float(max(b, a + 1))


def _linear_span(lo: float, hi: float, unit: float) -> tuple[float, float]:
    """[lo, hi] widened to multiples of ``unit`` (at least one unit wide)."""
    a, b = math.floor(lo / unit) * unit, math.ceil(hi / unit) * unit
    return a, max(b, a + unit)


def _finite(x: np.ndarray, y: np.ndarray, positive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y)
    if positive:
        keep &= y > 0
    return x[keep], y[keep]


class RunPlots(pg.GraphicsLayoutWidget):
    """Four linked plots over the step t; ``set_simulate(False)`` hides PSNR/SSIM, and a method without a noise
    level (``set_labels``) hides σ_t."""

    COLORS: ClassVar[dict[str, tuple[int, int, int]]] = {
        "sigma": (80, 170, 255),
        "ideal": (200, 200, 200),
        "residual_norm": (255, 170, 60),
        "data_error": (120, 220, 120),
        "psnr": (240, 90, 200),
        "ssim": (250, 230, 90),
    }

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(260)
        self.series = ScalarSeries()
        self.ghost: ScalarSeries | None = None
        self._dirty = False
        self._drawn_at = -math.inf
        self._x_end = 0.0
        self._y_span: dict[object, tuple[float, float]] = {}  # plot → the y range it shows (log10 on log plots)
        self._by_hand: set[object] = set()  # plots the user zoomed or panned: left alone until the next run
        self._ideal_values = np.empty(0)
        # the values line is a plain widget for the owner to place (``readout``), not an item of the plot
        # scene: re-setting a scene label's rich text every redraw re-laid out the plots under it. A read-only
        # line edit, not a QLabel: a label asks its layout to recompute on every new text (~1 ms each, 4 a
        # second during a run); a line edit only repaints itself. Its text can be selected and copied.
        self.readout = QtWidgets.QLineEdit("")
        self.readout.setReadOnly(True)
        self.readout.setFrame(False)
        self.readout.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
        palette = self.readout.palette()
        palette.setColor(QtGui.QPalette.ColorRole.Base, QtGui.QColor(0, 0, 0, 0))
        self.readout.setPalette(palette)
        self.readout.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        font = self.readout.font()
        font.setPointSizeF(max(font.pointSizeF() - 1, 7.0))
        self.readout.setFont(font)
        self.p_sigma = self.addPlot(row=0, col=0, title="effective noise σ_t", axisItems={"left": DecadeAxis()})
        self.p_sigma.setLogMode(y=True)
        self.p_resid = self.addPlot(
            row=1,
            col=0,
            title="residual ‖D(y)−y‖/√N and data error",
            axisItems={"left": DecadeAxis()},
        )
        self.p_resid.setLogMode(y=True)
        self.p_psnr = self.addPlot(row=2, col=0, title="PSNR (dB)")
        self.p_ssim = self.addPlot(row=3, col=0, title="SSIM")
        self.plots = (self.p_sigma, self.p_resid, self.p_psnr, self.p_ssim)
        for p in self.plots:
            for side in ("left", "bottom"):
                # an axis replays its tick labels from a QPicture on every repaint (~2 ms each, eight axes);
                # cached as a pixmap it is redrawn only when its range really changes
                p.getAxis(side).setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
                # no grid lines at the step axis's unlabelled ticks: re-drawing the axes (at every new run and
                # every change of range) took 14.7 ms with them on plots of the default size, 4.0 without
                p.getAxis(side).setStyle(maxTickLevel=GRID_TICK_LEVEL[side])
            p.showGrid(x=True, y=True, alpha=0.2)
            p.setDownsampling(auto=True, mode="peak")
            p.setClipToView(True)
            p.setMenuEnabled(False)
            if p is not self.p_sigma:
                p.setXLink(self.p_sigma)
        for p in self.plots:
            p.enableAutoRange(enable=False)
            p.vb.sigRangeChangedManually.connect(lambda _mask, p=p: self._by_hand.add(p))
        self.p_ssim.setLabel("bottom", "step t")
        for p in (self.p_sigma, self.p_resid):  # translucent: a curve passing behind the legend stays visible
            p.addLegend(offset=(-5, 5), labelTextSize="8pt", brush=(0, 0, 0, 160))

        def pen(key: str, alpha: int = 255, style: QtCore.Qt.PenStyle = QtCore.Qt.PenStyle.SolidLine) -> object:
            # one-pixel (cosmetic) pens: a wider line is drawn segment by segment, ~3 ms more per redraw
            return pg.mkPen((*self.COLORS[key], alpha), width=1, style=style)

        self.curves = {
            "sigma": self.p_sigma.plot(pen=pen("sigma"), name="σ_t"),
            "residual_norm": self.p_resid.plot(pen=pen("residual_norm"), name="residual"),
            "data_error": self.p_resid.plot(pen=pen("data_error"), name="data error"),
            "psnr": self.p_psnr.plot(pen=pen("psnr")),
            # SSIM is computed only at the steps whose image is shown: a dot at each, so the lines between
            # them do not pass for measurements
            "ssim": self.p_ssim.plot(
                pen=pen("ssim"), symbol="o", symbolSize=4, symbolPen=None, symbolBrush=self.COLORS["ssim"]
            ),
        }
        self.ideal = self.p_sigma.plot(pen=pen("ideal", 200, QtCore.Qt.PenStyle.DashLine), name="ideal (1−βh_t)")
        self.ghost_curves = {
            "sigma": self.p_sigma.plot(pen=pen("sigma", 70)),
            "residual_norm": self.p_resid.plot(pen=pen("residual_norm", 70)),
            "data_error": self.p_resid.plot(pen=pen("data_error", 70)),
            "psnr": self.p_psnr.plot(pen=pen("psnr", 70)),
            "ssim": self.p_ssim.plot(pen=pen("ssim", 70)),
        }
        for curve in self.ghost_curves.values():
            curve.setZValue(-5)
        self.sigma_L_line = pg.InfiniteLine(
            angle=0, movable=False, pen=pg.mkPen((255, 80, 80), style=QtCore.Qt.PenStyle.DotLine)
        )
        self.sigma_L_line.setVisible(False)
        self.p_sigma.addItem(self.sigma_L_line, ignoreBounds=True)
        self.cursor_lines = []
        for p in self.plots:
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen((255, 255, 255, 90)))
            line.setVisible(False)
            p.addItem(line, ignoreBounds=True)
            self.cursor_lines.append(line)
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.simulate = True
        self.labels = SAMPLER_PLOTS
        #: the plot whose step axis the others follow: the topmost one shown
        self.x_master = self.p_sigma  # the others were linked to it above
        self._apply_labels()
        # before the first run: steps from 0 and whole decades of σ (pyqtgraph's default, 1–10 on a log axis,
        # labels every integer in a pile at the top and suggests values the plots never show)
        self.x_master.setXRange(0, 100, padding=0)
        self._set_y(self.p_sigma, (-3.0, 0.0))
        self._set_y(self.p_resid, (-4.0, 0.0))
        self._set_metric_spans()

    def _keep_readable(self) -> None:
        """Enough height for every shown plot to keep its axes and curves readable: in a dock squeezed by its
        neighbours the plots scroll (the owner's scroll area) rather than flatten to lines."""
        self.setMinimumHeight(PLOT_MIN_HEIGHT * len(self.shown_plots()))

    def shown_plots(self) -> list[pg.PlotItem]:
        """The plots the current method and mode show, top to bottom."""
        shown = {self.p_sigma: self.labels.sigma, self.p_resid: True}
        shown.update({self.p_psnr: self.simulate, self.p_ssim: self.simulate})
        return [p for p in self.plots if shown[p]]

    def set_labels(self, labels: PlotLabels) -> None:
        """Show the plots and names that fit a method's records (see :class:`PlotLabels`)."""
        if labels != self.labels:
            self.labels = labels
            self._apply_labels()

    def _apply_labels(self) -> None:
        labels = self.labels
        self.p_sigma.setVisible(labels.sigma)
        self.p_resid.setTitle(labels.residual_title)
        legend = self.p_resid.legend
        for key in ("residual_norm", "data_error"):  # re-added in order, so "data error" stays second
            legend.removeItem(self.curves[key])
        legend.addItem(self.curves["residual_norm"], labels.residual_name)
        if labels.data_error:
            legend.addItem(self.curves["data_error"], "data error")
        # a method without a data error of its own (DIP: its fit error is the data error) draws no second
        # curve: the same values in another colour would hide the first one, under a legend that names it
        self.curves["data_error"].setVisible(labels.data_error)
        self.ghost_curves["data_error"].setVisible(labels.data_error)
        sigma = "σ effective noise σ_t, " if labels.sigma else ""
        data = "data data-consistency error, " if labels.data_error else ""
        self.readout.setToolTip(
            f"the step under the mouse (or the newest): t step, {sigma}{labels.residual_short} "
            f"{labels.residual_title.split(' and ')[0]}, {data}PSNR and SSIM against the truth (simulate mode)"
        )
        self._relink()

    def _relink(self) -> None:
        """Every shown plot follows the topmost shown one along t. Why: pyqtgraph lines linked views up by
        their geometry on screen, which a hidden plot does not have."""
        self._keep_readable()
        master = self.shown_plots()[0]
        if master is self.x_master:
            return  # set_simulate comes with every change of the degradation: relink only when it matters
        self.x_master = master
        master.setXLink(None)
        for p in self.plots:
            if p is not master:
                p.setXLink(master)
        if self._x_end > 0:
            master.setXRange(0, self._x_end, padding=0)

    # -- runs -------------------------------------------------------------------------------------------
    def new_run(
        self,
        *,
        keep_previous: bool = False,
        sigma_L: float | None = None,
        ideal: Sequence[float] = (),
        expected_steps: int | None = None,
        labels: PlotLabels | None = None,
    ) -> None:
        """Clear for a new run; with ``keep_previous`` the run so far stays as a faint overlay.

        ``expected_steps`` (the ideal decay's length, when known) sets the step axis once, at the start: a
        run that ends near it never re-lays the axes (each re-layout of the four plots takes 10–20 ms).
        """
        if labels is not None:
            self.set_labels(labels)
        self.ghost = self.series.copy() if keep_previous and self.series.n else None
        for key, curve in self.ghost_curves.items():
            if self.ghost is None:
                curve.setData([], [])
            else:
                curve.setData(*_finite(self.ghost.t, self.ghost[key], key != "psnr" and key != "ssim"))
        self.series = ScalarSeries()
        self._dirty = True
        self._x_end = 0.0
        if expected_steps is not None and expected_steps > 0:
            self._x_end = _first_end(expected_steps)
            self.x_master.setXRange(0, self._x_end, padding=0)
        self._y_span.clear()
        self._by_hand.clear()
        self.set_target(sigma_L, ideal)
        # likely ranges up front, so the first steps do not re-lay every axis: σ_t follows the ideal decay,
        # the residual is of the order of σ_t, and PSNR lives in 10–40 dB (each still grows if it must)
        if self._ideal_values.size:
            lo, hi = float(self._ideal_values.min()), float(self._ideal_values.max())
            self._set_y(self.p_sigma, _log_span(lo, hi))
            self._set_y(self.p_resid, _log_span(lo / 10, hi))
        self._set_metric_spans()
        self.refresh()

    def _set_metric_spans(self) -> None:
        """PSNR lives in 10–40 dB and SSIM in 0–1: set up front, so the first steps re-lay no axis."""
        self._set_y(self.p_psnr, (10.0, 40.0))
        self._set_y(self.p_ssim, (0.0, 1.0))

    def _set_y(self, plot: pg.PlotItem, span: tuple[float, float]) -> None:
        self._y_span[plot] = span
        plot.setYRange(*span, padding=0)

    def set_target(self, sigma_L: float | None, ideal: Sequence[float] = ()) -> None:
        """The σ_L line and the ideal decay σ_t = σ₀∏(1 − βh_s) for comparison."""
        if sigma_L is not None and sigma_L > 0:
            self.sigma_L_line.setPos(math.log10(sigma_L))
            self.sigma_L_line.setVisible(True)
        else:
            self.sigma_L_line.setVisible(False)
        ideal = np.asarray(ideal, dtype=float)
        t = np.arange(1, ideal.size + 1, dtype=float)
        t, self._ideal_values = _finite(t, ideal, True)  # kept for the σ axis: finite and positive only
        self.ideal.setData(t, self._ideal_values)
        self._dirty = True

    def append(self, t: int, values: dict[str, float | None]) -> None:
        self.series.append(t, values)
        self._dirty = True

    def set_simulate(self, simulate: bool) -> None:
        self.simulate = bool(simulate)
        self.p_psnr.setVisible(self.simulate)
        self.p_ssim.setVisible(self.simulate)
        self.p_ssim.setLabel("bottom", "step t" if self.simulate else "")
        self.p_resid.setLabel("bottom", "" if self.simulate else "step t")
        self._relink()

    def refresh(self, *, min_interval: float = 0.0) -> bool:
        """Redraw the curves if new values came in and the last redraw is ``min_interval`` s old; True if it did."""
        if not self._dirty:
            return False
        now = time.monotonic()
        if now - self._drawn_at < min_interval:
            return False
        self._dirty = False
        self._drawn_at = now
        s = self.series
        for key, curve in self.curves.items():
            curve.setData(*_finite(s.t, s[key], key not in ("psnr", "ssim")))
        # the step axis grows in steps of ~30% (to 1-2-5 ends) instead of following every new point
        if s.n and s.t[-1] > self._x_end and self.x_master not in self._by_hand:
            self._x_end = _round_up(1.3 * float(s.t[-1]))
            self.x_master.setXRange(0, self._x_end, padding=0)
        self._grow_y(self.p_sigma, ("sigma",), _log_span, positive=True, extra=(self._ideal_values,))
        self._grow_y(self.p_resid, ("residual_norm", "data_error"), _log_span, positive=True)
        self._grow_y(self.p_psnr, ("psnr",), lambda lo, hi: _linear_span(lo, hi, 5.0))
        self._grow_y(self.p_ssim, ("ssim",), lambda lo, hi: _linear_span(min(lo, 0.0), max(hi, 1.0), 0.25))
        self._update_readout(None)
        return True

    def _grow_y(
        self,
        plot: pg.PlotItem,
        keys: Sequence[str],
        span: Callable[[float, float], tuple[float, float]],
        *,
        positive: bool = False,
        extra: Sequence[np.ndarray] = (),
    ) -> None:
        """Widen ``plot``'s y range to round bounds when its data (this run, the overlay) no longer fit."""
        if plot in self._by_hand:
            return
        values = [self.series[k] for k in keys] + list(extra)
        if self.ghost is not None:
            values += [self.ghost[k] for k in keys]
        data = np.concatenate(values)
        data = data[np.isfinite(data) & (data > 0)] if positive else data[np.isfinite(data)]
        if data.size == 0:
            return
        lo, hi = float(data.min()), float(data.max())
        shown = self._y_span.get(plot)
        if shown is not None:
            view = (math.log10(lo), math.log10(hi)) if positive else (lo, hi)
            if shown[0] <= view[0] and view[1] <= shown[1]:
                return  # still fits: the axis stays as it is
            lo_s, hi_s = (10 ** shown[0], 10 ** shown[1]) if positive else shown
            if not positive:  # a linear axis that must grow gets headroom on that side: fewer changes
                room = 0.5 * (max(hi, hi_s) - min(lo, lo_s))
                lo, hi = (lo - room if lo < lo_s else lo), (hi + room if hi > hi_s else hi)
            lo, hi = min(lo, lo_s), max(hi, hi_s)
        self._set_y(plot, span(lo, hi))

    def point_count(self, key: str) -> int:
        data = self.curves[key].getData()[0]
        return 0 if data is None else len(data)

    # -- values under the mouse -------------------------------------------------------------------------
    def _on_mouse_moved(self, pos: QtCore.QPointF) -> None:
        for p in self.plots:
            if p.isVisible() and p.sceneBoundingRect().contains(pos):
                t = p.vb.mapSceneToView(pos).x()
                self._update_readout(t)
                return
        self._update_readout(None)

    def _update_readout(self, t: float | None) -> None:
        s = self.series
        i = s.nearest_index(t) if t is not None else (s.n - 1 if s.n else None)
        for line in self.cursor_lines:
            line.setVisible(t is not None and i is not None)
            if t is not None and i is not None:
                line.setPos(s.t[i])
        if i is None:
            self.readout.clear()
            return
        # compact, so the whole line fits the dock's usual width (the tooltip names each value)
        parts = [f"t={int(s.t[i])}"]
        if self.labels.sigma:
            parts.append(f"σ={s['sigma'][i]:.4g}")
        parts.append(f"{self.labels.residual_short}={s['residual_norm'][i]:.3g}")
        if self.labels.data_error and np.isfinite(s["data_error"][i]):
            parts.append(f"data={s['data_error'][i]:.3g}")
        if self.simulate and np.isfinite(s["psnr"][i]):
            parts.append(f"PSNR={s['psnr'][i]:.2f} dB")
        if self.simulate and np.isfinite(s["ssim"][i]):
            parts.append(f"SSIM={s['ssim'][i]:.3f}")
        self.readout.setText("  ".join(parts))
        self.readout.setCursorPosition(0)  # a line too long for the dock shows its start, as a label would

    def readout_text(self) -> str:
        return self.readout.text()
