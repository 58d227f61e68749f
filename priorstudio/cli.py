"""Command line: no arguments starts the GUI; subcommands run the same engine headless."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    raise SystemExit("the command line is not available yet")
