"""The desktop app under bad input: a dialog for each case in docs/errors.md, and the app keeps working.

Also determinism across front ends: the same seed, model and parameters give the same bytes in the app as
on the command line.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytestqt")

from gui_support import open_window, tiny_fast_denoiser
from PySide6 import QtWidgets

from priorstudio.cli import main as cli_main
from priorstudio.core.denoisers import BiasFreeUNet
from priorstudio.core.denoisers.registry import pack_weights, save_weights
from priorstudio.core.imageio import encode_image
from priorstudio.core.samplers.base import StopReason
from priorstudio.gui.main_window import MainWindow

pytestmark = pytest.mark.gui


# -- files -----------------------------------------------------------------------------------------------
def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    return path


def _gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb(path: Path) -> Path:
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 4097 * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))
    return path


def _huge_bmp(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, "BMP")
    data = bytearray(buf.getvalue())
    struct.pack_into("<ii", data, 18, 1_000_000, 1_000_000)
    path.write_bytes(bytes(data))
    return path


def bad_images(folder: Path) -> dict[str, Path]:
    good = _png(folder / "good.png", _gray(64, 64)).read_bytes()
    (folder / "empty.png").write_bytes(b"")
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    damaged = bytearray(good)
    damaged[60:200] = bytes(range(140))
    (folder / "bad.png").write_bytes(bytes(damaged))
    (folder / "notes.png").write_text("not a picture\n")
    return {
        "img-missing": folder / "nope.png",
        "img-zero-byte": folder / "empty.png",
        "img-truncated": folder / "cut.png",
        "img-corrupt": folder / "bad.png",
        "img-not-an-image": folder / "notes.png",
        "img-bomb-header": _bomb(folder / "bomb.png"),
        "img-huge-declared-size": _huge_bmp(folder / "huge.bmp"),
    }


# -- the window --------------------------------------------------------------------------------------------
def make_window(qtbot, settings, **kwargs) -> MainWindow:
    return open_window(qtbot, settings, size=(1000, 700), **kwargs)


@pytest.fixture
def window(qtbot, settings):
    w = make_window(qtbot, settings, denoiser_factory=tiny_fast_denoiser)
    yield w
    w.shutdown()


def quick(window: MainWindow, **values) -> None:
    window.algorithm.apply_preset("teach")
    window.algorithm.set_values({"sigma_L": 0.05, "max_steps": 8, **values})


def run_to_end(qtbot, window: MainWindow):
    with qtbot.waitSignal(window.runFinished, timeout=30_000) as blocker:
        assert window.start_run(), window.errors
    return blocker.args[0]


def type_into(box: QtWidgets.QAbstractSpinBox, text: str) -> None:
    """Type ``text`` over the box's value and press Enter, as a user would."""
    from PySide6 import QtCore, QtTest

    box.lineEdit().selectAll()
    QtTest.QTest.keyClicks(box, text)
    QtTest.QTest.keyClick(box, QtCore.Qt.Key.Key_Return)


def last_error(window: MainWindow) -> tuple[str, str]:
    assert window.errors, "expected an error dialog"
    return window.errors[-1]


def still_works(qtbot, window: MainWindow, photo: Path) -> None:
    """The app goes on after an error: it opens a good photo and finishes a run on it."""
    n = len(window.errors)
    assert window.open_path(photo)
    window.degradation.set_task("denoise")
    quick(window)
    record = run_to_end(qtbot, window)
    assert record is not None and record.stop_reason in (StopReason.CONVERGED, StopReason.STEP_CAP)
    assert window.result is not None and len(window.errors) == n


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    return _png(tmp_path / "photo.png", _gray(24, 32, seed=5))


# -- images ------------------------------------------------------------------------------------------------
def test_bad_images_show_a_dialog_and_keep_the_photo(window, qtbot, tmp_path: Path, photo: Path) -> None:
    assert window.open_path(photo)
    for case, path in bad_images(tmp_path).items():
        n = len(window.errors)
        assert not window.open_path(path), case
        assert len(window.errors) == n + 1, case
        title, message = last_error(window)
        assert title == "Cannot open the image" and path.name in message, (case, message)
        assert window.photo_path == str(photo) and tuple(window.photo.shape) == (1, 24, 32), case
    still_works(qtbot, window, photo)


