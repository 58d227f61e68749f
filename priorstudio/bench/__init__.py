"""Benchmarks behind ``priorstudio bench NAME``.

Each module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> list[dict]``; it prints
human-readable lines to stdout and returns rows, which the CLI writes to ``--json FILE``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

BENCH_MODULES = ("speed", "denoise", "inverse", "dip", "methods")


def load_bench_modules() -> dict[str, ModuleType]:
    """The benchmark modules that are importable, by name."""
    found = {}
    for name in BENCH_MODULES:
        try:
            module = importlib.import_module(f"priorstudio.bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("priorstudio.bench"):
                continue
            raise
        found[module.NAME] = module
    return found
