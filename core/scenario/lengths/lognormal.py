"""``kind = "lognormal"``: rounded, clipped lognormal lengths."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from exfairs.errors import ConfigError
from exfairs.scenario.checks import MAX_TOKENS, check_int, check_range
from exfairs.scenario.lengths import register_length

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table

_STD_NORMAL = NormalDist()


@register_length("lognormal")
@dataclass(frozen=True, slots=True)
class LognormalLength:
    """Lognormal lengths: `mean` is the mean of the *uncapped* distribution (tokens), `sigma` the
    standard deviation of its logarithm; draws are rounded and clipped to [`min_tokens`, `cap`].
    TOML: ``{kind = "lognormal", mean, sigma, cap, min = 1}``."""

    kind: ClassVar[str]
    mean: float
    sigma: float
    cap: int
    min_tokens: int = 1

    def __post_init__(self) -> None:
        check_range("mean", self.mean, 0.0, MAX_TOKENS, low_open=True)
        check_range("sigma", self.sigma, 0.0, 10.0)
        check_int("cap", self.cap, 1, MAX_TOKENS)
        check_int("min", self.min_tokens, 1, MAX_TOKENS)
        if self.cap < self.min_tokens:
            raise ConfigError(f"must be ≥ min ({self.min_tokens})", field="cap", value=self.cap)

    @classmethod
    def from_table(cls, t: Table, ctx: ReadContext) -> LognormalLength:
        return t.build(cls, mean=float(t.number("mean")), sigma=float(t.number("sigma")),
                       cap=t.integer("cap"), min_tokens=t.integer("min", 1))

    @property
    def mu(self) -> float:
        """Mean of the logarithm: ln(mean) − σ²/2."""
        return math.log(self.mean) - self.sigma**2 / 2.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws (int64)."""
        x = rng.lognormal(self.mu, self.sigma, size=n)
        return np.clip(np.rint(x), self.min_tokens, self.cap).astype(np.int64)

    def mean_tokens(self) -> float:
        """Mean after clipping (rounding ignored), tokens: E[min(max(X, min), cap)]."""
        lo, hi, mu, s = float(self.min_tokens), float(self.cap), self.mu, self.sigma
        if s == 0.0:
            return min(max(self.mean, lo), hi)

        def partial(c: float) -> float:  # E[X · 1{X < c}] of the lognormal
            return math.exp(mu + s * s / 2) * _STD_NORMAL.cdf((math.log(c) - mu - s * s) / s)

        def cdf(c: float) -> float:
            return _STD_NORMAL.cdf((math.log(c) - mu) / s)

        return lo * cdf(lo) + partial(hi) - partial(lo) + hi * (1.0 - cdf(hi))

    def support(self, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """A discrete approximation (values, probabilities) for expectations: quantile midpoints."""
        z = np.array([_STD_NORMAL.inv_cdf((i + 0.5) / n) for i in range(n)])
        vals = np.clip(np.rint(np.exp(self.mu + self.sigma * z)), self.min_tokens, self.cap)
        return vals, np.full(n, 1.0 / n)
