"""Find bundled files both in a source checkout (``<repo>/resources``) and in an installed wheel.

The wheel maps the top-level ``resources/`` folder to ``priorstudio/_resources`` (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resources_dir() -> Path:
    """Return the folder holding models/, samples/ and icons/."""
    for candidate in (_PACKAGE_DIR / "_resources", _PACKAGE_DIR.parent / "resources"):
        if (candidate / "models").is_dir() or (candidate / "samples").is_dir():
            return candidate
    raise FileNotFoundError(
        "PriorStudio's bundled resources are missing: expected a 'resources' folder next to the package "
        f"or '{_PACKAGE_DIR / '_resources'}'. Reinstall the package."
    )


def resource_path(*parts: str) -> Path:
    """Path of one bundled file, e.g. ``resource_path("samples", "astronaut.png")``."""
    return resources_dir().joinpath(*parts)


def sample_images() -> list[Path]:
    """The bundled licence-clean sample photos, sorted by name."""
    folder = resources_dir() / "samples"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
