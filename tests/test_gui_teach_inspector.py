"""The inspector dialog (offscreen): click a pixel → filter with row·y = D(y); singular values on demand."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

pytest.importorskip("pytestqt")

from priorstudio.core.denoisers import BiasFreeUNet, Denoiser
from priorstudio.core.teach.inspector import add_noise, crop_window, jacobian_row
from priorstudio.gui.teach.inspector_dialog import InspectorDialog

pytestmark = pytest.mark.gui


@pytest.fixture
def factory():
    torch.manual_seed(0)
    denoiser = Denoiser(BiasFreeUNet(1, (8, 16)), fast=False, device="cpu")
    return lambda channels: denoiser


def test_click_shows_filter_and_identity(qtbot, factory):
    dialog = InspectorDialog(factory)
    qtbot.addWidget(dialog)
    dialog.window_size.setValue(32)  # the window covers the whole 24² image
    dialog.view_size.setValue(15)
    clean = torch.rand(1, 24, 24, generator=torch.Generator().manual_seed(1))
    dialog.set_image(clean)
    dialog.show()
    dialog.select_pixel(10, 12)
    qtbot.waitUntil(lambda: dialog.filter_result is not None, timeout=120_000)
    result = dialog.filter_result
    assert result.pixel == (0, 10, 12)
    assert result.filter.shape == (1, 15, 15) and result.patch.shape == (1, 15, 15)
    assert result.dot == pytest.approx(result.output, abs=1e-4)
    assert "locally linear" in dialog.info.text()
    # moving the noise slider recomputes the filter at the same pixel, for the image re-noised at that level
    first = result.filter
    dialog.filter_result = None
    dialog.set_sigma(60)
    qtbot.waitUntil(lambda: dialog.filter_result is not None and not dialog.busy(), timeout=120_000)
    moved = dialog.filter_result
    assert moved.sigma == pytest.approx(60 / 255) and moved.pixel == (0, 10, 12)
    assert not torch.allclose(moved.filter, first, atol=1e-4)
    y = add_noise(clean, 60 / 255, seed=0)  # the slider changes the level, not the noise pattern
    rows, cols = crop_window((24, 24), (10, 12), 15)
    expected = jacobian_row(factory(1), y, (0, 10, 12))[:, rows, cols]
    torch.testing.assert_close(moved.filter, expected, atol=1e-5, rtol=1e-4)


def test_singular_values_and_dimensionality(qtbot, factory):
    dialog = InspectorDialog(factory)
    qtbot.addWidget(dialog)
    # empty, the spectrum plot shows decades (not pyqtgraph's 1–10 pile of log labels); its data take over
    assert dialog.spectrum_plot.getViewBox().viewRange()[1] == [-3.0, 0.0]
    dialog.set_image(torch.rand(1, 16, 16))
    dialog.svd_window.setValue(8)
    dialog.k_spin.setValue(6)
    dialog.svd_button.click()
    assert "Click a pixel first" in dialog.info.text()
    dialog.select_pixel(4, 4)
    dialog.svd_button.click()
    qtbot.waitUntil(lambda: dialog.spectrum_result is not None, timeout=120_000)
    spectrum = dialog.spectrum_result
    assert spectrum.values.shape == (6,) and spectrum.n == 64
    assert torch.all(spectrum.values[:-1] >= spectrum.values[1:])
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=120_000)
    assert "Effective dimensionality" in dialog.info.text()
    dialog.spectrum_plot.getViewBox().updateAutoRange()
    assert dialog.spectrum_plot.getViewBox().viewRange()[0][1] < 50  # six values: the 0–100 start is gone
    dialog.close()


def test_noisy_input_disables_the_slider(qtbot, factory):
    dialog = InspectorDialog(factory)
    qtbot.addWidget(dialog)
    y = torch.rand(1, 3, 16, 16)[:, :1]
    dialog.set_image(y, noisy=True)
    assert dialog.sigma() == 0.0 and not dialog.sigma_slider.isEnabled()
    dialog.image_pane.clicked.emit(3, 5)
    qtbot.waitUntil(lambda: dialog.filter_result is not None, timeout=120_000)
    torch.testing.assert_close(dialog.filter_result.score, dialog.filter_result.denoised - y[0])
    dialog.close()


def test_filters_across_noise_levels_and_a_live_slider(qtbot, factory):
    from priorstudio.core.teach.pixel import SWEEP_LEVELS

    dialog = InspectorDialog(factory)
    qtbot.addWidget(dialog)
    assert dialog.sigma_slider.hasTracking()  # the filter follows the slider while it moves
    dialog.window_size.setValue(32)
    dialog.view_size.setValue(9)
    dialog.set_image(torch.rand(1, 24, 24))
    dialog.sweep_button.click()
    assert dialog.sweep_result is None and "Click a pixel first" in dialog.info.text()
    dialog.select_pixel(12, 12)
    dialog.sweep_button.click()
    qtbot.waitUntil(lambda: dialog.sweep_result is not None, timeout=120_000)
    result = dialog.sweep_result
    n = len(SWEEP_LEVELS)
    assert result.levels == SWEEP_LEVELS and result.filters.shape == (n, 1, 9, 9)
    assert dialog.sweep_pane.image_shape() == (9, n * 9 + (n - 1) * 2)  # one strip, 2-pixel gaps
    assert not dialog.sweep_pane.isHidden()
    # another pixel recomputes the strip there
    dialog.sweep_result = None
    dialog.select_pixel(5, 6)
    qtbot.waitUntil(lambda: dialog.sweep_result is not None and not dialog.busy(), timeout=120_000)
    assert dialog.sweep_result.pixel == (0, 5, 6)
    dialog.set_image(torch.rand(1, 16, 16), noisy=True)
    assert not dialog.sweep_button.isEnabled() and dialog.sweep_pane.isHidden()
    dialog.close()