def test_awkward_images_open_correctly_and_run(window, qtbot, tmp_path: Path) -> None:
    a16 = (np.arange(16 * 24).reshape(16, 24) * 170 + 3).astype(np.uint16)
    rgba = np.random.default_rng(1).integers(0, 256, (12, 16, 4), dtype=np.uint8)
    Image.new("CMYK", (16, 12), (10, 200, 30, 5)).save(tmp_path / "print.jpg")
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "pal.png")
    stored = np.zeros((10, 20), np.uint8)
    stored[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    Image.fromarray(_gray(1, 13)).save(tmp_path / "sliver.jpg", exif=exif, quality=95)  # 13 wide, 1 high
    cases = {
        "img-16bit": (_png(tmp_path / "deep.png", a16), (1, 16, 24)),
        "img-alpha": (_png(tmp_path / "alpha.png", rgba, "RGBA"), (3, 12, 16)),
        "img-cmyk": (tmp_path / "print.jpg", (3, 12, 16)),
        "img-palette": (tmp_path / "pal.png", (3, 12, 16)),
        "img-exif-rotated": (tmp_path / "phone.jpg", (1, 20, 10)),
        "img-1x1": (_png(tmp_path / "dot.png", _gray(1, 1)), (1, 1, 1)),
        "img-thin": (_png(tmp_path / "row.png", _gray(1, 300)), (1, 1, 300)),
        "img-thin-2": (_png(tmp_path / "pair.png", _gray(1, 2)), (1, 1, 2)),
        "img-exif-thin": (tmp_path / "sliver.jpg", (1, 13, 1)),  # turned upright: 1 wide, 13 high
    }
    for case, (path, shape) in cases.items():
        assert window.open_path(path), (case, window.errors)
        assert tuple(window.photo.shape) == shape, case
        if case == "img-exif-rotated":
            assert window.photo[0, :4].mean() > 0.8  # shown upright: the bright block on top
    window.degradation.set_task("denoise")
    quick(window)
    for path in (tmp_path / "dot.png", tmp_path / "row.png"):
        assert window.open_path(path)
        record = run_to_end(qtbot, window)
        assert record is not None and window.result is not None, window.errors
        assert tuple(window.result.shape) == tuple(window.photo.shape)
    assert window.errors == []


# -- masks -------------------------------------------------------------------------------------------------
def test_bad_masks_show_a_dialog_and_keep_the_painted_mask(
    window, qtbot, tmp_path: Path, photo: Path, monkeypatch
) -> None:
    assert window.open_path(photo)
    window.generate_mask("block", 0.25)
    before = window.mask.copy()
    colours = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    cases = {
        "mask-wrong-size": (_png(tmp_path / "small.png", np.full((8, 12), 255, np.uint8)), "12×8"),
        "mask-wrong-mode": (_png(tmp_path / "photo-as-mask.png", colours), "black-and-white"),
        "mask-not-an-image": (tmp_path / "junk.png", "junk.png"),
    }
    for case, (path, words) in cases.items():
        n = len(window.errors)
        monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", lambda *a, p=path, **k: (str(p), ""))
        window.actions["mask_import"].trigger()  # the real menu command, file dialog answered
        assert len(window.errors) == n + 1, case
        assert words in last_error(window)[1], (case, last_error(window))
        assert last_error(window)[0] == "Import mask failed", case  # the dialog's title names the command
        assert np.array_equal(window.mask.copy(), before), case
    still_works(qtbot, window, photo)


@pytest.mark.parametrize("kind", ["mask-empty", "mask-full"])
def test_empty_or_full_mask_refuses_to_run(window, qtbot, photo: Path, kind: str) -> None:
    assert window.open_path(photo)
    window.degradation.set_task("inpaint")
    quick(window)
    if kind == "mask-full":
        window.mask.set_mask(np.ones(window.mask.shape, bool))
    assert not window.start_run()
    title, message = last_error(window)
    assert title == "Cannot run"
    assert ("empty" in message) if kind == "mask-empty" else ("whole image" in message or "paint" in message)
    assert not window.is_running()
    still_works(qtbot, window, photo)


# -- parameters, memory, saving ----------------------------------------------------------------------------
def test_parameters_out_of_range(window, qtbot, photo: Path) -> None:
    assert window.open_path(photo)
    window.degradation.set_task("denoise")
    quick(window, sigma_0=0.05, sigma_L=0.5)  # σ_L ≥ σ_0: each within its own range, wrong together
    assert not window.start_run()
    title, message = last_error(window)
    assert title == "Cannot run" and "σ_L must be above 0 and below σ₀" in message
    assert "σ_L = 0.5, σ₀ = 0.05" in message  # both values, by the names the form shows
    assert window.focusWidget() is window.algorithm.form.widgets["sigma_L"]  # the cursor is in the field to mend
    # single-field ranges cannot be left: the spin boxes hold β in (0, 1], h₀ in (0, 1), sizes ≥ 1
    window.algorithm.set_values({"beta": 0.0, "h_0": 1.5, "max_steps": -5})
    values = window.algorithm.values()
    assert 0 < values["beta"] <= 1 and 0 < values["h_0"] < 1 and values["max_steps"] >= 1
    still_works(qtbot, window, photo)


def test_run_too_large_for_memory_offers_a_size(window, qtbot, photo: Path, monkeypatch) -> None:
    from priorstudio.core import memory

    assert window.open_path(photo)
    window.degradation.set_task("denoise")
    quick(window)
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 20 * 2**20)
    assert not window.start_run()
    title, message = last_error(window)
    assert title == "Cannot run" and "available" in message
    monkeypatch.undo()
    still_works(qtbot, window, photo)


