"""The batched service timeline, inter-token gaps, QoE and aggregates of `exfairs.metrics` equal,
bit for bit, the per-record computations they replaced (kept here as the reference), including
simultaneous events, whose order fixes the summation order of the cumulative service."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_factory import make_record

from exfairs.metrics import (
    DEFAULT_QOE,
    DEFAULT_SERVICE_WEIGHTS,
    AggregateMetrics,
    QoEParams,
    RequestMetrics,
    ServiceTimeline,
    ServiceWeights,
    _aggregate,
    _last_time,
    _per_request,
    _stats,
    backlogged_service,
    compute_metrics,
    max_service_gap,
    request_metrics,
    service_timeline,
)
from exfairs.records import ClientInfo, Outcome, RequestRecord


def _ref_itl(records: Sequence[RequestRecord]) -> np.ndarray:
    gaps = [np.diff(np.asarray(r.token_times_s, dtype=np.float64))
            for r in records if r.outcome.completed and len(r.token_times_s) > 1]
    return np.concatenate(gaps) if gaps else np.zeros(0)


def _ref_events(records: Sequence[RequestRecord], clients: Sequence[ClientInfo],
                weights: ServiceWeights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = {c.name: i for i, c in enumerate(clients)}
    weight = np.asarray([c.weight for c in clients], dtype=np.float64)
    ev_t, ev_v, ev_c = [], [], []
    for r in records:
        c = index[r.client]
        times = np.asarray(r.token_times_s, dtype=np.float64)
        if times.size:
            ev_t.append(times)
            ev_v.append(np.full(times.size, weights.output / weight[c]))
            ev_c.append(np.full(times.size, c, dtype=np.float64))
        if r.first_token_s is not None:
            ev_t.append(np.asarray([r.first_token_s]))
            ev_v.append(np.asarray([weights.prompt * r.prompt_tokens / weight[c]]))
            ev_c.append(np.asarray([c], dtype=np.float64))
    return _cat(ev_t), _cat(ev_v), _cat(ev_c).astype(np.int64)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def _ref_service(records: Sequence[RequestRecord], clients: Sequence[ClientInfo],
                 grid: np.ndarray, weights: ServiceWeights) -> np.ndarray:
    t_serv, v_serv, c_serv = _ref_events(records, clients, weights)
    out = np.zeros((len(clients), grid.size))
    for c in range(len(clients)):
        sel = c_serv == c
        order = np.argsort(t_serv[sel], kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(v_serv[sel][order])])
        out[c] = cum[np.searchsorted(t_serv[sel][order], grid, side="right")]
    return out


# Times on a coarse grid so that tokens of different requests (and a first token and a prompt
# event) often coincide, as they do in a simulated batch step.
_record = st.builds(
    lambda i, client, arrival, prompt, out, ttft, tpot, cut, partial: make_record(
        i, client, arrival_s=arrival / 4, prompt_tokens=prompt, output_tokens=out,
        ttft_s=None if ttft == 0 else ttft / 4, tpot_s=tpot / 4,
        generated=min(out, cut) if partial else None, outcome=partial),
    st.integers(0, 10_000), st.sampled_from(["a", "b", "c"]), st.integers(0, 20),
    st.integers(1, 300), st.integers(1, 6), st.integers(0, 4), st.integers(1, 3),
    st.integers(0, 6),
    st.sampled_from([None, Outcome.ABORTED, Outcome.FAILED, Outcome.TIMED_OUT, Outcome.REJECTED]))


@settings(max_examples=150, deadline=None)
@given(records=st.lists(_record, max_size=12),
       weights=st.sampled_from([DEFAULT_SERVICE_WEIGHTS, ServiceWeights(prompt=0.3, output=1.7)]),
       client_weights=st.tuples(*[st.sampled_from([1.0, 0.3, 3.0])] * 3))
def test_batched_paths_equal_the_per_record_ones(records: list[RequestRecord],
                                                 weights: ServiceWeights,
                                                 client_weights: tuple[float, float, float]
                                                 ) -> None:
    clients = [ClientInfo(n, weight=w) for n, w in zip("abc", client_weights, strict=True)]
    pr = _per_request(records, DEFAULT_QOE)
    assert np.array_equal(pr.itl_s[pr.completed[pr.itl_owner]], _ref_itl(records))
    tl = service_timeline(records, clients, weights)
    assert np.array_equal(tl.service, _ref_service(records, clients, tl.times_s, weights))
    grid, backlog, queued = _ref_backlog(records, clients)
    assert np.array_equal(tl.times_s, grid)
    assert np.array_equal(tl.backlogged, backlog)
    assert np.array_equal(tl.queued, queued)


def _ref_backlog(records: Sequence[RequestRecord], clients: Sequence[ClientInfo]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid, backlog and queue of `service_timeline` as the per-record loop computed them."""
    index = {c.name: i for i, c in enumerate(clients)}
    if not records:
        return (np.zeros(0), np.zeros((len(clients), 0), dtype=bool),
                np.zeros((len(clients), 0), dtype=bool))
    horizon = max(_last_time(r) for r in records)
    times: list[float] = []
    starts, ends, firsts, owner = [], [], [], []
    for r in records:
        times.extend(r.token_times_s)
        if r.first_token_s is not None:
            times.append(r.first_token_s)
        end = r.finish_s if (r.outcome.completed and r.finish_s is not None) else None
        if end is None:
            end = _last_time(r) if r.outcome in (Outcome.FAILED, Outcome.TIMED_OUT,
                                                 Outcome.REJECTED) else horizon
        starts.append(r.arrival_s)
        ends.append(end)
        firsts.append(r.first_token_s if r.first_token_s is not None else end)
        owner.append(index[r.client])
    events = np.unique(np.concatenate([times, starts, ends, firsts]))
    grid = np.sort(np.concatenate([events, (events[:-1] + events[1:]) / 2.0]))
    own = np.asarray(owner)
    backlog = np.zeros((len(clients), grid.size), dtype=bool)
    queued = np.zeros((len(clients), grid.size), dtype=bool)
    for c in range(len(clients)):
        mine = own == c
        arrived = np.searchsorted(np.sort(np.asarray(starts)[mine]), grid, side="right")
        ended = np.searchsorted(np.sort(np.asarray(ends)[mine]), grid, side="left")
        started = np.searchsorted(np.sort(np.asarray(firsts)[mine]), grid, side="left")
        backlog[c] = (arrived - ended) > 0
        queued[c] = (arrived - started) > 0
    return grid, backlog, queued


