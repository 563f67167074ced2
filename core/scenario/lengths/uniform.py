"""``kind = "uniform"``: integers uniform on an inclusive range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from exfairs.errors import ConfigError
from exfairs.scenario.checks import MAX_TOKENS, check_int
from exfairs.scenario.lengths import register_length

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table


@register_length("uniform")
@dataclass(frozen=True, slots=True)
class UniformLength:
    """Integers drawn uniformly from [low, high] (both included). TOML: ``{kind = "uniform",
    low = A, high = B}``."""

    kind: ClassVar[str]
    low: int
    high: int

    def __post_init__(self) -> None:
        check_int("low", self.low, 1, MAX_TOKENS)
        check_int("high", self.high, 1, MAX_TOKENS)
        if self.high < self.low:
            raise ConfigError(f"must be ≥ low ({self.low})", field="high", value=self.high)

    @classmethod
    def from_table(cls, t: Table, ctx: ReadContext) -> UniformLength:
        return t.build(cls, low=t.integer("low"), high=t.integer("high"))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws (int64)."""
        return rng.integers(self.low, self.high, size=n, endpoint=True, dtype=np.int64)

    def mean_tokens(self) -> float:
        """Mean of the distribution, tokens."""
        return (self.low + self.high) / 2.0

    def support(self, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """A discrete approximation (values, probabilities) for expectations."""
        k = self.high - self.low + 1
        if k <= n:
            return np.arange(self.low, self.high + 1, dtype=np.float64), np.full(k, 1.0 / k)
        q = (np.arange(n) + 0.5) / n
        return np.rint(self.low - 0.5 + q * k), np.full(n, 1.0 / n)
