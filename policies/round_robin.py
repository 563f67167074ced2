"""ROUND_ROBIN: one queue per client, backlogged clients visited in turn (docs/design.md §3).

Gate and engine modes: a client's score is the sequence number of its last dispatch (−1 if never
served; the re-dispatch of a preempted request is not a new turn), so the backlogged client
served longest ago goes next; never-served clients and clients returning after an idle spell
join the rotation at its front, ordered by their head request's arrival (the queue's tie-break).
With n clients continuously backlogged this visits them in a fixed cycle, one request each.

Priority mode: the k-th request a client submits gets priority k (1, 2, 3, ...), so the engine's
waiting queue interleaves clients request by request.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from exfairs.policies.base import FloatArray, IntArray, Policy
from exfairs.policies.registry import register_policy
from exfairs.records import Request


@register_policy("ROUND_ROBIN")
class RoundRobin(Policy):
    """Per-client round robin by request count (no parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self._last_dispatch = np.zeros(0)  # sequence number of the last dispatch, −1 = never
        self._submitted = np.zeros(0, dtype=np.int64)  # requests arrived, per client
        self._rank: dict[int, int] = {}  # request id → k (its client's k-th request)
        self._seq = 0
        self._dispatched: set[int] = set()  # dispatched, unfinished request ids

    def _grow(self, n_clients: int) -> None:
        extra = n_clients - self._last_dispatch.shape[0]
        if extra > 0:
            self._last_dispatch = np.concatenate([self._last_dispatch, np.full(extra, -1.0)])
            self._submitted = np.concatenate(
                [self._submitted, np.zeros(extra, dtype=np.int64)]
            )

    def on_arrival(self, request: Request, now_s: float) -> None:
        c = self.client_index(request.client)
        self._submitted[c] += 1
        self._rank[request.request_id] = int(self._submitted[c])

    def on_dispatch(self, request: Request, now_s: float) -> None:
        # A re-dispatch after a preemption is not a turn: the recomputation is the engine's
        # choice. Counting it made the re-admitted client the most recently served, so engine
        # mode's default victim rule picked it again at the next shortage, and two clients could
        # evict each other's prefill forever (the engine-mode livelock of issue 13).
        rid = request.request_id
        if rid in self._dispatched:
            return
        self._dispatched.add(rid)
        self._last_dispatch[self.client_index(request.client)] = self._seq
        self._seq += 1
        self._rank.pop(rid, None)

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self._rank.pop(request.request_id, None)
        self._dispatched.discard(request.request_id)

    def on_drop(self, request: Request, now_s: float) -> None:
        self._rank.pop(request.request_id, None)
        self._dispatched.discard(request.request_id)

    def client_scores(self, now_s: float) -> FloatArray:
        return self._last_dispatch.copy()

    def scores_of(self, indices: IntArray, now_s: float) -> FloatArray:
        return self._last_dispatch[indices]

    def submission_priority(self, request: Request, now_s: float) -> int:
        """k for the client's k-th arrived request (drivers call this before `on_dispatch`)."""
        rank = self._rank.get(request.request_id)
        if rank is None:  # not seen by on_arrival: rank it as the client's next request
            rank = int(self._submitted[self.client_index(request.client)]) + 1
        return rank

    def state_snapshot(self, now_s: float) -> dict[str, list[float]]:
        submitted: npt.NDArray[np.int64] = self._submitted
        return {
            "last_dispatch_seq": [float(x) for x in self._last_dispatch],
            "submitted": [float(x) for x in submitted],
        }

    def state_snapshot_of(self, indices: Sequence[int], now_s: float) -> dict[str, list[float]]:
        idx = np.asarray(indices, dtype=np.int64)
        return {"last_dispatch_seq": self._last_dispatch[idx].tolist(),
                "submitted": self._submitted[idx].astype(np.float64).tolist()}
