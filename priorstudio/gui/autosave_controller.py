"""Keep the user's work safe while the window is open, and offer it back after a crash or a kill.

The Qt side of :mod:`priorstudio.core.autosave`: a timer asks the window for its ``session_state()`` every
few seconds and writes it to this session's slot when something changed (photo, parameters or mask);
at start, state that an earlier session left behind is offered back. A clean exit removes the slot.

The folder is ``$PRIORSTUDIO_AUTOSAVE_DIR`` when set (tests, portable installs), else the platform's
per-user application data folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from priorstudio.core.autosave import AutosaveState, AutosaveStore, Orphan

INTERVAL_MS = 3000
ENV_FOLDER = "PRIORSTUDIO_AUTOSAVE_DIR"


def autosave_folder() -> Path:
    env = os.environ.get(ENV_FOLDER)
    if env:
        return Path(env)
    base = QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(base or Path.home() / ".priorstudio") / "autosave"


def _params_of(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state.get(k) for k in ("degradation", "algorithm", "model")}


def describe_orphan(orphan: Orphan, state: AutosaveState) -> str:
    """One short paragraph for the restore question: what would come back, and from when."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.saved_at or orphan.saved_at))
    if state.image_path:
        photo = Path(state.image_path).name
    elif state.image_png is not None:
        photo = f"{state.image_name or 'pasted image'} (pasted; its pixels were kept)"
    else:
        photo = "no photo"
    parts = [f"PriorStudio did not close normally. Work saved at {when} can be restored:", f"photo: {photo}"]
    if state.mask is not None and state.mask.any():
        parts.append(f"painted mask: {100 * float(state.mask.mean()):.1f}% of the image")
    task = (state.params.get("degradation") or {}).get("task")
    if task:
        parts.append(f"task: {task}")
    return "\n".join(parts)


def _locate_dialog(parent: Any, old_path: str) -> str | None:
    """Ask where a moved photo is now; None when the user does not say."""
    buttons = QtWidgets.QMessageBox.StandardButton
    answer = QtWidgets.QMessageBox.question(
        parent,
        "Restore",
        f"The photo {old_path} is no longer there. Show where it is now?",
        buttons.Yes | buttons.No,
        buttons.Yes,
    )
    if answer != buttons.Yes:
        return None
    path, _ = QtWidgets.QFileDialog.getOpenFileName(parent, "Where is the photo now?", str(Path(old_path).parent))
    return path or None


