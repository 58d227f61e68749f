"""Screenshots for the README — the main window mid-run and the teaching tools — with the bundled models.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/teach_screenshots.py [--only gallery,history]

Every tool really runs — on small images (32–96 px, a few samples), so it finishes on a busy CPU — and
its window is grabbed once the work is done and written as ``teach-<name>.png``; ``history`` is the main
window after a short run, its *Run history* and *Explain* docks side by side. ``window`` (written as
``window-mid-run.png``) is the main window paused halfway through an inpainting run of the bundled colour
model on its fast path, as a user sees it, in split view. Without a display it falls
back to Qt's offscreen platform and says so on stderr: no window manager, and fonts and styles may differ
from what users see. PNGs over ``--max-kb`` are re-encoded with a 256-colour palette.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # main() says so loudly
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import torch
from PIL import Image

from priorstudio.core.denoisers import load_denoiser
from priorstudio.core.imageio import load_image
from priorstudio.core.problem import build_problem
from priorstudio.core.samplers.implicit_prior import RESTORE_PRESET, ImplicitPriorParams
from priorstudio.resources import resource_path

#: The window shot pauses the run at the first step with σ_t below this (the restore preset ends at 0.01).
WINDOW_SIGMA = 0.06

#: torch's own thread count, before main() takes one thread for the teaching tools on a busy machine
DEFAULT_THREADS = torch.get_num_threads()

SHOTS = ("window", "gallery", "explain", "beta", "game", "inspector", "posterior", "history")

NO_DISPLAY_WARNING = """\
########################################################################################################
WARNING: no DISPLAY is set, so these screenshots are taken on Qt's offscreen platform: no window manager,
and fonts and styles may differ from what users see. For the README, run under Xvfb:
    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/teach_screenshots.py
########################################################################################################"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--only", default=",".join(SHOTS), help="comma-separated: " + ", ".join(SHOTS))
    parser.add_argument("--max-kb", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds each tool may run")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SHOTS)
    if unknown:
        parser.error(f"unknown shots: {', '.join(sorted(unknown))}")
    if not os.environ.get("DISPLAY"):
        print(NO_DISPLAY_WARNING, file=sys.stderr, flush=True)
    torch.set_num_threads(1)  # a busy machine: one thread does not wait on descheduled siblings

    import pyqtgraph as pg

    from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)

    app = pg.mkQApp("PriorStudio")
    models = {1: load_denoiser("unet-gray", fast=False), 3: load_denoiser("unet-color", fast=False)}
    shooter = Shooter(app, args.out, args.max_kb, args.timeout)
    state: dict[str, object] = {}
    for name in wanted:
        started = time.perf_counter()
        getattr(shooter, name)(models.__getitem__, state)
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