def test_run_too_large_for_memory_names_a_size_that_fits(window, qtbot, tmp_path: Path, monkeypatch) -> None:
    """With room for about a quarter of the pixels, the refusal names the working size that would fit."""
    from priorstudio.core import memory
    from priorstudio.gui import main_window

    big = _png(tmp_path / "big.png", _gray(300, 400, seed=2))
    assert window.open_path(big)
    window.degradation.set_task("denoise")
    quick(window)
    seen: list[memory.MemoryEstimate] = []
    estimate = main_window.estimate_run_memory
    monkeypatch.setattr(main_window, "estimate_run_memory", lambda *a, **k: seen.append(estimate(*a, **k)) or seen[-1])

    def available(device=None) -> int:
        e = seen[-1]
        return int((e.fixed + e.history + 0.25 * e.bytes_per_pixel * 300 * 400) / memory.USABLE_SHARE)

    monkeypatch.setattr(memory, "available_bytes", available)
    assert not window.start_run()
    title, message = last_error(window)
    assert title == "Cannot run" and "would fit at" in message, message
    side = int(message.split("longest side ")[1].split()[0])
    assert 150 <= side <= 210  # half the longest side (400) for a quarter of the pixels, to a multiple
    assert not window.is_running()


def test_task_and_noise_fields_cannot_leave_their_ranges(window, photo: Path) -> None:
    """Fractions stay in (0, 1], factors and seeds ≥ their minimum, the noise in 0–255, NaN is not taken."""
    assert window.open_path(photo)
    for task, field, wrong in (
        ("random_pixels", "fraction", 0.0),
        ("random_pixels", "fraction", 1.5),
        ("random_pixels", "seed", -3),
        ("compressive", "fraction", -0.2),
        ("super_resolution", "factor", 0),
    ):
        window.degradation.set_task(task)
        window.degradation.task_form.set_values({field: wrong})
        value = window.degradation.task_form.values()[field]
        if field == "fraction":
            assert 0 < value <= 1, (task, wrong, value)
        else:
            assert value >= (1 if field == "factor" else 0), (task, wrong, value)
    window.degradation.noise.setValue(-5.0)
    assert window.degradation.noise.value() == 0.0
    # typed by hand: "300" is not cut to "30" on the way; Enter sets the maximum and says so
    type_into(window.degradation.noise, "300")
    assert window.degradation.noise.value() == 255.0
    assert window.statusBar().currentMessage() == "noise σ: 300 /255 is above the maximum; set to 255 /255"
    type_into(window.algorithm.form.widgets["sigma_0"], "20")
    assert window.algorithm.values()["sigma_0"] == 10.0
    assert window.statusBar().currentMessage() == "σ₀: 20 is above the maximum; set to 10"
    window.degradation.noise.setValue(1e6)
    assert window.degradation.noise.value() == 255.0
    window.algorithm.set_values({"beta": float("nan"), "sigma_0": float("nan"), "h_0": float("nan")})
    values = window.algorithm.values()
    assert all(math.isfinite(values[k]) for k in ("beta", "sigma_0", "h_0"))
    assert 0 < values["beta"] <= 1 and 0 < values["h_0"] < 1


