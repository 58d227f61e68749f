"""The image canvas: views of one photo, zoom and pan, split view, and mask painting.

Built on a plain ``QGraphicsView`` rather than pyqtgraph's ``ImageItem``: painting needs every press and
drag at once with the real buttons (pyqtgraph turns drags into its own events only after a threshold),
zoom-at-cursor, Space/middle-drag pan and fit/100% are built into QGraphicsView, and a clipped second pane
gives the split view for free. pyqtgraph is used where it shines, in the plots.

Everything is drawn in the photo's own pixel coordinates (x right, y down, pixel (r, c) covers
[c, c+1)×[r, r+1)). A *view* ("observed", "estimate", "truth") is a stack of *layers*, each an image and
the rectangle it covers: a run on a crop or at a reduced working size simply places its frames on that
rectangle, so every view lines up and live frames never touch the zoom, the pan or the display levels
(the levels are fixed, (0, 1) unless changed, and frames are converted with them as they come).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import QPointF, QRectF, Qt, Signal

from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.mask_model import Box, MaskModel

VIEWS = ("observed", "estimate", "truth")
MIN_SCALE, MAX_SCALE = 1 / 64, 64.0
#: How close (screen pixels) a press must be to the split divider to grab it.
DIVIDER_GRAB_PX = 6
MASK_RGBA = 0x90FF2A2A  # semi-transparent red over missing pixels


def to_display_array(image: object) -> np.ndarray:
    """(C, H, W) / (1, C, H, W) / (H, W) tensor or array → float32 (H, W) or (H, W, 3), row-major."""
    if hasattr(image, "detach"):
        image = image.detach().to("cpu").float().numpy()  # type: ignore[attr-defined]
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    return np.ascontiguousarray(arr, dtype=np.float32)


def to_bytes(arr: np.ndarray, levels: tuple[float, float] = (0.0, 1.0), out: np.ndarray | None = None) -> np.ndarray:
    """A float image mapped through ``levels`` (black and white points) to 8-bit values; NaN shows black.

    ``out``: a uint8 array (or view, e.g. the colour bytes of a 32-bit pixel buffer) of ``arr``'s shape to
    write into instead of a new array — a live frame's pixels are made this way, with no interleaving copy.
    """
    lo, hi = levels
    scale = 255.0 / max(hi - lo, 1e-12)
    tmp = arr * scale if lo == 0 else (arr - lo) * scale  # one pass fewer at the default black point
    np.nan_to_num(tmp, copy=False, nan=0.0)
    np.clip(tmp, 0, 255, out=tmp)
    np.rint(tmp, out=tmp)
    if out is None:
        return tmp.astype(np.uint8)
    out[...] = tmp  # exact: whole numbers in [0, 255]
    return out


def array_to_qimage(arr: np.ndarray, levels: tuple[float, float] = (0.0, 1.0)) -> QtGui.QImage:
    """A float (H, W) or (H, W, 3) image mapped through ``levels`` to an 8-bit QImage (owns its pixels)."""
    return uint8_to_qimage(to_bytes(arr, levels))


def uint8_to_qimage(u8: np.ndarray) -> QtGui.QImage:
    """An 8-bit (H, W) gray, (H, W, 3) RGB or (H, W, 4) B, G, R, 255 array as a QImage that owns a copy of
    the pixels (the last is the 32-bit layout pixmaps use: no conversion when one is made from it)."""
    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    h, w = u8.shape[:2]
    if u8.ndim == 2:
        fmt = QtGui.QImage.Format.Format_Grayscale8
    elif u8.shape[2] == 4:
        fmt = QtGui.QImage.Format.Format_RGB32  # 0xffRRGGBB words: bytes B, G, R, 255 on a little-endian CPU
    else:
        fmt = QtGui.QImage.Format.Format_RGB888
    return QtGui.QImage(u8.data, w, h, u8.strides[0], fmt).copy()  # detach from the numpy buffer


@dataclass
class Layer:
    """One image of a view and the rectangle (photo pixels) it covers."""

    image: QtGui.QImage
    rect: QRectF
    source: np.ndarray | None = None  # kept only to re-render when the levels change


class _Pane(QtWidgets.QGraphicsRectItem):
    """A clipping rectangle holding one view's pixmap items (two panes make the split view)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape, True)
        self.setPen(QtGui.QPen(Qt.PenStyle.NoPen))
        self.view_name: str | None = None
        self.items: dict[str, QtWidgets.QGraphicsPixmapItem] = {}
        self._placed: dict[str, tuple[float, ...]] = {}  # key → (rect, pixmap size) its item was placed for

    def show_layers(self, view: str | None, layers: dict[str, Layer]) -> None:
        for item in self.items.values():
            item.setParentItem(None)
            if item.scene() is not None:
                item.scene().removeItem(item)
        self.items = {}
        self._placed = {}
        self.view_name = view
        for key, layer in layers.items():
            self.set_layer(key, layer)

    def set_layer(self, key: str, layer: Layer) -> None:
        item = self.items.get(key)
        if item is None:
            item = QtWidgets.QGraphicsPixmapItem(self)
            item.setShapeMode(QtWidgets.QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
            item.setZValue(len(self.items))
            self.items[key] = item
        item.setPixmap(QtGui.QPixmap.fromImage(layer.image))
        w, h = layer.image.width(), layer.image.height()
        placed = (layer.rect.x(), layer.rect.y(), layer.rect.width(), layer.rect.height(), w, h)
        if self._placed.get(key) == placed:
            return  # a new live frame in the same place: only the pixels change
        self._placed[key] = placed
        transform = QtGui.QTransform()
        transform.translate(layer.rect.x(), layer.rect.y())
        transform.scale(layer.rect.width() / w, layer.rect.height() / h)
        item.setTransform(transform)
        # nearest-neighbour when zoomed in, so pixels stay visible; smooth only for downscaled layers
        smooth = layer.rect.width() < w
        item.setTransformationMode(
            Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
        )
        self._hide_covered()

    def remove_layer(self, key: str) -> None:
        item = self.items.pop(key, None)
        self._placed.pop(key, None)
        if item is not None and item.scene() is not None:
            item.scene().removeItem(item)
        self._hide_covered()

    def _hide_covered(self) -> None:
        """Hide the layers that an (always opaque) layer above covers whole: a live frame then repaints one
        pixmap, not the photo under it as well (it halves the canvas's cost per frame)."""
        items = sorted(self.items.values(), key=lambda i: i.zValue())
        rects = [i.mapRectToParent(i.boundingRect()) for i in items]
        for n, item in enumerate(items):
            item.setVisible(not any(above.contains(rects[n]) for above in rects[n + 1 :]))


class MaskOverlay(QtWidgets.QGraphicsItem):
    """The mask drawn in translucent red from an 8-bit indexed image; repaints only what changed."""

    def __init__(self, model: MaskModel) -> None:
        super().__init__()
        self.model = model
        h, w = model.shape
        self._image = QtGui.QImage(w, h, QtGui.QImage.Format.Format_Indexed8)
        self._image.setColorTable([0x00000000, MASK_RGBA])
        self._bits = np.frombuffer(self._image.bits(), dtype=np.uint8).reshape(h, self._image.bytesPerLine())
        self._bits[:, :w] = model.array
        model.add_listener(self._on_changed)

    def detach(self) -> None:
        self.model.remove_listener(self._on_changed)

    def _on_changed(self, box: Box) -> None:
        r0, r1, c0, c1 = box
        self._bits[r0:r1, c0:c1] = self.model.array[r0:r1, c0:c1]
        self.update(QRectF(c0, r0, c1 - c0, r1 - r0))

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._image.width(), self._image.height())

    def paint(self, painter: QtGui.QPainter, option: QtWidgets.QStyleOptionGraphicsItem, widget=None) -> None:
        exposed = option.exposedRect.intersected(self.boundingRect()).toAlignedRect()
        if exposed.isEmpty():
            return
        painter.drawImage(QRectF(exposed), self._image, QRectF(exposed))


