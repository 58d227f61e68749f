"""Why the window cannot open, said before Qt aborts the process (gui/display_check.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from priorstudio.gui.display_check import (
    debian_package,
    display_problem,
    missing_libraries,
)

LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)
"""
LDD_COMPLETE = "\tlibxcb-icccm.so.4 => /lib/x86_64-linux-gnu/libxcb-icccm.so.4 (0x00007f)\n"


def _problem(environ: dict[str, str], ldd_output: str = LDD_COMPLETE, platform: str = "linux") -> str | None:
    calls: list[Path] = []

    def ldd(plugin: Path) -> str:
        calls.append(plugin)
        return ldd_output

    return display_problem(environ, platform=platform, plugin=Path("libqxcb.so"), ldd=ldd)


def test_only_a_missing_shared_library_becomes_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other import error is a bug to see in full, not something to explain away."""
    import types

    from priorstudio.gui import display_check

    def import_module(name: str) -> types.ModuleType:
        raise ImportError("cannot import name 'Foo' from 'priorstudio.gui.app'")

    monkeypatch.setattr(display_check, "importlib", types.SimpleNamespace(import_module=import_module))
    with pytest.raises(ImportError, match="cannot import name 'Foo'"):
        display_check.import_gui_app()


def test_debian_package_names_follow_the_soname() -> None:
    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"  # stem ends in a digit: hyphen
    assert debian_package("libEGL.so.1") == "libegl1"
    assert debian_package("libdbus-1.so.3.19.0") == "libdbus-1-3"
    assert debian_package("weird") == "weird"


def test_missing_libraries_are_listed_once_in_order() -> None:
    assert missing_libraries(LDD_MISSING) == ["libxcb-icccm.so.4", "libxkbcommon-x11.so.0"]
    assert missing_libraries(LDD_COMPLETE) == []


def test_missing_system_libraries_are_named_with_their_packages() -> None:
    problem = _problem({"DISPLAY": ":0"}, LDD_MISSING)
    assert problem is not None
    assert "libxcb-icccm.so.4, libxkbcommon-x11.so.0" in problem
    assert "sudo apt install libxcb-icccm4 libxkbcommon-x11-0" in problem


def test_no_display_is_said_with_the_ways_round_it() -> None:
    problem = _problem({})
    assert problem is not None and "DISPLAY is not set" in problem and "xvfb-run priorstudio" in problem


@pytest.mark.parametrize(
    ("environ", "platform"),
    [
        ({"DISPLAY": ":0"}, "linux"),  # everything there
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux"),  # headless on purpose: no display needed
        ({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux"),  # another plugin first
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux"),  # a Wayland session: Qt picks Wayland
        ({}, "darwin"),  # other systems: not ours to judge
        ({}, "win32"),
    ],
)
def test_nothing_is_reported_where_nothing_stands_in_the_way(environ: dict[str, str], platform: str) -> None:
    assert _problem(environ, LDD_COMPLETE if environ else LDD_MISSING, platform) is None


def test_asking_for_x11_explicitly_is_checked_too() -> None:
    assert _problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":1"}, LDD_MISSING) is not None
