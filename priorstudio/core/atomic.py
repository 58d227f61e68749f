"""Atomic file writes that never leave a half-written file and never silently replace one.

A save goes to a temporary file in the target's own folder (same file system, so the final rename is
atomic), is flushed to disk with ``fsync``, and only then takes the target's name. A crash or a kill at any
moment leaves either the old file or the new one, never a torn mixture. Without ``overwrite=True`` an
existing target is refused; the refusal is race-free on file systems with hard links (the new file is
linked into place, which fails if the name was taken meanwhile).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from priorstudio.core.errors import OutputExistsError, PriorStudioError, SaveError

__all__ = [
    "OutputExistsError",
    "SaveError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
]


def _describe(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _check_target(target: Path, overwrite: bool) -> None:
    if target.is_dir():
        raise SaveError(f"cannot write {target}: it is a folder")
    if not overwrite and (target.exists() or target.is_symlink()):
        raise OutputExistsError(f"{target} already exists; choose another name or allow overwriting")
    parent = target.parent
    if not parent.is_dir():
        raise SaveError(f"cannot write {target}: the folder {parent} does not exist")


def _create_temp(target: Path) -> tuple[Path, int]:
    """A fresh, exclusive temporary file next to ``target`` (mode 0666 less the umask, like a normal file).

    The temporary name keeps the target's suffix, so encoders that pick a format from the name still work.
    """
    for _ in range(100):
        tmp = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            raise SaveError(f"cannot write in {target.parent}: {_describe(error)}") from error
        return tmp, fd
    raise SaveError(f"cannot create a temporary file in {target.parent}")  # pragma: no cover


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Give the finished temporary file the target's name."""
    try:
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails atomically if the name was taken meanwhile
            except FileExistsError:
                raise OutputExistsError(f"{target} already exists; choose another name or allow overwriting") from None
            except OSError:  # no hard links here (FAT, some network shares): check, then rename
                if target.exists():
                    raise OutputExistsError(
                        f"{target} already exists; choose another name or allow overwriting"
                    ) from None
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
    except PriorStudioError:
        raise
    except OSError as error:
        raise SaveError(f"cannot write {target}: {_describe(error)}") from error
    _fsync_dir(target.parent)


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write the file to; on a clean exit it becomes ``path``.

    The temporary file exists (empty) when yielded. If the body raises, the temporary file is removed and
    ``path`` is untouched. Existing targets are refused before the body runs (so no work is wasted) and
    again at the rename.
    """
    target = Path(path)
    _check_target(target, overwrite)
    tmp, fd = _create_temp(target)
    os.close(fd)
    try:
        yield tmp
        try:
            _fsync_path(tmp)
        except OSError as error:
            raise SaveError(f"cannot write {target}: {_describe(error)}") from error
        _commit(tmp, target, overwrite)
    finally:
        _discard(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    target = Path(path)
    _check_target(target, overwrite)
    tmp, fd = _create_temp(target)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as error:
            raise SaveError(f"cannot write {target}: {_describe(error)}") from error
        finally:
            os.close(fd)
        _commit(tmp, target, overwrite)
    finally:
        _discard(tmp)
    return target


def atomic_write_text(
    path: str | os.PathLike[str], text: str, overwrite: bool = False, *, encoding: str = "utf-8"
) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8, newlines as given); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding), overwrite)
