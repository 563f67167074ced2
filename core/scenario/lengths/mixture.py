"""``kind = "mixture"``: a weighted mixture of other length distributions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from exfairs.errors import ConfigError
from exfairs.scenario.checks import MAX_WEIGHT, check_range
from exfairs.scenario.lengths import LengthDist, read_length, register_length

if TYPE_CHECKING:
    from exfairs.scenario.table import ReadContext, Table


@register_length("mixture")
@dataclass(frozen=True, slots=True)
class MixtureLength:
    """Each draw picks component k with probability ∝ weight_k, then draws from it.
    TOML: ``{kind = "mixture", components = [{weight, kind, ...}, ...]}``."""

    kind: ClassVar[str]
    components: tuple[tuple[float, LengthDist], ...]

    def __post_init__(self) -> None:
        if not self.components:
            raise ConfigError("needs at least one component", field="components", value=())
        for i, (w, _) in enumerate(self.components):
            check_range(f"components[{i}].weight", w, 0.0, MAX_WEIGHT)
        if sum(w for w, _ in self.components) <= 0:
            raise ConfigError("at least one component weight must be > 0", field="components",
                              value=[w for w, _ in self.components])

    @classmethod
    def from_table(cls, t: Table, ctx: ReadContext) -> MixtureLength:
        comps: list[tuple[float, LengthDist]] = []
        for c in t.tables("components"):
            w = float(c.number("weight"))
            comps.append((w, read_length(c, ctx)))
        return t.build(cls, components=tuple(comps))

    def _probs(self) -> np.ndarray:
        w = np.array([w for w, _ in self.components], dtype=np.float64)
        return np.asarray(w / w.sum(), dtype=np.float64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws (int64). Every component draws `n` values so a component's draws do not
        depend on which draws the others won."""
        which = rng.choice(len(self.components), size=n, p=self._probs())
        out = np.empty(n, dtype=np.int64)
        for k, (_, dist) in enumerate(self.components):
            draws = dist.sample(rng, n)
            mask = which == k
            out[mask] = draws[mask]
        return out

    def mean_tokens(self) -> float:
        """Mean of the mixture, tokens."""
        return float(sum(p * d.mean_tokens()
                         for p, (_, d) in zip(self._probs(), self.components, strict=True)))

    def support(self, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """A discrete approximation (values, probabilities) for expectations."""
        vals, probs = [], []
        for p, (_, d) in zip(self._probs(), self.components, strict=True):
            v, w = d.support(n)
            vals.append(v)
            probs.append(w * p)
        return np.concatenate(vals), np.concatenate(probs)