def test_the_random_pixels_dialog_keeps_the_share_in_range(window, photo: Path, monkeypatch) -> None:
    asked: list[tuple] = []

    def get_double(parent, title, label, value, low, high, decimals):
        asked.append((low, high))
        return min(max(150.0, low), high), True  # what the dialog does with a typed 150

    monkeypatch.setattr(QtWidgets.QInputDialog, "getDouble", get_double)
    assert window.open_path(photo)
    window.actions["mask_random"].trigger()
    assert asked == [(0.1, 99.9)]
    assert 0.99 < window.mask.copy().mean() < 1.0  # 99.9 % hidden, never all of it


def test_saving_into_a_missing_folder(window, qtbot, tmp_path: Path, photo: Path, monkeypatch) -> None:
    still_works(qtbot, window, photo)
    target = tmp_path / "gone" / "result.png"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "PNG 8-bit (*.png)"))
    window.actions["save_as"].trigger()
    assert "does not exist" in last_error(window)[1]
    assert window.result is not None and not window.result_saved  # nothing lost: save again elsewhere
    monkeypatch.setattr(
        QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "ok.png"), "PNG 8-bit (*.png)")
    )
    window.actions["save_as"].trigger()
    assert (tmp_path / "ok.png").exists() and window.result_saved


def test_save_as_asks_before_replacing_a_file_the_dialog_did_not_confirm(
    window, qtbot, tmp_path: Path, photo: Path, monkeypatch
) -> None:
    """Typed without a suffix, the name the dialog confirmed is not the file written (".png" is added): an
    existing file of that name is replaced only when the user says so."""
    still_works(qtbot, window, photo)
    existing = tmp_path / "result.png"
    existing.write_bytes(b"precious")
    asked: list[Path] = []
    window.confirm_overwrite = lambda path: asked.append(path) or False
    monkeypatch.setattr(
        QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "result"), "PNG 8-bit (*.png)")
    )
    window.actions["save_as"].trigger()
    assert asked == [existing] and existing.read_bytes() == b"precious" and not window.result_saved
    window.confirm_overwrite = lambda path: True
    window.actions["save_as"].trigger()
    assert existing.read_bytes() != b"precious" and window.result_saved


def test_saving_a_run_record_asks_before_replacing_its_csv(
    window, qtbot, tmp_path: Path, photo: Path, monkeypatch
) -> None:
    still_works(qtbot, window, photo)
    csv = tmp_path / "run.csv"
    csv.write_text("precious")
    asked: list[Path] = []
    window.confirm_overwrite = lambda path: asked.append(path) or False
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "run.json"), ""))
    window.actions["save_run"].trigger()
    assert asked == [csv] and csv.read_text() == "precious" and not (tmp_path / "run.json").exists()
    window.confirm_overwrite = lambda path: True
    window.actions["save_run"].trigger()
    assert (tmp_path / "run.json").exists() and csv.read_text().startswith("t,")


