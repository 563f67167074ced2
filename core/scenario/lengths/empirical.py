"""``kind = "empirical"``: lengths resampled from a trace column."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from exfairs.errors import ConfigError
from exfairs.scenario.checks import MAX_TOKENS, check_int
from exfairs.scenario.lengths import register_length

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table


@register_length("empirical")
@dataclass(frozen=True, slots=True)
class EmpiricalLength:
    """Lengths resampled (with replacement) from a trace column, clipped to `cap` when set.
    TOML: ``{kind = "empirical", trace, column = "input" | "output", cap}``.

    `values` holds the column, read when the scenario is loaded, so a scenario never touches the
    file again and pickles whole."""

    kind: ClassVar[str]
    trace: str
    column: Literal["input", "output"]
    values: tuple[int, ...] = field(repr=False)
    cap: int | None = None

    def __post_init__(self) -> None:
        if self.column not in ("input", "output"):
            raise ConfigError("must be 'input' or 'output'", field="column", value=self.column)
        if self.cap is not None:
            check_int("cap", self.cap, 1, MAX_TOKENS)
        if not self.values:
            raise ConfigError("the trace column is empty", field="trace", value=self.trace)

    @classmethod
    def from_table(cls, t: Table, ctx: ReadContext) -> EmpiricalLength:
        column = t.string("column", choices=("input", "output"))
        cap = t.integer("cap", None)
        trace = ctx.trace(t)
        arr = trace.input_tokens if column == "input" else trace.output_tokens
        return t.build(cls, trace=t.data["trace"], column=column,
                       values=tuple(int(x) for x in arr), cap=cap)

    def _array(self) -> np.ndarray:
        a = np.asarray(self.values, dtype=np.int64)
        return np.minimum(a, self.cap) if self.cap is not None else a

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws (int64)."""
        a = self._array()
        return a[rng.integers(0, a.shape[0], size=n)]

    def mean_tokens(self) -> float:
        """Mean of the (capped) column, tokens."""
        return float(self._array().mean())

    def support(self, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """A discrete approximation (values, probabilities) for expectations."""
        a = self._array().astype(np.float64)
        if a.shape[0] <= n:
            return a, np.full(a.shape[0], 1.0 / a.shape[0])
        q = (np.arange(n) + 0.5) / n
        return np.quantile(a, q, method="inverted_cdf"), np.full(n, 1.0 / n)
