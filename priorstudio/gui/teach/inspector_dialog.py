"""The denoiser inspector: click a pixel to see the adaptive filter the network applies there.

Shows, for y = x + σz (σ from a slider, z fixed so only the level changes):
the image (click a pixel), the patch around the pixel, the filter — row of A(y) at that pixel, zero at
mid-gray — and the check row·y = D(y) at the pixel; the denoised image and the score f(y) = D(y) − y; on
demand the filter at several noise levels side by side, and the leading singular values of A(y) on a
window around the pixel with the effective dimensionality they imply. Moving the slider recomputes what
is shown. Everything heavy runs in a background thread; requests that arrive while one runs are
coalesced into the newest.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import torch
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Slot
from torch import Tensor

from priorstudio.core.teach.animation import tile
from priorstudio.core.teach.inspector import add_noise, filter_display
from priorstudio.core.teach.pixel import (
    SWEEP_LEVELS,
    FilterResult,
    PixelSpectrum,
    SweepResult,
    pixel_filter,
    pixel_spectrum,
    pixel_sweep,
)
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.plots import show_until_data
from priorstudio.gui.spin_boxes import SpinBox
from priorstudio.gui.teach.common import BackgroundCall, DenoiserFactory, ImagePane


class InspectorDialog(QtWidgets.QDialog):
    """Host API: ``InspectorDialog(denoiser_factory, parent)``, then ``set_image(x)`` with a clean image
    (C, H, W) in [0, 1] — noise is added from the slider — or ``set_image(y, noisy=True)`` for an image
    that is already noisy (e.g. a frame of a run: the score view then shows that step's f(y))."""

    def __init__(self, denoiser_factory: DenoiserFactory, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Denoiser inspector: D(y) = A(y)·y")
        self._factory = denoiser_factory
        self._clean: Tensor | None = None
        self._noisy_input = False
        self._y: Tensor | None = None
        self._pixel: tuple[int, int, int] | None = None
        self._pending_filter = False
        self._pending_spectrum = False
        self._pending_sweep = False
        self.filter_result: FilterResult | None = None
        self.spectrum_result: PixelSpectrum | None = None
        self.sweep_result: SweepResult | None = None

        self.image_pane = ImagePane("noisy image y — click a pixel")
        self.patch_pane = ImagePane("patch around the pixel")
        self.filter_pane = ImagePane("adaptive filter: row of A(y)", colormap="CET-D1")
        self.denoised_pane = ImagePane("D(y) (window)")
        self.score_pane = ImagePane("score f(y) = D(y) − y", colormap="CET-D1")
        self.sweep_pane = ImagePane("", colormap="CET-D1")
        self.sweep_pane.setMinimumHeight(110)
        self.sweep_pane.setVisible(False)
        self.marker = pg.ScatterPlotItem(size=12, pen=pg.mkPen("r", width=2), brush=None, symbol="s")
        self.image_pane.view.addItem(self.marker)
        self.image_pane.clicked.connect(self.select_pixel)

        self.sigma_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.sigma_slider.setRange(0, 100)
        self.sigma_slider.setValue(25)
        self.sigma_slider.setToolTip("Noise level σ added to the image, on the 0–255 scale (same noise pattern)")
        self.sigma_slider.valueChanged.connect(self._on_sigma)  # while dragging: requests are coalesced
        self.sigma_label = QtWidgets.QLabel("σ = 25/255")
        self.view_size = SpinBox()
        self.view_size.setRange(9, 129)
        self.view_size.setSingleStep(2)
        self.view_size.setValue(41)
        self.view_size.setAccessibleName("view")
        self.view_size.setToolTip("Size of the patch and filter shown (BF-CNN's receptive field is 41)")
        self.view_size.valueChanged.connect(self._request_filter)
        self.window_size = SpinBox()
        self.window_size.setRange(32, 512)
        self.window_size.setValue(128)
        self.window_size.setAccessibleName("window")
        self.window_size.setToolTip(
            "The network runs on this window around the pixel: exact for a CNN when it reaches twice the "
            "receptive field beyond the pixel, faster than the whole photo"
        )
        self.window_size.valueChanged.connect(self._request_filter)

        self.k_spin = SpinBox()
        self.k_spin.setRange(2, 64)
        self.k_spin.setValue(16)
        self.k_spin.setAccessibleName("k")
        self.k_spin.setToolTip("How many leading singular values to compute")
        self.svd_window = SpinBox()
        self.svd_window.setRange(8, 64)
        self.svd_window.setValue(32)
        self.svd_window.setAccessibleName("SVD window")
        self.svd_window.setToolTip("A(y) is taken on this window around the pixel (N = C·size² dimensions)")
        self.svd_button = QtWidgets.QPushButton("Singular values")
        self.svd_button.setToolTip(
            "Leading singular values of A(y) by a randomized SVD with Jacobian-vector products (matrix-free)"
        )
        self.svd_button.clicked.connect(self._request_spectrum)
        self.sweep_button = QtWidgets.QPushButton("Filter vs noise level")
        self.sweep_button.setToolTip(
            "The filter at this pixel for σ = " + ", ".join(map(str, SWEEP_LEVELS)) + " (/255), the same noise "
            "pattern scaled: it reaches further as the noise grows"
        )
        self.sweep_button.clicked.connect(self._request_sweep)
        self.spectrum_plot = pg.PlotWidget()
        self.spectrum_plot.setLogMode(y=True)
        self.spectrum_plot.setLabel("bottom", "index i")
        self.spectrum_plot.setLabel("left", "singular value sᵢ")
        self.spectrum_plot.setMinimumHeight(140)
        show_until_data(self.spectrum_plot, (0.0, 100.0), (-3.0, 0.0))  # where the filter's sᵢ mostly lie
        self.spectrum_curve = self.spectrum_plot.plot([], [], pen="w", symbol="o", symbolSize=5)
        self.info = QtWidgets.QLabel("Click a pixel of the image.")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        self._filter_call = BackgroundCall(self)
        self._filter_call.done.connect(self._on_filter)
        self._filter_call.failed.connect(self._on_failed)
        self._spectrum_call = BackgroundCall(self)
        self._spectrum_call.done.connect(self._on_spectrum)
        self._spectrum_call.failed.connect(self._on_failed)
        self._spectrum_call.busyChanged.connect(lambda busy: self.svd_button.setEnabled(not busy))
        self._sweep_call = BackgroundCall(self)
        self._sweep_call.done.connect(self._on_sweep)
        self._sweep_call.failed.connect(self._on_failed)

        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(QtWidgets.QLabel("noise"))
        controls.addWidget(self.sigma_slider, 1)
        controls.addWidget(self.sigma_label)
        controls.addWidget(QtWidgets.QLabel("view"))
        controls.addWidget(self.view_size)
        controls.addWidget(QtWidgets.QLabel("window"))
        controls.addWidget(self.window_size)
        images = QtWidgets.QGridLayout()
        images.addWidget(self.image_pane, 0, 0, 2, 1)
        images.addWidget(self.patch_pane, 0, 1)
        images.addWidget(self.filter_pane, 0, 2)
        images.addWidget(self.denoised_pane, 1, 1)
        images.addWidget(self.score_pane, 1, 2)
        images.addWidget(self.sweep_pane, 2, 0, 1, 3)
        images.setColumnStretch(0, 2)
        images.setColumnStretch(1, 1)
        images.setColumnStretch(2, 1)
        svd_row = QtWidgets.QHBoxLayout()
        svd_row.addWidget(self.sweep_button)
        svd_row.addWidget(self.svd_button)
        svd_row.addWidget(QtWidgets.QLabel("k"))
        svd_row.addWidget(self.k_spin)
        svd_row.addWidget(QtWidgets.QLabel("window"))
        svd_row.addWidget(self.svd_window)
        svd_row.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(images, 3)
        layout.addLayout(controls)
        layout.addLayout(svd_row)
        layout.addWidget(self.spectrum_plot, 1)
        layout.addWidget(self.info)
        self.resize(900, 720)

    # -- host API ------------------------------------------------------------------------------------
    def set_image(self, image: Tensor, *, noisy: bool = False) -> None:
        """Inspect ``image`` (C, H, W): clean (noise from the slider is added) or already ``noisy``."""
        if image.dim() == 4:
            image = image[0]
        self._clean = image.detach().float().cpu()
        self._noisy_input = noisy
        self.sigma_slider.setEnabled(not noisy)
        self.sweep_button.setEnabled(not noisy)  # a sweep adds noise to a clean image
        self._pixel = None
        self.marker.setData([], [])
        self.filter_result = self.spectrum_result = self.sweep_result = None
        self.sweep_pane.setVisible(False)
        self._update_y()
        self.info.setText("Click a pixel of the image.")

    def sigma(self) -> float:
        return 0.0 if self._noisy_input else self.sigma_slider.value() / 255.0

    def set_sigma(self, sigma_255: int) -> None:
        self.sigma_slider.setValue(int(sigma_255))

    @Slot(int, int)
    def select_pixel(self, row: int, col: int, channel: int = 0) -> None:
        if self._y is None:
            return
        self._pixel = (channel, row, col)
        self.marker.setData([col + 0.5], [row + 0.5])
        self._request_filter()
        if not self.sweep_pane.isHidden():  # the strip is on screen: keep it at the clicked pixel
            self._request_sweep()

    def busy(self) -> bool:
        return self._filter_call.is_busy() or self._spectrum_call.is_busy() or self._sweep_call.is_busy()

    # -- computations --------------------------------------------------------------------------------
    def _update_y(self) -> None:
        assert self._clean is not None
        self._y = self._clean if self._noisy_input else add_noise(self._clean, self.sigma(), seed=0)
        self.image_pane.set_image(self._y)
        self.image_pane.set_title(
            "image y — click a pixel" if self._noisy_input else f"y = x + σz, σ = {self.sigma_slider.value()}/255"
        )

    @Slot(int)
    def _on_sigma(self, value: int) -> None:
        self.sigma_label.setText(f"σ = {value}/255")
        if self._clean is None:
            return
        self._update_y()
        self._request_filter()
        if self.spectrum_result is not None:
            self._request_spectrum()

    @Slot()
    def _request_filter(self) -> None:
        if self._y is None or self._pixel is None:
            return
        if self._filter_call.is_busy():
            self._pending_filter = True
            return
        y, pixel, sigma = self._y, self._pixel, self.sigma()
        view, window = self.view_size.value(), self.window_size.value()
        denoiser = self._factory(int(y.shape[0]))
        self._filter_call.start(lambda: pixel_filter(denoiser, y, pixel, sigma, view, window))

    @Slot()
    def _request_spectrum(self) -> None:
        if self._y is None or self._pixel is None:
            self.info.setText("Click a pixel first: the singular values are those of A(y) on a window around it.")
            return
        if self._spectrum_call.is_busy():
            self._pending_spectrum = True
            return
        y, pixel, sigma = self._y, self._pixel, self.sigma()
        k, window = self.k_spin.value(), self.svd_window.value()
        denoiser = self._factory(int(y.shape[0]))
        self.info.setText("Computing the leading singular values of A(y)…")
        self._spectrum_call.start(lambda: pixel_spectrum(denoiser, y, pixel, sigma, k, window))

    @Slot()
    def _request_sweep(self) -> None:
        if self._clean is None or self._pixel is None or self._noisy_input:
            self.info.setText("Click a pixel first: the filters are those at that pixel.")
            return
        if self._sweep_call.is_busy():
            self._pending_sweep = True
            return
        clean, pixel = self._clean, self._pixel
        view, window = self.view_size.value(), self.window_size.value()
        denoiser = self._factory(int(clean.shape[0]))
        self._sweep_call.start(lambda: pixel_sweep(denoiser, clean, pixel, SWEEP_LEVELS, view, window))

    @Slot(object)
    def _on_sweep(self, result: SweepResult) -> None:
        self.sweep_result = result
        shown = [filter_display(f[0] if f.shape[0] == 1 else f.mean(0)) for f in result.filters]
        strip = tile(torch.stack(shown).unsqueeze(1).numpy(), columns=len(shown), gap=2, fill=0.5)
        self.sweep_pane.set_image(strip)
        levels = ", ".join(map(str, result.levels))
        self.sweep_pane.set_title(
            f"filter at ({result.pixel[1]}, {result.pixel[2]}) for σ = {levels} /255 (each to its peak)"
        )
        self.sweep_pane.setVisible(True)
        if self._pending_sweep:
            self._pending_sweep = False
            self._request_sweep()

    @Slot(object)
    def _on_filter(self, result: FilterResult) -> None:
        self.filter_result = result
        m = float(result.filter.abs().max().clamp_min(1e-12))
        self.patch_pane.set_image(result.patch)
        self.filter_pane.set_image(result.filter[0] if result.filter.shape[0] == 1 else result.filter.mean(0), (-m, m))
        self.denoised_pane.set_image(result.denoised)
        s = float(result.score.abs().max().clamp_min(1e-12))
        self.score_pane.set_image(result.score[0] if result.score.shape[0] == 1 else result.score.mean(0), (-s, s))
        _, i, j = result.pixel
        self.filter_pane.set_title(f"filter at ({i}, {j}), Σ weights = {float(result.filter.sum()):.2f}")
        self._show_info()
        if self._pending_filter:
            self._pending_filter = False
            self._request_filter()

    @Slot(object)
    def _on_spectrum(self, result: PixelSpectrum) -> None:
        self.spectrum_result = result
        values = result.values.numpy()
        self.spectrum_curve.setData(np.arange(1, len(values) + 1), np.maximum(values, 1e-12))
        self._show_info()
        if self._pending_spectrum:
            self._pending_spectrum = False
            self._request_spectrum()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.info.setText(f"Could not compute: {message}")

    def _show_info(self) -> None:
        parts = []
        f = self.filter_result
        if f is not None:
            ok = abs(f.dot - f.output) <= 1e-3 * max(1.0, abs(f.output))
            parts.append(
                f"At pixel {f.pixel[1:]}: filter · y = {f.dot:.5f}, D(y) = {f.output:.5f} "
                f"({'equal: the network is locally linear, D(y) = A(y)y' if ok else 'differ: not bias-free?'})."
            )
        s = self.spectrum_result
        if s is not None:
            parts.append(
                f"A(y) on a {s.n}-value window at σ = {255 * s.sigma:.0f}/255: top singular values "
                f"{', '.join(f'{v:.3f}' for v in s.values[:4].tolist())} … Effective dimensionality "
                f"d = Σsᵢ² ≈ {s.d_estimate:.1f} of N = {s.n} ({100 * s.d_estimate / s.n:.1f} %; "
                f"the top {len(s.values)} give {s.d_lower:.1f}). The network keeps about d of the N noise dimensions."
            )
        self.info.setText("\n".join(parts) if parts else "Click a pixel of the image.")

    def shutdown(self) -> None:
        """Wait for a computation in flight (the dialog's threads end with it)."""
        self._pending_filter = self._pending_spectrum = self._pending_sweep = False
        self._filter_call.wait()
        self._spectrum_call.wait()
        self._sweep_call.wait()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def done(self, result: int) -> None:  # Esc / reject also ends the threads
        self.shutdown()
        super().done(result)
