"""The teaching tools hosted in the real main window (offscreen): menu, run history, explain, tools."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

pytest.importorskip("pytestqt")

from teach_oracle import IsotropicOracle

from priorstudio.gui.main_window import MainWindow
from priorstudio.gui.teach.gallery import GalleryWidget
from priorstudio.gui.teach.inspector_dialog import InspectorDialog
from priorstudio.gui.teach.integration import install_teach_tools
from priorstudio.gui.teach.posterior_view import PosteriorPanel

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, settings):
    oracle = IsotropicOracle()
    errors: list[tuple[str, str]] = []
    w = MainWindow(denoiser_factory=lambda channels: oracle, settings=settings, error_sink=lambda *e: errors.append(e))
    w.confirm_close = lambda reason: "discard"
    qtbot.addWidget(w)
    w.errors = errors
    yield w
    w.shutdown()


def test_menu_docks_and_a_run_fill_the_history(qtbot, window):
    teach = install_teach_tools(window)
    titles = [a.text() for a in teach.menu.actions() if a.text()]
    assert "Prior samples gallery…" in titles and "Denoiser inspector…" in titles
    window.set_photo(0.5 + 0.1 * torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(0)))
    window.degradation.set_task("denoise")
    with qtbot.waitSignal(window.runFinished, timeout=60_000) as blocker:
        assert window.start_run(), window.errors
    last = blocker.args[0]
    assert last is not None and len(teach.history) > 0 and teach.history.latest().t == last.t
    assert len(teach.rows) == last.t
    player = teach.player
    assert player.current_frame().t == last.t and player.export_buttons["gif"].isEnabled()
    player.seek(0)
    assert "Miyasawa" in teach.explain.text() and "t = 1 " in teach.explain.text()
    assert "‖d_t‖" in teach.explain.text()  # the window's problem told the panel N


def test_score_tap_shows_the_score_of_the_scrubbed_step(qtbot, window):
    teach = install_teach_tools(window)
    oracle = IsotropicOracle()
    tapped = teach.tap(oracle)
    teach._sink_for_run(None)  # what the window does when the run starts
    y = 0.5 + torch.randn(1, 1, 8, 8)
    tapped(y)
    frame_history = teach.score_tap.history
    assert len(frame_history) == 1 and teach.score_tap is tapped
    teach.history.push(1, oracle(y), {"sigma": 0.5})
    teach.player.set_history(teach.history)
    assert teach.history_panel.score_pane.image_shape() == (8, 8)


def test_tools_open_and_close_cleanly(qtbot, window):
    teach = install_teach_tools(window)
    with pytest.raises(Exception, match="open an image"):
        teach.open_inspector()
    window.set_photo(torch.rand(1, 24, 24))
    gallery = teach.open_gallery()
    assert gallery.findChild(GalleryWidget) is not None
    inspector = teach.open_inspector()
    assert isinstance(inspector, InspectorDialog) and inspector.image_pane.image_shape() == (24, 24)
    window.degradation.set_task("inpaint")
    window.generate_mask("block", 0.25)
    posterior = teach.open_posterior()
    panel = posterior.findChild(PosteriorPanel)
    assert panel is not None and panel._problem.task == "inpaint"
    assert teach.open_game().isVisible()
    teach.open_beta()
    teach.show_explain()
    teach.shutdown()
    for tool in list(teach._tools.values()):
        tool.close()


def in_view(dock) -> bool:
    return dock.isVisible() and not dock.visibleRegion().isEmpty()


def test_the_run_history_follows_a_run_only_while_in_view(qtbot, window):
    window.show()
    qtbot.waitExposed(window)
    teach = window.teach
    calls: list[int] = []
    teach.player.refresh = lambda *a, **k: calls.append(1)
    window.plots_dock.raise_()  # the live plots are the visible tab; the run history waits beside them
    qtbot.waitUntil(lambda: not in_view(teach.history_dock) and not in_view(teach.explain_dock))
    teach._follow_run()
    assert calls == []  # nothing to draw for: no GUI time taken from the run
    teach.history_dock.raise_()
    qtbot.waitUntil(lambda: len(calls) >= 1)  # brought into view: it catches up at once
    n = len(calls)
    teach._follow_run()
    assert len(calls) == n + 1