# -- weights (the real loading path, no injected denoiser) -------------------------------------------------
class _Payload:
    """Unpickling this would create ``path``: the proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_bad_weights_refuse_to_run(qtbot, settings, tmp_path: Path, photo: Path) -> None:
    torch.manual_seed(0)
    good = tmp_path / "tiny-gray.pt"
    save_weights(good, BiasFreeUNet(1, (8, 16)))
    save_weights(tmp_path / "tiny-color.pt", BiasFreeUNet(3, (8, 16)))
    data = good.read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save(BiasFreeUNet(1, (8, 16)).state_dict(), tmp_path / "bare.pt")
    blob = pack_weights(BiasFreeUNet(1, (8, 16)))
    blob["arch_config"]["widths"] = [8, 32]
    torch.save(blob, tmp_path / "odd.pt")
    cases = {
        "weights-missing": (tmp_path / "gone.pt", "not found"),
        "weights-corrupt": (tmp_path / "noise.pt", "corrupt"),
        "weights-truncated": (tmp_path / "half.pt", "truncated"),
        "weights-wrong-channels": (tmp_path / "tiny-color.pt", "3-channel"),
        "weights-mismatched-architecture": (tmp_path / "odd.pt", "do not match"),
        "weights-not-priorstudio": (tmp_path / "bare.pt", "not a PriorStudio"),
    }
    data = bytearray(good.read_bytes())  # a complete archive whose tensor bytes were damaged
    data[len(data) // 2 : len(data) // 2 + 256] = bytes(256)
    (tmp_path / "damaged.pt").write_bytes(bytes(data))
    sentinel = tmp_path / "code-ran"
    evil = pack_weights(BiasFreeUNet(1, (8, 16)))
    evil["training"] = _Payload(sentinel)
    torch.save(evil, tmp_path / "evil.pt")
    cases["weights-damaged-data"] = (tmp_path / "damaged.pt", "corrupt")
    cases["weights-unpickle-code"] = (tmp_path / "evil.pt", "refused")
    cases["weights-unknown-name"] = ("no-such-model", "unknown model")
    window = make_window(qtbot, settings, model=str(good))
    try:
        assert window.open_path(photo)
        window.degradation.set_task("denoise")
        quick(window)
        for case, (path, words) in cases.items():
            window._on_model_changed(str(path))
            assert not window.start_run(), case
            title, message = last_error(window)
            assert title == "Cannot run" and words in message, (case, title, message)
            assert not window.is_running()
        assert not sentinel.exists()  # the file that tried to run code was refused before anything ran
        window._on_model_changed(str(good))
        record = run_to_end(qtbot, window)
        assert record is not None and window.result is not None
    finally:
        window.shutdown()


# -- determinism across front ends ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "cli_task", "fields", "cli_extra", "color"),
    [
        ("denoise", "denoise", {}, [], False),
        ("super_resolution", "sr", {"factor": 2}, ["--factor", 2], False),
        ("inpaint", "inpaint", {}, [], False),  # the app plans a crop around the hole: the same pixels here
        ("random_pixels", "pixels", {"fraction": 0.3, "seed": 5}, ["--fraction", 0.3, "--operator-seed", 5], False),
        ("denoise", "denoise", {}, [], True),
    ],
    ids=["denoise", "sr", "inpaint", "pixels-seeded", "denoise-colour"],
)
def test_app_and_cli_give_identical_bytes(
    qtbot, settings, tmp_path: Path, task: str, cli_task: str, fields: dict, cli_extra: list, color: bool
) -> None:
    torch.manual_seed(0)
    channels = 3 if color else 1
    model = tmp_path / ("tiny-color.pt" if color else "tiny-gray.pt")
    save_weights(model, BiasFreeUNet(channels, (8, 16)))
    pixels = np.random.default_rng(9).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    photo = _png(tmp_path / "photo.png", pixels if color else _gray(20, 24, seed=9))
    hole = np.zeros((20, 24), bool)
    hole[6:14, 8:18] = True
    if task == "inpaint":
        cli_extra = ["--mask", _png(tmp_path / "hole.png", (hole * 255).astype(np.uint8))]
    values = {"sigma_0": 1.0, "sigma_L": 0.02, "h_0": 0.05, "beta": 0.3, "seed": 17, "max_steps": 12}
    out = tmp_path / "cli.png"
    argv = ["restore", photo, "-o", out, "--task", cli_task, "--model", model, "--bit-depth", 16, "-q", *cli_extra]
    flags = ["--sigma0", 1.0, "--sigmaL", 0.02, "--h0", 0.05, "--beta", 0.3, "--seed", 17, "--max-steps", 12]
    assert cli_main([str(a) for a in [*argv, *flags]]) == 0

    window = make_window(qtbot, settings, model=str(model))
    try:
        assert window.open_path(photo)
        window.degradation.set_mode("restore")
        window.degradation.set_task(task)
        window.degradation.set_working_side(None)
        window.degradation.task_form.set_values(fields)
        if task == "inpaint":
            window.mask.set_mask(hole)
        window.algorithm.apply_preset("restore")
        window.algorithm.set_values(values)
        results = []
        for _ in range(2):
            run_to_end(qtbot, window)
            results.append(encode_image(window.result, "PNG", bit_depth=16))
    finally:
        window.shutdown()
    assert results[0] == results[1]  # the app repeats itself …
    assert results[0] == out.read_bytes()  # … and agrees with the command line, byte for byte


@pytest.mark.parametrize("task", ["random_pixels", "compressive"])
def test_seeded_tasks_can_be_planned(task: str) -> None:
    """The app's degradation form gives these tasks a seed of their own; planning them must not fail."""
    from priorstudio.gui.session import RunSettings, plan_run

    settings = RunSettings(task=task, mode="simulate", task_params={"fraction": 0.2, "seed": 3})
    image = torch.rand(1, 16, 16)
    plan = plan_run(image, settings)
    assert plan.problem.operator.measurement_fraction() == pytest.approx(0.2, abs=0.02)

    def measured(**changes) -> torch.Tensor:
        return plan_run(image, dataclasses.replace(settings, **changes)).problem.operator.forward(image[None])

    assert torch.equal(measured(), measured(seed=99))  # the run seed does not move the operator …
    assert not torch.equal(measured(), measured(task_params={"fraction": 0.2, "seed": 4}))  # … its own seed does