class ImageCanvas(QtWidgets.QGraphicsView):
    """Shows views of the photo; zoom, pan, split view, hold-to-compare and mask painting.

    Signals: ``strokeFinished`` after every brush/eraser stroke, ``cursorMoved(x, y)`` in photo pixels,
    ``zoomChanged(scale)``.
    """

    strokeFinished = Signal()
    cursorMoved = Signal(float, float)
    zoomChanged = Signal(float)
    viewChanged = Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QtWidgets.QGraphicsScene(self))
        self.setTransformationAnchor(QtWidgets.QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QtWidgets.QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QtWidgets.QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setBackgroundBrush(QtGui.QColor(48, 48, 48))
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(False)  # the window takes drops
        self.setMinimumSize(200, 200)
        self._size: tuple[int, int] | None = None  # (H, W) of the photo
        self._layers: dict[str, dict[str, Layer]] = {v: {} for v in VIEWS}
        self.levels: tuple[float, float] = (0.0, 1.0)
        self.current_view = "observed"
        self._held_view: str | None = None  # a view shown while a key is held
        self.split = False
        self.divider = 0.5  # as a share of the width
        self._pane_a = _Pane()
        self._pane_b = _Pane()
        self._pane_b.setVisible(False)
        self.scene().addItem(self._pane_a)
        self.scene().addItem(self._pane_b)
        self._divider_line = QtWidgets.QGraphicsLineItem()
        pen = QtGui.QPen(QtGui.QColor(255, 255, 255, 220), 2)
        pen.setCosmetic(True)
        self._divider_line.setPen(pen)
        self._divider_line.setZValue(20)
        self._divider_line.setVisible(False)
        self.scene().addItem(self._divider_line)
        self._brush = QtWidgets.QGraphicsEllipseItem()
        brush_pen = QtGui.QPen(QtGui.QColor(255, 255, 255), 1.5)
        brush_pen.setCosmetic(True)
        self._brush.setPen(brush_pen)
        self._brush.setZValue(30)
        self._brush.setVisible(False)
        self.scene().addItem(self._brush)
        self._mask: MaskModel | None = None
        self._overlay: MaskOverlay | None = None
        self.mask_visible = True
        self.paint_enabled = False
        # interaction state
        self._space_held = False
        self._pan_from: QtCore.QPoint | None = None
        self._dragging_divider = False
        self._stroking = False
        self._fitting = False  # the photo follows the window's size until the user zooms or pans (_set_fitting)

    # -- photo and layers ----------------------------------------------------------------------------------
    def image_size(self) -> tuple[int, int] | None:
        return self._size

    def set_photo_size(self, height: int, width: int) -> None:
        """A new photo: forget all layers and fit it in the window."""
        self._size = (int(height), int(width))
        self._layers = {v: {} for v in VIEWS}
        rect = QRectF(0, 0, width, height)
        self.scene().setSceneRect(rect.adjusted(-width, -height, width, height))
        self._pane_a.show_layers(None, {})
        self._pane_b.show_layers(None, {})
        self._update_panes()
        self.fit()

    def set_layer(
        self,
        view: str,
        key: str,
        image: object,
        rect: QRectF | None = None,
        *,
        keep: bool = True,
        pixels: np.ndarray | None = None,
    ) -> None:
        """Show ``image`` as layer ``key`` of ``view`` over ``rect`` (photo pixels; default: the whole photo).

        Called for every live frame: only the pixmap changes, never the zoom, pan or levels. With ``keep``
        the float data is kept so a change of levels can re-render it. ``pixels``, the image already as 8-bit
        (H, W[, 3]) at levels (0, 1), is shown as it is while those are the levels (a live frame comes so).
        """
        if self._size is None:
            raise RuntimeError("set_photo_size first")
        arr = to_display_array(image)
        if rect is None:
            rect = QRectF(0, 0, self._size[1], self._size[0])
        if pixels is not None and self.levels == (0.0, 1.0) and pixels.shape[:2] == arr.shape[:2]:
            qimage = uint8_to_qimage(pixels)
        else:
            qimage = array_to_qimage(arr, self.levels)
        layer = Layer(qimage, QRectF(rect), arr if keep else None)
        self._layers[view][key] = layer
        for pane in (self._pane_a, self._pane_b):
            if pane.view_name == view:
                pane.set_layer(key, layer)

    def remove_layer(self, view: str, key: str) -> None:
        self._layers[view].pop(key, None)
        for pane in (self._pane_a, self._pane_b):
            if pane.view_name == view:
                pane.remove_layer(key)

    def clear_view(self, view: str) -> None:
        self._layers[view] = {}
        for pane in (self._pane_a, self._pane_b):
            if pane.view_name == view:
                pane.show_layers(view, {})

    def has_view(self, view: str) -> bool:
        return bool(self._layers.get(view))

    def layer(self, view: str, key: str) -> Layer | None:
        return self._layers[view].get(key)

    def set_levels(self, low: float, high: float) -> None:
        """Display levels (black and white points); re-renders the kept layers."""
        self.levels = (float(low), float(high))
        for view, layers in self._layers.items():
            for key, layer in list(layers.items()):
                if layer.source is not None:
                    self.set_layer(view, key, layer.source, layer.rect)
            _ = view

    # -- which view is shown -------------------------------------------------------------------------------
    def set_view(self, view: str) -> None:
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}")
        self.current_view = view
        self._update_panes()
        self.viewChanged.emit(view)

    def shown_view(self) -> str:
        return self._held_view or self.current_view

    def hold_view(self, view: str | None) -> None:
        """Show ``view`` while a key is held (None: back to the current view)."""
        self._held_view = view
        self._update_panes()

    def set_split(self, on: bool) -> None:
        self.split = bool(on)
        self._update_panes()

    def set_divider(self, share: float) -> None:
        self.divider = float(min(max(share, 0.0), 1.0))
        self._update_panes()

    def _update_panes(self) -> None:
        if self._size is None:
            return
        h, w = self._size
        split = self.split and self._held_view is None
        left = "observed" if split else self.shown_view()
        if self._pane_a.view_name != left:
            self._pane_a.show_layers(left, self._layers[left])
        if split:
            right = "estimate" if self.current_view == "observed" else self.current_view
            if self._pane_b.view_name != right:
                self._pane_b.show_layers(right, self._layers[right])
            x = w * self.divider
            self._pane_a.setRect(QRectF(0, 0, x, h))
            self._pane_b.setRect(QRectF(x, 0, w - x, h))
            self._divider_line.setLine(x, 0, x, h)
        else:
            self._pane_a.setRect(QRectF(0, 0, w, h))
        self._pane_b.setVisible(split)
        self._divider_line.setVisible(split)
        self._update_overlay()

    # -- mask ----------------------------------------------------------------------------------------------
    def set_mask_model(self, model: MaskModel | None) -> None:
        if self._overlay is not None:
            self._overlay.detach()
            self._overlay.setParentItem(None)
            self.scene().removeItem(self._overlay)
            self._overlay = None
        self._mask = model
        if model is not None:
            # a child of the first pane: clipped with it in the split view, above its layers
            self._overlay = MaskOverlay(model)
            self._overlay.setParentItem(self._pane_a)
            self._overlay.setZValue(1000)
            self._update_overlay()

    def set_mask_visible(self, visible: bool) -> None:
        self.mask_visible = bool(visible)
        self._update_overlay()

    def mask_overlay_shown(self) -> bool:
        return self._overlay is not None and self._overlay.isVisible()

    def _update_overlay(self) -> None:
        """The mask shows over the observed image and the truth, never over an estimate."""
        if self._overlay is not None:
            self._overlay.setVisible(self.mask_visible and self._pane_a.view_name in ("observed", "truth"))

    def set_paint_enabled(self, enabled: bool) -> None:
        self.paint_enabled = bool(enabled)
        if not enabled:
            self._brush.setVisible(False)
        self._update_cursor()

    def update_brush_outline(self, scene_pos: QPointF | None = None) -> None:
        """Keep the outline at the cursor with the brush's radius in photo pixels (so it follows zoom)."""
        if self._mask is None or not self.paint_enabled:
            self._brush.setVisible(False)
            return
        if scene_pos is None:
            scene_pos = self.mapToScene(self.mapFromGlobal(QtGui.QCursor.pos()))
        r = self._mask.radius
        self._brush.setRect(QRectF(scene_pos.x() - r, scene_pos.y() - r, 2 * r, 2 * r))
        self._brush.setVisible(self.underMouse() or self._stroking)

    def brush_outline_rect(self) -> QRectF:
        return self._brush.rect()

    # -- zoom and pan --------------------------------------------------------------------------------------
    def scale_factor(self) -> float:
        return float(self.transform().m11())

    def fit(self) -> None:
        if self._size is None:
            return
        h, w = self._size
        self._set_fitting(True)
        self.fitInView(QRectF(0, 0, w, h), Qt.AspectRatioMode.KeepAspectRatio)
        self.zoomChanged.emit(self.scale_factor())

    def _set_fitting(self, fitting: bool) -> None:
        """While the whole photo is fitted there is nothing to scroll to, so no scroll bars: with them shown as
        needed, a fit could call for a bar whose width shrank the view, whose refit no longer needed it, and so
        on without end (the window froze at some sizes of the canvas). Panning still works without them."""
        self._fitting = fitting
        policy = Qt.ScrollBarPolicy.ScrollBarAlwaysOff if fitting else Qt.ScrollBarPolicy.ScrollBarAsNeeded
        if self.horizontalScrollBarPolicy() != policy:
            self.setHorizontalScrollBarPolicy(policy)
            self.setVerticalScrollBarPolicy(policy)

    def is_fitting(self) -> bool:
        """True while the whole photo is shown and kept so as the window or its docks change size."""
        return self._fitting

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        # a photo opened before the docks settle, or a dock dragged wider, must not leave it cropped
        super().resizeEvent(event)
        if self._fitting:
            self.fit()

    def actual_size(self) -> None:
        center = self.mapToScene(self.viewport().rect().center())
        self._set_fitting(False)
        self.resetTransform()
        self.centerOn(center)
        self.zoomChanged.emit(1.0)

    def zoom_by(self, factor: float, anchor_view_pos: QtCore.QPoint | None = None) -> None:
        """Zoom by ``factor`` keeping the photo point under ``anchor_view_pos`` (default: the centre) fixed."""
        current = self.scale_factor()
        # the limits bound where zooming goes, never reverse it: a tiny photo fitted beyond MAX_SCALE stays put
        # on zoom in (clamping it to the limit used to zoom it out)
        low, high = min(MIN_SCALE, current), max(MAX_SCALE, current)
        factor = min(max(current * factor, low), high) / current
        if abs(factor - 1.0) < 1e-9:
            return
        self._set_fitting(False)
        if anchor_view_pos is None:
            anchor_view_pos = self.viewport().rect().center()
        before = self.mapToScene(anchor_view_pos)
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QtWidgets.QGraphicsView.ViewportAnchor.NoAnchor)
        self.scale(factor, factor)
        after = self.mapToScene(anchor_view_pos)
        delta = after - before
        self.translate(delta.x(), delta.y())
        self.setTransformationAnchor(anchor)
        # translate() is ignored when scroll bars govern the position: correct through them as well
        error = self.mapFromScene(before) - anchor_view_pos
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + error.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + error.y())
        self.zoomChanged.emit(self.scale_factor())
        self.update_brush_outline()

    def set_space_held(self, held: bool) -> None:
        self._space_held = bool(held)
        self._update_cursor()

    def _update_cursor(self) -> None:
        if self._pan_from is not None:
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        elif self._space_held:
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        elif self.paint_enabled and self._mask is not None:
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)
        else:
            self.viewport().setCursor(Qt.CursorShape.ArrowCursor)

    # -- events ----------------------------------------------------------------------------------------------
    def wheelEvent(self, event: QtGui.QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25**steps, event.position().toPoint())
        event.accept()

    def _near_divider(self, view_pos: QtCore.QPoint) -> bool:
        if not (self.split and self._divider_line.isVisible() and self._size is not None):
            return False
        x = self.mapFromScene(QPointF(self._size[1] * self.divider, 0)).x()
        return abs(view_pos.x() - x) <= DIVIDER_GRAB_PX

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        button = event.button()
        pos = event.position().toPoint()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space_held):
            self._pan_from = pos
            self._update_cursor()
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton and self._near_divider(pos):
            self._dragging_divider = True
            event.accept()
            return
        if button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            if self.paint_enabled and self._mask is not None:
                if not self.mask_overlay_shown() and self.mask_visible and not self.split:
                    self.set_view("observed")  # painting shows the mask: switch to the image it is painted on
                p = self.mapToScene(pos)
                erase = True if button == Qt.MouseButton.RightButton else None
                self._mask.begin_stroke(p.x(), p.y(), erase=erase)
                self._stroking = True
                event.accept()
                return
            if button == Qt.MouseButton.LeftButton:  # nothing to paint: left-drag pans
                self._pan_from = pos
                self._update_cursor()
                event.accept()
                return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:
        pos = event.position().toPoint()
        p = self.mapToScene(pos)
        self.cursorMoved.emit(p.x(), p.y())
        if self._pan_from is not None:
            delta = pos - self._pan_from
            self._pan_from = pos
            if not delta.isNull():
                self._set_fitting(False)
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
            event.accept()
            return
        if self._dragging_divider and self._size is not None:
            self.set_divider(p.x() / self._size[1])
            event.accept()
            return
        if self._stroking and self._mask is not None:
            self._mask.stroke_to(p.x(), p.y())
        if self._near_divider(pos) and not self._stroking:
            self.viewport().setCursor(Qt.CursorShape.SplitHCursor)
        else:
            self._update_cursor()
        self.update_brush_outline(p)
        event.accept()

    def mouseReleaseEvent(self, event: QtGui.QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._update_cursor()
            event.accept()
            return
        if self._dragging_divider:
            self._dragging_divider = False
            event.accept()
            return
        if self._stroking and self._mask is not None:
            self._stroking = False
            p = self.mapToScene(event.position().toPoint())
            self._mask.stroke_to(p.x(), p.y())
            if self._mask.end_stroke():
                self.strokeFinished.emit()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def enterEvent(self, event: QtGui.QEnterEvent) -> None:
        super().enterEvent(event)
        self.update_brush_outline(self.mapToScene(event.position().toPoint()))

    def leaveEvent(self, event: QtCore.QEvent) -> None:
        super().leaveEvent(event)
        if not self._stroking:
            self._brush.setVisible(False)

    def focusOutEvent(self, event: QtGui.QFocusEvent) -> None:
        # a stroke must not stay open when the window loses the mouse mid-drag
        if self._stroking and self._mask is not None:
            self._stroking = False
            if self._mask.end_stroke():
                self.strokeFinished.emit()
        super().focusOutEvent(event)
