"""The metrics' parameters (QoE timeline, VTC service weights) and result types, in the units
the `exfairs.metrics` docstring defines."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from exfairs.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def _f(x: float | np.floating[Any]) -> float:
    # One NaN object for every undefined value: dataclass equality compares fields as tuples, which
    # treat identical objects as equal, so records and metrics that hold NaN still round-trip equal.
    x = float(x)
    return math.nan if math.isnan(x) else x


# ----------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True, slots=True)
class QoEParams:
    """The expected token timeline of the Andes QoE metric.

    `expected_ttft_s` is the first-token target for requests whose SLO sets no TTFT (a request's
    own TTFT SLO takes precedence); `tokens_per_s` is the user's reading speed, the pace at which
    the user expects tokens after the first (Andes uses a typical reading speed of a few tokens per
    second; delivering faster than this earns nothing, the surplus is buffered).
    """

    expected_ttft_s: float = 1.0
    tokens_per_s: float = 4.8

    def __post_init__(self) -> None:
        if not (self.expected_ttft_s >= 0 and math.isfinite(self.expected_ttft_s)):
            raise ConfigError("must be a finite number >= 0 (seconds)", field="expected_ttft_s",
                              value=self.expected_ttft_s)
        if not (self.tokens_per_s > 0 and math.isfinite(self.tokens_per_s)):
            raise ConfigError("must be a finite number > 0 (tokens per second)",
                              field="tokens_per_s", value=self.tokens_per_s)


@dataclass(frozen=True, slots=True)
class ServiceWeights:
    """VTC's service cost: `prompt` per prompt token and `output` per generated token (Sheng et
    al. 2024 use w_p = 1, w_q = 2)."""

    prompt: float = 1.0
    output: float = 2.0

    def __post_init__(self) -> None:
        for name in ("prompt", "output"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError("service weight must be a finite number >= 0", field=name,
                                  value=v)


DEFAULT_QOE = QoEParams()
DEFAULT_SERVICE_WEIGHTS = ServiceWeights()


# ----------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True, slots=True)
class RequestMetrics:
    """Per-request metrics in seconds (NaN where undefined, e.g. the TPOT of a one-token reply)."""

    request_id: int
    client: str
    ttft_s: float
    tpot_s: float
    e2e_s: float
    queue_s: float
    slo_met: bool
    qoe: float


@dataclass(frozen=True, slots=True)
class AggregateMetrics:
    """Aggregates over a set of counted requests (one client, or all). Latencies in ms.

    Counts: `requests` arrived in the window; `completed` served all their tokens; `slo_met` met
    every SLO; `violations` = requests − slo_met (so unfinished, failed, timed-out and aborted ones
    are violations); `failed`, `timed_out`, `aborted`, `rejected` (refused early by the admission
    option, issue 15) count those outcomes; `unfinished` counts
    requests still without a final outcome (none in a well-formed run). Token totals count completed
    requests, as `vllm bench serve` does.
    """

    requests: int
    completed: int
    slo_met: int
    violations: int
    failed: int
    timed_out: int
    aborted: int
    preemptions: int
    total_input_tokens: int
    total_output_tokens: int
    duration_s: float
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    request_goodput: float
    slo_attainment: float
    violation_rate: float
    mean_ttft_ms: float
    median_ttft_ms: float
    p90_ttft_ms: float
    p99_ttft_ms: float
    std_ttft_ms: float
    mean_tpot_ms: float
    median_tpot_ms: float
    p90_tpot_ms: float
    p99_tpot_ms: float
    std_tpot_ms: float
    mean_itl_ms: float
    median_itl_ms: float
    p90_itl_ms: float
    p99_itl_ms: float
    std_itl_ms: float
    mean_e2el_ms: float
    median_e2el_ms: float
    p90_e2el_ms: float
    p99_e2el_ms: float
    std_e2el_ms: float
    mean_queue_ms: float
    median_queue_ms: float
    p90_queue_ms: float
    p99_queue_ms: float
    std_queue_ms: float
    mean_qoe: float
    median_qoe: float
    p10_qoe: float
    min_qoe: float
    # Last and defaulted so results written before issue 15 (no admission, so none rejected) read.
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class ClientMetrics:
    """One client's aggregates and service.

    Service is VTC's weighted token count (w_p·prompt tokens whose prefill completed + w_q·generated
    tokens) of the client's counted requests, divided by the client's weight; `weighted_demand` is
    the same for every token the requests asked for; `fair_share` is the client's weighted max-min
    fair share of the service actually delivered to all clients (`max_min_fair_share`). These
    three are totals to completion. `normalized_service` and `backlogged_service_share` compare
    the service the client received *while backlogged* with the other backlogged clients' (module
    docstring; NaN when it was never backlogged together with another client).
    """

    client: str
    weight: float
    metrics: AggregateMetrics
    weighted_service: float
    weighted_demand: float
    fair_share: float
    normalized_service: float
    backlogged_service_share: float = math.nan


@dataclass(frozen=True, slots=True)
class FairnessMetrics:
    """Fairness across clients (see the module docstring for who is included in each index).

    `max_service_gap` is in weighted tokens (divided by client weight) and names the pair that
    reached it (empty strings when no two clients were ever backlogged together); backlog means
    queued requests (module docstring). `jain_service` is over service while backlogged, in
    `service_windows` windows of `service_window_s` seconds (1.0 when there were none).
    """

    jain_attainment: float
    jain_qoe: float
    jain_service: float
    worst_client: str
    worst_client_attainment: float
    max_service_gap: float
    service_gap_clients: tuple[str, str]
    service_window_s: float = math.nan
    service_windows: int = 0


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """All metrics of one run over the window ``[window_start_s, window_end_s)`` of arrivals,
    with the QoE and service parameters they were computed with."""

    window_start_s: float
    window_end_s: float
    overall: AggregateMetrics
    per_client: tuple[ClientMetrics, ...]
    fairness: FairnessMetrics
    qoe_params: QoEParams = DEFAULT_QOE
    service_weights: ServiceWeights = DEFAULT_SERVICE_WEIGHTS

    def client(self, name: str) -> ClientMetrics:
        """The metrics of client `name` (KeyError if it is not in this run)."""
        for c in self.per_client:
            if c.client == name:
                return c
        raise KeyError(name)


# ----------------------------------------------------------------------------------------------
