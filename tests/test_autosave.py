"""Autosave: the painted mask, the photo's path and the parameters survive a crash or a kill."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from priorstudio.core import autosave
from priorstudio.core.autosave import AutosaveState, AutosaveStore, decode_mask, encode_mask, pid_alive


def _mask(h: int = 37, w: int = 53, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w)) < 0.3


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _state(mask: np.ndarray | None = None) -> AutosaveState:
    return AutosaveState(
        image_path="/photos/cat.png",
        params={"sigma_0": 1.0, "sigma_L": 0.01, "beta": 0.01, "seed": 7, "task": "inpaint"},
        mask=_mask() if mask is None else mask,
        extra={"mode": "restore"},
    )


def test_mask_roundtrip_is_exact_and_compact() -> None:
    for h, w in ((1, 1), (3, 5), (37, 53), (512, 384)):
        m = _mask(h, w, seed=h)
        assert np.array_equal(decode_mask(encode_mask(m)), m)
    m = _mask(512, 384)
    assert len(encode_mask(m)) <= m.size // 8 + 600  # packed bits, never one byte per pixel
    assert np.array_equal(decode_mask(encode_mask(torch.from_numpy(m))), m)  # torch masks too
    with pytest.raises(ValueError):
        encode_mask(np.zeros((2, 3, 4), bool))


def test_mask_decoder_never_unpickles(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, bits=np.array([{"a": 1}], dtype=object), shape=np.array([1, 1]))
    with pytest.raises(ValueError):
        decode_mask(buf.getvalue())
    for junk in (b"", b"PK\x03\x04garbage", encode_mask(_mask())[:50]):
        with pytest.raises(ValueError):
            decode_mask(junk)


def test_clean_exit_leaves_nothing(tmp_path: Path) -> None:
    store = AutosaveStore(tmp_path)
    store.save(_state())
    assert AutosaveStore(tmp_path).pending() == []  # our own live slot is not offered, even to ourselves
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_orphaned_state_is_offered_restored_and_discarded(tmp_path: Path) -> None:
    dead = AutosaveStore(tmp_path, pid=_dead_pid())
    state = _state()
    dead.save(state)
    store = AutosaveStore(tmp_path)
    pending = store.pending()
    assert len(pending) == 1 and pending[0].image_path == "/photos/cat.png"
    restored = store.restore()
    assert restored is not None
    assert restored.image_path == state.image_path
    assert restored.params == state.params and restored.extra == state.extra
    assert np.array_equal(restored.mask, state.mask)
    assert abs(restored.saved_at - time.time()) < 60
    assert store.discard() == 1
    assert store.pending() == [] and store.restore() is None


def test_mask_file_written_only_when_it_changes(tmp_path: Path) -> None:
    store = AutosaveStore(tmp_path)
    m = _mask()
    store.save(_state(m))
    first = sorted(p.name for p in store.slot.glob("mask-*.npz"))
    store.save(_state(m.copy()))
    assert sorted(p.name for p in store.slot.glob("mask-*.npz")) == first
    m2 = m.copy()
    m2[0, 0] = not m2[0, 0]
    store.save(_state(m2))
    names = sorted(p.name for p in store.slot.glob("mask-*.npz"))
    assert names != first and len(names) == 1  # the old file is gone once state.json moved on
    no_mask = _state()
    no_mask.mask = None
    store.save(no_mask)
    assert list(store.slot.glob("mask-*.npz")) == []
    store.close()


def test_interrupted_save_keeps_the_previous_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the new mask file but before state.json: the old, consistent state comes back."""
    store = AutosaveStore(tmp_path, pid=_dead_pid())
    old = _state(_mask(seed=1))
    store.save(old)

    def crash(path, text, overwrite=False):
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(autosave, "atomic_write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save(_state(_mask(seed=2)))
    monkeypatch.undo()
    restored = AutosaveStore(tmp_path).restore()
    assert restored is not None and np.array_equal(restored.mask, old.mask)


def test_damaged_parts_do_not_block_recovery(tmp_path: Path) -> None:
    dead = AutosaveStore(tmp_path, pid=_dead_pid())
    dead.save(_state())
    (mask_file,) = dead.slot.glob("mask-*.npz")
    mask_file.write_bytes(b"not an npz")
    restored = AutosaveStore(tmp_path).restore()
    assert restored is not None and restored.mask is None
    assert "mask" in restored.extra["restore_warning"]
    assert restored.image_path == "/photos/cat.png"  # the rest still comes back
    (dead.slot / "state.json").write_text("{ truncated")
    assert AutosaveStore(tmp_path).pending() == []  # unreadable state is not offered …
    assert AutosaveStore(tmp_path).discard() == 1  # … but can be cleaned up


def test_mask_name_cannot_escape_the_slot(tmp_path: Path) -> None:
    dead = AutosaveStore(tmp_path / "autosave", pid=_dead_pid())
    dead.save(_state())
    secret = tmp_path / "secret.npz"
    secret.write_bytes(encode_mask(np.ones((2, 2), bool)))
    doc = json.loads((dead.slot / "state.json").read_text())
    doc["mask"] = "../../secret.npz"
    (dead.slot / "state.json").write_text(json.dumps(doc))
    restored = AutosaveStore(tmp_path / "autosave").restore()
    assert restored is not None and restored.mask is None


def test_reused_pid_counts_as_gone(tmp_path: Path) -> None:
    """A slot whose PID now belongs to another process (different start time) is an orphan."""
    if autosave.process_start_time(os.getpid()) is None:
        pytest.skip("process start times need /proc")
    alive = AutosaveStore(tmp_path, pid=os.getppid())
    alive.save(_state())
    owner = json.loads((alive.slot / "owner.json").read_text())
    assert AutosaveStore(tmp_path).pending() == []  # the parent is alive: its state is not stolen
    owner["start_time"] += 12345
    (alive.slot / "owner.json").write_text(json.dumps(owner))
    assert len(AutosaveStore(tmp_path).pending()) == 1


def test_other_hosts_slots_wait_until_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = AutosaveStore(tmp_path, pid=os.getpid())
    foreign.host = "another-machine"
    foreign.save(_state())
    store = AutosaveStore(tmp_path)
    store.slot = tmp_path / "session-mine"  # a different slot on this host
    assert store.pending() == []  # fresh heartbeat on another host: leave it alone
    monkeypatch.setattr(autosave, "FOREIGN_STALE_SECONDS", -1.0)
    assert len(store.pending()) == 1


def test_params_with_numpy_and_paths_are_saved(tmp_path: Path) -> None:
    store = AutosaveStore(tmp_path, pid=_dead_pid())
    state = _state()
    state.params = {"beta": np.float32(0.5), "seed": np.int64(3), "out": Path("/tmp/x.png"), "k": (1, 2)}
    store.save(state)
    restored = AutosaveStore(tmp_path).restore()
    assert restored.params == {"beta": 0.5, "seed": 3, "out": "/tmp/x.png", "k": [1, 2]}


_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from priorstudio.core.autosave import AutosaveState, AutosaveStore
    store = AutosaveStore(sys.argv[1])
    mask = np.zeros((40, 60), bool); mask[10:20, 5:50] = True
    for k in range(3):  # the app's timer: a few saves, the last one with seed 42
        store.save(AutosaveState(image_path="/photos/dog.jpg", params={"seed": 40 + k}, mask=mask))
    print("saved", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_process_state_is_offered_back_and_live_state_is_not_stolen(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "saved"
        store = AutosaveStore(tmp_path)
        assert pid_alive(child.pid)
        assert store.pending() == []  # a running instance keeps its state
        assert store.discard() == 0 and any(tmp_path.iterdir())
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    pending = store.pending()
    assert len(pending) == 1 and pending[0].pid == child.pid and pending[0].image_path == "/photos/dog.jpg"
    restored = store.restore(pending[0])
    assert restored.params == {"seed": 42}
    expected = np.zeros((40, 60), bool)
    expected[10:20, 5:50] = True
    assert np.array_equal(restored.mask, expected)
