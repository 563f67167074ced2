"""Policies by name. Every module of the `exfairs.policies` package is imported on first lookup,
so a policy is added by adding one file to ``policies/`` whose class carries
``@register_policy("NAME")``; third parties use the `exfairs.policies` entry-point group
(``name = "module:Class"``)."""

from __future__ import annotations

import functools
import importlib
import logging
import pkgutil
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from exfairs.errors import InputError
from exfairs.policies.base import Policy

_log = logging.getLogger(__name__)

P = TypeVar("P", bound=type[Policy])

_BUILTIN: dict[str, type[Policy]] = {}


def register_policy(name: str) -> Callable[[P], P]:
    """Class decorator: register a `Policy` subclass under `name` (case-insensitive lookups)."""

    def deco(cls: P) -> P:
        key = name.upper()
        if key in _BUILTIN and _BUILTIN[key] is not cls:
            raise ValueError(f"policy name {name!r} is already registered")
        cls.name = name
        _BUILTIN[key] = cls
        return cls

    return deco


@functools.cache
def _load_builtins() -> None:
    # Importing the modules runs their @register_policy decorators (in name order, so that a
    # clash is reported the same way every time). Modules whose name starts with "_" are private.
    import exfairs.policies as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


@functools.cache
def _plugins() -> tuple[tuple[str, type[Policy]], ...]:
    # Scanned once per process: entry_points() reads every installed distribution's metadata
    # (about 80 ms here), and a sweep looks a policy up for each cell's key (1,000 cells: 80 s of
    # a resume, benchmarks/results/resume_cost.md). What is installed does not change mid-run.
    out: list[tuple[str, type[Policy]]] = []
    for ep in entry_points(group="exfairs.policies"):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plug-in must not break the built-ins
            _log.warning("could not load policy plug-in %s: %s", ep.name, exc)
            continue
        if isinstance(cls, type) and issubclass(cls, Policy):
            out.append((ep.name, cls))
    return tuple(out)


def _all() -> dict[str, type[Policy]]:
    _load_builtins()
    found = dict(_BUILTIN)
    for name, cls in _plugins():
        if name.upper() in found:
            continue
        cls.name = cls.name or name
        found[name.upper()] = cls
    return found


def available_policies() -> list[str]:
    """Registered policy names, as registered (sorted)."""
    return sorted(cls.name for cls in _all().values())


def policy_class(name: str) -> type[Policy]:
    """The class registered under `name` (case-insensitive); InputError listing valid names."""
    classes = _all()
    try:
        return classes[name.upper()]
    except KeyError:
        raise InputError(
            f"unknown policy; valid policies: {', '.join(available_policies())}",
            field="policy",
            value=name,
        ) from None


def make_policy(name: str, params: Mapping[str, Any] | None = None) -> Policy:
    """A new policy instance; `params` are its constructor's keyword arguments (validated by it)."""
    cls = policy_class(name)
    try:
        return cls(**dict(params or {}))
    except TypeError as exc:
        raise InputError(f"bad parameters for policy {cls.name}: {exc}", field="policy_params",
                         value=dict(params or {})) from None
