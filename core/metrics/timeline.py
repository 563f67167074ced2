"""The service timeline of a run: each client's cumulative weighted service and its backlog on a
common time grid, held sparse (per client, only its own events and its backlogged stretches), so
its size and the cost of the fairness measures over it grow with requests and tokens, not with
clients × grid points."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from exfairs.metrics.types import (
    DEFAULT_SERVICE_WEIGHTS,
    BoolArray,
    FloatArray,
    IntArray,
    ServiceWeights,
)
from exfairs.records import ClientInfo, Outcome, RequestRecord


@dataclass(frozen=True, slots=True)
class ServiceTimeline:
    """Each client's cumulative weighted service and backlog on a common time grid.

    `times_s` holds every event time (arrivals, first tokens, token times, ends) and the midpoint
    between each pair of consecutive events, so backlog gaps between events are visible. Client c
    (index into `clients`) is described at grid index k by

    * its weighted service (divided by its weight) delivered up to and including `times_s[k]`
      (`service_at`; the dense matrix is `service`);
    * backlogged: some request of c has arrived and not ended (finish, or the last event of the
      run for requests that never finished; `backlogged`);
    * queued: some request of c has arrived and not got its first token (the backlog of the
      `exfairs.metrics` docstring; a request without one is queued until it ends; `queued`).

    Stored sparse: `event_keys` holds ``c · (len(times_s) + 1) + k`` for each grid index k at
    which client c received service, sorted (by client, then time); client c's are
    ``event_keys[event_offsets[c]:event_offsets[c + 1]]`` and its cumulative service after the
    first n of them is ``cumulative[event_offsets[c] + c + n]`` (each client's run of
    `cumulative` starts at 0; simultaneous events are summed in record order). `queued_runs`
    and `backlog_runs` are rows (client, first, last grid index, inclusive) of the maximal
    stretches where the client is queued / backlogged, sorted by client and time.
    """

    clients: tuple[str, ...]
    times_s: FloatArray
    event_offsets: IntArray
    event_keys: IntArray
    cumulative: FloatArray
    queued_runs: IntArray
    backlog_runs: IntArray

    @property
    def stride(self) -> int:
        """The client multiplier of `event_keys`."""
        return int(self.times_s.size) + 1

    def service_at(self, client: IntArray, k: IntArray) -> FloatArray:
        """Element-wise: the cumulative service of client ``client[n]`` at grid index ``k[n]``."""
        client = np.asarray(client, dtype=np.int64)
        k = np.asarray(k, dtype=np.int64)
        base = self.event_offsets[client]
        count = np.searchsorted(self.event_keys, client * self.stride + k, side="right") - base
        return np.asarray(self.cumulative[base + client + count], dtype=np.float64)

    @property
    def service(self) -> FloatArray:
        """The dense clients × grid matrix of cumulative service (O(clients × grid): for plots
        and tests, not for the metrics)."""
        n_c, m = len(self.clients), self.times_s.size
        out = np.zeros((n_c, m))
        grid_k = np.arange(m, dtype=np.int64)
        for c in range(n_c):
            out[c] = self.service_at(np.full(m, c, dtype=np.int64), grid_k)
        return out

    @property
    def queued(self) -> BoolArray:
        """The dense clients × grid matrix of `queued_runs`."""
        return _dense_runs(self.queued_runs, len(self.clients), self.times_s.size)

    @property
    def backlogged(self) -> BoolArray:
        """The dense clients × grid matrix of `backlog_runs`."""
        return _dense_runs(self.backlog_runs, len(self.clients), self.times_s.size)


def _dense_runs(runs: IntArray, n_c: int, m: int) -> BoolArray:
    out = np.zeros((n_c, m), dtype=bool)
    for c, first, last in runs:
        out[c, first:last + 1] = True
    return out


def flat_ranges(starts: IntArray, counts: IntArray) -> tuple[IntArray, IntArray]:
    """Flattened ranges: for each i, ``starts[i], starts[i] + 1, … (counts[i] values)``; returns
    (owner i of each value, the values)."""
    counts = np.maximum(np.asarray(counts, dtype=np.int64), 0)
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    step = np.arange(owner.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.asarray(starts, dtype=np.int64)[owner] + step


def _runs(client: IntArray, up: IntArray, down: IntArray, stride: int) -> IntArray:
    """Rows (client, first, last grid index) of the maximal stretches where a client's count is
    > 0, the count being, at grid index k, its requests with ``up ≤ k`` minus those with
    ``down ≤ k`` (one up and one down per request)."""
    key = np.concatenate([client * stride + up, client * stride + down])
    delta = np.concatenate([np.ones(up.size, dtype=np.int64), -np.ones(down.size, dtype=np.int64)])
    order = np.argsort(key, kind="stable")
    key = key[order]
    uniq, first = np.unique(key, return_index=True)
    # Each client's changes sum to 0, so one running sum over all clients restarts at 0 per
    # client; segment s holds its count on [pos[s], pos[s + 1]) and a client's last one is 0.
    count = np.cumsum(np.add.reduceat(delta[order], first))
    pos = uniq % stride
    on = count > 0
    prev_on = np.concatenate([[False], on[:-1]])
    next_on = np.concatenate([on[1:], [False]])
    starts = np.flatnonzero(on & ~prev_on)
    ends = np.flatnonzero(on & ~next_on)
    return np.stack([uniq[starts] // stride, pos[starts], pos[ends + 1] - 1], axis=1)


#: Outcomes whose request stops being backlog at its last known event.
_STOPPED = frozenset((Outcome.FAILED, Outcome.TIMED_OUT, Outcome.REJECTED))


def _times(records: Sequence[RequestRecord], name: str) -> FloatArray:
    """The optional time `name` of every record, NaN where it is None."""
    return np.fromiter((math.nan if (t := getattr(r, name)) is None else t for r in records),
                       dtype=np.float64, count=len(records))


def _empty(names: tuple[str, ...]) -> ServiceTimeline:
    none = np.zeros((0, 3), dtype=np.int64)
    return ServiceTimeline(names, np.zeros(0), np.zeros(len(names) + 1, dtype=np.int64),
                           np.zeros(0, dtype=np.int64), np.zeros(len(names)), none, none)


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
        return _empty(names)
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
    # token), in record order: the stable sorts below break ties between simultaneous events by
    # this order, so it fixes the summation order of the cumulative service.
    has_first = ~np.isnan(first)
    prompt = np.fromiter((r.prompt_tokens for r in records), dtype=np.int64, count=n)
    tok_v = weights.output / weight[rc]
    prompt_v = (weights.prompt * prompt[has_first].astype(np.float64)) / weight[rc[has_first]]
    at = np.cumsum(lens)[has_first]  # after the record's last token
    t_serv = np.insert(flat, at, first[has_first])
    c_serv = np.insert(np.repeat(rc, lens), at, rc[has_first])
    v_serv = np.insert(np.repeat(tok_v, lens), at, prompt_v)
    events = np.unique(np.concatenate([t_serv, t_start, t_end, t_first]))
    mids = (events[:-1] + events[1:]) / 2.0
    grid = np.sort(np.concatenate([events, mids]))
    stride = grid.size + 1
    n_c = len(names)
    # By client, then time (the grid index of an event time), simultaneous events in record
    # order (a stable sort): each client's events in the order a per-client stable sort by
    # time gives.
    keys = c_serv * stride + np.searchsorted(grid, t_serv, side="left")
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    ev_c = c_serv[order]
    ev_v = v_serv[order]
    offsets = np.searchsorted(ev_c, np.arange(n_c + 1, dtype=np.int64), side="left")
    running = np.empty(ev_v.size)
    for c in range(n_c):
        # One cumsum per client: its sums run in its own event order (a cumsum over all clients
        # minus offsets would round differently). Loops over clients with records only.
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        np.cumsum(ev_v[lo:hi], out=running[lo:hi])
    # Simultaneous events (one token of every running request per engine step) collapse into
    # one: a client's service at a grid point is its running sum after its last event there.
    last = np.concatenate([keys[1:] != keys[:-1], [True]]) if keys.size else np.zeros(0, bool)
    keys, running, ev_c = keys[last], running[last], ev_c[last]
    offsets = np.searchsorted(ev_c, np.arange(n_c + 1, dtype=np.int64), side="left")
    cumulative = np.zeros(keys.size + n_c)
    cumulative[np.arange(keys.size) + ev_c + 1] = running
    # Arrived at or before t (first grid index ≥ the arrival), minus first token / end strictly
    # before t (first grid index > that time): an end time is still backlogged, its last token
    # is service received while backlogged; a first-token time is still queued.
    arrive_k = np.searchsorted(grid, t_start, side="left")
    queued = _runs(rc, arrive_k, np.searchsorted(grid, t_first, side="right"), stride)
    backlog = _runs(rc, arrive_k, np.searchsorted(grid, t_end, side="right"), stride)
    return ServiceTimeline(names, grid, offsets.astype(np.int64), keys.astype(np.int64),
                           cumulative, queued, backlog)
