"""Autosave the user's work so that a crash or a kill loses at most a few seconds of it.

What is saved: the painted mask, the loaded photo's path (or, for a pasted photo that has no file, its
pixels) and the parameters — the things a user spends time on. The result image is not: it can be
computed again.

Layout: every running session owns a *slot*, a folder ``<folder>/session-<pid>-<start>/`` with

- ``owner.json`` — the owner's PID, host and process start time, written when the slot is opened;
- ``state.json`` — photo path, parameters, free-form extras, the name of the current mask file and a
  heartbeat (``saved_at``); it is written last, atomically, so it always names a complete mask file;
- ``image-<n>.png`` — a pasted photo's pixels (16-bit PNG), written only when the photo changes;
- ``mask-<n>.npz`` — the mask as packed bits (``numpy.savez_compressed``, read back with
  ``allow_pickle=False``: nothing in an autosave can run code). A new file is written only when the mask
  changed; older ones are removed after ``state.json`` points past them.

A clean exit (:meth:`AutosaveStore.close`) deletes the slot. A slot left behind by a process that no
longer exists (crash, kill, power loss) is *orphaned*: :meth:`AutosaveStore.pending` offers it back at the
next start, :meth:`AutosaveStore.restore` reads it and :meth:`AutosaveStore.discard` deletes it. The slot of
a process that is still running (a second window, another instance) is never offered, so two instances
never steal each other's state. A reused PID is told apart by the process start time.

The module is Qt-free: the GUI's timer calls :meth:`AutosaveStore.save` every few seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from priorstudio.core.atomic import atomic_write_bytes, atomic_write_text

FORMAT = "priorstudio-autosave"
FORMAT_VERSION = 1
#: A slot written on another host cannot be checked by PID; it counts as orphaned after this long silent.
FOREIGN_STALE_SECONDS = 600.0


@dataclass
class AutosaveState:
    """What a session had: the photo's path, the parameters (JSON-able) and the painted mask (bool H×W)."""

    image_path: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None
    #: a photo without a file (pasted): its pixels as PNG bytes, and the name it was shown under
    image_png: bytes | None = None
    image_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    saved_at: float = 0.0  # time.time() of the save; filled in on restore
    slot: str = ""  # the slot it came from; filled in on restore


@dataclass(frozen=True)
class Orphan:
    """A slot left by a process that no longer exists, as :meth:`AutosaveStore.pending` lists it."""

    path: Path
    pid: int
    saved_at: float
    image_path: str | None


