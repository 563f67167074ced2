"""Length distributions (prompt and output tokens), by the name a scenario's ``kind`` gives.

One class per file in this package, registered with ``@register_length("name")``; the file is
found by module discovery, so adding a distribution is adding a file. Third parties register in
the ``exfairs.lengths`` entry-point group (``name = "module:Class"``). A distribution is a frozen
dataclass with the `LengthDist` methods and a ``from_table(t, ctx)`` classmethod that reads its
TOML fields (everything but ``kind``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

import numpy as np

from exfairs.scenario.registry import Registry

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table

__all__ = ["LengthDist", "available_lengths", "length_class", "read_length", "register_length"]


@runtime_checkable
class LengthDist(Protocol):
    """A distribution of token counts."""

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws (int64), each ≥ 1."""
        ...

    def mean_tokens(self) -> float:
        """Mean of the distribution, tokens."""
        ...

    def support(self, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """A discrete approximation (values, probabilities) for expectations."""
        ...


_REGISTRY: Registry[type[Any]] = Registry(__name__, "exfairs.lengths", "length distribution")
_L = TypeVar("_L", bound=type[Any])


def register_length(name: str) -> Callable[[_L], _L]:
    """Class decorator: register a length distribution under the ``kind`` value `name`."""
    return cast(Callable[[_L], _L], _REGISTRY.register(name))


def available_lengths() -> tuple[str, ...]:
    """Every registered ``kind``, sorted."""
    return _REGISTRY.names()


def length_class(name: str) -> type[Any] | None:
    """The class registered under `name`, or None."""
    return _REGISTRY.get(name)


def read_length(t: Table, ctx: ReadContext) -> LengthDist:
    """The distribution a TOML table describes (its ``kind`` picks the class)."""
    kind = t.string("kind", choices=available_lengths())
    cls = length_class(kind)
    assert cls is not None
    dist: LengthDist = cls.from_table(t, ctx)
    t.close()
    return dist
