"""Run metrics from per-request records (docs/design.md §7): latency, SLO, throughput, QoE,
fairness.

Everything here is a pure function of `RequestRecord`s and the clients, so the simulator and the
live backend are measured by the same code. Latency keys follow `vllm bench serve`
(``mean_ttft_ms``, ``p99_e2el_ms``, ``request_goodput`` ...).

Definitions (all times in run-clock seconds, aggregates in milliseconds as in vLLM):

* **Counted requests** — those that *arrived* in the measured window ``[start, end)``. Every
  counted request is in every denominator, whatever its outcome: failed, timed-out, aborted and
  unfinished requests are SLO violations, never dropped.
* **Per request** — ``ttft = first token − arrival``; ``tpot = (e2e − ttft) / (n − 1)`` with
  ``n`` generated tokens (undefined for n < 2); ``itl`` = gaps between consecutive token times;
  ``e2e = finish − arrival``; ``queue = dispatch − arrival``. TTFT is taken over every request that
  got a first token (an aborted request still experienced it); TPOT, ITL and e2e over completed
  requests only, as `vllm bench serve` does; queue over dispatched requests.
* **SLO met** — outcome ``FINISHED`` and every SLO of the request holds (re-checked from the
  times; a backend that disagrees is logged and the stricter verdict wins).
* **Span** (``duration_s``) — from the window start to the later of the window end and the last
  token of any counted request: the time it took to serve what arrived in the window. Throughputs
  are over this span: ``request_throughput`` = completed requests / span, ``output_throughput`` =
  output tokens of completed requests / span, ``total_token_throughput`` = (prompt + output) tokens
  of completed requests / span, ``request_goodput`` = requests that met their SLO / span
  (DistServe's goodput; ``vllm bench serve --goodput``). Per-client throughputs use the same span,
  so they add up to the overall ones.
* **QoE** — after Andes (Liu et al. 2024, "Andes: Defining and Enhancing Quality-of-Experience in
  LLM-Based Text Streaming Services"), see `request_qoe`.
* **Fairness** — Jain's index ``(Σx)² / (n·Σx²)`` (Jain, Chiu and Hawe 1984) over per-client SLO
  attainment and per-client mean QoE, with no min-max normalisation; the worst client's
  attainment; service while backlogged and VTC's maximum service gap (Sheng et al., OSDI 2024).
  Clients with no counted request are left out of the attainment and QoE indices (they have no
  experience to be fair about).
* **Backlog** (for service fairness, VTC's definition): a client is backlogged while it has a
  request *queued*: arrived and not yet given its first token (a request that never got one stays
  queued until it failed or timed out, or to the end of the run). Requests that are running do
  not make their client backlogged: a client whose requests all run is getting what it asks for.
  (A preempted request waits again, but records do not say when; it is not counted.) The service
  metrics take every record, whenever it arrived, from the window start on: counting only the
  window's arrivals would leave out the service of a client's older backlog.
* **Service while backlogged** (`backlogged_service`): the measured window is cut into windows of
  `service_window_s` (default 10 s); in each, the clients backlogged throughout it are compared
  on the weighted service (VTC's cost, divided by the client's weight) they received in it.
  ``jain_service`` is the mean over windows with at least two such clients of Jain's index over
  their service (1.0 when there is no such window: as `max_service_gap` is 0 then, no client
  waited while another was served; ``service_windows`` says how many windows were compared).
  A client's ``backlogged_service_share`` is its service over the sum of the compared clients',
  summed over those windows, and ``normalized_service`` its service over the mean of the compared
  clients' (1 = as much as the average backlogged client; both NaN for a client never compared).
  Service counted per request to completion cannot show unfairness (it equals the demand once
  everything finishes), which is why these are windowed.

Undefined values (a percentile of nothing, a rate over an empty window) are NaN, never 0.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from exfairs.errors import ConfigError, InputError
from exfairs.records import ClientInfo, Outcome, RequestRecord, slo_met

_log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


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
# Building blocks


def jain_index(values: Sequence[float] | FloatArray) -> float:
    """Jain's fairness index ``(Σx)² / (n·Σx²)`` of non-negative values, NaN ones left out.

    1 when all values are equal, 1/n when one value holds everything. NaN for no values; 1.0 when
    all values are zero (they are equal). No min-max normalisation: the index is scale invariant.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan
    if np.any(x < 0):
        raise ValueError("Jain's index is defined for non-negative values")
    sq = float(np.sum(x * x))
    if sq == 0.0:
        return 1.0
    return _f(float(np.sum(x)) ** 2 / (x.size * sq))


