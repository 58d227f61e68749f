"""The teaching tools hosted in the real main window (offscreen): menu, run history, explain, tools."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

pytest.importorskip("pytestqt")

from gui_support import open_window, tiny_denoiser
from teach_oracle import IsotropicOracle

from priorstudio.core.teach.inspector import ScoreTap
from priorstudio.gui.main_window import MainWindow
from priorstudio.gui.teach.beta_compare import BetaComparisonWidget
from priorstudio.gui.teach.gallery import GalleryWidget
from priorstudio.gui.teach.inspector_dialog import InspectorDialog
from priorstudio.gui.teach.integration import SCORE_SHARE
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


@pytest.fixture
def tiny_window(qtbot, settings):
    """The real window with a (tiny) network, as a user runs it: its own teaching tools, nothing added."""
    w = open_window(qtbot, settings, size=None, denoiser_factory=tiny_denoiser)
    yield w
    w.shutdown()


def test_menu_docks_and_a_run_fill_the_history(qtbot, window):
    teach = window.teach
    assert [m.title() for m in window.menuBar().findChildren(type(teach.menu))].count("&Teach") == 1
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


def test_a_real_run_shows_the_score_of_each_kept_step(qtbot, tiny_window):
    """Frames large for the memory cap (it thins them, not the frame count): every kept frame still has
    the score of its own step, and the score pane says which step that is."""
    window = tiny_window
    teach = window.teach
    teach.max_bytes = 12 * 1024  # 32² grey frames of 1 KB: the history thins by memory, as a 512² run does
    window.set_photo(0.5 + 0.1 * torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(0)))
    window.degradation.set_task("denoise")
    window.algorithm.apply_preset("teach")
    window.algorithm.set_values({"sigma_L": 1e-6, "max_steps": 70})
    with qtbot.waitSignal(window.runFinished, timeout=60_000) as blocker:
        assert window.start_run(), window.errors
    last = blocker.args[0]
    tap = teach.score_tap
    assert isinstance(tap, ScoreTap) and tap.calls == last.t > 40 and not tap.dropped
    assert tap.history.max_bytes == 2 * teach.max_bytes // SCORE_SHARE
    frames = teach.history.frames()
    assert teach.history.interval > 1 and len(frames) < 15  # thinned by the memory cap
    kept = tap.history.steps()
    assert 2 <= len(kept) < len(frames) and set(kept) <= {f.t for f in frames}  # scores of kept frames' steps
    pane = teach.history_panel.score_pane
    own = 0
    for i, frame in enumerate(frames):
        teach.player.seek(i)
        assert teach.player.current_frame().t == frame.t
        nearest = min(kept, key=lambda t: (abs(t - frame.t), t))
        assert not pane.isHidden() and pane.image_shape() == (32, 32)
        assert pane.title.text == f"score f(y) = D(y) − y at step {nearest}"  # the step it really shows
        own += nearest == frame.t
    assert own == len(kept)


def test_frames_too_large_for_the_history_do_not_fail_the_run(qtbot, window):
    """A large photo at full size made frames bigger than the run history holds: the run used to fail at its
    first step. It runs to the end without a history, and the dock says why."""
    teach = window.teach
    teach.max_bytes = 1024  # 32² frames of 1 KB: two do not fit, as a 12-megapixel colour photo in 32 MB
    window.set_photo(0.5 + 0.1 * torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(0)))
    window.degradation.set_task("denoise")
    with qtbot.waitSignal(window.runFinished, timeout=60_000) as blocker:
        assert window.start_run(), window.errors
    last = blocker.args[0]
    assert last is not None and last.image is not None and window.errors == []
    assert len(teach.history) == 0
    assert teach.player.memory_label.text().startswith("No frames kept for this run")
    teach.max_bytes = 1024 * 1024  # the next run keeps its frames again, and the line says so
    with qtbot.waitSignal(window.runFinished, timeout=60_000):
        assert window.start_run(), window.errors
    assert len(teach.history) > 0 and "frames (every" in teach.player.memory_label.text()


def test_tools_open_and_close_cleanly(qtbot, window):
    window.show()
    qtbot.waitExposed(window)
    teach = window.teach
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
    beta = teach.open_beta()
    assert beta.isVisible() and beta.findChild(BetaComparisonWidget) is not None
    window.plots_dock.raise_()
    qtbot.waitUntil(lambda: not in_view(teach.explain_dock))
    teach.show_explain()
    qtbot.waitUntil(lambda: in_view(teach.explain_dock))  # brought to the front of its tab group
    teach.shutdown()
    for tool in list(teach._tools.values()):
        tool.close()


def test_open_tools_follow_a_new_photo_and_degradation(qtbot, window):
    """The posterior window kept sampling the photo and task it was opened with, and the inspector kept
    the old photo: now Draw takes the window's problem as it is, and the inspector shows the new photo."""
    teach = window.teach
    window.set_photo(torch.rand(1, 24, 24, generator=torch.Generator().manual_seed(0)))
    window.degradation.set_task("denoise")
    panel = teach.open_posterior().findChild(PosteriorPanel)
    inspector = teach.open_inspector()
    assert panel._problem.task == "denoise" and tuple(panel._problem.image_shape) == (1, 24, 24)
    window.set_photo(torch.rand(1, 20, 32, generator=torch.Generator().manual_seed(1)))
    window.degradation.set_task("inpaint")
    window.generate_mask("block", 0.25)
    assert panel.status.text().startswith("inpaint: ready to draw")
    assert inspector.image_pane.image_shape() == (20, 32)
    panel.k_spin.setValue(2)
    with qtbot.waitSignal(panel.runner.finished, timeout=60_000):
        panel.run()
    assert panel._problem.task == "inpaint" and tuple(panel._problem.image_shape) == (1, 20, 32)
    assert panel.summary is not None and tuple(panel.summary.mean.shape[-2:]) == (20, 32)
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


def test_explain_says_what_a_step_of_another_method_does(qtbot, window):
    teach = window.teach
    window.set_photo(0.5 + 0.1 * torch.randn(1, 40, 40, generator=torch.Generator().manual_seed(0)))
    window.degradation.set_task("denoise")
    for method, values, expected in (
        ("dip_adam", {"max_steps": 3, "width": 8, "depth": 2}, "Deep Image Prior has no denoiser"),
        ("nlm_twicing", {"max_steps": 2}, "Twicing with a non-local means filter"),
    ):
        window.algorithm.set_method(method)
        window.algorithm.set_values(values)
        with qtbot.waitSignal(window.runFinished, timeout=60_000):
            assert window.start_run(), window.errors
        teach.player.seek(0)  # picking a step keeps the note: there is no update rule with σ_t to work through
        assert expected in teach.explain.text() and "Miyasawa" not in teach.explain.text()
    window.algorithm.set_method("implicit_prior")
    with qtbot.waitSignal(window.runFinished, timeout=60_000):
        assert window.start_run(), window.errors
    teach.player.seek(0)
    assert "Miyasawa" in teach.explain.text() and "Twicing" not in teach.explain.text()
