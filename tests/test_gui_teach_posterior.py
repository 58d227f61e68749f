"""The posterior panel (offscreen): K samples for an inpainting problem, std brighter inside the hole."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch
from PySide6 import QtWidgets

pytest.importorskip("pytestqt")

from teach_oracle import IsotropicOracle

from priorstudio.core.operators import Identity
from priorstudio.core.problem import build_problem
from priorstudio.core.samplers.implicit_prior import RESTORE_PRESET, ImplicitPriorParams
from priorstudio.gui.teach.posterior_view import PosteriorPanel, unmeasured_region

pytestmark = pytest.mark.gui


def _problem():
    image = 0.5 + 0.1 * torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(0))
    missing = torch.zeros(16, 16, dtype=torch.bool)
    missing[4:12, 4:12] = True
    return build_problem(image.clamp(0, 1), "inpaint", missing=missing), missing


def test_unmeasured_region():
    problem, missing = _problem()
    assert torch.equal(unmeasured_region(problem.operator), missing)
    assert unmeasured_region(Identity((1, 4, 4))) is None


def test_panel_draws_samples_and_shows_the_spread(qtbot):
    oracle = IsotropicOracle()
    panel = PosteriorPanel(lambda channels: oracle)
    qtbot.addWidget(panel)
    panel.run()
    assert "No problem yet" in panel.status.text()
    problem, missing = _problem()
    panel.set_problem(problem, ImplicitPriorParams.preset(RESTORE_PRESET, beta=0.5, max_steps=400))
    panel.k_spin.setValue(4)
    with qtbot.waitSignal(panel.finished, timeout=30_000) as blocker:
        panel.run()
        assert not panel.run_button.isEnabled()
    summary = blocker.args[0]
    assert summary.k == 4 and summary.mean.shape == (1, 16, 16)
    inside, outside = summary.region_std(missing)
    assert inside > 3 * outside
    assert "Inside the unmeasured region" in panel.view.summary_label.text()
    assert panel.view.std_pane.image_shape() == (16, 16) and panel.run_button.isEnabled()
    panel.close()


def test_a_long_status_message_wraps_instead_of_widening_the_panel(qtbot):
    panel = PosteriorPanel(lambda channels: IsotropicOracle())
    qtbot.addWidget(panel)
    panel.show()
    before = panel.minimumSizeHint().width()
    panel.status.setText("No problem yet: load an image and set up a degradation first. " * 6)
    QtWidgets.QApplication.processEvents()  # the layout takes in the new text
    assert panel.minimumSizeHint().width() <= before
