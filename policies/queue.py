"""`PolicyQueue`: per-client queues released in the order a policy ranks them.

Used as the client-side gate (gate mode) and as the engine's waiting queue (engine mode). One
decision asks the policy for the scores of the backlogged clients only (`Policy.scores_of`) and
compares them (in Python for a few, vectorised otherwise), so its cost grows with backlogged, not
registered, clients; queue length does not matter (per-client heaps).

Order: the backlogged client with the lowest `Policy.client_scores`; ties → the client whose next
request arrived first, then the lower request id. Within a client, requests go in arrival order
(a preempted request pushed back keeps its arrival time, so it returns to the front); for
deadline-aware policies, requests that can still meet their deadline go before those that cannot.
A request "can still meet its deadline" at time t when t + its unloaded latency ≤ its deadline.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from exfairs.policies.base import Policy
from exfairs.records import Request

# (arrival_s, request_id, token, request): a total order. `token` is unique per push or move, so
# an entry is live only while `PolicyQueue._token[request_id]` equals it; removed requests and
# requests moved from `ready` to `late` leave stale entries behind that are skipped lazily.
_Entry = tuple[float, int, int, Request]
# Up to this many backlogged clients, `_select` compares them one by one (see `_select_few`).
_FEW = 8
# Up to this many registered clients, a decision asks for the dense `client_scores` vector.
_DENSE = 32


class _ClientQueue:
    """One client's waiting requests: `ready` (may meet their deadline) before `late`."""

    __slots__ = ("late", "ready")

    def __init__(self) -> None:
        self.ready: list[_Entry] = []
        self.late: list[_Entry] = []


