"""Arrival processes, by the name a client's ``arrival.process`` gives.

One class per file in this package, registered with ``@register_arrival("name")``; the file is
found by module discovery, so adding a process is adding a file. Third parties register in the
``exfairs.arrivals`` entry-point group (``name = "module:Class"``). A process is a frozen dataclass
with the `ArrivalProcess` method and a ``from_table(t, ctx)`` classmethod that reads its TOML
fields (everything but ``process``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

import numpy as np

from exfairs.scenario.registry import Registry

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table

__all__ = ["ArrivalProcess", "arrival_class", "available_arrivals", "read_arrival",
           "register_arrival"]


@runtime_checkable
class ArrivalProcess(Protocol):
    """When a client's requests arrive."""

    def times(self, rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
        """Arrival times in [0, duration_s), seconds, increasing, at mean rate `rate_rps`."""
        ...


_REGISTRY: Registry[type[Any]] = Registry(__name__, "exfairs.arrivals", "arrival process")
_A = TypeVar("_A", bound=type[Any])


def register_arrival(name: str) -> Callable[[_A], _A]:
    """Class decorator: register an arrival process under the ``process`` value `name`."""
    return cast(Callable[[_A], _A], _REGISTRY.register(name))


def available_arrivals() -> tuple[str, ...]:
    """Every registered ``process``, sorted."""
    return _REGISTRY.names()


def arrival_class(name: str) -> type[Any] | None:
    """The class registered under `name`, or None."""
    return _REGISTRY.get(name)


def read_arrival(t: Table, ctx: ReadContext) -> ArrivalProcess:
    """The process a TOML table describes (its ``process`` picks the class)."""
    process = t.string("process", choices=available_arrivals())
    cls = arrival_class(process)
    assert cls is not None
    out: ArrivalProcess = cls.from_table(t, ctx)
    t.close()
    return out
