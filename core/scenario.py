"""Scenarios: who sends what, how often, under which SLOs (docs/design.md §6).

A scenario is a list of clients, each with a rate, an arrival process, prompt and output length
distributions, a weight and SLOs, plus the arrival horizon and the measured window. It is pure data:
`exfairs.workload.draw_workload` turns it into requests. Scenarios ship as TOML files
(``exfairs-sim list`` shows the bundled ones); the file format, field by field::

    name = "my-scenario"            # default: the file's stem
    description = "..."
    duration_s = 300                # arrivals are drawn in [0, duration_s)
    warmup_s = 30                   # metrics count arrivals in [warmup_s, duration_s − cooldown_s]
    cooldown_s = 30
    rate_basis = "capacity"         # "absolute" (default): rate_per_min × load factor;
                                    # "capacity": rates are proportions; the total rate is
                                    # load factor × the engine's estimated capacity
    load_factors = [0.8, 1.0, 1.2]  # the loads the scenario is meant for (sweeps may use them)

    [classes.short]                 # length distributions of a prompt class (short / long / mix);
    prompt = {kind = "lognormal", mean = 300, sigma = 1.1, cap = 1792}   # classes not given
    output = {kind = "lognormal", mean = 150, sigma = 0.8, cap = 256}    # use DEFAULT_CLASSES

    [[clients]]
    name = "alice"                  # letters, digits, '_', '-', '.'; unique
    prompt_class = "short"
    rate_per_min = 32
    weight = 1.0                    # fair-share weight (VTC, ExFairS)
    arrival = {process = "poisson"} # or {process = "gamma", burstiness = 4} (CV² of the gaps),
                                    # {process = "deterministic"}, or
                                    # {process = "trace", trace = "azure-conv", start_row = 0}
    prompt = {kind = "fixed", tokens = 512}      # optional; overrides the class's
    output = {kind = "uniform", low = 16, high = 256}
    slo = {e2e = {scale = 10}, ttft = {seconds = 2.0}}   # any of e2e / ttft / tpot

Length distributions (`kind`): ``fixed`` {tokens}, ``uniform`` {low, high} (inclusive),
``lognormal`` {mean, sigma, cap, min} (`mean` of the uncapped distribution in tokens, `sigma` of
its logarithm; draws are rounded and clipped to [min, cap]), ``empirical`` {trace, column =
"input" | "output", cap} (resampled from a trace column), ``mixture`` {components = [{weight, kind,
...}, ...]}. Trace references name a bundled trace (``azure-conv``, ``azure-code``) or a file,
relative to the scenario file; generic traces add `timestamp`, `input`, `output`, `time_unit`
and `format` keys naming their columns (`exfairs.traces.TraceColumns`).

An SLO given as ``{scale = K}`` is K × the request's own unloaded latency on the profile in use
(`LatencyModel`: unloaded_e2e_s / unloaded_ttft_s / unloaded_tpot_s), so one scenario is meaningful
on a GPU profile and on the CPU tiny model alike; ``{seconds = X}`` is absolute.

Every error is an `InputError` naming the file, the field path (``clients[2].slo.e2e.scale``) and
the value. Unknown keys, non-finite, negative and absurdly large values are rejected.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal, TypeVar

import numpy as np

from exfairs.errors import ConfigError, InputError
from exfairs.paths import read_input_bytes
from exfairs.records import SLO, ClientInfo, LatencyModel
from exfairs.traces import Trace, TraceColumns, read_trace

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PromptClass = Literal["short", "long", "mix"]
RateBasis = Literal["absolute", "capacity"]

PROMPT_CLASSES: tuple[str, ...] = ("short", "long", "mix")
RATE_BASES: tuple[str, ...] = ("absolute", "capacity")

# Bounds that reject typos and absurd inputs while allowing any sane experiment.
MAX_TOKENS = 10_000_000
MAX_SECONDS = 1e7  # ~116 days
MAX_RATE_PER_MIN = 1e6
MAX_SCALE = 1e6
MAX_WEIGHT = 1e6
MAX_BURSTINESS = 1e3
MAX_CLIENTS = 10_000
MAX_LOAD_FACTOR = 100.0

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_STD_NORMAL = NormalDist()


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range (TOML integers are unbounded here)
        return False


def _check_range(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    ok = _finite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"must be a finite number in {bracket}{low:g}, {high:g}]", field=name,
                          value=value)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"must be an integer in [{low}, {high}]", field=name, value=value)


# -- length distributions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FixedLength:
    """Every request has exactly `tokens` tokens."""

    tokens: int

    def __post_init__(self) -> None:
        _check_int("tokens", self.tokens, 1, MAX_TOKENS)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws (int64)."""
        return np.full(n, self.tokens, dtype=np.int64)

    def mean_tokens(self) -> float:
        """Mean of the distribution, tokens."""
        return float(self.tokens)

    def support(self, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """A discrete approximation (values, probabilities) for expectations."""
        return np.array([float(self.tokens)]), np.array([1.0])


@dataclass(frozen=True, slots=True)
class UniformLength:
    """Integers drawn uniformly from [low, high] (both included)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        _check_int("low", self.low, 1, MAX_TOKENS)
        _check_int("high", self.high, 1, MAX_TOKENS)
        if self.high < self.low:
            raise ConfigError(f"must be ≥ low ({self.low})", field="high", value=self.high)

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


@dataclass(frozen=True, slots=True)
class LognormalLength:
    """Lognormal lengths: `mean` is the mean of the *uncapped* distribution (tokens), `sigma` the
    standard deviation of its logarithm; draws are rounded and clipped to [`min_tokens`, `cap`]."""

    mean: float
    sigma: float
    cap: int
    min_tokens: int = 1

    def __post_init__(self) -> None:
        _check_range("mean", self.mean, 0.0, MAX_TOKENS, low_open=True)
        _check_range("sigma", self.sigma, 0.0, 10.0)
        _check_int("cap", self.cap, 1, MAX_TOKENS)
        _check_int("min", self.min_tokens, 1, MAX_TOKENS)
        if self.cap < self.min_tokens:
            raise ConfigError(f"must be ≥ min ({self.min_tokens})", field="cap", value=self.cap)

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


@dataclass(frozen=True, slots=True)
class EmpiricalLength:
    """Lengths resampled (with replacement) from a trace column, clipped to `cap` when set.

    `values` holds the column, read when the scenario is loaded, so a scenario never touches the
    file again and pickles whole."""

    trace: str
    column: Literal["input", "output"]
    values: tuple[int, ...] = field(repr=False)
    cap: int | None = None

    def __post_init__(self) -> None:
        if self.column not in ("input", "output"):
            raise ConfigError("must be 'input' or 'output'", field="column", value=self.column)
        if self.cap is not None:
            _check_int("cap", self.cap, 1, MAX_TOKENS)
        if not self.values:
            raise ConfigError("the trace column is empty", field="trace", value=self.trace)

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


@dataclass(frozen=True, slots=True)
class MixtureLength:
    """Each draw picks component k with probability ∝ weight_k, then draws from it."""

    components: tuple[tuple[float, LengthDist], ...]

    def __post_init__(self) -> None:
        if not self.components:
            raise ConfigError("needs at least one component", field="components", value=())
        for i, (w, _) in enumerate(self.components):
            _check_range(f"components[{i}].weight", w, 0.0, MAX_WEIGHT)
        if sum(w for w, _ in self.components) <= 0:
            raise ConfigError("at least one component weight must be > 0", field="components",
                              value=[w for w, _ in self.components])

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


LengthDist = FixedLength | UniformLength | LognormalLength | EmpiricalLength | MixtureLength


# -- arrival processes ------------------------------------------------------------------------


def _renewal(rng: np.random.Generator, duration_s: float, expected: float,
             gaps: Callable[[int], np.ndarray], start_s: float = 0.0) -> np.ndarray:
    # Draw inter-arrival gaps in chunks until the horizon is passed; chunks are sized so that one
    # usually suffices.
    chunk = int(expected + 6.0 * math.sqrt(expected + 1.0)) + 16
    parts: list[np.ndarray] = []
    t = start_s
    while t < duration_s:
        times = t + np.cumsum(gaps(chunk))
        parts.append(times)
        t = float(times[-1])
    if not parts:
        return np.empty(0)
    times = np.concatenate(parts)
    return times[times < duration_s]


@dataclass(frozen=True, slots=True)
class PoissonArrivals:
    """Exponential inter-arrival gaps (a Poisson process)."""

    def times(self, rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
        """Arrival times in [0, duration_s), seconds, increasing."""
        return _renewal(rng, duration_s, rate_rps * duration_s,
                        lambda n: rng.exponential(1.0 / rate_rps, size=n))


@dataclass(frozen=True, slots=True)
class GammaArrivals:
    """Gamma inter-arrival gaps with squared coefficient of variation `burstiness` (1 = Poisson,
    > 1 burstier, < 1 more regular): shape 1/burstiness, scale burstiness/rate."""

    burstiness: float

    def __post_init__(self) -> None:
        _check_range("burstiness", self.burstiness, 0.0, MAX_BURSTINESS, low_open=True)

    def times(self, rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
        """Arrival times in [0, duration_s), seconds, increasing."""
        k = 1.0 / self.burstiness
        theta = self.burstiness / rate_rps
        return _renewal(rng, duration_s, rate_rps * duration_s,
                        lambda n: rng.gamma(k, theta, size=n))


@dataclass(frozen=True, slots=True)
class DeterministicArrivals:
    """Evenly spaced arrivals, 1/rate apart, from a random phase in [0, 1/rate) so that
    deterministic clients do not all arrive together at 0."""

    def times(self, rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
        """Arrival times in [0, duration_s), seconds, increasing."""
        gap = 1.0 / rate_rps
        phase = float(rng.uniform(0.0, gap))
        n = max(0, math.ceil((duration_s - phase) / gap))
        times = phase + gap * np.arange(n, dtype=np.float64)
        return times[times < duration_s]


@dataclass(frozen=True, slots=True)
class TraceArrivals:
    """Replays a trace's arrival times from row `start_row` (by arrival), keeping their pattern
    (bursts, lulls) but time-scaled so that exactly round(rate × duration_s) arrivals fall in the
    horizon: the client's mean rate over the horizon is its rate. A trace with fewer rows than
    that repeats, one mean gap after its last arrival. `offsets_s` (seconds since `start_row`'s
    arrival) is read when the scenario is loaded. The replay draws nothing random."""

    trace: str
    offsets_s: tuple[float, ...] = field(repr=False)
    start_row: int = 0

    def __post_init__(self) -> None:
        _check_int("start_row", self.start_row, 0, 10**9)
        if len(self.offsets_s) < 2 or self.offsets_s[-1] <= 0:
            raise ConfigError("a replayed trace needs at least two distinct arrival times",
                              field="trace", value=self.trace)

    def _native(self, k: np.ndarray) -> np.ndarray:
        # Native time of the k-th arrival of the trace repeated end to end.
        base = np.asarray(self.offsets_s, dtype=np.float64)
        n = base.shape[0]
        period = base[-1] * n / (n - 1)  # span plus one mean gap
        return np.asarray(base[k % n] + (k // n) * period, dtype=np.float64)

    def times(self, rng: np.random.Generator, rate_rps: float, duration_s: float) -> np.ndarray:
        """Arrival times in [0, duration_s), seconds, increasing."""
        count = round(rate_rps * duration_s)
        if count < 1:
            return np.empty(0)
        k = np.arange(count + 1, dtype=np.int64)
        native = self._native(k)
        # Arrival number `count` lands exactly on the horizon, so `count` arrivals lie before it.
        times = native * (duration_s / native[-1])
        head = np.asarray(times[:count], dtype=np.float64)
        return head[head < duration_s]


ArrivalProcess = PoissonArrivals | GammaArrivals | DeterministicArrivals | TraceArrivals


# -- SLOs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SloTarget:
    """One SLO bound: absolute `seconds`, or `scale` × the request's unloaded latency."""

    seconds: float | None = None
    scale: float | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.scale is None):
            raise ConfigError("give exactly one of 'seconds' or 'scale'", field="(target)",
                              value={"seconds": self.seconds, "scale": self.scale})
        if self.seconds is not None:
            _check_range("seconds", self.seconds, 0.0, MAX_SECONDS, low_open=True)
        if self.scale is not None:
            _check_range("scale", self.scale, 0.0, MAX_SCALE, low_open=True)

    def resolve(self, unloaded_s: float) -> float:
        """The bound in seconds for a request whose unloaded latency is `unloaded_s`."""
        return float(self.seconds) if self.seconds is not None else float(self.scale) * unloaded_s  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class SloSpec:
    """A client's SLOs before resolution (None = not set): end-to-end, TTFT, TPOT."""

    e2e: SloTarget | None = None
    ttft: SloTarget | None = None
    tpot: SloTarget | None = None

    @property
    def needs_latency(self) -> bool:
        """True when some target is a scale factor (resolution needs a LatencyModel)."""
        return any(t is not None and t.scale is not None for t in (self.e2e, self.ttft, self.tpot))

    def resolve(self, prompt_tokens: int, output_tokens: int,
                latency: LatencyModel | None) -> SLO:
        """The request's SLO in seconds. Scale targets multiply the request's unloaded e2e,
        TTFT or TPOT under `latency` (required when any target is a scale)."""
        if self.needs_latency and latency is None:
            raise InputError("SLOs given as scale factors need a latency model (a profile)",
                             field="latency", value=None)

        def one(t: SloTarget | None, unloaded: Callable[[], float]) -> float | None:
            if t is None:
                return None
            return t.resolve(unloaded() if t.scale is not None else 0.0)

        lat = latency
        return SLO(
            e2e_s=one(self.e2e, lambda: lat.unloaded_e2e_s(prompt_tokens, output_tokens)),  # type: ignore[union-attr]
            ttft_s=one(self.ttft, lambda: lat.unloaded_ttft_s(prompt_tokens)),  # type: ignore[union-attr]
            tpot_s=one(self.tpot, lambda: lat.unloaded_tpot_s(prompt_tokens, output_tokens)),  # type: ignore[union-attr]
        )


