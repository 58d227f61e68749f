"""Checks for the operators' parameters; every failure is a ParameterError that names the parameter."""

from __future__ import annotations

import math
import numbers

from priorstudio.core.errors import ParameterError


def check_fraction(name: str, value: object) -> float:
    """A fraction in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be a number in (0, 1], got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 0.0 < v <= 1.0):
        raise ParameterError(f"{name} must be in (0, 1], got {v:g}")
    return v


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """An integer (or an integral float such as 4.0) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    # an int is whole however large; float() of one beyond 2⁵³ rounds, so it is not compared through float
    if not isinstance(value, numbers.Integral) and (not math.isfinite(float(value)) or float(value) != int(value)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        span = f"≥ {low}" if high is None else f"in [{low}, {high}]"
        raise ParameterError(f"{name} must be {span}, got {v}")
    return v


def check_seed(value: object) -> int:
    return check_int("seed", value, 0)


def check_positive(name: str, value: object) -> float:
    """A finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be a positive number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0.0):
        raise ParameterError(f"{name} must be a positive number, got {v:g}")
    return v
