"""Bounds and value checks shared by every scenario component (docs/design.md §6).

The bounds reject typos and absurd inputs while allowing any sane experiment; components raise
`ConfigError` naming their own field, which the TOML reader re-raises as an `InputError` under the
field's path in the file.
"""

from __future__ import annotations

import math
from typing import Any

from exfairs.errors import ConfigError

MAX_TOKENS = 10_000_000
MAX_SECONDS = 1e7  # ~116 days
MAX_RATE_PER_MIN = 1e6
MAX_SCALE = 1e6
MAX_WEIGHT = 1e6
MAX_CV2 = 1e3
MAX_CLIENTS = 10_000
MAX_LOAD_FACTOR = 100.0


def finite(value: Any) -> bool:
    """True for an int or float (not a bool) that is finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range (TOML integers are unbounded here)
        return False


def check_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    """ConfigError on `name` unless `value` is a finite number in [low, high] ((low, high] when
    `low_open`)."""
    ok = finite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"must be a finite number in {bracket}{low:g}, {high:g}]", field=name,
                          value=value)


def check_int(name: str, value: Any, low: int, high: int) -> None:
    """ConfigError on `name` unless `value` is an integer (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"must be an integer in [{low}, {high}]", field=name, value=value)