def _ref_aggregate(records: Sequence[RequestRecord], per_request: Sequence[RequestMetrics],
                   duration_s: float) -> AggregateMetrics:
    """The aggregates as computed record by record before the batched `_aggregate`."""
    n = len(records)
    completed = [r for r in records if r.outcome.completed]
    met = sum(1 for m in per_request if m.slo_met)
    in_tok = sum(r.prompt_tokens for r in completed)
    out_tok = sum(r.generated_tokens for r in completed)

    def rate(count: float) -> float:
        return count / duration_s if duration_s > 0 else math.nan

    def arr(name: str) -> np.ndarray:
        return np.asarray([getattr(m, name) for m in per_request], dtype=np.float64)

    done = np.asarray([r.outcome.completed for r in records], dtype=bool)
    qoe = arr("qoe")
    stats: dict[str, float] = {}
    stats.update(_stats(arr("ttft_s"), "ttft"))
    stats.update(_stats(arr("tpot_s")[done] if n else np.zeros(0), "tpot"))
    stats.update(_stats(_ref_itl(records), "itl"))
    stats.update(_stats(arr("e2e_s")[done] if n else np.zeros(0), "e2el"))
    stats.update(_stats(arr("queue_s"), "queue"))
    return AggregateMetrics(
        requests=n, completed=len(completed), slo_met=met, violations=n - met,
        failed=sum(1 for r in records if r.outcome is Outcome.FAILED),
        timed_out=sum(1 for r in records if r.outcome is Outcome.TIMED_OUT),
        aborted=sum(1 for r in records if r.outcome is Outcome.ABORTED),
        rejected=sum(1 for r in records if r.outcome is Outcome.REJECTED),
        preemptions=sum(r.preemptions for r in records),
        total_input_tokens=in_tok, total_output_tokens=out_tok, duration_s=duration_s,
        request_throughput=rate(len(completed)), output_throughput=rate(out_tok),
        total_token_throughput=rate(in_tok + out_tok), request_goodput=rate(met),
        slo_attainment=met / n if n else math.nan,
        violation_rate=(n - met) / n if n else math.nan,
        mean_qoe=float(np.mean(qoe)) if n else math.nan,
        median_qoe=float(np.median(qoe)) if n else math.nan,
        p10_qoe=float(np.percentile(qoe, 10)) if n else math.nan,
        min_qoe=float(np.min(qoe)) if n else math.nan,
        **stats)


