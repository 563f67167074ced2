"""Validation of policy parameters: every bad value raises `ConfigError` naming the field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from exfairs.errors import ConfigError, InputError


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


def parse_param_args(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """CLI ``POLICY.PARAM=VALUE`` strings → {POLICY (upper case): {PARAM: value}}.

    Values that look numeric become int or float (the policy validates them); others stay strings.
    InputError naming ``--policy-param`` for a malformed item.
    """
    by_policy: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        policy, dot, param = key.partition(".")
        if not sep or not dot or not policy or not param:
            raise InputError("expected POLICY.PARAM=VALUE, e.g. ExFairS.alpha=0.5",
                             field="--policy-param", value=item)
        value: Any
        try:
            value = float(raw) if any(c in raw for c in ".eE") or raw.lower() in ("inf", "nan") \
                else int(raw)
        except ValueError:
            value = raw
        by_policy.setdefault(policy.upper(), {})[param] = value
    return by_policy
