"""Fairness across clients: Jain's index, weighted max-min fair shares, the service timeline,
VTC's maximum service gap, service while backlogged in windows and Jain's index over time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from exfairs.errors import InputError
from exfairs.metrics.request import record_slo_met
from exfairs.metrics.types import (
    DEFAULT_SERVICE_WEIGHTS,
    BoolArray,
    FloatArray,
    ServiceWeights,
    _f,
)
from exfairs.records import ClientInfo, Outcome, RequestRecord


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
