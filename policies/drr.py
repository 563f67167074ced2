"""DRR: deficit round robin over clients, the fairness mechanism of DLPM (docs/policies.md).

Cao et al., "Locality-aware Fair Scheduling in LLM Serving" (2025, arXiv:2501.14312) schedule by
*Deficit Longest Prefix Match*: deficit round robin (Shreedhar and Varghese, SIGCOMM 1995) over
clients, with a request picked within the visited client by prefix locality. The simulator has
no prefix cache, so what remains is the deficit round robin, with requests of a client in arrival
order:

* the backlogged clients form a rotation; the client at its head is served while its deficit
  ``d_i > 0``;
* service is charged as VTC charges it: ``d_i −= w_p·prompt / w_i`` when a request is first
  dispatched, ``d_i −= w_q·decode / w_i`` as output tokens are generated (while the client is not
  at the head too: its in-flight requests keep consuming);
* when the head's deficit is ≤ 0 (or it has nothing waiting) it goes to the back of the rotation
  and the next client gets ``d_j += Q``; when every client in the rotation is in deficit, whole
  rounds are added at once (each client ``+k·Q`` for the smallest ``k`` that makes one positive),
  which is what visiting them ``k`` times would do;
* a client whose last waiting request leaves goes out of the rotation and its deficit is reset to 0
  (DRR does not bank credit for idle flows); it rejoins at the back.

Client score = its position in the rotation (head = 0); clients outside come after, by arrival.
Priority mode: the position at submission (vLLM then orders by it, then by arrival) — a fixed
snapshot of the rotation, so weaker than gate or engine mode.

Parameters: ``quantum`` Q > 0 (weighted tokens per visit, default 512), ``w_p`` (default 1),
``w_q`` (default 2), finite and ≥ 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from exfairs.policies.base import FloatArray, IntArray, Policy
from exfairs.policies.params import non_negative, positive
from exfairs.policies.registry import register_policy
from exfairs.records import Request


@register_policy("DRR")
class DeficitRoundRobin(Policy):
    """Deficit round robin with quantum ``quantum`` (weighted tokens)."""

    def __init__(self, quantum: float = 512.0, w_p: float = 1.0, w_q: float = 2.0) -> None:
        super().__init__()
        self.quantum = positive("quantum", quantum)
        self.w_p = non_negative("w_p", w_p)
        self.w_q = non_negative("w_q", w_q)
        self._deficit = np.zeros(0)
        self._waiting = np.zeros(0, dtype=np.int64)
        self._waiting_ids: dict[int, int] = {}
        self._charged: set[int] = set()  # requests whose prompt was charged
        self._rotation: deque[int] = deque()
        self._in_rotation: set[int] = set()

    def _grow(self, n_clients: int) -> None:
        extra = n_clients - self._deficit.shape[0]
        if extra > 0:
            self._deficit = np.concatenate([self._deficit, np.zeros(extra)])
            self._waiting = np.concatenate([self._waiting, np.zeros(extra, dtype=np.int64)])

    # -- hooks -----------------------------------------------------------------------------------
    def on_arrival(self, request: Request, now_s: float) -> None:
        self._wait(request)

    def on_preempt(self, request: Request, now_s: float) -> None:
        self._wait(request)

    def on_dispatch(self, request: Request, now_s: float) -> None:
        c = self.client_index(request.client)
        self._unwait(request.request_id)
        if request.request_id not in self._charged:
            self._charged.add(request.request_id)
            self._deficit[c] -= self.w_p * request.prompt_tokens / self._weights[c]
        self._settle()

    def on_service(self, client: str, prefill_tokens: int, decode_tokens: int,
                   now_s: float) -> None:
        if decode_tokens:
            c = self.client_index(client)
            self._deficit[c] -= self.w_q * decode_tokens / self._weights[c]
            self._settle()

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self._forget(request.request_id)

    def on_drop(self, request: Request, now_s: float) -> None:
        self._forget(request.request_id)

    # -- ranking ---------------------------------------------------------------------------------
    def client_scores(self, now_s: float) -> FloatArray:
        out = np.full(self.n_clients, float(self.n_clients))
        for pos, c in enumerate(self._rotation):
            out[c] = pos
        return out

    def scores_of(self, indices: IntArray, now_s: float) -> FloatArray:
        # O(rotation + asked): the rotation holds only clients with waiting requests.
        pos = {c: float(k) for k, c in enumerate(self._rotation)}
        outside = float(self.n_clients)
        return np.asarray([pos.get(c, outside) for c in indices.tolist()], dtype=np.float64)

    def state_snapshot(self, now_s: float) -> dict[str, list[float]]:
        return {"deficit": [float(x) for x in self._deficit],
                "position": [float(x) for x in self.client_scores(now_s)]}

    def state_snapshot_of(self, indices: Sequence[int], now_s: float) -> dict[str, list[float]]:
        idx = np.asarray(indices, dtype=np.int64)
        return {"deficit": self._deficit[idx].tolist(),
                "position": self.scores_of(idx, now_s).tolist()}

    # -- internals -------------------------------------------------------------------------------
    def _wait(self, request: Request) -> None:
        rid = request.request_id
        if rid in self._waiting_ids:
            return
        c = self.client_index(request.client)
        self._waiting_ids[rid] = c
        self._waiting[c] += 1
        if c not in self._in_rotation:
            self._in_rotation.add(c)
            # Joins at the back with no credit and no debt (charges while out do not count).
            self._deficit[c] = 0.0
            self._rotation.append(c)
        self._settle()

    def _unwait(self, rid: int) -> None:
        c = self._waiting_ids.pop(rid, None)
        if c is not None:
            self._waiting[c] -= 1

    def _forget(self, rid: int) -> None:
        self._unwait(rid)
        self._charged.discard(rid)
        self._settle()

    def _settle(self) -> None:
        """Advance the rotation until its head is waiting and has a positive deficit."""
        rot = self._rotation
        d = self._deficit
        # Drop clients with nothing waiting (reset: no banked credit).
        if any(self._waiting[c] == 0 for c in rot):
            head = rot[0]
            for c in [c for c in rot if self._waiting[c] == 0]:
                rot.remove(c)
                self._in_rotation.discard(c)
                d[c] = 0.0
            if rot and rot[0] != head:
                # The head left, so the next client is visited and gets its quantum (as in
                # Shreedhar and Varghese's DRR). Without it a client in debt that became head this
                # way was passed over uncredited while leaving-and-rejoining clients were credited
                # again and again: the engine-mode livelock of conformance case 9 (issue 15).
                d[rot[0]] += self.quantum
        if not rot:
            return
        if d[rot[0]] > 0:
            return
        members = np.fromiter(rot, dtype=np.int64, count=len(rot))
        if (d[members] <= 0).all():
            # r whole rounds at once, r = the most every member can take and stay ≤ 0 (a client
            # needs floor(−d/Q) + 1 visits to turn positive); the rotation's order is unchanged.
            r = int(np.floor(-d[members] / self.quantum).min())
            if r > 0:
                d[members] += r * self.quantum
        while d[rot[0]] <= 0:
            rot.rotate(-1)
            d[rot[0]] += self.quantum