# -- clients and scenarios --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One client of a scenario. `rate_per_min` is requests per minute (absolute basis) or the
    client's relative share of the total (capacity basis)."""

    name: str
    prompt_class: PromptClass
    rate_per_min: float
    arrival: ArrivalProcess
    prompt: LengthDist
    output: LengthDist
    weight: float = 1.0
    slo: SloSpec = field(default_factory=SloSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError("must be 1-64 letters, digits, '_', '-' or '.', starting with a "
                              "letter or digit", field="name", value=self.name)
        if self.prompt_class not in PROMPT_CLASSES:
            raise ConfigError(f"must be one of {', '.join(PROMPT_CLASSES)}", field="prompt_class",
                              value=self.prompt_class)
        _check_range("rate_per_min", self.rate_per_min, 0.0, MAX_RATE_PER_MIN, low_open=True)
        _check_range("weight", self.weight, 0.0, MAX_WEIGHT, low_open=True)

    def info(self) -> ClientInfo:
        """The client as engines, policies and metrics see it."""
        return ClientInfo(name=self.name, weight=float(self.weight),
                          prompt_class=self.prompt_class)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario: clients in canonical order, the arrival horizon and the measured window.

    Arrivals are drawn in [0, `duration_s`); metrics count arrivals in [`warmup_s`,
    `duration_s` − `cooldown_s`]. `load_factors` are the loads the scenario is meant to be run at
    (a hint for sweeps; `draw_workload` takes any load factor).
    """

    name: str
    description: str
    duration_s: float
    warmup_s: float
    cooldown_s: float
    rate_basis: RateBasis
    clients: tuple[ClientSpec, ...]
    load_factors: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("must be a non-empty string", field="name", value=self.name)
        _check_range("duration_s", self.duration_s, 0.0, MAX_SECONDS, low_open=True)
        _check_range("warmup_s", self.warmup_s, 0.0, MAX_SECONDS)
        _check_range("cooldown_s", self.cooldown_s, 0.0, MAX_SECONDS)
        if self.warmup_s + self.cooldown_s >= self.duration_s:
            raise ConfigError(f"warmup_s + cooldown_s must be < duration_s ({self.duration_s:g})",
                              field="warmup_s", value=self.warmup_s)
        if self.rate_basis not in RATE_BASES:
            raise ConfigError("must be 'absolute' or 'capacity'", field="rate_basis",
                              value=self.rate_basis)
        if not self.clients:
            raise ConfigError("a scenario needs at least one client", field="clients", value=[])
        if len(self.clients) > MAX_CLIENTS:
            raise ConfigError(f"at most {MAX_CLIENTS} clients", field="clients",
                              value=len(self.clients))
        seen: set[str] = set()
        for i, c in enumerate(self.clients):
            if c.name in seen:
                raise ConfigError("duplicate client name", field=f"clients[{i}].name",
                                  value=c.name)
            seen.add(c.name)
        if not self.load_factors:
            raise ConfigError("must list at least one load factor", field="load_factors",
                              value=[])
        for lf in self.load_factors:
            _check_range("load_factors", lf, 0.0, MAX_LOAD_FACTOR, low_open=True)

    def client_infos(self) -> tuple[ClientInfo, ...]:
        """The clients as engines, policies and metrics see them, in scenario order."""
        return tuple(c.info() for c in self.clients)

    @property
    def total_rate_per_min(self) -> float:
        """Sum of the clients' `rate_per_min` (absolute, or the capacity basis's total share)."""
        return float(sum(c.rate_per_min for c in self.clients))

    def measure_window_s(self) -> tuple[float, float]:
        """Arrivals counted in metrics: [warmup_s, duration_s − cooldown_s], seconds."""
        return (float(self.warmup_s), float(self.duration_s - self.cooldown_s))


# -- defaults for prompt classes --------------------------------------------------------------

#: ShareGPT-first-turn-like prompts capped at 1,792 tokens (the original study's cap).
SHORT_PROMPT = LognormalLength(mean=300.0, sigma=1.1, cap=1792, min_tokens=4)
#: LongBench-like prompts; the study capped them at 7,868 tokens, here 3,840 so that prompt + a
#: 256-token output fits the 4,096-token context of the default profile (a100-llama2-7b).
LONG_PROMPT = LognormalLength(mean=2800.0, sigma=0.45, cap=3840, min_tokens=1024)
#: Outputs up to 256 tokens.
DEFAULT_OUTPUT = LognormalLength(mean=150.0, sigma=0.8, cap=256, min_tokens=1)

#: The length distributions a client gets from its prompt class when neither the client nor the
#: file's ``[classes]`` table gives them: class -> (prompt, output).
DEFAULT_CLASSES: Mapping[str, tuple[LengthDist, LengthDist]] = {
    "short": (SHORT_PROMPT, DEFAULT_OUTPUT),
    "long": (LONG_PROMPT, DEFAULT_OUTPUT),
    "mix": (MixtureLength(((1.0, SHORT_PROMPT), (1.0, LONG_PROMPT))), DEFAULT_OUTPUT),
}


def scale_for_seconds(seconds: float, prompt: LengthDist, output: LengthDist,
                      latency: LatencyModel) -> float:
    """The SLO scale factor that gives a class's *mean request* (mean prompt and output lengths,
    rounded) a bound of `seconds`: seconds / its unloaded e2e latency under `latency`. This is how
    the study scenarios' second-valued SLOs were converted (see their descriptions)."""
    unloaded = latency.unloaded_e2e_s(round(prompt.mean_tokens()), round(output.mean_tokens()))
    return seconds / unloaded


