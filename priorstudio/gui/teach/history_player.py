"""Scrub and replay a finished run: a slider over its kept frames, play/pause, and export buttons."""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Signal, Slot

from priorstudio.core.errors import PriorStudioError
from priorstudio.core.teach.animation import (
    MP4_ADVICE,
    export_filmstrip,
    export_gif,
    export_mp4,
    export_webp,
    frame_label,
    mp4_encoder,
)
from priorstudio.core.teach.history import Frame, FrameHistory
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.spin_boxes import SpinBox
from priorstudio.gui.teach.common import ImagePane

EXPORTS = {
    "gif": ("Animated GIF (*.gif)", ".gif"),
    "webp": ("Animated WebP (*.webp)", ".webp"),
    "mp4": ("MP4 video (*.mp4)", ".mp4"),
    "filmstrip": ("Filmstrip PNG (*.png)", ".png"),
}


class HistoryPlayer(QtWidgets.QWidget):
    """Host API: ``set_history(history, sample=None)``, ``refresh()`` while a run grows it; listen to
    ``frameSelected(Frame)`` to show the scrubbed frame on the main canvas (or use the built-in preview)."""

    frameSelected = Signal(object)

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, show_preview: bool = True) -> None:
        super().__init__(parent)
        self._history: FrameHistory | None = None
        self._note = ""  # said in place of the memory line while set
        self._frames: list[Frame] = []
        self._sample: int | None = None
        self.preview = ImagePane("") if show_preview else None

        self.play_button = QtWidgets.QToolButton(self)
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play / pause the replay (Space)")
        self.play_button.toggled.connect(self._on_play_toggled)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, self)
        self.slider.setToolTip("Scrub through the run's kept frames")
        self.slider.valueChanged.connect(self._on_slider)
        self._step_text = "no run yet"  # the step label without a host's note
        self.step_label = QtWidgets.QLabel(self._step_text, self)
        self.step_label.setMinimumWidth(170)
        self.fps = SpinBox(self)
        self.fps.setRange(1, 60)
        self.fps.setValue(15)
        self.fps.setSuffix(" fps")
        self.fps.setAccessibleName("playback speed")
        self.fps.setToolTip("Replay and export speed, frames per second")
        self.fps.valueChanged.connect(self._on_fps)
        self.memory_label = QtWidgets.QLabel("", self)
        # its text grows as the run does: it must never widen the dock (a re-laid dock area at a run's start
        # re-laid the plots beside it too)
        self.memory_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.memory_label.setToolTip(
            "The run keeps a thinned history of its frames under a memory cap: when full, every other frame "
            "is dropped, so the kept frames always span the whole run evenly."
        )
        self.export_buttons: dict[str, QtWidgets.QPushButton] = {}
        for kind, text in (("gif", "GIF"), ("webp", "WebP"), ("mp4", "MP4"), ("filmstrip", "Filmstrip")):
            button = QtWidgets.QPushButton(text, self)
            button.setToolTip(f"Export the run as {EXPORTS[kind][0]}, with the step and σ_t burned in")
            button.clicked.connect(lambda _=False, k=kind: self._export_dialog(k))
            self.export_buttons[kind] = button
        if mp4_encoder() is None:
            self.export_buttons["mp4"].setEnabled(False)
            self.export_buttons["mp4"].setToolTip(MP4_ADVICE)

        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self._advance)
        self._on_fps(self.fps.value())

        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(self.play_button)
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.step_label)
        bar.addWidget(self.fps)
        exports = QtWidgets.QHBoxLayout()
        exports.addWidget(QtWidgets.QLabel("Export:", self))
        for button in self.export_buttons.values():
            exports.addWidget(button)
        exports.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if self.preview is not None:
            layout.addWidget(self.preview, 1)
        layout.addLayout(bar)
        layout.addLayout(exports)
        layout.addWidget(self.memory_label)
        self._update_play_icon(False)
        self._sync_enabled()

    # -- host API ------------------------------------------------------------------------------------
    def set_history(self, history: FrameHistory | None, sample: int | None = None) -> None:
        """Scrub ``history``; ``sample`` picks one element of a batched run (None shows them all)."""
        self.pause()
        self._history = history
        self._sample = sample
        self._note = ""
        self.refresh(go_to_end=True)

    def set_note(self, text: str) -> None:
        """Say ``text`` in place of the memory line (e.g. why a run's frames are not kept); "" restores it."""
        self._note = text
        self.memory_label.setText(text or (self._history.describe() if self._history is not None else ""))

    def set_step_note(self, text: str) -> None:
        """Add ``text`` to the shown step's label (e.g. that the scrubbed sample stopped earlier); "" clears it."""
        self.step_label.setText(f"{self._step_text}  · {text}" if text and self._step_text else self._step_text)

    def refresh(self, go_to_end: bool = False) -> None:
        """Re-read the history (after a run pushed more frames)."""
        at_end = go_to_end or self.slider.value() >= self.slider.maximum()
        self._frames = self._history.frames() if self._history is not None else []
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(len(self._frames) - 1, 0))
        if at_end:
            self.slider.setValue(self.slider.maximum())
        self.slider.blockSignals(False)
        described = self._history.describe() if self._history is not None else ""
        self.memory_label.setText(self._note or described)
        self._sync_enabled()
        self._show(self.slider.value())

    def frames(self) -> list[Frame]:
        return list(self._frames)

    def current_frame(self) -> Frame | None:
        i = self.slider.value()
        return self._frames[i] if 0 <= i < len(self._frames) else None

    def seek(self, index: int) -> None:
        self.slider.setValue(index)

    def seek_step(self, t: int) -> None:
        """Jump to the kept frame nearest step ``t`` (e.g. from a click on the σ_t plot)."""
        if self._history is not None and self._frames:
            target = self._history.nearest(t)
            self.slider.setValue(next(i for i, f in enumerate(self._frames) if f.index == target.index))

    def play(self) -> None:
        if len(self._frames) > 1:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(0)
            self.play_button.setChecked(True)

    def pause(self) -> None:
        self.play_button.setChecked(False)

    def is_playing(self) -> bool:
        return self.timer.isActive()

    def export(self, kind: str, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the history as ``kind`` ('gif', 'webp', 'mp4', 'filmstrip'); raises PriorStudioError."""
        if self._history is None or len(self._history) == 0:
            raise PriorStudioError("there is no run to export yet")
        options = {"sample": self._sample, "overwrite": overwrite}
        if kind == "filmstrip":
            return export_filmstrip(self._history, path, 8, **options)
        exporter = {"gif": export_gif, "webp": export_webp, "mp4": export_mp4}[kind]
        return exporter(self._history, path, fps=self.fps.value(), **options)

    # -- internals -----------------------------------------------------------------------------------
    def _sync_enabled(self) -> None:
        has = len(self._frames) > 0
        self.slider.setEnabled(len(self._frames) > 1)
        self.play_button.setEnabled(len(self._frames) > 1)
        for kind, button in self.export_buttons.items():
            button.setEnabled(has and (kind != "mp4" or mp4_encoder() is not None))

    def _show(self, index: int) -> None:
        frame = self.current_frame() if index == self.slider.value() else None
        if frame is None:
            self._step_text = "no run yet" if not self._frames else ""
            self.step_label.setText(self._step_text)
            if self.preview is not None and not self._frames:
                self.preview.clear_image()
            return
        self._step_text = f"{frame_label(frame, self._sample).replace('sigma', 'σ')}  ({index + 1}/{len(self._frames)})"
        self.step_label.setText(self._step_text)
        if self.preview is not None:
            data = frame.image()
            if data.ndim == 4:
                from priorstudio.core.teach.animation import tile

                data = data[self._sample] if self._sample is not None else tile(data)
            self.preview.set_image(data)
        self.frameSelected.emit(frame)

    @Slot(int)
    def _on_slider(self, index: int) -> None:
        self._show(index)

    @Slot()
    def _advance(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.pause()
            return
        self.slider.setValue(self.slider.value() + 1)

    @Slot(int)
    def _on_fps(self, fps: int) -> None:
        self.timer.setInterval(max(int(1000 / fps), 15))

    @Slot(bool)
    def _on_play_toggled(self, playing: bool) -> None:
        if playing and len(self._frames) > 1:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(0)
            self.timer.start()
        else:
            self.timer.stop()
            if playing:
                self.play_button.setChecked(False)
        self._update_play_icon(self.timer.isActive())

    def _update_play_icon(self, playing: bool) -> None:
        style = self.style()
        icon = (
            QtWidgets.QStyle.StandardPixmap.SP_MediaPause if playing else QtWidgets.QStyle.StandardPixmap.SP_MediaPlay
        )
        self.play_button.setIcon(style.standardIcon(icon))

    def _export_dialog(self, kind: str) -> None:
        filt, suffix = EXPORTS[kind]
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Export the run", f"run{suffix}", filt)
        if not path:
            return
        # the file dialog has already asked before replacing the file it returned (not one we rename)
        confirmed = path.lower().endswith(suffix)
        if not confirmed:
            path += suffix
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            self.export(kind, path, overwrite=confirmed)
        except PriorStudioError as exc:
            QtWidgets.QMessageBox.warning(self, "Export failed", str(exc))
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()

    def hideEvent(self, event) -> None:
        self.pause()
        super().hideEvent(event)