@settings(max_examples=150, deadline=None)
@given(records=st.lists(_record, max_size=12),
       qoe=st.sampled_from([DEFAULT_QOE, QoEParams(expected_ttft_s=0.3, tokens_per_s=1.3)]))
def test_batched_qoe_and_aggregates_equal_the_per_record_ones(records: list[RequestRecord],
                                                              qoe: QoEParams) -> None:
    per_request = [request_metrics(r, qoe) for r in records]
    pr = _per_request(records, qoe)
    # repr: bit-exact floats, and NaN equal to NaN.
    assert repr(pr.qoe.tolist()) == repr([m.qoe for m in per_request])
    for name in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
        assert repr(getattr(pr, name).tolist()) == repr([getattr(m, name) for m in per_request])
    assert pr.slo_met.tolist() == [m.slo_met for m in per_request]
    idx = np.arange(len(records), dtype=np.int64)
    assert repr(_aggregate(pr, idx, 7.5)) == repr(_ref_aggregate(records, per_request, 7.5))
    # One client's subset, as compute_metrics takes it.
    sub = np.asarray([k for k, r in enumerate(records) if r.client == "a"], dtype=np.int64)
    assert repr(_aggregate(pr, sub, 7.5)) == repr(_ref_aggregate(
        [records[k] for k in sub], [per_request[k] for k in sub], 7.5))


def test_long_replies_qoe_matches_per_record() -> None:
    """Replies past NumPy's pairwise-summation block (128 values) sum in the same blocks."""
    rng = np.random.default_rng(np.random.SeedSequence(14).spawn(1)[0])
    records = [make_record(k, "a", arrival_s=float(k), output_tokens=int(n),
                           gaps_s=rng.exponential(0.2, int(n) - 1).tolist())
               for k, n in enumerate(rng.integers(1, 700, size=40))]
    pr = _per_request(records, DEFAULT_QOE)
    assert repr(pr.qoe.tolist()) == repr([request_metrics(r).qoe for r in records])
    m = compute_metrics(records, [ClientInfo("a")])
    assert m.overall.mean_qoe == float(np.mean([request_metrics(r).qoe for r in records]))


def _ref_max_service_gap(tl: ServiceTimeline, start_s: float) -> tuple[float, tuple[str, str]]:
    """`max_service_gap` over the dense clients × grid matrices, as it was computed before the
    timeline became sparse: every pair, its grid points where both are queued, run by run."""
    best, pair = 0.0, ("", "")
    q = tl.queued & (tl.times_s >= start_s)[None, :]
    service = tl.service
    for i in range(len(tl.clients)):
        for j in range(i + 1, len(tl.clients)):
            both = np.concatenate([[False], q[i] & q[j], [False]])
            edges = np.diff(both.astype(np.int8))
            gaps = [float(np.max(g) - np.min(g))
                    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1),
                                    strict=True)
                    for g in [service[i, a:b] - service[j, a:b]]]
            if gaps and max(gaps) > best:
                best, pair = max(gaps), (tl.clients[i], tl.clients[j])
    return best, pair


