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

import math
from collections.abc import Sequence

import numpy as np

from exfairs.errors import InputError
from exfairs.metrics.aggregate import _aggregate, _stats
from exfairs.metrics.fairness import (
    BackloggedService,
    backlogged_service,
    jain_index,
    jain_over_time,
    max_min_fair_share,
    max_service_gap,
)
from exfairs.metrics.request import (
    _last_time,
    _per_request,
    demanded_service,
    in_window,
    record_slo_met,
    request_metrics,
    request_qoe,
    served_service,
)
from exfairs.metrics.timeline import ServiceTimeline, service_timeline
from exfairs.metrics.types import (
    DEFAULT_QOE,
    DEFAULT_SERVICE_WEIGHTS,
    AggregateMetrics,
    BoolArray,
    ClientMetrics,
    FairnessMetrics,
    FloatArray,
    QoEParams,
    RequestMetrics,
    RunMetrics,
    ServiceWeights,
    _f,
)
from exfairs.records import ClientInfo, RequestRecord

# The names importable from `exfairs.metrics` as before the split (private ones for the tests).
__all__ = [
    "DEFAULT_QOE",
    "DEFAULT_SERVICE_WEIGHTS",
    "AggregateMetrics",
    "BackloggedService",
    "BoolArray",
    "ClientMetrics",
    "FairnessMetrics",
    "FloatArray",
    "QoEParams",
    "RequestMetrics",
    "RunMetrics",
    "ServiceTimeline",
    "ServiceWeights",
    "_aggregate",
    "_last_time",
    "_per_request",
    "_stats",
    "backlogged_service",
    "compute_metrics",
    "demanded_service",
    "in_window",
    "jain_index",
    "jain_over_time",
    "max_min_fair_share",
    "max_service_gap",
    "record_slo_met",
    "request_metrics",
    "request_qoe",
    "served_service",
    "service_timeline",
]


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
    # Counted records by client index, for the clients that have any (a registered client that
    # sent nothing in the window costs one shared empty aggregate below, not one of its own).
    by_client: dict[int, list[int]] = {}
    pos = {n: i for i, n in enumerate(names)}
    for k, r in enumerate(counted):
        c = pos[r.client]
        by_client.setdefault(c, []).append(k)
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
    # Frozen and a function of `duration` alone: one value serves every client without records.
    no_requests: AggregateMetrics | None = None
    for c, info in enumerate(clients):
        mine = by_client.get(c)
        if mine is not None:
            agg = _aggregate(per_request, np.asarray(mine, dtype=np.int64), duration)
        else:
            if no_requests is None:
                no_requests = _aggregate(per_request, np.zeros(0, dtype=np.int64), duration)
            agg = no_requests
        per_client.append(ClientMetrics(
            client=info.name, weight=float(info.weight),
            metrics=agg,
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