# -- every row of docs/errors.md that the window handles has its test here --------------------------------
GUI_ROWS = {
    **dict.fromkeys(
        ["img-missing", "img-zero-byte", "img-truncated", "img-corrupt", "img-not-an-image", "img-bomb-header"],
        "test_bad_images_show_a_dialog_and_keep_the_photo",
    ),
    "img-huge-declared-size": "test_bad_images_show_a_dialog_and_keep_the_photo",
    "run-too-large-for-memory": "test_run_too_large_for_memory_names_a_size_that_fits",
    **dict.fromkeys(
        ["img-1x1", "img-thin", "img-16bit", "img-alpha", "img-cmyk", "img-palette", "img-exif-rotated"],
        "test_awkward_images_open_correctly_and_run",
    ),
    "img-exif-thin": "test_awkward_images_open_correctly_and_run",
    **dict.fromkeys(
        ["mask-wrong-size", "mask-wrong-mode", "mask-not-an-image"],
        "test_bad_masks_show_a_dialog_and_keep_the_painted_mask",
    ),
    **dict.fromkeys(["mask-empty", "mask-full"], "test_empty_or_full_mask_refuses_to_run"),
    **dict.fromkeys(
        ["param-sigma-order", "param-beta", "param-h0", "param-negative-size"], "test_parameters_out_of_range"
    ),
    **dict.fromkeys(
        ["param-fraction", "param-noise", "param-operator-seed"], "test_task_and_noise_fields_cannot_leave_their_ranges"
    ),
    "param-block-fraction": "test_the_random_pixels_dialog_keeps_the_share_in_range",
    **dict.fromkeys(
        [
            "weights-missing",
            "weights-corrupt",
            "weights-truncated",
            "weights-wrong-channels",
            "weights-mismatched-architecture",
            "weights-damaged-data",
            "weights-not-priorstudio",
            "weights-unpickle-code",
        ],
        "test_bad_weights_refuse_to_run",
    ),
    "flash-wrong-size": "test_a_flash_photo_of_another_size_is_refused_and_changes_nothing",
    "output-exists": "test_save_as_asks_before_replacing_a_file_the_dialog_did_not_confirm",
    "output-folder-missing": "test_saving_into_a_missing_folder",
}