class AutosaveController(QtCore.QObject):
    """Saves ``window.session_state()`` to an :class:`AutosaveStore` when it changes, on a timer."""

    def __init__(self, window: Any, store: AutosaveStore, *, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(window)
        self.window = window
        self.store = store
        self.saves = 0
        self.last_error = ""  # why the last save failed ("" while saves succeed)
        self._last_signature: str | None = None
        # (the pasted photo itself, its PNG): encoded once. The photo is held, not its id: a freed photo's id
        # is reused by a later one, which then looked unchanged (not saved) or got the old photo's pixels
        self._photo_png: tuple[Any, bytes] | None = None
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.save_now)
        self.timer.start()

    def _signature(self, state: dict[str, Any]) -> str:
        photo = state.get("photo")
        return json.dumps(
            {
                "path": state.get("image_path"),
                # the id of a live object: the last saved photo is held (``_photo_png``), so no other has it
                "photo": None if photo is None else id(photo),
                "params": _params_of(state),
                "mask": state.get("mask_version"),
            },
            sort_keys=True,
            default=str,
        )

    def _png_of(self, photo: Any) -> bytes:
        """A pasted photo as 16-bit PNG bytes (8-bit pixels come back exactly), encoded once per photo."""
        from priorstudio.core.imageio import encode_image

        if self._photo_png is None or self._photo_png[0] is not photo:
            self._photo_png = (photo, encode_image(photo, "PNG", bit_depth=16))
        return self._photo_png[1]

    def save_now(self) -> bool:
        """Write the session's state if it changed since the last save; True when something was written.

        A failing disk must not take the user's session down with it: the error is kept in
        ``last_error`` and the next tick tries again.
        """
        state = self.window.session_state()
        photo = state.get("photo")
        if state.get("image_path") is None and photo is None:
            return False  # no photo yet: nothing the user made
        signature = self._signature(state)
        if signature == self._last_signature:
            return False
        try:
            self.store.save(
                AutosaveState(
                    image_path=state.get("image_path"),
                    params=_params_of(state),
                    mask=state.get("mask"),
                    image_png=None if photo is None else self._png_of(photo),
                    image_name=state.get("photo_name") if photo is not None else None,
                )
            )
        except OSError as exc:
            self.last_error = str(exc)
            return False
        self._last_signature = signature
        self.saves += 1
        return True

    def offer_restore(
        self, ask: Callable[[str], bool] | None = None, locate: Callable[[str], str | None] | None = None
    ) -> bool:
        """Offer the orphaned states back, newest first, until one is restored; True when one was.

        ``ask`` gets each question's text and answers it (a dialog by default); ``locate`` is asked where a
        photo went that is no longer where it was (a file dialog by default). Each orphan offered is removed
        afterwards, whatever the answer, so a question comes once, not at every start; orphans older than
        the one restored stay for the next start (one window holds one photo).
        """
        ask = ask or self._ask_dialog
        restored = False
        for orphan in self.store.pending():
            state = self.store.restore(orphan)
            worth_asking = state is not None and (state.image_path or state.image_png is not None)
            if worth_asking and ask(describe_orphan(orphan, state)):
                restored = apply_state(self.window, state, locate)
            self.store.discard(orphan)
            if restored:
                self.save_now()
                break
        return restored

    def _ask_dialog(self, text: str) -> bool:
        answer = QtWidgets.QMessageBox.question(
            self.window,
            "Restore unsaved work?",
            text,
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
            QtWidgets.QMessageBox.StandardButton.Yes,
        )
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def close(self) -> None:
        """A clean exit: stop saving and remove this session's slot."""
        self.timer.stop()
        self.store.close()


def apply_state(window: Any, state: AutosaveState, locate: Callable[[str], str | None] | None = None) -> bool:
    """Put an autosaved state back into the window: photo, panels, model, then the mask (if it fits the photo).

    A photo that is no longer where it was can be pointed to (``locate``, a file dialog by default); the
    mask comes back when the photo found has the same size.
    """
    if state.image_path:
        path = state.image_path
        if not Path(path).is_file():
            path = (locate or (lambda old: _locate_dialog(window, old)))(path) or ""
            if not path or not Path(path).is_file():
                QtWidgets.QMessageBox.warning(
                    window, "Restore", f"The photo {state.image_path} is no longer there; nothing was restored."
                )
                return False
        if not window.open_path(path):
            return False
    elif state.image_png is not None:
        if not window.open_bytes(state.image_png, state.image_name or "pasted image"):
            return False
    else:
        return False  # no photo to put a mask or parameters on
    params = state.params or {}
    algorithm = dict(params.get("algorithm") or {})
    method = algorithm.pop("method", None)
    if method:
        window.algorithm.set_method(str(method))
    if params.get("degradation"):
        window.degradation.restore_state(params["degradation"])
    window.algorithm.set_values(algorithm)
    if "model" in params and params["model"] != window.denoisers.model:
        window.use_model(params["model"])  # a weights file since moved: the message says so, the rest comes back
    mask = state.mask
    if mask is not None and window.mask is not None:
        if tuple(mask.shape) == tuple(window.mask.shape):
            window.mask.set_mask(np.asarray(mask, dtype=bool), "restore autosaved mask")
        else:
            QtWidgets.QMessageBox.warning(
                window, "Restore", "The autosaved mask does not fit the photo any more; it was not restored."
            )
    return True