class PolicyQueue:
    """Waiting requests of all clients, released in `policy`'s order.

    The queue does not call `on_arrival` (the driver does, once, when the request arrives); `pop`
    calls `policy.on_dispatch`. `deadline_aware` defaults to the policy's own preference.

    `hopeless_last` (default off; implies `deadline_aware`): a request that can no longer meet
    its deadline is demoted behind every savable one, across clients too — the policy's ranking
    is consulted among clients with a savable request first, and only when none has one among
    the rest — whatever the policy (issue 15). `pop_hopeless` takes all such requests out (for
    a driver that rejects them).
    """

    def __init__(self, policy: Policy, *, deadline_aware: bool | None = None,
                 hopeless_last: bool = False) -> None:
        self._policy = policy
        self._deadline_aware = policy.deadline_aware if deadline_aware is None else deadline_aware
        self._hopeless_last = bool(hopeless_last)
        if self._hopeless_last:
            self._deadline_aware = True
        self._ready_count = np.zeros(0, dtype=np.int64)  # live `ready` entries per client
        self._late_ids: set[int] = set()  # queued requests in a `late` heap
        # Client index → its queue, created at the client's first push (not per registered client).
        self._queues: dict[int, _ClientQueue] = {}
        self._count = np.zeros(0, dtype=np.int64)
        self._head_arrival = np.zeros(0)
        self._head_id = np.zeros(0, dtype=np.int64)
        self._members: dict[int, int] = {}  # request id → client index, for queued requests
        self._token: dict[int, int] = {}  # request id → token of its one live heap entry
        self._next_token = 0
        # (time it turns late, request id, token, request): (id, token) is unique, so the request
        # itself is never compared.
        self._expiry: list[tuple[float, int, int, Request]] = []
        self._len = 0
        # Backlogged client indices: with few of them a decision compares them in Python,
        # which is cheaper than the vectorised selection over every registered client.
        self._backlogged: set[int] = set()

    def __len__(self) -> int:
        return self._len

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._members

    @property
    def policy(self) -> Policy:
        """The policy that orders this queue."""
        return self._policy

    def backlog(self) -> npt.NDArray[np.int64]:
        """Number of queued requests per client index (copy)."""
        self._ensure(self._policy.n_clients)
        return self._count.copy()

    # -- mutation --------------------------------------------------------------------------------
    def push(self, request: Request, now_s: float) -> None:
        """Queue `request` (new, or pushed back after a preemption) at time `now_s`."""
        if request.request_id in self._members:
            raise ValueError(f"request {request.request_id} is already queued")
        c = self._policy.client_index(request.client)
        self._ensure(self._policy.n_clients)
        q = self._queues.get(c)
        if q is None:
            q = self._queues[c] = _ClientQueue()
        turns_late = self._turns_late_at(request)
        if self._deadline_aware and turns_late <= now_s:
            self._enter(q.late, request)
            self._late_ids.add(request.request_id)
        else:
            token = self._enter(q.ready, request)
            self._ready_count[c] += 1
            if self._deadline_aware and math.isfinite(turns_late):
                heapq.heappush(self._expiry, (turns_late, request.request_id, token, request))
        self._members[request.request_id] = c
        self._count[c] += 1
        self._len += 1
        self._set_head(c)

    def remove(self, request_id: int) -> bool:
        """Drop a queued request (aborted, timed out). Returns False if it was not queued."""
        c = self._members.pop(request_id, None)
        if c is None:
            return False
        del self._token[request_id]
        self._leave(request_id, c)
        self._count[c] -= 1
        self._len -= 1
        self._clean_tops(c)
        self._set_head(c)
        return True

    def pop_hopeless(self, now_s: float) -> list[Request]:
        """Remove and return every queued request that can no longer meet its deadline at
        `now_s` (deadline-aware queues only; none otherwise), in (arrival, id) order. The
        policy is not told: the driver resolves them (`on_violation`, `on_drop`)."""
        if not self._deadline_aware:
            return []
        if self._expiry and self._expiry[0][0] <= now_s:
            self._expire(now_s)
        if not self._late_ids:
            return []
        out: list[Request] = []
        for c in self._backlogged:  # a live late entry belongs to a backlogged client
            for _, rid, token, request in self._queues[c].late:
                if self._token.get(rid) == token:
                    out.append(request)
        out.sort(key=lambda r: (r.arrival_s, r.request_id))
        for r in out:
            self.remove(r.request_id)
        return out

    def next_hopeless_s(self) -> float:
        """When the next queued, still savable request turns hopeless (inf: none; only for
        deadline-aware queues). The ranking of a `hopeless_last` queue changes then by time
        alone, so a driver wakes itself there."""
        h = self._expiry
        while h and self._token.get(h[0][1]) != h[0][2]:
            heapq.heappop(h)
        return h[0][0] if h else math.inf

    def _leave(self, rid: int, c: int) -> None:
        if rid in self._late_ids:
            self._late_ids.discard(rid)
        else:
            self._ready_count[c] -= 1

    def peek(self, now_s: float) -> Request | None:
        """The request `pop(now_s)` would return, without removing it."""
        c = self._select(now_s)
        return None if c < 0 else self._head(c)

    def pop(self, now_s: float) -> Request | None:
        """Remove and return the next request in policy order (None when empty); tells the policy
        through `on_dispatch`."""
        c = self._select(now_s)
        if c < 0:
            return None
        return self.pop_client(c, now_s)

    def select(self, now_s: float) -> int:
        """Index of the client whose head `pop(now_s)` would return (-1 when empty). Its head
        is `head(c)`."""
        return self._select(now_s)

    def head(self, c: int) -> Request:
        """The next request of backlogged client index `c`."""
        return self._head(c)

    def pop_client(self, c: int, now_s: float) -> Request:
        """Remove and return the head of backlogged client index `c` (as `pop` does once it
        has chosen `c`); tells the policy through `on_dispatch`."""
        q = self._queues[c]
        _, rid, _, request = heapq.heappop(q.ready if q.ready else q.late)
        del self._members[rid]
        del self._token[rid]
        self._leave(rid, c)
        self._count[c] -= 1
        self._len -= 1
        self._clean_tops(c)
        self._set_head(c)
        self._policy.on_dispatch(request, now_s)
        return request

    # -- internals -------------------------------------------------------------------------------
    def _enter(self, heap: list[_Entry], request: Request) -> int:
        token = self._next_token
        self._next_token += 1
        self._token[request.request_id] = token
        heapq.heappush(heap, (request.arrival_s, request.request_id, token, request))
        return token

    def _ensure(self, n: int) -> None:
        if self._count.shape[0] < n:
            extra = n - self._count.shape[0]
            self._count = np.concatenate([self._count, np.zeros(extra, dtype=np.int64)])
            self._head_arrival = np.concatenate([self._head_arrival, np.full(extra, math.inf)])
            self._head_id = np.concatenate([self._head_id, np.zeros(extra, dtype=np.int64)])
            self._ready_count = np.concatenate([self._ready_count,
                                                np.zeros(extra, dtype=np.int64)])

    @staticmethod
    def _turns_late_at(request: Request) -> float:
        return request.deadline_s - request.unloaded_e2e_s

    def _clean_tops(self, c: int) -> None:
        q = self._queues[c]
        for heap in (q.ready, q.late):
            while heap and self._token.get(heap[0][1]) != heap[0][2]:
                heapq.heappop(heap)

    def _expire(self, now_s: float) -> None:
        """Move every queued request that can no longer meet its deadline from `ready` to `late`
        (wherever it sits in its heap), then fix the heads of the clients concerned."""
        while self._expiry and self._expiry[0][0] <= now_s:
            _, rid, token, request = heapq.heappop(self._expiry)
            if self._token.get(rid) != token:
                continue  # dispatched, removed or re-pushed since
            c = self._members[rid]
            # The stale `ready` entry is skipped lazily; a fresh one goes to `late`.
            self._enter(self._queues[c].late, request)
            self._ready_count[c] -= 1
            self._late_ids.add(rid)
            self._clean_tops(c)
            self._set_head(c)

    def _set_head(self, c: int) -> None:
        q = self._queues[c]
        top = q.ready[0] if q.ready else (q.late[0] if q.late else None)
        if top is None:
            self._head_arrival[c] = math.inf
            self._head_id[c] = 0
            self._backlogged.discard(c)
        else:
            self._head_arrival[c] = top[0]
            self._head_id[c] = top[1]
            self._backlogged.add(c)

    def _head(self, c: int) -> Request:
        q = self._queues[c]
        return (q.ready[0] if q.ready else q.late[0])[3]

    def _select(self, now_s: float) -> int:
        if self._len == 0:
            return -1
        self._ensure(self._policy.n_clients)
        if self._expiry and self._expiry[0][0] <= now_s:
            self._expire(now_s)
        among: Iterable[int] = self._backlogged
        if self._hopeless_last and self._late_ids:
            ready = self._ready_count
            savable = [c for c in self._backlogged if ready[c] > 0]
            if savable:
                among = savable
        n = self._policy.n_clients
        if n <= _DENSE:
            # Few registered clients: one dense vector is cheaper than index arrays.
            full = np.asarray(self._policy.client_scores(now_s), dtype=np.float64)
            if full.shape != (n,):
                raise ValueError(
                    f"{type(self._policy).__name__}.client_scores returned shape {full.shape}, "
                    f"expected ({n},)"
                )
            if len(self._backlogged) <= _FEW:
                return self._select_few(list(among), full)
            idx = np.fromiter(among, dtype=np.int64)
            return self._select_many(idx, full[idx])
        # Otherwise only the compared clients' scores are asked for (`Policy.scores_of`), so a
        # decision costs O(backlogged clients), not O(registered clients).
        if len(self._backlogged) <= _FEW:
            few = list(among)
            return self._select_few(few, self._scores(np.asarray(few, dtype=np.int64), now_s),
                                    aligned=True)
        idx = np.fromiter(among, dtype=np.int64)
        return self._select_many(idx, self._scores(idx, now_s))

    def _scores(self, idx: npt.NDArray[np.int64], now_s: float) -> npt.NDArray[np.float64]:
        scores = np.asarray(self._policy.scores_of(idx, now_s), dtype=np.float64)
        if scores.shape != idx.shape:
            raise ValueError(
                f"{type(self._policy).__name__}.scores_of returned shape {scores.shape}, "
                f"expected {idx.shape}"
            )
        return scores

    def _select_many(self, idx: npt.NDArray[np.int64],
                     scores: npt.NDArray[np.float64]) -> int:
        """The vectorised rule over the client indices `idx` (at least one; any order: the
        least (score, head arrival, head request id) is unique, head ids being distinct) with
        `scores` aligned with `idx`."""
        if np.isnan(scores).any():
            raise ValueError(f"{type(self._policy).__name__}.client_scores returned NaN")
        best = scores.min()
        # All scores +inf (or a -inf) still picks among these clients by arrival and id.
        tied = idx[scores == best] if best < math.inf else idx
        if tied.shape[0] == 1:
            return int(tied[0])
        arrivals = self._head_arrival[tied]
        tied = tied[arrivals == arrivals.min()]
        if tied.shape[0] == 1:
            return int(tied[0])
        return int(tied[np.argmin(self._head_id[tied])])

    def _select_few(self, among: list[int], scores: npt.NDArray[np.float64],
                    aligned: bool = False) -> int:
        """`_select_many`'s pick over a few clients, in Python: the least (score, head arrival,
        head request id). `scores` is indexed by client, or aligned with `among`."""
        vals = scores.tolist()
        best = -1
        key: tuple[float, float, int] | None = None
        arrival = self._head_arrival
        head_id = self._head_id
        for k, c in enumerate(among):
            sc = vals[k] if aligned else vals[c]
            if sc != sc:
                raise ValueError(f"{type(self._policy).__name__}.client_scores returned NaN")
            kk = (sc, float(arrival[c]), int(head_id[c]))
            if key is None or kk < key:
                best, key = c, kk
        return best
