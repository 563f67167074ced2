"""Name -> class registries for scenario components (length distributions, arrival processes).

A registry works like the policy registry (`exfairs.policies.registry`): every public module of
its package is imported on first lookup, so a component is added by adding one file whose class
carries the registry's decorator; third parties register through an entry-point group
(``name = "module:Class"``). Lookups are case-sensitive: the names are TOML values.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

_log = logging.getLogger(__name__)

C = TypeVar("C", bound=type)


class Registry(Generic[C]):
    """Classes by name for one kind of component.

    `package` is the package whose modules are discovered, `group` the entry-point group, `what`
    the component's name in messages. A registered class gets its name as the class attribute
    `kind`.
    """

    def __init__(self, package: str, group: str, what: str) -> None:
        self.package = package
        self.group = group
        self.what = what
        self._classes: dict[str, C] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[C], C]:
        """Class decorator: register the class under `name`."""

        def deco(cls: C) -> C:
            known = self._classes.get(name)
            if known is not None and known is not cls:
                raise ValueError(f"{self.what} name {name!r} is already registered")
            cls.kind = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        # Modules in name order, so that a clash is reported the same way every time; modules
        # whose name starts with "_" are private helpers.
        pkg = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        for ep in entry_points(group=self.group):
            if ep.name in self._classes:
                continue
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plug-in must not break the built-ins
                _log.warning("could not load %s plug-in %s: %s", self.what, ep.name, exc)
                continue
            if isinstance(cls, type):
                setattr(cls, "kind", ep.name)  # noqa: B010 - plug-in classes are untyped
                self._classes[ep.name] = cls  # type: ignore[assignment]

    def names(self) -> tuple[str, ...]:
        """Every registered name, sorted."""
        self._load()
        return tuple(sorted(self._classes))

    def get(self, name: str) -> C | None:
        """The class registered under `name`, or None."""
        self._load()
        return self._classes.get(name)