class Shooter:
    """One method per screenshot; each sets a tool up, runs it, waits and grabs it."""

    def __init__(self, app, out: Path, max_kb: int, timeout: float) -> None:
        self.app, self.out, self.max_kb, self.timeout = app, out, max_kb, timeout
        out.mkdir(parents=True, exist_ok=True)

    # -- helpers -------------------------------------------------------------------------------------
    def wait(self, done: Callable[[], bool], what: str) -> None:
        end = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() > end:
                raise TimeoutError(f"{what} did not finish in {self.timeout:.0f} s")
            self.app.processEvents()
            time.sleep(0.05)
        for _ in range(20):  # let the last repaints land
            self.app.processEvents()
            time.sleep(0.02)

    def save(self, widget, name: str, filename: str | None = None) -> Path:
        widget.repaint()
        self.app.processEvents()
        image = widget.grab().toImage()
        buf = io.BytesIO(bytes(_png_bytes(image)))
        pil = Image.open(buf).convert("RGB")
        path = self.out / (filename or f"teach-{name}.png")
        pil.save(path, optimize=True)
        if path.stat().st_size > self.max_kb * 1024:
            pil.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
        print(f"  {path} {pil.width}×{pil.height}, {path.stat().st_size // 1024} KB", flush=True)
        return path

    # -- the shots -----------------------------------------------------------------------------------
    def window(self, factory, state: dict) -> None:
        """The main window halfway through inpainting a central hole in the colour sample (restore preset,
        the bundled colour model on its fast path), paused once σ_t is below ``WINDOW_SIGMA``: the hole
        holds structure but is not finished, and the plots show the decay so far."""
        fast = load_denoiser("unet-color")  # what the application runs, it/s included
        w = _main_window(lambda c: fast, (1600, 1000))
        w.set_photo(load_image(resource_path("samples", "astronaut.png"), mode="color"), name="astronaut.png")
        w.degradation.set_task("inpaint")
        w.degradation.set_mode("simulate")
        w.degradation.set_working_side(256)
        w.generate_mask("block", 0.25)
        w.algorithm.apply_preset("restore")
        w.show()
        w.actions["split"].trigger()  # the photo with its hole on the left, the estimate on the right
        paused: list[int] = []
        w.controller.paused.connect(paused.append)

        def on_step(s) -> None:
            if s.sigma < WINDOW_SIGMA and not w.controller.is_paused():
                w.controller.pause(True)

        w.controller.step.connect(on_step)
        one_thread = torch.get_num_threads()
        torch.set_num_threads(DEFAULT_THREADS)  # the run's worker thread takes this count, as in the application
        try:
            if not w.start_run():
                raise RuntimeError("the main window did not start its run")
            self.wait(lambda: bool(paused), "the main window's run")
        finally:
            torch.set_num_threads(one_thread)
        self.save(w, "window", "window-mid-run.png")
        w.controller.stop()
        w.shutdown()

    def gallery(self, factory, state: dict) -> None:
        from priorstudio.gui.teach.gallery import GalleryWidget

        g = GalleryWidget(factory)
        g.resize(1400, 760)
        c = g.controls
        c.k.setValue(9)
        c.size.setValue(32)
        c.seed.setValue(4)
        g.show()
        g.run()
        self.wait(lambda: g.batch.last is not None and not g.is_running(), "the gallery")
        g.select(4)
        frames = g.player.frames()
        g.player.seek(max(2 * len(frames) // 3, 0))  # σ ≈ 0.1: the sample and its score take shape
        state["gallery"] = g
        self.save(g, "gallery")

    def explain(self, factory, state: dict) -> None:
        g = state.get("gallery")
        if g is None:
            self.gallery(factory, state)
            g = state["gallery"]
        g.explain()
        dialog = g.explain_dialog
        dialog.resize(640, 350)
        self.wait(lambda: dialog.isVisible(), "the explain panel")
        self.save(dialog, "explain")

    def beta(self, factory, state: dict) -> None:
        from priorstudio.gui.teach.beta_compare import BetaComparisonWidget

        w = BetaComparisonWidget(factory)
        w.resize(1300, 760)
        w.controls.k.setValue(4)
        w.controls.size.setValue(32)
        w.controls.seed.setValue(2)
        w.beta.setValue(0.3)
        w.show()
        w.run()
        self.wait(lambda: w._done == 2, "the β comparison")
        self.save(w, "beta")

    def game(self, factory, state: dict) -> None:
        from priorstudio.gui.teach.game_dialog import RealOrSampledDialog

        d = RealOrSampledDialog(factory)
        d.resize(560, 700)
        d.size_spin.setValue(32)
        d.items_spin.setValue(12)
        d.seed_spin.setValue(1)
        d.show()
        d.new_round()
        self.wait(lambda: d.round is not None, "drawing the game's samples")
        answers = 0
        while d._current is not None and answers < 5:  # a few answers: feedback and a running score
            patch = d.round.patch(d._current)
            d.answer(float(patch.std()) > 0.12)  # a naive player: "textured means real"
            answers += 1
        self.save(d, "game")

    def inspector(self, factory, state: dict) -> None:
        from priorstudio.gui.teach.inspector_dialog import InspectorDialog

        photo = load_image(resource_path("samples", "camera-gray.png"), mode="gray")[:, 40:104, 88:152]
        d = InspectorDialog(factory)
        d.resize(1000, 900)
        d.window_size.setValue(64)
        d.view_size.setValue(25)
        d.svd_window.setValue(24)
        d.k_spin.setValue(12)
        d.set_image(photo)
        d.set_sigma(50)
        d.show()
        d.select_pixel(30, 29)
        d.sweep_button.click()
        self.wait(lambda: d.filter_result is not None and d.sweep_result is not None and not d.busy(), "filters")
        d.svd_button.click()
        self.wait(lambda: d.spectrum_result is not None and not d.busy(), "singular values")
        self.save(d, "inspector")

    def posterior(self, factory, state: dict) -> None:
        from priorstudio.gui.teach.posterior_view import PosteriorPanel

        photo = load_image(resource_path("samples", "camera-gray.png"), mode="gray")[:, 24:72, 96:144]
        missing = torch.zeros(48, 48, dtype=torch.bool)
        missing[16:32, 16:32] = True
        problem = build_problem(photo, "inpaint", missing=missing)
        panel = PosteriorPanel(factory)
        panel.resize(1150, 420)
        panel.k_spin.setValue(6)
        panel.set_problem(problem, ImplicitPriorParams.preset(RESTORE_PRESET, beta=0.3, seed=1))
        panel.show()
        panel.run()
        self.wait(lambda: panel.summary is not None and not panel.is_running(), "the posterior samples")
        self.save(panel, "posterior")

    def history(self, factory, state: dict) -> None:
        """The main window after a short denoising run, scrubbed back to a mid step: the scrub bar with the
        score of that step, and the update rule with its numbers."""
        from PySide6.QtCore import Qt

        w = _main_window(factory, (1500, 960))
        photo = load_image(resource_path("samples", "camera-gray.png"), mode="gray")[:, 40:136, 80:176]
        w.set_photo(photo, name="camera-gray (crop)")
        w.degradation.set_task("denoise")
        w.algorithm.apply_preset("teach")
        w.show()
        teach = w.teach
        docks = [teach.history_dock, teach.explain_dock]
        for dock in docks:  # out of the plots' tab group, side by side along the bottom
            w.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
            dock.show()
        w.splitDockWidget(*docks, Qt.Orientation.Horizontal)
        w.resizeDocks(docks, [820, 680], Qt.Orientation.Horizontal)
        w.resizeDocks(docks[:1], [330], Qt.Orientation.Vertical)
        finished: list[object] = []
        w.runFinished.connect(finished.append)
        if not w.start_run():
            raise RuntimeError("the main window did not start its run")
        self.wait(lambda: bool(finished), "the main window's run")
        frames = teach.player.frames()
        teach.player.seek(len(frames) // 3)  # early enough that the score still shows structure and noise
        self.wait(lambda: teach.explain.text() != "", "the explain dock")
        self.save(w, "history")
        w.shutdown()


def _main_window(factory, size: tuple[int, int]):  # type: ignore[no-untyped-def]
    """The main window with fresh settings (no saved layout or recent files), closing without questions."""
    import tempfile

    from PySide6 import QtCore

    from priorstudio.gui.main_window import MainWindow

    folder = tempfile.mkdtemp(prefix="priorstudio-shots-")
    settings = QtCore.QSettings(str(Path(folder) / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(denoiser_factory=factory, settings=settings, error_sink=lambda title, text: print(title, text))
    w.confirm_close = lambda reason: "discard"
    w.resize(*size)
    return w


def _png_bytes(image) -> bytes:
    from PySide6 import QtCore

    data = QtCore.QByteArray()
    buffer = QtCore.QBuffer(data)
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return data.data()


if __name__ == "__main__":
    sys.exit(main())