# -- TOML reading -----------------------------------------------------------------------------

_MISSING: Any = object()
_T = TypeVar("_T")


class _Table:
    """A TOML table being read: tracks the field path, the keys used and the source file."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise InputError(f"must be a table, got {_type_name(data)}",
                             field=path or "(top level)", value=data, source=source)
        self.data: dict[str, Any] = data
        self.path = path
        self.source = source
        self._used: set[str] = set()

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str, value: Any) -> InputError:
        return InputError(message, field=self.field(key), value=value, source=self.source)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._used.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.error(key, "required field missing", None)
        return default

    def number(self, key: str, default: Any = _MISSING) -> Any:
        v = self.raw(key, default)
        if v is default and key not in self.data:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(key, f"must be a number, got {_type_name(v)}", v)
        if not _finite(v):
            raise self.error(key, "must be a finite number", v)
        return v

    def integer(self, key: str, default: Any = _MISSING) -> Any:
        v = self.number(key, default)
        if v is default and key not in self.data:
            return v
        if isinstance(v, float):
            if not v.is_integer():
                raise self.error(key, "must be a whole number", v)
            v = int(v)
        return v

    def string(self, key: str, default: Any = _MISSING, choices: tuple[str, ...] = ()) -> Any:
        v = self.raw(key, default)
        if v is default and key not in self.data:
            return v
        if not isinstance(v, str):
            raise self.error(key, f"must be a string, got {_type_name(v)}", v)
        if choices and v not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}", v)
        return v

    def table(self, key: str) -> _Table | None:
        v = self.raw(key, None)
        return None if v is None else _Table(v, self.field(key), self.source)

    def tables(self, key: str) -> list[_Table]:
        v = self.raw(key, [])
        if not isinstance(v, list):
            raise self.error(key, f"must be an array of tables, got {_type_name(v)}", v)
        return [_Table(item, f"{self.field(key)}[{i}]", self.source) for i, item in enumerate(v)]

    def close(self, allowed: tuple[str, ...] = ()) -> None:
        """Reject keys that were never read."""
        unknown = sorted(set(self.data) - self._used - set(allowed))
        if unknown:
            known = sorted(self._used | set(allowed))
            raise self.error(unknown[0], f"unknown key (expected one of {', '.join(known)})",
                             self.data[unknown[0]])

    def build(self, cls: Callable[..., _T], **kwargs: Any) -> _T:
        """`cls(**kwargs)`, with ConfigError turned into an InputError under this table's path."""
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            name = _TOML_NAMES.get(exc.field or "", exc.field or "")
            fld = self.path if name == "(target)" else self.field(name)
            raise InputError(exc.detail, field=fld or "(top level)", value=exc.value,
                             source=self.source) from None


