"""Clients and scenarios: the validated data a scenario file describes (docs/design.md §6)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from exfairs.dataset_spec import DatasetSpec
from exfairs.datasets import client_pools
from exfairs.errors import ConfigError
from exfairs.records import ClientInfo, LatencyModel
from exfairs.scenario.arrivals import ArrivalProcess
from exfairs.scenario.checks import (
    MAX_CLIENTS,
    MAX_LOAD_FACTOR,
    MAX_RATE_PER_MIN,
    MAX_SECONDS,
    MAX_WEIGHT,
    check_range,
)
from exfairs.scenario.lengths import LengthDist
from exfairs.scenario.lengths.empirical import EmpiricalLength
from exfairs.scenario.lengths.lognormal import LognormalLength
from exfairs.scenario.lengths.mixture import MixtureLength
from exfairs.scenario.slos import SloSpec

PromptClass = Literal["short", "long", "mix"]
RateBasis = Literal["absolute", "capacity"]

PROMPT_CLASSES: tuple[str, ...] = ("short", "long", "mix")
RATE_BASES: tuple[str, ...] = ("absolute", "capacity")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


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
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ConfigError("must be 1-64 letters, digits, '_', '-' or '.', starting with a "
                              "letter or digit", field="name", value=self.name)
        if self.prompt_class not in PROMPT_CLASSES:
            raise ConfigError(f"must be one of {', '.join(PROMPT_CLASSES)}", field="prompt_class",
                              value=self.prompt_class)
        check_range("rate_per_min", self.rate_per_min, 0.0, MAX_RATE_PER_MIN, low_open=True)
        check_range("weight", self.weight, 0.0, MAX_WEIGHT, low_open=True)

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
    dataset: DatasetSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("must be a non-empty string", field="name", value=self.name)
        check_range("duration_s", self.duration_s, 0.0, MAX_SECONDS, low_open=True)
        check_range("warmup_s", self.warmup_s, 0.0, MAX_SECONDS)
        check_range("cooldown_s", self.cooldown_s, 0.0, MAX_SECONDS)
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
            check_range("load_factors", lf, 0.0, MAX_LOAD_FACTOR, low_open=True)

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


# Defaults for prompt classes.

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


def dataset_lengths(dataset: DatasetSpec, clients: tuple[ClientSpec, ...]
                    ) -> tuple[ClientSpec, ...]:
    """`clients` with the length distributions of their dataset rows (prompts, and outputs
    unless ``output = "client"``), so that capacity estimates see the dataset's request mix."""
    data = dataset.dataset
    pools = client_pools(data, [c.name for c in clients])
    label = f"dataset:{dataset.path}"
    out = []
    for c, pool in zip(clients, pools, strict=True):
        prompt = EmpiricalLength(trace=label, column="input",
                                 values=tuple(int(x) for x in data.prompt_tokens[pool]))
        output = c.output
        if dataset.output == "dataset" and data.output_tokens is not None:
            output = EmpiricalLength(trace=label, column="output",
                                     values=tuple(int(x) for x in data.output_tokens[pool]))
        out.append(replace(c, prompt=prompt, output=output))
    return tuple(out)


def with_clients(scenario: Scenario, clients: tuple[ClientSpec, ...]) -> Scenario:
    """A copy of `scenario` with another client list (validated; with a dataset, the clients'
    lengths are those of their dataset rows)."""
    if scenario.dataset is not None:
        clients = dataset_lengths(scenario.dataset, clients)
    return replace(scenario, clients=clients)