def max_min_fair_share(demands: Sequence[float] | FloatArray,
                       weights: Sequence[float] | FloatArray, capacity: float) -> FloatArray:
    """Weighted max-min fair allocation of `capacity` by water-filling.

    Each client gets ``min(demand_i, λ·weight_i)`` with the level λ chosen so the allocations sum
    to ``min(capacity, Σ demand)``: clients that want less than their weighted share get all they
    want, and what they leave is split among the others in proportion to weight.
    """
    d = np.asarray(demands, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if d.shape != w.shape:
        raise ValueError("demands and weights must have the same length")
    if np.any(d < 0) or np.any(w <= 0) or capacity < 0:
        raise ValueError("demands and capacity must be >= 0 and weights > 0")
    if capacity >= d.sum():
        return d.copy()
    out = np.zeros_like(d)
    order = np.argsort(d / w, kind="stable")  # clients saturate in order of demand per weight
    remaining = float(capacity)
    weight_left = float(w.sum())
    for pos, i in enumerate(order):
        level = remaining / weight_left
        if d[i] <= level * w[i]:
            out[i] = d[i]
            remaining -= d[i]
            weight_left -= w[i]
        else:
            rest = order[pos:]
            out[rest] = level * w[rest]
            break
    return out


def request_qoe(record: RequestRecord, params: QoEParams = DEFAULT_QOE) -> float:
    """Andes-style QoE of one request, in [0, 1].

    Expected timeline: token i (0-based) is expected at ``e_i = arrival + T + i/r``, where T is the
    request's TTFT SLO (else `params.expected_ttft_s`) and r the reading speed. Tokens delivered
    early are buffered: the user digests token i at ``d_i = max(a_i, d_{i−1} + 1/r)`` (a_i its
    emission time), so the lag ``δ_i = d_i − e_i = max_{j≤i}(a_j − e_j)`` never shrinks. With E(t)
    and D(t) the expected and digested token counts, the delay area ∫(E − D)⁺ dt equals Σ max(0,
    δ_i), and the expected area is ∫E dt = Σ (H − e_i) up to the horizon H = max(e_last, d_last) +
    1/r (the time the last token has been read). QoE = 1 − delay area / expected area: 1 on or ahead
    of the expected timeline, lower with a late first token or a pace slower than reading.

    Unfinished requests (failed, timed out, aborted) are scored on the tokens they delivered; one
    that delivered no token scores 0. Their SLO verdict, not the QoE, carries the penalty for what
    never came.
    """
    times = np.asarray(record.token_times_s, dtype=np.float64)
    if times.size == 0:
        return 0.0
    target = record.slo.ttft_s if record.slo.ttft_s is not None else params.expected_ttft_s
    pace = 1.0 / params.tokens_per_s
    expected = record.arrival_s + target + pace * np.arange(times.size, dtype=np.float64)
    lag = np.maximum.accumulate(times - expected)
    horizon = max(float(expected[-1]), float(expected[-1] + lag[-1])) + pace
    delay_area = float(np.sum(np.maximum(lag, 0.0)))
    expected_area = float(np.sum(horizon - expected))
    return _f(min(1.0, max(0.0, 1.0 - delay_area / expected_area)))


def record_slo_met(record: RequestRecord) -> bool:
    """True iff the request finished and met every SLO it has (docs/design.md §7)."""
    if record.outcome is not Outcome.FINISHED:
        return False
    if record.first_token_s is None or record.finish_s is None:
        _log.warning("request %d is FINISHED without first-token/finish times; counted as a "
                     "violation", record.request_id)
        return False
    met = slo_met(record.slo, record.arrival_s, record.first_token_s, record.finish_s,
                  record.generated_tokens)
    if not met:
        _log.warning("request %d is FINISHED but its times miss its SLO; counted as a violation",
                     record.request_id)
    return met


def request_metrics(record: RequestRecord, qoe: QoEParams = DEFAULT_QOE) -> RequestMetrics:
    """Per-request metrics of `record` (seconds; NaN where undefined)."""

    def nan_if_none(x: float | None) -> float:
        return math.nan if x is None else _f(x)

    return RequestMetrics(
        request_id=record.request_id, client=record.client,
        ttft_s=nan_if_none(record.ttft_s), tpot_s=nan_if_none(record.tpot_s),
        e2e_s=nan_if_none(record.e2e_s), queue_s=nan_if_none(record.queue_s),
        slo_met=record_slo_met(record), qoe=request_qoe(record, qoe),
    )


def in_window(records: Sequence[RequestRecord], window: tuple[float, float] | None
              ) -> list[RequestRecord]:
    """The records whose arrival lies in ``[start, end)`` (all of them when `window` is None)."""
    if window is None:
        return list(records)
    start, end = window
    return [r for r in records if start <= r.arrival_s < end]


def _last_time(r: RequestRecord) -> float:
    candidates = [r.arrival_s]
    if r.token_times_s:
        candidates.append(r.token_times_s[-1])
    for t in (r.first_token_s, r.finish_s, r.dispatch_s):
        if t is not None:
            candidates.append(t)
    return max(candidates)


def served_service(record: RequestRecord, weights: ServiceWeights = DEFAULT_SERVICE_WEIGHTS
                   ) -> float:
    """VTC weighted tokens served to `record` (prompt counted once its prefill completed)."""
    prompt = record.prompt_tokens if record.first_token_s is not None else 0
    return weights.prompt * prompt + weights.output * record.generated_tokens


def demanded_service(record: RequestRecord, weights: ServiceWeights = DEFAULT_SERVICE_WEIGHTS
                     ) -> float:
    """VTC weighted tokens `record` asked for."""
    return weights.prompt * record.prompt_tokens + weights.output * record.output_tokens


# ----------------------------------------------------------------------------------------------
# Aggregation


def _stats(values_s: FloatArray, prefix: str) -> dict[str, float]:
    # vLLM's bench serve: np.mean/np.median/np.std (population)/np.percentile, reported in ms.
    v = values_s[~np.isnan(values_s)] * 1000.0
    if v.size == 0:
        return {f"{k}_{prefix}_ms": math.nan for k in ("mean", "median", "p90", "p99", "std")}
    return {
        f"mean_{prefix}_ms": _f(np.mean(v)),
        f"median_{prefix}_ms": _f(np.median(v)),
        f"p90_{prefix}_ms": _f(np.percentile(v, 90)),
        f"p99_{prefix}_ms": _f(np.percentile(v, 99)),
        f"std_{prefix}_ms": _f(np.std(v)),
    }


@dataclass(frozen=True, slots=True)
class _PerRequest:
    """The counted records' per-request values as arrays, one entry per record in order (seconds;
    NaN where undefined), built once and indexed per client by `_aggregate`.

    `itl_s` holds the inter-token gaps of every record with two tokens or more, record by record,
    and `itl_owner` the position of the record each gap belongs to."""

    ttft_s: FloatArray
    tpot_s: FloatArray
    e2e_s: FloatArray
    queue_s: FloatArray
    qoe: FloatArray
    slo_met: BoolArray
    completed: BoolArray
    outcome: npt.NDArray[np.int64]
    prompt_tokens: npt.NDArray[np.int64]
    generated_tokens: npt.NDArray[np.int64]
    preemptions: npt.NDArray[np.int64]
    itl_s: FloatArray
    itl_owner: npt.NDArray[np.int64]


_OUTCOMES = tuple(Outcome)
_OUTCOME_CODE = {o: k for k, o in enumerate(_OUTCOMES)}


def _none_nan(x: float | None) -> float:
    return math.nan if x is None else _f(x)


def _per_request(records: Sequence[RequestRecord], params: QoEParams) -> _PerRequest:
    """`_PerRequest` of `records`: the values `request_metrics` gives record by record, and the
    inter-token gaps (`_PerRequest.itl_s`), from one pass over the token times."""
    n = len(records)
    lens = np.fromiter((len(r.token_times_s) for r in records), dtype=np.int64, count=n)
    flat = np.fromiter(chain.from_iterable(r.token_times_s for r in records), dtype=np.float64,
                       count=int(lens.sum()))
    ends = np.cumsum(lens)
    starts = ends - lens
    completed = np.fromiter((r.outcome.completed for r in records), dtype=bool, count=n)
    # Gaps across record boundaries are dropped: every kept gap is the same subtraction of the
    # same two floats as a per-record np.diff.
    if flat.size > 1:
        gaps = np.diff(flat)
        owner_tok = np.repeat(np.arange(n, dtype=np.int64), lens)
        keep = owner_tok[1:] == owner_tok[:-1]
        itl, itl_owner = gaps[keep], owner_tok[1:][keep]
    else:
        itl, itl_owner = np.zeros(0), np.zeros(0, dtype=np.int64)
    return _PerRequest(
        ttft_s=np.asarray([_none_nan(r.ttft_s) for r in records], dtype=np.float64),
        tpot_s=np.asarray([_none_nan(r.tpot_s) for r in records], dtype=np.float64),
        e2e_s=np.asarray([_none_nan(r.e2e_s) for r in records], dtype=np.float64),
        queue_s=np.asarray([_none_nan(r.queue_s) for r in records], dtype=np.float64),
        qoe=_qoe_batch(records, flat, starts, lens, params),
        slo_met=np.fromiter((record_slo_met(r) for r in records), dtype=bool, count=n),
        completed=completed,
        outcome=np.fromiter((_OUTCOME_CODE[r.outcome] for r in records), dtype=np.int64,
                            count=n),
        prompt_tokens=np.fromiter((r.prompt_tokens for r in records), dtype=np.int64, count=n),
        generated_tokens=np.fromiter((r.generated_tokens for r in records), dtype=np.int64,
                                     count=n),
        preemptions=np.fromiter((r.preemptions for r in records), dtype=np.int64, count=n),
        itl_s=itl, itl_owner=itl_owner,
    )


def _qoe_batch(records: Sequence[RequestRecord], flat: FloatArray, starts: npt.NDArray[np.int64],
               lens: npt.NDArray[np.int64], params: QoEParams) -> FloatArray:
    """`request_qoe` of every record, bit for bit, from the records' concatenated token times
    `flat` (record k's are ``flat[starts[k]:starts[k] + lens[k]]``).

    The element-wise parts (expected times, lags) run once over all tokens; only the running
    maximum and the two sums stay per record, on views, because NumPy's pairwise summation of a
    record's values depends on how many there are (a padded or segmented sum would round
    differently)."""
    n = len(records)
    out = np.zeros(n)
    if flat.size == 0:
        return out
    pace = 1.0 / params.tokens_per_s
    base = np.fromiter(
        (r.arrival_s + (r.slo.ttft_s if r.slo.ttft_s is not None else params.expected_ttft_s)
         for r in records), dtype=np.float64, count=n)
    # Token i of its record: position in `flat` minus the record's start.
    local = np.arange(flat.size, dtype=np.int64) - np.repeat(starts, lens)
    expected = np.repeat(base, lens) + pace * local.astype(np.float64)
    late = flat - expected
    add = np.add.reduce
    for k in np.flatnonzero(lens).tolist():
        s = int(starts[k])
        e = s + int(lens[k])
        lag = np.maximum.accumulate(late[s:e])
        exp_k = expected[s:e]
        last = float(exp_k[-1])
        horizon = max(last, last + float(lag[-1])) + pace
        # np.add.reduce is what np.sum calls (the same pairwise sum), without its wrapper.
        delay_area = float(add(np.maximum(lag, 0.0)))
        expected_area = float(add(horizon - exp_k))
        out[k] = min(1.0, max(0.0, 1.0 - delay_area / expected_area))
    return out


def _aggregate(pr: _PerRequest, idx: npt.NDArray[np.int64], duration_s: float
               ) -> AggregateMetrics:
    """Aggregates over the counted records at positions `idx` (increasing) of `pr`."""
    n = int(idx.size)
    done = pr.completed[idx]
    done_idx = idx[done]
    met = int(np.count_nonzero(pr.slo_met[idx]))
    in_tok = int(pr.prompt_tokens[done_idx].sum())
    out_tok = int(pr.generated_tokens[done_idx].sum())
    n_done = int(done_idx.size)
    outcome = pr.outcome[idx]

    def rate(count: float) -> float:
        return _f(count / duration_s) if duration_s > 0 else math.nan

    def count(o: Outcome) -> int:
        return int(np.count_nonzero(outcome == _OUTCOME_CODE[o]))

    # The gaps of the completed records among `idx`, in record order.
    sel = np.zeros(pr.completed.size, dtype=bool)
    sel[done_idx] = True
    itl = pr.itl_s[sel[pr.itl_owner]]
    qoe = pr.qoe[idx]
    stats: dict[str, float] = {}
    stats.update(_stats(pr.ttft_s[idx], "ttft"))
    stats.update(_stats(pr.tpot_s[done_idx], "tpot"))
    stats.update(_stats(itl, "itl"))
    stats.update(_stats(pr.e2e_s[done_idx], "e2el"))
    stats.update(_stats(pr.queue_s[idx], "queue"))
    return AggregateMetrics(
        requests=n,
        completed=n_done,
        slo_met=met,
        violations=n - met,
        failed=count(Outcome.FAILED),
        timed_out=count(Outcome.TIMED_OUT),
        aborted=count(Outcome.ABORTED),
        rejected=count(Outcome.REJECTED),
        preemptions=int(pr.preemptions[idx].sum()),
        total_input_tokens=in_tok,
        total_output_tokens=out_tok,
        duration_s=_f(duration_s),
        request_throughput=rate(n_done),
        output_throughput=rate(out_tok),
        total_token_throughput=rate(in_tok + out_tok),
        request_goodput=rate(met),
        slo_attainment=_f(met / n) if n else math.nan,
        violation_rate=_f((n - met) / n) if n else math.nan,
        mean_qoe=_f(np.mean(qoe)) if n else math.nan,
        median_qoe=_f(np.median(qoe)) if n else math.nan,
        p10_qoe=_f(np.percentile(qoe, 10)) if n else math.nan,
        min_qoe=_f(np.min(qoe)) if n else math.nan,
        **stats,
    )


# ----------------------------------------------------------------------------------------------
# Service over time (VTC's service gap)


@dataclass(frozen=True, slots=True)
class ServiceTimeline:
    """Each client's cumulative weighted service and backlog on a common time grid.

    `times_s` holds every event time (arrivals, first tokens, token times, ends) and the midpoint
    between each pair of consecutive events, so backlog gaps between events are visible.
    `service[c, k]` is client c's weighted service (divided by its weight) delivered up to and
    including `times_s[k]`; `backlogged[c, k]` is True while some request of c has arrived and not
    ended (finish, or the last event of the run for requests that never finished); `queued[c, k]`
    while some request of c has arrived and not got its first token (the backlog of the module
    docstring; a request without one is queued until it ends).
    """

    clients: tuple[str, ...]
    times_s: FloatArray
    service: FloatArray
    backlogged: BoolArray
    queued: BoolArray


#: Outcomes whose request stops being backlog at its last known event.
_STOPPED = frozenset((Outcome.FAILED, Outcome.TIMED_OUT, Outcome.REJECTED))


def _times(records: Sequence[RequestRecord], name: str) -> FloatArray:
    """The optional time `name` of every record, NaN where it is None."""
    return np.fromiter((math.nan if (t := getattr(r, name)) is None else t for r in records),
                       dtype=np.float64, count=len(records))


def service_timeline(records: Sequence[RequestRecord], clients: Sequence[ClientInfo],
                     weights: ServiceWeights = DEFAULT_SERVICE_WEIGHTS) -> ServiceTimeline:
    """Reconstruct cumulative service and backlog per client from the records (see the class).

    The prompt's service is charged at the first token (when its prefill is known to be done), each
    generated token at its emission time.
    """
    names = tuple(c.name for c in clients)
    index = {c.name: i for i, c in enumerate(clients)}
    weight = np.asarray([c.weight for c in clients], dtype=np.float64)
    if not records:
        z = np.zeros(0)
        return ServiceTimeline(names, z, np.zeros((len(names), 0)),
                               np.zeros((len(names), 0), dtype=bool),
                               np.zeros((len(names), 0), dtype=bool))
    n = len(records)
    lens = np.fromiter((len(r.token_times_s) for r in records), dtype=np.int64, count=n)
    flat = np.fromiter(chain.from_iterable(r.token_times_s for r in records), dtype=np.float64,
                       count=int(lens.sum()))
    rc = np.fromiter((index[r.client] for r in records), dtype=np.int64, count=n)
    t_start = np.fromiter((r.arrival_s for r in records), dtype=np.float64, count=n)
    first = _times(records, "first_token_s")
    finish = _times(records, "finish_s")
    # Each record's last event (`_last_time`): max ignores the NaN of a missing time.
    last_tok = np.full(n, np.nan)
    has_tok = lens > 0
    last_tok[has_tok] = flat[np.cumsum(lens)[has_tok] - 1]
    last = np.fmax.reduce(np.stack([t_start, last_tok, first, finish,
                                    _times(records, "dispatch_s")]), axis=0)
    horizon = float(last.max())
    completed = np.fromiter((r.outcome.completed for r in records), dtype=bool, count=n)
    stopped = np.fromiter((r.outcome in _STOPPED for r in records), dtype=bool, count=n)
    # Failed/timed-out/rejected requests stop being backlog at their last known event; aborted
    # (run ended) or unknown ones stay backlogged to the end of the run.
    t_end = np.where(completed & ~np.isnan(finish), finish, np.where(stopped, last, horizon))
    t_first = np.where(np.isnan(first), t_end, first)
    # Service events as runs of equal value (a record's tokens, then its prompt at the first
    # token), in record order: the stable sort below breaks ties between simultaneous events by
    # this order, so it fixes the summation order of the cumulative service.
    has_first = ~np.isnan(first)
    prompt = np.fromiter((r.prompt_tokens for r in records), dtype=np.int64, count=n)
    tok_v = weights.output / weight[rc]
    prompt_v = (weights.prompt * prompt[has_first].astype(np.float64)) / weight[rc[has_first]]
    at = np.cumsum(lens)[has_first]  # after the record's last token
    t_serv = np.insert(flat, at, first[has_first])
    c_serv = np.insert(np.repeat(rc, lens), at, rc[has_first])
    v_serv = np.insert(np.repeat(tok_v, lens), at, prompt_v)
    c_start = rc
    events = np.unique(np.concatenate([t_serv, t_start, t_end, t_first]))
    mids = (events[:-1] + events[1:]) / 2.0
    grid = np.sort(np.concatenate([events, mids]))
    n_c = len(names)
    service = np.zeros((n_c, grid.size))
    backlog = np.zeros((n_c, grid.size), dtype=bool)
    queued = np.zeros((n_c, grid.size), dtype=bool)
    for c in range(n_c):
        sel = c_serv == c
        order = np.argsort(t_serv[sel], kind="stable")
        ts = t_serv[sel][order]
        cum = np.concatenate([[0.0], np.cumsum(v_serv[sel][order])])
        service[c] = cum[np.searchsorted(ts, grid, side="right")]
        # Requests in flight at t = arrived at or before t minus ended strictly before t (an end
        # time is still backlogged: its last token is service received while backlogged).
        mine = c_start == c
        arrived = np.searchsorted(np.sort(t_start[mine]), grid, side="right")
        ended = np.searchsorted(np.sort(t_end[mine]), grid, side="left")
        backlog[c] = (arrived - ended) > 0
        started = np.searchsorted(np.sort(t_first[mine]), grid, side="left")
        queued[c] = (arrived - started) > 0
    return ServiceTimeline(names, grid, service, backlog, queued)


def max_service_gap(timeline: ServiceTimeline, start_s: float = -math.inf
                    ) -> tuple[float, tuple[str, str]]:
    """VTC's fairness measure: the largest difference in service two clients received over an
    interval during which both were continuously backlogged (Sheng et al. 2024, Def. of service
    discrepancy), in weighted tokens. Backlogged = a request queued (`ServiceTimeline.queued`):
    counting running requests as backlog would compare a client that has all it asks for with one
    that waits, and flag fair runs.

    For clients i, j and a maximal interval where both are backlogged, the largest
    |(W_i(t₂) − W_i(t₁)) − (W_j(t₂) − W_j(t₁))| over t₁ < t₂ in it is max G − min G of
    G = W_i − W_j on that interval. Intervals are cut at `start_s` (times before it are ignored).
    Returns (gap, (client_i, client_j)); (0.0, ("", "")) when no two clients were ever backlogged
    together.
    """
    best = 0.0
    pair = ("", "")
    n_c = len(timeline.clients)
    q = timeline.queued & (timeline.times_s >= start_s)[None, :]
    if n_c < 2 or q.shape[1] == 0:
        return best, pair
    # Each client's first and last queued grid index: pairs whose spans do not overlap are never
    # backlogged together, and a pair's runs lie inside the overlap of the two spans.
    seen: BoolArray = np.asarray(q.any(axis=1), dtype=bool)
    first = np.where(seen, q.argmax(axis=1), -1)
    last = np.where(seen, q.shape[1] - 1 - q[:, ::-1].argmax(axis=1), -2)
    for i in range(n_c):
        if not seen[i]:
            continue
        for j in range(i + 1, n_c):
            lo_k = max(first[i], first[j])
            hi_k = min(last[i], last[j]) + 1
            if not seen[j] or lo_k >= hi_k:
                continue
            both = q[i, lo_k:hi_k] & q[j, lo_k:hi_k]
            if not both.any():
                continue
            g = timeline.service[i, lo_k:hi_k] - timeline.service[j, lo_k:hi_k]
            edges = np.diff(np.concatenate([[0], both.astype(np.int8), [0]]))
            run_start = np.flatnonzero(edges == 1)
            run_end = np.flatnonzero(edges == -1)  # exclusive
            # Runs are disjoint and ordered: reduceat over [start, end) slices of g.
            idx = np.stack([run_start, run_end]).T.ravel()
            idx = idx[idx < g.size]
            hi = np.maximum.reduceat(g, idx)[::2]
            lo = np.minimum.reduceat(g, idx)[::2]
            gap = float(np.max(hi - lo))
            if gap > best:
                best, pair = gap, (timeline.clients[i], timeline.clients[j])
    return best, pair


@dataclass(frozen=True, slots=True)
class BackloggedService:
    """Service while backlogged in windows (module docstring): `edges_s` the window edges;
    `service[w, c]` client c's weighted service in window w (NaN where c was not backlogged
    throughout w); `jain[w]` Jain's index over the window's backlogged clients (NaN with fewer
    than two)."""

    clients: tuple[str, ...]
    edges_s: FloatArray
    service: FloatArray
    jain: FloatArray

    @property
    def compared(self) -> BoolArray:
        """Windows with at least two backlogged clients."""
        return np.asarray(~np.isnan(self.jain), dtype=bool)

    def mean_jain(self) -> float:
        """Mean of `jain` over the compared windows (NaN when none)."""
        j = self.jain[self.compared]
        return _f(np.mean(j)) if j.size else math.nan

    def shares(self) -> FloatArray:
        """Per client: its service over the compared clients' total, summed over the compared
        windows where it was backlogged (NaN when never compared)."""
        return self._relative(np.nansum)

    def normalized(self) -> FloatArray:
        """Per client: its service over the compared clients' mean, summed over the compared
        windows where it was backlogged (NaN when never compared)."""
        return self._relative(np.nanmean)

    def _relative(self, reference: Any) -> FloatArray:
        s = self.service[self.compared]
        out = np.full(len(self.clients), math.nan)
        if s.size == 0:
            return out
        ref = reference(s, axis=1)
        for c in range(len(self.clients)):
            mine = ~np.isnan(s[:, c])
            if mine.any() and ref[mine].sum() > 0:
                out[c] = s[mine, c].sum() / ref[mine].sum()
        return out


def backlogged_service(timeline: ServiceTimeline, start_s: float, end_s: float,
                       window_s: float) -> BackloggedService:
    """Cut ``[start_s, end_s]`` into ``⌊(end − start) / window_s⌋`` windows of `window_s` seconds
    and measure each client's service in each window where it was backlogged throughout."""
    if not (window_s > 0 and math.isfinite(window_s)):
        raise InputError("must be a finite number > 0 seconds", field="service_window_s",
                         value=window_s)
    n_c = len(timeline.clients)
    n_w = int(max(0.0, end_s - start_s) // window_s) if math.isfinite(end_s - start_s) else 0
    edges = start_s + window_s * np.arange(n_w + 1, dtype=np.float64)
    service = np.full((n_w, n_c), math.nan)
    jain = np.full(n_w, math.nan)
    grid = timeline.times_s
    if n_w == 0 or grid.size == 0:
        return BackloggedService(timeline.clients, edges, service, jain)
    # Backlog is constant between grid points; a window is covered by the last point at or
    # before its start and every point before its end.
    lo = np.maximum(np.searchsorted(grid, edges[:-1], side="right") - 1, 0)
    hi = np.searchsorted(grid, edges[1:], side="left")
    before_grid = edges[:-1] < grid[0]
    # Cumulative service at an edge: the value at the last grid point at or before it.
    at = np.searchsorted(grid, edges, side="right") - 1
    for c in range(n_c):
        not_q = np.concatenate([[0], np.cumsum(~timeline.queued[c])])
        gaps = not_q[np.maximum(hi, lo + 1)] - not_q[lo]
        whole = (gaps == 0) & ~before_grid
        cum = np.where(at >= 0, timeline.service[c][np.maximum(at, 0)], 0.0)
        got = np.diff(cum)
        service[:, c] = np.where(whole, got, math.nan)
    for w in range(n_w):
        row = service[w][~np.isnan(service[w])]
        if row.size >= 2:
            jain[w] = jain_index(row)
    return BackloggedService(timeline.clients, edges, service, jain)


# ----------------------------------------------------------------------------------------------
# The entry point


def compute_metrics(records: Sequence[RequestRecord], clients: Sequence[ClientInfo], *,
                    window: tuple[float, float] | None = None, qoe: QoEParams = DEFAULT_QOE,
                    service_weights: ServiceWeights = DEFAULT_SERVICE_WEIGHTS,
                    service_window_s: float = 10.0) -> RunMetrics:
    """All metrics of a run (see the module docstring for every definition).

    `records` may be in any order; only those that arrived in `window` = ``[start, end)`` seconds
    count (all of them when None; the window is then [first arrival, last arrival]). `clients` fixes
    the order of `per_client`; a record of a client not in `clients` is an InputError.
    """
    names = [c.name for c in clients]
    if len(set(names)) != len(names):
        raise InputError("client names must be unique", field="clients", value=names)
    known = set(names)
    for r in records:
        if r.client not in known:
            raise InputError("record of a client that is not in the run's clients",
                             field="client", value=r.client)
    if window is not None and not (window[0] <= window[1]):
        raise InputError("window start must not be after its end", field="window", value=window)
    counted = sorted(in_window(records, window), key=lambda r: (r.arrival_s, r.request_id))
    if window is None:
        start = counted[0].arrival_s if counted else 0.0
        end = counted[-1].arrival_s if counted else 0.0
    else:
        start, end = float(window[0]), float(window[1])
    last = max((_last_time(r) for r in counted), default=end)
    duration = max(end, last) - start

    per_request = _per_request(counted, qoe)
    overall = _aggregate(per_request, np.arange(len(counted), dtype=np.int64), duration)

    weight = np.asarray([c.weight for c in clients], dtype=np.float64)
    served = np.zeros(len(clients))
    demand = np.zeros(len(clients))
    by_client: list[list[int]] = [[] for _ in clients]
    pos = {n: i for i, n in enumerate(names)}
    for k, r in enumerate(counted):
        c = pos[r.client]
        by_client[c].append(k)
        served[c] += served_service(r, service_weights)
        demand[c] += demanded_service(r, service_weights)
    fair = max_min_fair_share(demand, weight, float(served.sum()))
    # Service is service, whenever its request arrived: the service metrics take every record
    # and look at the measured window only (counting only its arrivals would leave out the
    # service of a client's older backlog and make a fair schedule look unfair).
    # Clients that sent nothing are never backlogged: leaving them out of the timeline changes
    # nothing but its size, which would otherwise grow with every registered client.
    senders = {r.client for r in records}
    tl_index = np.array([pos[c.name] for c in clients if c.name in senders], dtype=np.int64)
    timeline = service_timeline(records, [clients[k] for k in tl_index], service_weights)
    windows = backlogged_service(timeline, start, end, service_window_s)
    normalized = np.full(len(clients), math.nan)
    shares = np.full(len(clients), math.nan)
    normalized[tl_index] = windows.normalized()
    shares[tl_index] = windows.shares()

    per_client: list[ClientMetrics] = []
    for c, info in enumerate(clients):
        per_client.append(ClientMetrics(
            client=info.name, weight=float(info.weight),
            metrics=_aggregate(per_request, np.asarray(by_client[c], dtype=np.int64), duration),
            weighted_service=_f(served[c] / weight[c]),
            weighted_demand=_f(demand[c] / weight[c]),
            fair_share=_f(fair[c] / weight[c]),
            normalized_service=_f(normalized[c]),
            backlogged_service_share=_f(shares[c]),
        ))

    active = [cm for cm in per_client if cm.metrics.requests > 0]
    attain = [cm.metrics.slo_attainment for cm in active]
    worst = min(active, key=lambda cm: cm.metrics.slo_attainment) if active else None
    gap, gap_pair = max_service_gap(timeline, start_s=start)
    fairness = FairnessMetrics(
        jain_attainment=jain_index(attain),
        jain_qoe=jain_index([cm.metrics.mean_qoe for cm in active]),
        jain_service=windows.mean_jain() if windows.compared.any() else 1.0,
        worst_client=worst.client if worst else "",
        worst_client_attainment=worst.metrics.slo_attainment if worst else math.nan,
        max_service_gap=_f(gap),
        service_gap_clients=gap_pair,
        service_window_s=_f(service_window_s),
        service_windows=int(windows.compared.sum()),
    )
    return RunMetrics(window_start_s=_f(start), window_end_s=_f(end), overall=overall,
                      per_client=tuple(per_client), fairness=fairness, qoe_params=qoe,
                      service_weights=service_weights)


def jain_over_time(records: Sequence[RequestRecord], clients: Sequence[ClientInfo],
                   window_s: float, *, start_s: float | None = None
                   ) -> tuple[FloatArray, FloatArray]:
    """Jain's index over per-client SLO attainment in consecutive windows of `window_s` seconds.

    Requests are binned by arrival time from `start_s` (default: the first arrival; arrivals before
    it are ignored); each bin's index covers the clients with a request in it. Returns (bin centres
    in seconds, index per bin; NaN for empty bins).
    """
    if window_s <= 0:
        raise InputError("must be > 0 seconds", field="window_s", value=window_s)
    if start_s is not None:
        records = [r for r in records if r.arrival_s >= start_s]
    if not records:
        return np.zeros(0), np.zeros(0)
    arrivals = np.asarray([r.arrival_s for r in records])
    met = np.asarray([record_slo_met(r) for r in records], dtype=np.float64)
    pos = {c.name: i for i, c in enumerate(clients)}
    cidx = np.asarray([pos[r.client] for r in records], dtype=np.int64)
    t0 = float(arrivals.min()) if start_s is None else float(start_s)
    nbins = math.floor((float(arrivals.max()) - t0) / window_s) + 1
    b = np.minimum(((arrivals - t0) // window_s).astype(np.int64), nbins - 1)
    counts = np.zeros((nbins, len(clients)))
    hits = np.zeros((nbins, len(clients)))
    np.add.at(counts, (b, cidx), 1.0)
    np.add.at(hits, (b, cidx), met)
    with np.errstate(invalid="ignore", divide="ignore"):
        att = np.where(counts > 0, hits / counts, np.nan)
    values = np.asarray([jain_index(row) for row in att], dtype=np.float64)
    centres = t0 + (np.arange(nbins, dtype=np.float64) + 0.5) * window_s
    return centres, values