def _ref_backlogged_service(tl: ServiceTimeline, start_s: float, end_s: float,
                            window_s: float) -> np.ndarray:
    """`BackloggedService.service` over the dense matrices, window by window and client by
    client, as before the timeline became sparse."""
    n_w = int(max(0.0, end_s - start_s) // window_s)
    edges = start_s + window_s * np.arange(n_w + 1, dtype=np.float64)
    out = np.full((n_w, len(tl.clients)), math.nan)
    grid, queued, service = tl.times_s, tl.queued, tl.service
    if grid.size == 0:
        return out
    for w in range(n_w):
        lo = max(int(np.searchsorted(grid, edges[w], side="right")) - 1, 0)
        hi = max(int(np.searchsorted(grid, edges[w + 1], side="left")), lo + 1)
        if edges[w] < grid[0]:
            continue
        for c in range(len(tl.clients)):
            if queued[c, lo:hi].all():
                at = np.searchsorted(grid, edges[w:w + 2], side="right") - 1
                cum = [service[c, k] if k >= 0 else 0.0 for k in at]
                out[w, c] = cum[1] - cum[0]
    return out


@settings(max_examples=200, deadline=None)
@given(records=st.lists(_record, max_size=14),
       weights=st.sampled_from([DEFAULT_SERVICE_WEIGHTS, ServiceWeights(prompt=0.3, output=1.7)]),
       client_weights=st.tuples(*[st.sampled_from([1.0, 0.3, 3.0])] * 3),
       start_q=st.integers(-1, 24), span_q=st.integers(0, 40), window_q=st.integers(1, 12))
def test_sparse_fairness_measures_equal_the_dense_ones(
        records: list[RequestRecord], weights: ServiceWeights,
        client_weights: tuple[float, float, float], start_q: int, span_q: int,
        window_q: int) -> None:
    """The service gap (with its pair) and the windowed service, computed on the sparse
    timeline, are bit for bit those of the dense clients × grid scan (times on the records'
    quarter-second grid, so window edges and cut points fall on events too)."""
    clients = [ClientInfo(n, weight=w) for n, w in zip("abc", client_weights, strict=True)]
    tl = service_timeline(records, clients, weights)
    start = start_q / 4 if start_q >= 0 else -math.inf
    assert repr(max_service_gap(tl, start_s=start)) == repr(_ref_max_service_gap(tl, start))
    s0, s1, win = start_q / 4, (start_q + span_q) / 4, window_q / 4
    got = backlogged_service(tl, s0, s1, win).service
    assert got.shape == (int(max(0.0, s1 - s0) // win), 3)
    assert repr(got.tolist()) == repr(_ref_backlogged_service(tl, s0, s1, win).tolist())


def test_sparse_timeline_size_grows_with_requests_not_clients() -> None:
    """1,000 one-request clients: the timeline holds O(events) values, and the gap is the dense
    scan's (spot check on a few clients' worth of the same records)."""
    records = [make_record(k, f"c{k}", arrival_s=k / 8, prompt_tokens=50, output_tokens=6,
                           ttft_s=2.0 + (k % 7) / 8, tpot_s=0.125)
               for k in range(1_000)]
    clients = [ClientInfo(f"c{k}") for k in range(1_000)]
    tl = service_timeline(records, clients)
    stored = (tl.event_keys.size + tl.cumulative.size + tl.queued_runs.size
              + tl.backlog_runs.size + tl.times_s.size)
    assert stored < 40 * len(records)  # the dense matrices would be 1,000 × grid values
    assert tl.times_s.size * len(clients) > 50 * stored
    few = records[:40]
    assert (max_service_gap(service_timeline(few, clients[:40]))
            == _ref_max_service_gap(service_timeline(few, clients[:40]), -math.inf))
    gap, pair = max_service_gap(tl)
    assert gap > 0 and pair[0] != pair[1]


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.floats(0.0, 1e4), st.integers(0, 40).map(lambda k: k / 8),
                                 st.just(math.nan)), max_size=40))
def test_stats_equal_one_numpy_call_per_statistic(values: list[float]) -> None:
    """`_stats` (one-value shortcut, both percentiles in one call) gives, bit for bit, what one
    NumPy call per statistic gives, as `vllm bench serve` computes them."""
    x = np.asarray(values, dtype=np.float64)
    v = x[~np.isnan(x)] * 1000.0
    want = ([math.nan] * 5 if v.size == 0 else
            [float(f(v)) for f in (np.mean, np.median, lambda a: np.percentile(a, 90),
                                   lambda a: np.percentile(a, 99), np.std)])
    got = _stats(x, "ttft")
    assert repr(list(got.values())) == repr(want)
    assert list(got) == [f"{k}_ttft_ms" for k in ("mean", "median", "p90", "p99", "std")]


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-1e300, 1e300), st.just(-0.0), st.just(0.0),
                                 st.integers(-8, 40).map(lambda k: k / 8),
                                 st.floats(allow_nan=True, allow_infinity=True)),
                       min_size=2, max_size=300))
def test_stats_finite_path_equals_numpy_on_any_values(values: list[float]) -> None:
    """The NumPy-free path of `_stats` (≥ 2 finite values: sums, one sort, NumPy's lerp by hand)
    gives NumPy's bits, with signed zeros, ties, huge values whose squares overflow, and with
    infinities (which take the NumPy path), at the sizes of one request's gaps."""
    x = np.asarray(values, dtype=np.float64) / 1000.0
    v = x[~np.isnan(x)] * 1000.0
    want = ([math.nan] * 5 if v.size == 0 else
            [float(f(v)) for f in (np.mean, np.median, lambda a: np.percentile(a, 90),
                                   lambda a: np.percentile(a, 99), np.std)])
    want = [math.nan if math.isnan(w) else w for w in want]
    assert repr(list(_stats(x, "itl").values())) == repr(want)