# Dataclass field names that the file spells differently.
_TOML_NAMES = {"min_tokens": "min"}


def _type_name(v: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


class _Context:
    """What reading needs besides the document: the file's folder (for relative trace paths)."""

    def __init__(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir
        # A file referenced by several clients is read once per scenario.
        self.traces: dict[tuple[str, TraceColumns | None, str | None], Trace] = {}


def _trace_columns(t: _Table) -> tuple[TraceColumns | None, Literal["csv", "jsonl"] | None]:
    keys = ("timestamp", "input", "output", "time_unit", "on_zero_output")
    given = {k: t.string(k) for k in keys if t.has(k)}
    fmt = t.string("format", None, choices=("csv", "jsonl"))
    if not given:
        return None, fmt
    return t.build(TraceColumns, **given), fmt


def _load_trace(t: _Table, ctx: _Context) -> Trace:
    name = t.string("trace")
    cols, fmt = _trace_columns(t)
    key = (name, cols, fmt)
    if key in ctx.traces:
        return ctx.traces[key]
    try:
        trace = read_trace(name, columns=cols, fmt=fmt, base_dir=ctx.base_dir)
    except InputError as exc:
        # Name the scenario field that referenced the trace, and the trace's own complaint.
        where = f" ({exc.source}: field {exc.field!r} = {exc.value!r})" if exc.source else ""
        raise t.error("trace", exc.detail + where, name) from None
    ctx.traces[key] = trace
    return trace


def _length(t: _Table, ctx: _Context) -> LengthDist:
    kind = t.string("kind", choices=("fixed", "uniform", "lognormal", "empirical", "mixture"))
    dist: LengthDist
    if kind == "fixed":
        dist = t.build(FixedLength, tokens=t.integer("tokens"))
    elif kind == "uniform":
        dist = t.build(UniformLength, low=t.integer("low"), high=t.integer("high"))
    elif kind == "lognormal":
        dist = t.build(LognormalLength, mean=float(t.number("mean")),
                       sigma=float(t.number("sigma")),
                       cap=t.integer("cap"), min_tokens=t.integer("min", 1))
    elif kind == "empirical":
        column = t.string("column", choices=("input", "output"))
        cap = t.integer("cap", None)
        trace = _load_trace(t, ctx)
        arr = trace.input_tokens if column == "input" else trace.output_tokens
        dist = t.build(EmpiricalLength, trace=t.data["trace"], column=column,
                       values=tuple(int(x) for x in arr), cap=cap)
    else:
        comps: list[tuple[float, LengthDist]] = []
        for c in t.tables("components"):
            w = float(c.number("weight"))
            comps.append((w, _length(c, ctx)))
        dist = t.build(MixtureLength, components=tuple(comps))
    t.close()
    return dist


def _arrival(t: _Table, ctx: _Context) -> ArrivalProcess:
    process = t.string("process", choices=("poisson", "gamma", "deterministic", "trace"))
    out: ArrivalProcess
    if process == "poisson":
        out = PoissonArrivals()
    elif process == "gamma":
        out = t.build(GammaArrivals, burstiness=float(t.number("burstiness")))
    elif process == "deterministic":
        out = DeterministicArrivals()
    else:
        start = t.integer("start_row", 0)
        trace = _load_trace(t, ctx)
        if len(trace) < 2:
            raise t.error("trace", f"{trace.source} has {len(trace)} request(s); a replay needs "
                          "at least two arrivals", t.data["trace"])
        if not isinstance(start, int) or start < 0 or start >= len(trace) - 1:
            raise t.error("start_row", f"must be in [0, {len(trace) - 2}] for the trace "
                          f"{trace.source}", start)
        offs = trace.arrival_s[start:] - trace.arrival_s[start]
        out = t.build(TraceArrivals, trace=t.data["trace"],
                      offsets_s=tuple(float(x) for x in offs), start_row=start)
    t.close()
    return out


def _slo(t: _Table) -> SloSpec:
    targets: dict[str, SloTarget] = {}
    for kind in ("e2e", "ttft", "tpot"):
        sub = t.table(kind)
        if sub is None:
            continue
        secs = sub.number("seconds", None)
        scale = sub.number("scale", None)
        secs = None if secs is None else float(secs)
        scale = None if scale is None else float(scale)
        sub.close()
        targets[kind] = sub.build(SloTarget, seconds=secs, scale=scale)
    t.close()
    return SloSpec(**targets)


def _classes(doc: _Table, ctx: _Context) -> dict[str, tuple[LengthDist, LengthDist]]:
    out = dict(DEFAULT_CLASSES)
    t = doc.table("classes")
    if t is None:
        return out
    for name in list(t.data):
        if name not in PROMPT_CLASSES:
            raise t.error(name, "unknown prompt class (expected one of "
                          f"{', '.join(PROMPT_CLASSES)})", t.data[name])
        c = t.table(name)
        assert c is not None
        prompt_t, output_t = c.table("prompt"), c.table("output")
        c.close()
        default_p, default_o = out[name]
        out[name] = (_length(prompt_t, ctx) if prompt_t else default_p,
                     _length(output_t, ctx) if output_t else default_o)
    t.close()
    return out


def _client(t: _Table, classes: Mapping[str, tuple[LengthDist, LengthDist]],
            ctx: _Context) -> ClientSpec:
    name = t.string("name")
    pclass = t.string("prompt_class", "mix", choices=PROMPT_CLASSES)
    rate = float(t.number("rate_per_min"))
    weight = float(t.number("weight", 1.0))
    arrival_t = t.table("arrival")
    arrival = _arrival(arrival_t, ctx) if arrival_t else PoissonArrivals()
    prompt_t, output_t = t.table("prompt"), t.table("output")
    default_p, default_o = classes[pclass]
    prompt = _length(prompt_t, ctx) if prompt_t else default_p
    output = _length(output_t, ctx) if output_t else default_o
    slo_t = t.table("slo")
    slo = _slo(slo_t) if slo_t else SloSpec()
    t.close()
    return t.build(ClientSpec, name=name, prompt_class=pclass, rate_per_min=rate,
                   arrival=arrival, prompt=prompt, output=output, weight=weight, slo=slo)


def scenario_from_dict(doc: Mapping[str, Any], *, source: str = "<scenario>",
                       default_name: str = "scenario", base_dir: Path | None = None) -> Scenario:
    """Validate and build a scenario from a parsed TOML document (see the module docstring).

    `base_dir` resolves relative trace paths. InputError names `source`, the field and the value.
    """
    ctx = _Context(base_dir)
    top = _Table(dict(doc), "", source)
    name = top.string("name", default_name)
    description = top.string("description", "")
    duration = top.number("duration_s")
    warmup = top.number("warmup_s", 0.0)
    cooldown = top.number("cooldown_s", 0.0)
    basis = top.string("rate_basis", "absolute", choices=RATE_BASES)
    lf_raw = top.raw("load_factors", [1.0])
    if not isinstance(lf_raw, list):
        raise top.error("load_factors", "must be an array of numbers", lf_raw)
    lfs = _Table({f"load_factors[{i}]": v for i, v in enumerate(lf_raw)}, "", source)
    load_factors = tuple(float(lfs.number(k)) for k in list(lfs.data))
    classes = _classes(top, ctx)
    client_tables = top.tables("clients")
    if not client_tables:
        raise top.error("clients", "a scenario needs at least one [[clients]] table", [])
    clients = tuple(_client(c, classes, ctx) for c in client_tables)
    top.close()
    return top.build(Scenario, name=name, description=description, duration_s=float(duration),
                     warmup_s=float(warmup), cooldown_s=float(cooldown), rate_basis=basis,
                     clients=clients, load_factors=load_factors)


def scenario_from_toml(text: str, *, source: str = "<scenario>", default_name: str = "scenario",
                       base_dir: Path | None = None) -> Scenario:
    """Parse and validate a scenario from TOML text; InputError names `source`."""
    if not text.strip():
        raise InputError("empty scenario file", field="(file)", value=source, source=source)
    try:
        doc = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        # TOMLDecodeError is a ValueError; so is an integer literal too long to convert, and
        # absurdly deep nesting exhausts the parser's recursion.
        raise InputError(f"not valid TOML: {_one_line(exc)}", field="(file)", value=source,
                         source=source) from None
    return scenario_from_dict(doc, source=source, default_name=default_name, base_dir=base_dir)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _bundled_root() -> Any:
    return resources.files("exfairs").joinpath("data", "scenarios")


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    return sorted(p.name[:-5] for p in _bundled_root().iterdir() if p.name.endswith(".toml"))


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc}", field="(file)", value=source,
                         source=source) from None


def load_scenario(path_or_name: str | os.PathLike[str]) -> Scenario:
    """A scenario from a TOML file, or a bundled scenario by name (see `bundled_scenarios`).

    Raises InputError (naming the file, field and value) for a missing, unreadable, empty,
    non-UTF-8, non-TOML or invalid file.
    """
    source = os.fspath(path_or_name)
    p = Path(source)
    if p.suffix == ".toml" or p.exists() or os.sep in source:
        data = read_input_bytes(p, field="scenario", what="scenario file")
        return scenario_from_toml(_decode(data, source), source=source, default_name=p.stem,
                                  base_dir=p.parent)
    names = bundled_scenarios()
    if source not in names:
        raise InputError(f"no such scenario file or bundled scenario (bundled: {', '.join(names)})",
                         field="scenario", value=source)
    res = _bundled_root().joinpath(f"{source}.toml")
    label = f"<bundled scenario {source}>"
    return scenario_from_toml(_decode(res.read_bytes(), label), source=label, default_name=source)


def with_clients(scenario: Scenario, clients: tuple[ClientSpec, ...]) -> Scenario:
    """A copy of `scenario` with another client list (validated)."""
    return replace(scenario, clients=clients)
