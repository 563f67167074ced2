"""Validation of policy parameters: every bad value raises `ConfigError` naming the field, and
`check_policy_params` reports it as ``POLICY.PARAM`` (``ExFairS.alpha``)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
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


def check_policy_params(policy: str, params: Mapping[str, Any] | None) -> None:
    """Build policy `policy` with `params` once, so that a bad parameter is reported before any
    run: InputError naming it as ``POLICY.PARAM`` (e.g. ``ExFairS.alpha``, the spelling of
    ``--policy-param``) and its value, for an unknown policy, an unknown parameter or a bad value.
    """
    from exfairs.policies.registry import make_policy, policy_class

    given = dict(params or {})
    first = next(iter(sorted(given)), None)
    try:
        cls = policy_class(policy)
    except InputError as exc:
        raise InputError(exc.detail, field=f"{policy}.{first}" if first else policy,
                         value=given.get(first, policy) if first else policy) from None
    accepted = [p.name for p in inspect.signature(cls).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in sorted(given):
        if key not in accepted:
            known = ", ".join(accepted) if accepted else "none"
            raise InputError(f"unknown parameter of policy {cls.name} (parameters: {known})",
                             field=f"{cls.name}.{key}", value=given[key])
    try:
        make_policy(cls.name, given)
    except InputError as exc:
        inner = exc.field if exc.field not in (None, "policy_params") else None
        raise InputError(exc.detail, field=f"{cls.name}.{inner}" if inner else cls.name,
                         value=exc.value) from None


def check_params_for(policies: Sequence[str], params: Mapping[str, Mapping[str, Any]]) -> None:
    """`check_policy_params` for each of `policies` (the ones a run uses) with its parameters,
    and for every policy `params` names (keys matched case-insensitively): parameters for a
    policy not run, or for no policy at all, are reported too, since a typo must not pass."""
    by_key = {k.upper(): dict(v) for k, v in params.items()}
    names = {p.upper(): p for p in policies}
    for key in sorted(set(names) | set(by_key)):
        check_policy_params(names.get(key, key), by_key.get(key))
