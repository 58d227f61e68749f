"""Helpers shared by the main-window tests: a tiny random-weight denoiser, a test photo and a window that
records dialogs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from PySide6 import QtCore

from priorstudio.core.denoisers import BiasFreeUNet, Denoiser
from priorstudio.gui.main_window import MainWindow


def tiny_denoiser(channels: int, *, fast: bool = False) -> Denoiser:
    """A seeded two-level UNet: fast to run, the same weights every time."""
    torch.manual_seed(0)
    return Denoiser(BiasFreeUNet(channels, (8, 16)), fast=fast, device="cpu")


def tiny_fast_denoiser(channels: int) -> Denoiser:
    return tiny_denoiser(channels, fast=True)


def structured_photo(path: Path, height: int, width: int) -> Path:
    """Write a colour test photo with some structure (ramps and a soft pattern) to ``path``."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x / (width - 1), y / (height - 1), 0.5 + 0.4 * np.sin(x / 5.0) * np.cos(y / 7.0)], axis=-1)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)
    return path


def open_window(qtbot, settings, *, size: tuple[int, int] | None = (1200, 800), **kwargs: Any) -> MainWindow:
    """A MainWindow whose dialogs go to ``window.errors`` and whose close never asks; shown unless size=None."""
    errors: list[tuple[str, str]] = []
    w = MainWindow(settings=settings, error_sink=lambda t, m: errors.append((t, m)), **kwargs)
    w.errors = errors  # type: ignore[attr-defined]
    w.confirm_close = lambda reason: "discard"
    qtbot.addWidget(w)
    if size is not None:
        w.resize(*size)
        w.show()
        qtbot.waitExposed(w)
    return w


class EventCounter(QtCore.QObject):
    """An event filter that counts the events of one type an object receives (and lets them all through)."""

    def __init__(self, kind: QtCore.QEvent.Type) -> None:
        super().__init__()
        self.kind = kind
        self.count = 0

    def eventFilter(self, obj, event):  # type: ignore[no-untyped-def]
        if event.type() == self.kind:
            self.count += 1
        return False
