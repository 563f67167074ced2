"""Fairness across clients: Jain's index, weighted max-min fair shares, VTC's maximum service gap
and service while backlogged in windows (over `exfairs.metrics.timeline`'s service timeline) and
Jain's index over time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from exfairs.errors import InputError
from exfairs.metrics.request import record_slo_met
from exfairs.metrics.timeline import ServiceTimeline, flat_ranges
from exfairs.metrics.types import BoolArray, FloatArray, _f
from exfairs.records import ClientInfo, RequestRecord


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


def max_service_gap(timeline: ServiceTimeline, start_s: float = -math.inf
                    ) -> tuple[float, tuple[str, str]]:
    """VTC's fairness measure: the largest difference in service two clients received over an
    interval during which both were continuously backlogged (Sheng et al. 2024, Def. of service
    discrepancy), in weighted tokens. Backlogged = a request queued (`ServiceTimeline.queued`):
    counting running requests as backlog would compare a client that has all it asks for with one
    that waits, and flag fair runs.

    For clients i, j and a maximal interval where both are backlogged, the largest
    |(W_i(t₂) − W_i(t₁)) − (W_j(t₂) − W_j(t₁))| over t₁ < t₂ in it is max G − min G of
    G = W_i − W_j on that interval (over its grid points). Intervals are cut at `start_s` (times
    before it are ignored). Returns (gap, (client_i, client_j)), i before j in the timeline's
    order, the first such pair on a tie; (0.0, ("", "")) when no two clients were ever backlogged
    together.

    Cost: O(stretches where two clients are queued together + their service events), never
    clients × grid: G only changes at a service event of i or j, so its extremes over a shared
    stretch are among its value at the stretch's first grid point and at those events.
    """
    none = (0.0, ("", ""))
    n_c, m = len(timeline.clients), timeline.times_s.size
    if n_c < 2 or m == 0:
        return none
    runs = timeline.queued_runs
    lo = np.maximum(runs[:, 1], np.searchsorted(timeline.times_s, start_s, side="left"))
    keep = lo <= runs[:, 2]
    owner, lo, hi = runs[keep, 0], lo[keep], runs[keep, 2]
    order = np.argsort(lo, kind="stable")
    owner, lo, hi = owner[order], lo[order], hi[order]
    # Stretch s (after r in this order) meets stretch r iff it starts by r's end; one client's
    # stretches are disjoint, so every meeting is between two clients, found once.
    later = np.arange(lo.size, dtype=np.int64) + 1
    r, s = flat_ranges(later, np.searchsorted(lo, hi, side="right") - later)
    if r.size == 0:
        return none
    ci, cj = np.minimum(owner[r], owner[s]), np.maximum(owner[r], owner[s])
    first, last = lo[s], np.minimum(hi[r], hi[s])
    # Grid points where G is evaluated, meeting by meeting: its first point, then each grid
    # point after it, up to its last, where i got service, then those where j did.
    stride = timeline.stride
    keys = timeline.event_keys
    span = [np.searchsorted(keys, cl * stride + k, side="right")
            for cl in (ci, cj) for k in (first, last)]
    n_i, n_j = span[1] - span[0], span[3] - span[2]
    size = 1 + n_i + n_j
    at = np.cumsum(size) - size
    g = np.empty(int(size.sum()))
    g[at] = timeline.service_at(ci, first) - timeline.service_at(cj, first)
    for i_own, pos_from, count, shift in ((True, span[0], n_i, at + 1),
                                          (False, span[2], n_j, at + 1 + n_i)):
        meet, pos = flat_ranges(pos_from, count)
        own, other = (ci, cj) if i_own else (cj, ci)
        # The client's own service at its n-th service point is read off; the other's is
        # looked up at the same grid index.
        mine = timeline.cumulative[pos + own[meet] + 1]
        theirs = timeline.service_at(other[meet], keys[pos] - own[meet] * stride)
        dest = shift[meet] + pos - pos_from[meet]
        g[dest] = mine - theirs if i_own else theirs - mine
    gaps = np.maximum.reduceat(g, at) - np.minimum.reduceat(g, at)
    # A pair's gap is the largest over its meetings (NaN if any is NaN: never reported).
    pair = ci * n_c + cj
    by_pair = np.argsort(pair, kind="stable")
    pairs, pair_at = np.unique(pair[by_pair], return_index=True)
    pair_gap = np.maximum.reduceat(gaps[by_pair], pair_at)
    ok = pair_gap > 0.0
    if not ok.any():
        return none
    best = pair_gap[ok].max()
    win = int(pairs[np.flatnonzero(ok & (pair_gap == best))[0]])
    return float(best), (timeline.clients[win // n_c], timeline.clients[win % n_c])


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
    # before its start and every point before its end: grid indices lo … last, all inside one
    # queued stretch of the client. Both bounds grow with the window, so the windows inside a
    # stretch are consecutive.
    lo = np.maximum(np.searchsorted(grid, edges[:-1], side="right") - 1, 0)
    last = np.maximum(np.searchsorted(grid, edges[1:], side="left"), lo + 1) - 1
    runs = timeline.queued_runs
    w_from = np.searchsorted(lo, runs[:, 1], side="left")
    stretch, w = flat_ranges(w_from, np.searchsorted(last, runs[:, 2], side="right") - w_from)
    keep = edges[w] >= grid[0]
    stretch, w = stretch[keep], w[keep]
    client = runs[stretch, 0]
    # Cumulative service at an edge: the value at the last grid point at or before it.
    at = np.searchsorted(grid, edges, side="right") - 1
    cum = [np.where(e >= 0, timeline.service_at(client, np.maximum(e, 0)), 0.0)
           for e in (at[w], at[w + 1])]
    service[w, client] = cum[1] - cum[0]
    for k in range(n_w):
        row = service[k][~np.isnan(service[k])]
        if row.size >= 2:
            jain[k] = jain_index(row)
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
