"""Say why the window cannot open before Qt aborts the process with advice that misleads.

On Linux, Qt's X11 plugin (``libqxcb.so``) needs a dozen system libraries that minimal installations lack.
When one is missing Qt prints that ``libxcb-cursor0`` "is needed" whatever is actually missing, then aborts
the process. Asking the dynamic linker which libraries the plugin cannot find (``ldd``, a subprocess: nothing
is loaded into this process) names every missing one at once, with the package that usually provides it.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

from priorstudio.core.errors import DisplayError


def _chosen_platform(environ: Mapping[str, str]) -> str:
    """The platform plugin Qt will try first: the one asked for, else Wayland in a Wayland session, else X11."""
    asked = environ.get("QT_QPA_PLATFORM", "").strip()
    if asked:
        return re.split(r"[;:]", asked, maxsplit=1)[0].strip().lower()
    if environ.get("WAYLAND_DISPLAY"):
        return "wayland"
    return "xcb"


def debian_package(library: str) -> str:
    """The Debian/Ubuntu package that usually ships a shared library: ``libxcb-icccm.so.4`` → ``libxcb-icccm4``.

    Debian names a library package after its soname: the stem, lower-cased, then the major version, with a
    hyphen when the stem itself ends in a digit (``libxkbcommon-x11.so.0`` → ``libxkbcommon-x11-0``).
    """
    found = re.fullmatch(r"(.+?)\.so\.(\d+)(?:\.\d+)*", library)
    if not found:
        return library
    stem, major = found.group(1).lower(), found.group(2)
    return f"{stem}-{major}" if stem[-1].isdigit() else f"{stem}{major}"


def missing_libraries(ldd_output: str) -> list[str]:
    """The libraries ``ldd`` reports as ``not found``, in its order, each once."""
    names = re.findall(r"^\s*(\S+)\s*=>\s*not found", ldd_output, flags=re.MULTILINE)
    return list(dict.fromkeys(names))


def _xcb_plugin() -> Path | None:
    try:
        import PySide6
    except ImportError:  # pragma: no cover - the application cannot run without it anyway
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def _run_ldd(plugin: Path) -> str:
    ldd = shutil.which("ldd")
    if ldd is None:
        return ""
    try:
        done = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout


def display_problem(
    environ: Mapping[str, str] | None = None,
    *,
    platform: str = sys.platform,
    plugin: Path | None = None,
    ldd: Callable[[Path], str] | None = None,
) -> str | None:
    """Why Qt's X11 window cannot open here, as advice a user can follow; None where nothing stands in the way
    (or where it cannot be told: other systems, other Qt platforms, no ``ldd``)."""
    environ = os.environ if environ is None else environ
    if not platform.startswith("linux") or _chosen_platform(environ) != "xcb":
        return None
    if not environ.get("DISPLAY"):
        return (
            "no display to open the window on (DISPLAY is not set): start PriorStudio from a desktop session, "
            "or under a virtual display with `xvfb-run priorstudio`; the command-line tools (`priorstudio "
            "restore`, `sample`, `bench`…) need no display"
        )
    plugin = plugin if plugin is not None else _xcb_plugin()
    if plugin is None:
        return None
    missing = missing_libraries((ldd or _run_ldd)(plugin))
    if not missing:
        return None
    return f"Qt's X11 display plugin cannot load: the system lacks {', '.join(missing)}. {_install_advice(missing)}"


def _install_advice(missing: list[str]) -> str:
    packages = " ".join(dict.fromkeys(debian_package(name) for name in missing))
    return f"On Debian or Ubuntu: sudo apt install {packages} (other systems: the packages that provide them)"


def import_gui_app() -> ModuleType:
    """``priorstudio.gui.app``, or :class:`DisplayError` naming the system library Qt's GUI module lacks.

    Qt's GUI libraries themselves need system libraries (OpenGL/EGL, fontconfig, xkbcommon…) that minimal
    installations lack; the import then fails with the linker's terse message, whatever the platform.
    """
    try:
        return importlib.import_module("priorstudio.gui.app")
    except ImportError as error:
        found = re.search(r"([\w.+-]+\.so(?:\.\d+)*): cannot open shared object file", str(error))
        if found is None:
            raise
        raise DisplayError(
            f"Qt's GUI libraries cannot load: the system lacks {found.group(1)}. {_install_advice([found.group(1)])}"
        ) from None


def check_display() -> None:
    """Raise :class:`DisplayError` where the window cannot open, before Qt aborts the process."""
    problem = display_problem()
    if problem is not None:
        raise DisplayError(problem)