def test_a_flash_photo_of_another_size_is_refused_and_changes_nothing(window, photo, tmp_path) -> None:
    """flash-wrong-size: the flash photo must be the photo's size; a file that is not an image is refused too."""
    window.open_path(photo)
    assert window.algorithm.set_method("dip_adam")
    before = window.algorithm.values()
    assert not window.open_guide(_png(tmp_path / "other.png", _gray(20, 32, seed=1)))
    title, message = last_error(window)
    assert title == "Flash photo" and "32×20" in message and "32×24" in message and "same shot" in message
    assert window.guide is None and window.algorithm.values() == before
    assert "random code" in window.algorithm.guide_label.text()
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert not window.open_guide(tmp_path / "broken.png")
    assert window.guide is None


def test_opening_a_photo_mid_run_ends_that_run_cleanly(window, qtbot, photo: Path, tmp_path: Path) -> None:
    """The old run is shut down: its timers stop, listeners hear it ended, its queued steps do not reach the
    new photo's plots, and a run on the new photo can start."""
    assert window.open_path(photo)
    window.degradation.set_task("denoise")
    quick(window, sigma_L=1e-6, max_steps=100_000, h_0=1e-4)
    ended = []
    window.runFinished.connect(ended.append)
    assert window.start_run(), window.errors
    qtbot.waitUntil(lambda: window.plots.point_count("sigma") > 2, timeout=20_000)
    assert window.open_path(_png(tmp_path / "other.png", _gray(20, 28, seed=9)))
    assert ended == [None] and not window.controller.is_running()
    assert not window.repaint_timer.isActive() and window.progress is None
    qtbot.wait(200)  # anything the old run had queued is delivered now
    assert window.plots.point_count("sigma") == 0
    assert window.actions["run"].isEnabled()
    quick(window)
    assert run_to_end(qtbot, window) is not None


class FailingAfter:
    """A denoiser that raises, as a bug or an out-of-memory would, once ``budget["calls"]`` calls are used up
    (None: never)."""

    def __init__(self, inner, budget: dict) -> None:
        self.inner, self.budget = inner, budget
        self.channels, self.device, self.name = inner.channels, inner.device, inner.name
        self.description = getattr(inner, "description", inner.name)

    def __call__(self, y):
        if self.budget["calls"] is not None:
            self.budget["calls"] -= 1
            if self.budget["calls"] < 0:
                raise RuntimeError("out of memory (simulated)")
        return self.inner(y)


@pytest.mark.parametrize("calls", [0, 5])
def test_a_run_that_fails_keeps_what_it_reached_or_what_there_was(qtbot, settings, photo: Path, calls) -> None:
    """Failing part-way keeps the newest estimate to save; failing at once gives the previous result back."""
    budget: dict = {"calls": None}
    window = make_window(qtbot, settings, denoiser_factory=lambda c: FailingAfter(tiny_fast_denoiser(c), budget))
    try:
        assert window.open_path(photo)
        window.degradation.set_task("denoise")
        quick(window)
        assert run_to_end(qtbot, window) is not None
        before = window.result.clone()
        window.result_saved = False  # an earlier result the user has not saved yet
        budget["calls"] = calls
        quick(window, max_steps=50, sigma_L=1e-4)
        with qtbot.waitSignal(window.runFinished, timeout=30_000):
            assert window.start_run(), window.errors
        assert window.errors and "out of memory" in window.errors[-1][1]
        assert window.result is not None and not window.result_saved
        assert window.actions["save"].isEnabled()
        if calls == 0:
            assert torch.equal(window.result, before)
        else:
            assert "is kept" in window.errors[-1][1] and not torch.equal(window.result, before)
    finally:
        window.shutdown()


def test_every_documented_window_case_has_a_test() -> None:
    """A row whose app column describes what the window does (not "(not applicable)" and the like) must
    name a test of this file, and that test must mention the row's case where it lists cases by name."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 4 and cells[1].startswith("`") and cells[1].endswith("`"):
            rows[cells[1].strip("`")] = cells[3]
    in_window = {case for case, cell in rows.items() if not cell.startswith("(")}
    assert in_window and in_window == set(GUI_ROWS), sorted(in_window ^ set(GUI_ROWS))
    for case, name in GUI_ROWS.items():
        assert callable(globals().get(name)), (case, name)
