"""``kind = "fixed"``: every request has the same length."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from exfairs.scenario.checks import MAX_TOKENS, check_int
from exfairs.scenario.lengths import register_length

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table


@register_length("fixed")
@dataclass(frozen=True, slots=True)
class FixedLength:
    """Every request has exactly `tokens` tokens. TOML: ``{kind = "fixed", tokens = N}``."""

    kind: ClassVar[str]
    tokens: int

    def __post_init__(self) -> None:
        check_int("tokens", self.tokens, 1, MAX_TOKENS)

    @classmethod
    def from_table(cls, t: Table, ctx: ReadContext) -> FixedLength:
        return t.build(cls, tokens=t.integer("tokens"))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws (int64)."""
        return np.full(n, self.tokens, dtype=np.int64)

    def mean_tokens(self) -> float:
        """Mean of the distribution, tokens."""
        return float(self.tokens)

    def support(self, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """A discrete approximation (values, probabilities) for expectations."""
        return np.array([float(self.tokens)]), np.array([1.0])
