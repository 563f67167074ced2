"""RPM: a per-tenant requests-per-minute limiter, the usual quota of hosted LLM APIs
(docs/policies.md, "Peers").

Sheng et al. (OSDI 2024, §2 and §5) take request-rate limits as the status quo that fair
scheduling should replace: a client may start at most ``rpm`` requests in any sliding window of
``window_s`` seconds (60 s: requests per minute). A limiter in front of an engine either rejects
or delays the excess; a `Policy` can only rank, and the simulator's contract is work-conserving,
so here the excess is *delayed behind* every client within its quota: a client's score is 0 while
fewer than ``rpm`` of its requests were dispatched in ``(now − window_s, now]``, else 1; among
equals, the earliest head arrival goes first (the queue's tie-break), i.e. FCFS within each class.
Without contention this is FCFS; under overload a client above its quota runs only on capacity
nobody within quota wants.

Priority mode: the request's priority is the score at its submission (0 within quota, 1 above),
counting the request itself, so vLLM orders within-quota submissions first, then by arrival.

Parameters: ``rpm`` > 0 (requests per window, default 60), ``window_s`` > 0 (default 60 s).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from exfairs.policies.base import FloatArray, IntArray, Policy
from exfairs.policies.params import positive
from exfairs.policies.registry import register_policy
from exfairs.records import Request


@register_policy("RPM")
class RPMLimiter(Policy):
    """Within-quota clients first (FCFS), clients above ``rpm`` per ``window_s`` after them."""

    def __init__(self, rpm: float = 60.0, window_s: float = 60.0) -> None:
        super().__init__()
        self.rpm = positive("rpm", rpm)
        self.window_s = positive("window_s", window_s)
        self._starts: list[deque[float]] = []  # per client: dispatch times, oldest first
        self._seen: set[int] = set()  # request ids dispatched once (re-admissions do not count)
        # Clients whose window may hold a start (the others' deques are empty): `next_wakeup`
        # looks at these only, not at every registered client.
        self._active: set[int] = set()

    def _grow(self, n_clients: int) -> None:
        while len(self._starts) < n_clients:
            self._starts.append(deque())

    def on_dispatch(self, request: Request, now_s: float) -> None:
        if request.request_id in self._seen:
            return  # re-admission after a preemption: not a new request
        self._seen.add(request.request_id)
        c = self.client_index(request.client)
        self._starts[c].append(now_s)
        self._active.add(c)

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self._seen.discard(request.request_id)

    def on_drop(self, request: Request, now_s: float) -> None:
        self._seen.discard(request.request_id)

    def _count(self, c: int, now_s: float) -> int:
        q = self._starts[c]
        # Times never decrease, so a start that left the window never counts again.
        while q and q[0] <= now_s - self.window_s:
            q.popleft()
        return len(q)

    def client_scores(self, now_s: float) -> FloatArray:
        return np.asarray([1.0 if self._count(c, now_s) >= self.rpm else 0.0
                           for c in range(self.n_clients)])

    def scores_of(self, indices: IntArray, now_s: float) -> FloatArray:
        return np.asarray([1.0 if self._count(c, now_s) >= self.rpm else 0.0
                           for c in indices.tolist()], dtype=np.float64)

    def submission_priority(self, request: Request, now_s: float) -> int:
        # Drivers call this before on_dispatch: count the request itself.
        c = self.client_index(request.client)
        return 1 if self._count(c, now_s) + 1 > self.rpm else 0

    def next_wakeup(self, now_s: float) -> float:
        """When the oldest start in any window leaves it (a client may return within quota)."""
        best = math.inf
        for c in list(self._active):
            self._count(c, now_s)
            q = self._starts[c]
            if q:
                best = min(best, q[0] + self.window_s)
            else:
                self._active.discard(c)
        return best if best > now_s else math.inf

    def state_snapshot(self, now_s: float) -> dict[str, list[float]]:
        return {"starts_in_window": [float(self._count(c, now_s))
                                     for c in range(self.n_clients)]}

    def state_snapshot_of(self, indices: Sequence[int], now_s: float) -> dict[str, list[float]]:
        return {"starts_in_window": [float(self._count(c, now_s)) for c in indices]}