# -- process identity --------------------------------------------------------------------------------------
def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot, Linux), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may contain spaces and parentheses: split after the last ')'
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """True when process ``pid`` exists (and, when ``start_time`` is given, is the same process)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:
        return False
    if start_time is not None:
        now = process_start_time(pid)
        if now is not None and now != start_time:
            return False  # the PID was reused by a later process
    return True


def _windows_pid_alive(pid: int) -> bool:  # pragma: no cover - exercised on Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


# -- mask encoding -----------------------------------------------------------------------------------------
def pack_mask(mask: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """A bool (H, W) mask (NumPy or torch) as packed bits (uint8, ⌈H·W/8⌉) and its shape."""
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask).astype(bool)
    if arr.ndim != 2:
        raise ValueError(f"an autosaved mask is one H×W plane, got shape {arr.shape}")
    return np.packbits(arr, axis=None), (int(arr.shape[0]), int(arr.shape[1]))


def _npz(bits: np.ndarray, shape: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, bits=bits, shape=np.asarray(shape, dtype=np.int64))
    return buf.getvalue()


def encode_mask(mask: Any) -> bytes:
    """A bool (H, W) mask as a compressed .npz of packed bits: at most H·W/8 bytes, usually far less."""
    return _npz(*pack_mask(mask))


def decode_mask(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_mask`; never unpickles. Raises ValueError on anything malformed."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            bits, shape = npz["bits"], npz["shape"]
    except Exception as exc:  # untrusted bytes: zip, zlib, format and pickle refusals all mean "unreadable"
        raise ValueError(f"unreadable mask ({type(exc).__name__}: {exc})") from None
    if shape.shape != (2,) or bits.dtype != np.uint8 or (shape <= 0).any():
        raise ValueError("malformed mask")
    h, w = (int(v) for v in shape)
    if bits.size * 8 < h * w:
        raise ValueError("truncated mask")
    return np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the store ---------------------------------------------------------------------------------------------
class AutosaveStore:
    """Autosave for one running session, in its own slot under ``folder``; see the module docstring.

    Typical use: at startup, ``store = AutosaveStore(folder)``; if ``store.pending()`` lists orphans, offer
    ``store.restore()`` (and ``store.discard()`` the rest or on refusal); then a timer calls
    ``store.save(state)`` every few seconds; on a clean exit ``store.close()``.
    """

    def __init__(self, folder: str | Path, *, pid: int | None = None) -> None:
        self.folder = Path(folder)
        self.pid = os.getpid() if pid is None else int(pid)
        self.start_time = process_start_time(self.pid)
        self.host = socket.gethostname()
        self.slot = self.folder / f"session-{self.pid}-{self.start_time or 0}"
        self._generation = 0
        self._mask_key: tuple[tuple[int, int], bytes] | None = None
        self._mask_name: str | None = None
        self._image_key: bytes | None = None  # digest of the pasted photo's PNG last written
        self._image_file: str | None = None
        self._opened = False

    # -- this session ------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._opened:
            return
        self.slot.mkdir(parents=True, exist_ok=True)
        owner = {"format": FORMAT, "pid": self.pid, "start_time": self.start_time, "host": self.host}
        atomic_write_text(self.slot / "owner.json", json.dumps(owner) + "\n", overwrite=True)
        self._opened = True

    def save(self, state: AutosaveState) -> None:
        """Write ``state`` atomically. The mask file is rewritten only when the mask changed."""
        self._open()
        mask_name = None
        if state.mask is not None:
            bits, shape = pack_mask(state.mask)
            key = (shape, bits.tobytes())
            if key != self._mask_key:  # compress and write only a changed mask
                self._generation += 1
                self._mask_name = f"mask-{self._generation}.npz"
                atomic_write_bytes(self.slot / self._mask_name, _npz(bits, shape), overwrite=True)
                self._mask_key = key
            mask_name = self._mask_name
        else:
            self._mask_key = self._mask_name = None
        image_file = None
        if state.image_png is not None:
            digest = hashlib.sha256(state.image_png).digest()
            if digest != self._image_key:  # a pasted photo is written once, not at every save
                self._generation += 1
                self._image_file = f"image-{self._generation}.png"
                atomic_write_bytes(self.slot / self._image_file, state.image_png, overwrite=True)
                self._image_key = digest
            image_file = self._image_file
        else:
            self._image_key = self._image_file = None
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "saved_at": time.time(),
            "image_path": state.image_path,
            "params": state.params,
            "extra": state.extra,
            "mask": mask_name,
            "image": image_file,
            "image_name": state.image_name if image_file else None,
        }
        text = json.dumps(doc, indent=1, default=_json_default) + "\n"
        atomic_write_text(self.slot / "state.json", text, overwrite=True)
        for pattern, keep in (("mask-*.npz", mask_name), ("image-*.png", image_file)):
            for old in self.slot.glob(pattern):  # only after state.json no longer names them
                if old.name != keep:
                    with contextlib.suppress(OSError):
                        old.unlink()

    def close(self) -> None:
        """A clean exit: nothing is left to recover, so the slot goes."""
        shutil.rmtree(self.slot, ignore_errors=True)
        self._opened = False
        self._mask_key = self._mask_name = None
        self._image_key = self._image_file = None

    # -- what earlier sessions left ----------------------------------------------------------------
    def _slot_orphaned(self, slot: Path) -> bool:
        if slot == self.slot:
            return False
        owner = _read_json(slot / "owner.json")
        if owner is None:  # a slot whose owner file never got written: only its creator knows; judge by age
            return _age(slot) > FOREIGN_STALE_SECONDS
        try:
            pid = int(owner.get("pid", -1))
        except (TypeError, ValueError):
            return True
        if owner.get("host") not in (None, self.host):
            state = _read_json(slot / "state.json") or {}
            saved = state.get("saved_at")
            last = float(saved) if isinstance(saved, (int, float)) else 0.0
            return time.time() - max(last, _mtime(slot)) > FOREIGN_STALE_SECONDS
        start = owner.get("start_time")
        return not pid_alive(pid, start if isinstance(start, int) else None)

    def orphans(self) -> list[Path]:
        """Slots whose owner is gone, newest first (including ones with nothing in them)."""
        if not self.folder.is_dir():
            return []
        slots = [p for p in self.folder.glob("session-*") if p.is_dir() and self._slot_orphaned(p)]
        return sorted(slots, key=_mtime, reverse=True)

    def pending(self) -> list[Orphan]:
        """State that earlier sessions left unsaved (crash or kill), newest first; empty when there is none."""
        found = []
        for slot in self.orphans():
            doc = _read_json(slot / "state.json")
            if doc is None or doc.get("format") != FORMAT:
                continue
            owner = _read_json(slot / "owner.json") or {}
            saved = doc.get("saved_at")
            found.append(
                Orphan(
                    path=slot,
                    pid=int(owner.get("pid", -1)) if isinstance(owner.get("pid"), int) else -1,
                    saved_at=float(saved) if isinstance(saved, (int, float)) else 0.0,
                    image_path=doc.get("image_path") if isinstance(doc.get("image_path"), str) else None,
                )
            )
        return found

    def restore(self, orphan: Orphan | Path | None = None) -> AutosaveState | None:
        """Read back an orphaned slot's state (the newest when none is named); None when there is none.

        A damaged part is dropped, not fatal: a missing or unreadable mask gives ``mask=None`` with the
        reason in ``extra["restore_warning"]``, so the photo and parameters still come back.
        """
        if orphan is None:
            pending = self.pending()
            if not pending:
                return None
            orphan = pending[0]
        slot = orphan.path if isinstance(orphan, Orphan) else Path(orphan)
        doc = _read_json(slot / "state.json")
        if doc is None or doc.get("format") != FORMAT:
            return None
        params = doc.get("params")
        extra = doc.get("extra")
        state = AutosaveState(
            image_path=doc.get("image_path") if isinstance(doc.get("image_path"), str) else None,
            params=params if isinstance(params, dict) else {},
            extra=dict(extra) if isinstance(extra, dict) else {},
            saved_at=float(doc["saved_at"]) if isinstance(doc.get("saved_at"), (int, float)) else 0.0,
            slot=str(slot),
        )
        mask_name = doc.get("mask")
        if isinstance(mask_name, str):
            mask_path = slot / Path(mask_name).name  # a name only: never a path out of the slot
            try:
                state.mask = decode_mask(mask_path.read_bytes())
            except (OSError, ValueError) as exc:
                state.extra["restore_warning"] = f"the autosaved mask could not be read ({exc})"
        image_file = doc.get("image")
        if isinstance(image_file, str):
            try:  # the bytes are checked when the window decodes them, as any pasted image is
                state.image_png = (slot / Path(image_file).name).read_bytes()
            except OSError as exc:
                state.extra["restore_warning"] = f"the autosaved photo could not be read ({exc})"
            name = doc.get("image_name")
            state.image_name = name if isinstance(name, str) else None
        return state

    def discard(self, orphan: Orphan | Path | None = None) -> int:
        """Delete one orphaned slot, or all of them when none is named; returns how many went.

        Slots of running processes are never touched, even when named.
        """
        targets = [orphan.path if isinstance(orphan, Orphan) else Path(orphan)] if orphan is not None else None
        slots = self.orphans()
        removed = 0
        for slot in slots:
            if targets is None or slot in targets:
                shutil.rmtree(slot, ignore_errors=True)
                removed += 1
        return removed


def _mtime(path: Path) -> float:
    try:
        return max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.iterdir())])
    except OSError:
        return 0.0


def _age(path: Path) -> float:
    return time.time() - _mtime(path)


def _json_default(value: Any) -> Any:
    """Parameters may hold NumPy scalars, paths or tuples: store them as plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot autosave a value of type {type(value).__name__}")
