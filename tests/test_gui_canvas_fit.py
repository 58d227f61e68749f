"""The canvas's fit-to-window mode at every size: it settles, and shows no scroll bars while fitting."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from gui_support import EventCounter
from PySide6 import QtCore, QtWidgets

from priorstudio.gui.canvas import ImageCanvas

pytestmark = pytest.mark.gui


class ScrollBarShows(EventCounter):
    """Counts the canvas's scroll bars being shown; past ``limit`` it turns them off for good, which ends a
    show–hide cycle that would otherwise keep Qt's event processing from ever returning (the test then fails
    on the count instead of freezing the run)."""

    def __init__(self, canvas: ImageCanvas, limit: int = 40) -> None:
        super().__init__(QtCore.QEvent.Type.Show)
        self.canvas, self.limit = canvas, limit
        for bar in (canvas.horizontalScrollBar(), canvas.verticalScrollBar()):
            bar.installEventFilter(self)

    def eventFilter(self, obj, event):  # type: ignore[no-untyped-def]
        super().eventFilter(obj, event)
        if self.count > self.limit:
            off = QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff
            QtCore.QTimer.singleShot(0, lambda: self.canvas.setHorizontalScrollBarPolicy(off))
            QtCore.QTimer.singleShot(0, lambda: self.canvas.setVerticalScrollBarPolicy(off))
        return False


def settle(canvas: ImageCanvas) -> int:
    """Process events until the scroll bars stop being shown and hidden; returns how many times they were shown."""
    shows = ScrollBarShows(canvas)
    for _ in range(50):
        before = shows.count
        QtWidgets.QApplication.processEvents()
        if shows.count == before:
            break
    for bar in (canvas.horizontalScrollBar(), canvas.verticalScrollBar()):
        bar.removeEventFilter(shows)
    return shows.count


def fitted_canvas(qtbot, photo_hw: tuple[int, int], size: tuple[int, int]) -> ImageCanvas:
    """A shown canvas of ``size`` with a photo of ``photo_hw`` fitted, its scroll bars settled."""
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.set_photo_size(*photo_hw)
    canvas.resize(*size)
    canvas.show()
    canvas.fit()
    settle(canvas)
    return canvas


def test_a_fitted_photo_settles_at_every_canvas_size(qtbot):
    """A fit that asked for a scroll bar, whose width shrank the view so that the refit no longer needed it,
    used to show and hide the bars without end: the window froze (a 64×48 photo in a 324×728 canvas)."""
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.set_photo_size(48, 64)
    canvas.show()
    canvas.fit()
    for width, height in [(324, 728), (300, 300), (640, 480), (201, 700), (700, 150), (97, 403)]:
        canvas.resize(width, height)
        assert settle(canvas) <= 2, (width, height)
        assert canvas.is_fitting()
        assert not canvas.horizontalScrollBar().isVisible() and not canvas.verticalScrollBar().isVisible()
        photo = canvas.mapFromScene(QtCore.QRectF(0, 0, 64, 48)).boundingRect()
        assert canvas.viewport().rect().adjusted(-1, -1, 1, 1).contains(photo)  # all of it in view
        assert max(photo.width() - canvas.viewport().width(), photo.height() - canvas.viewport().height()) >= -6


def test_zooming_in_brings_the_scroll_bars_back(qtbot):
    canvas = fitted_canvas(qtbot, (48, 64), (300, 300))
    canvas.zoom_by(4.0)
    settle(canvas)
    assert not canvas.is_fitting()
    assert canvas.horizontalScrollBar().isVisible() and canvas.horizontalScrollBar().maximum() > 0
    canvas.fit()
    settle(canvas)
    assert not canvas.horizontalScrollBar().isVisible() and not canvas.verticalScrollBar().isVisible()


def test_zoom_in_on_a_tiny_fitted_photo_never_zooms_out(qtbot):
    """A 4×3 photo fits at ~80× (beyond the 64× limit): zoom in used to clamp it down to 64×."""
    from priorstudio.gui.canvas import MAX_SCALE

    canvas = fitted_canvas(qtbot, (3, 4), (340, 260))
    fitted = canvas.scale_factor()
    assert fitted > MAX_SCALE
    canvas.zoom_by(1.25)
    assert canvas.scale_factor() >= fitted
    canvas.zoom_by(0.8)
    assert canvas.scale_factor() < fitted  # zoom out still works
