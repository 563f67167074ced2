"""EDF: earliest deadline first, by latest start time (least slack), across clients.

A request's *latest start time* is ``deadline_s − unloaded_e2e_s``: after it, even an idle engine
could not finish the request in time (the `PolicyQueue`'s "late" rule). Ordering by it is
least-slack first (slack = latest start − now; ``now`` is common to all, so the order is the same).

Client score (lower goes first), over the client's waiting requests:
* the earliest latest-start time among requests that can still meet their deadline, else
* ``LATE_OFFSET_S`` + the earliest deadline among requests that can no longer meet it (so that
  hopeless requests never overtake ones that can still be saved, the classic EDF domino effect),
* requests without an e2e SLO have an infinite latest start: they go after every request that
  has a deadline, in arrival order (the queue's tie-break).

Within a client the `PolicyQueue` releases ready requests before late ones, in arrival order; with
one SLO per client (the workload's case) that is also latest-start order.

Priority mode: the request's own latest start time (or ``LATE_OFFSET_S`` + deadline if it is
already late at submission) in milliseconds, rounded; requests without a deadline get
``NO_DEADLINE_PRIORITY``. "Waiting" is tracked from hooks as in VTC: from `on_arrival` or
`on_preempt` until `on_dispatch`, `on_finish` or `on_drop`.

No parameters.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from exfairs.policies.base import FloatArray, IntArray, Policy
from exfairs.policies.registry import register_policy
from exfairs.records import Request

#: Added to the deadline of a request that can no longer meet it (seconds, ~31,700 years).
LATE_OFFSET_S = 1e12
#: Priority-mode priority of requests without an e2e deadline (after every late one).
NO_DEADLINE_PRIORITY = 2**62

_READY, _LATE = 0, 1


def _latest_start_s(request: Request) -> float:
    return request.deadline_s - request.unloaded_e2e_s


@register_policy("EDF")
class EDF(Policy):
    """Least slack (earliest latest-start time) first; see the module docstring."""

    deadline_aware = True
    priority_scale = 1000.0  # seconds → integer milliseconds

    def __init__(self) -> None:
        super().__init__()
        self._ready: list[list[tuple[float, int, Request]]] = []  # (latest start, id, request)
        self._late: list[list[tuple[float, int, Request]]] = []  # (deadline, id, request)
        self._where: dict[int, int] = {}  # waiting request id → _READY or _LATE
        self._ready_head = np.zeros(0)  # earliest latest-start among ready requests (inf: none)
        self._score = np.zeros(0)

    def _grow(self, n_clients: int) -> None:
        extra = n_clients - self._score.shape[0]
        if extra > 0:
            self._ready.extend([] for _ in range(extra))
            self._late.extend([] for _ in range(extra))
            self._ready_head = np.concatenate([self._ready_head, np.full(extra, math.inf)])
            self._score = np.concatenate([self._score, np.full(extra, math.inf)])

    # -- hooks -----------------------------------------------------------------------------------
    def on_arrival(self, request: Request, now_s: float) -> None:
        self._wait(request, now_s)

    def on_preempt(self, request: Request, now_s: float) -> None:
        if request.request_id not in self._where:
            self._wait(request, now_s)

    def on_dispatch(self, request: Request, now_s: float) -> None:
        self._unwait(request)

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self._unwait(request)

    def on_drop(self, request: Request, now_s: float) -> None:
        self._unwait(request)

    # -- ranking ---------------------------------------------------------------------------------
    def client_scores(self, now_s: float) -> FloatArray:
        # Moving requests whose latest start passed is bookkeeping of a pure function of
        # (waiting requests, now): repeated calls at the same time give the same scores.
        self._expire(now_s)
        return self._score.copy()

    def scores_of(self, indices: IntArray, now_s: float) -> FloatArray:
        self._expire(now_s)
        return self._score[indices]

    def submission_priority(self, request: Request, now_s: float) -> int:
        latest = _latest_start_s(request)
        if math.isinf(latest):
            return NO_DEADLINE_PRIORITY
        key = latest if latest > now_s else LATE_OFFSET_S + request.deadline_s
        return round(key * self.priority_scale)

    def state_snapshot(self, now_s: float) -> dict[str, list[float]]:
        self._expire(now_s)
        return {
            "head_latest_start_s": [float(x) for x in self._ready_head],
            "score": [float(x) for x in self._score],
        }

    def state_snapshot_of(self, indices: Sequence[int], now_s: float) -> dict[str, list[float]]:
        self._expire(now_s)
        idx = np.asarray(indices, dtype=np.int64)
        return {"head_latest_start_s": self._ready_head[idx].tolist(),
                "score": self._score[idx].tolist()}

    # -- internals -------------------------------------------------------------------------------
    def _wait(self, request: Request, now_s: float) -> None:
        c = self.client_index(request.client)
        self._expire(now_s)
        latest = _latest_start_s(request)
        if latest <= now_s:
            self._where[request.request_id] = _LATE
            heapq.heappush(self._late[c], (request.deadline_s, request.request_id, request))
        else:
            self._where[request.request_id] = _READY
            heapq.heappush(self._ready[c], (latest, request.request_id, request))
        self._refresh(c)

    def _unwait(self, request: Request) -> None:
        if self._where.pop(request.request_id, None) is not None:
            self._refresh(self.client_index(request.client))

    def _refresh(self, c: int) -> None:
        ready, late = self._ready[c], self._late[c]
        while ready and self._where.get(ready[0][1]) != _READY:
            heapq.heappop(ready)
        while late and self._where.get(late[0][1]) != _LATE:
            heapq.heappop(late)
        self._ready_head[c] = ready[0][0] if ready else math.inf
        if ready:
            self._score[c] = ready[0][0]
        elif late:
            self._score[c] = LATE_OFFSET_S + late[0][0]
        else:
            self._score[c] = math.inf

    def _expire(self, now_s: float) -> None:
        for c in np.flatnonzero(self._ready_head <= now_s).tolist():
            ready, late = self._ready[c], self._late[c]
            while ready and ready[0][0] <= now_s:
                _, rid, request = heapq.heappop(ready)
                if self._where.get(rid) == _READY:
                    self._where[rid] = _LATE
                    heapq.heappush(late, (request.deadline_s, rid, request))
            self._refresh(c)
