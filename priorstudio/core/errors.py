"""One exception family for everything a user can get wrong.

The GUI shows ``str(error)`` in a dialog and keeps running; the CLI prints it as one line on stderr and
exits with ``error.exit_code``. Keeping the codes here makes them documentable in one place.
"""

from __future__ import annotations


class PriorStudioError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""

    exit_code = 1


class DisplayError(PriorStudioError):
    """The window cannot open: no display, or the system lacks a library Qt's display plugin needs."""

    exit_code = 1


class InputImageError(PriorStudioError):
    """An image file that cannot be read, or is too large, or is not an image at all."""

    exit_code = 3


class MaskError(PriorStudioError):
    """A mask of the wrong size or mode, or one that leaves nothing (or everything) to restore."""

    exit_code = 4


class ParameterError(PriorStudioError, ValueError):
    """A parameter outside its valid range; ``field`` names it (a params field) so a form can point at it."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class WeightsError(PriorStudioError):
    """A weights file that is missing, corrupt, truncated, mismatched or unsafe."""

    exit_code = 5


class ResourceLimitError(PriorStudioError):
    """A run that would need more memory than the machine has."""

    exit_code = 6


class RunRecordError(PriorStudioError):
    """A run record (JSON/CSV) that cannot be read back."""

    exit_code = 7


class SaveError(PriorStudioError, OSError):
    """A file that cannot be written: missing folder, no permission, disk full."""

    exit_code = 8


class OutputExistsError(SaveError, FileExistsError):
    """The target exists and the caller did not ask to replace it (the CLI checks first, see docs/errors.md)."""
