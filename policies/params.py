"""Validation of policy parameters: every bad value raises `ConfigError` naming the field."""

from __future__ import annotations

import math

from exfairs.errors import ConfigError


def finite_float(field: str, value: object) -> float:
    """`value` as a finite float; ConfigError naming `field` otherwise (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError("must be a number", field=field, value=value)
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError("must be finite", field=field, value=value)
    return out


def non_negative(field: str, value: object) -> float:
    """A finite float ≥ 0."""
    out = finite_float(field, value)
    if out < 0:
        raise ConfigError("must be ≥ 0", field=field, value=value)
    return out


def positive(field: str, value: object) -> float:
    """A finite float > 0."""
    out = finite_float(field, value)
    if out <= 0:
        raise ConfigError("must be > 0", field=field, value=value)
    return out


def unit_interval(field: str, value: object) -> float:
    """A finite float in [0, 1]."""
    out = finite_float(field, value)
    if not 0.0 <= out <= 1.0:
        raise ConfigError("must lie in [0, 1]", field=field, value=value)
    return out
