"""Argument parsing helpers shared by the CLI and the benchmark modules."""

from __future__ import annotations

import math

from priorstudio.core.errors import ParameterError


def parse_number_list(text: str, kind: type = float, what: str = "value") -> list:
    """'15,25,50' → [15.0, 25.0, 50.0]; anything else is a ParameterError naming the option."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise ParameterError(f"{what} must be a comma-separated list of numbers, not {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ParameterError(f"{what} must be positive finite numbers, not {text!r}")
    return values
