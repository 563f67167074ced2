"""VTC: the Virtual Token Counter of Sheng et al., "Fairness in Serving Large Language Models",
OSDI 2024 (Algorithm 2), as a `Policy` (docs/design.md §3).

Each client i has a counter c_i (tokens of weighted service, divided by the client's weight w_i);
the backlogged client with the smallest counter goes first.

Charges (per request, in tokens):
* ``c_i += w_p · prompt_tokens / w_i`` when the request is dispatched for the first time
  (`on_dispatch`: admission in gate and engine modes, submission in priority mode). Re-dispatching a
  preempted request charges nothing: recomputation is the engine's choice, not the client's.
* ``c_i += w_q · decode_tokens / w_i`` as output tokens are generated (`on_service`). The
  ``prefill_tokens`` reported to `on_service` are **not** charged again: the prompt was charged in
  full at dispatch, as in the paper.

Counter lift (no banked credit): when a client with no waiting request gets one (`on_arrival`), its
counter becomes ``max(c_i, ref)`` where ``ref`` is
1. the smallest counter among clients with a waiting request, if any (the paper's rule);
2. otherwise the smallest *start tag* (the client's counter when the request was dispatched) among
   dispatched, unfinished requests: the virtual time of start-time fair queuing (Goyal et al.,
   SIGCOMM 1996). The paper uses the counter of the client that last left the queue here; with the
   priorities of priority mode, fixed at submission, that rule lifts every arriving client to the
   counter of the latest submitter and degenerates to FCFS, while the start tag of the oldest
   unfinished request is the level the engine is actually serving;
3. otherwise (nothing waiting or in flight) the counter of the client that last left the queue
   (the paper's rule).

"Waiting" is tracked from the hooks: a request waits from `on_arrival` (and again from `on_preempt`,
since a preempted request returns to a waiting queue) until its `on_dispatch`, `on_finish` or
`on_drop`. The simulator calls `on_dispatch` again when the engine re-admits a preempted request
(gate and priority modes; engine mode's queue does it itself), so a preempted request stops
counting as waiting when it runs again (without that, every arrival of another client was lifted to
the preempted client's counter).

Priority mode (the driver calls `submission_priority` before `on_dispatch`; the first such call
switches this on). Every request is submitted, and so dispatched, on arrival, and its priority is
fixed then; what the engine's queue holds is invisible to the policy. Two changes make the counter
at submission a start tag of start-time fair queuing (Goyal et al., SIGCOMM 1996):

* *Charge at submission what the request asks for*: ``w_p·prompt + w_q·output_tokens`` (the
  requested maximum, known at submission as vLLM's ``max_tokens``; the paper's "VTC (oracle)"
  variant, §4.3 of Sheng et al.), so a client's queued requests are charged in full and its next
  request's priority lies behind them. Output tokens then reported by `on_service` are paid from
  that prepayment; tokens beyond it are charged as usual, and prepaid tokens never generated (a
  request that stops early or is dropped) stay as credit for the client's later tokens. Charging
  only the prompt at submission under-charges a client with a long queue: its priorities fell
  behind its real service and VTC degenerated towards FCFS.
* *Backlogged = submitted and unfinished*: the lift reference is rule 2 below (rule 1's "clients
  with waiting requests" would only ever see preempted requests).

Parameters: ``w_p`` (default 1) and ``w_q`` (default 2), finite and ≥ 0. Per-client weights come
from `add_client` (``ClientInfo.weight``). In priority mode the priority is ``round(c_i)`` at
submission, after the lift.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from exfairs.policies.base import FloatArray, IntArray, Policy
from exfairs.policies.params import non_negative
from exfairs.policies.registry import register_policy
from exfairs.records import Request


@register_policy("VTC")
class VTC(Policy):
    """Virtual token counters with lift; `w_p`, `w_q` are the prompt and output token weights."""

    priority_scale = 1.0  # counters are already token counts

    def __init__(self, w_p: float = 1.0, w_q: float = 2.0) -> None:
        super().__init__()
        self.w_p = non_negative("w_p", w_p)
        self.w_q = non_negative("w_q", w_q)
        self._counter = np.zeros(0)
        self._waiting = np.zeros(0, dtype=np.int64)
        self._waiting_clients: set[int] = set()  # client indices with `_waiting` > 0
        self._waiting_ids: dict[int, int] = {}  # request id → client index, while waiting
        self._tags: dict[int, float] = {}  # request id → start tag, dispatched and unfinished
        self._tag_heap: list[tuple[float, int]] = []  # (start tag, request id), lazily cleaned
        self._last_left = 0.0  # counter of the client whose waiting count last dropped to 0
        self._precharge = False  # priority mode: charge the requested output at submission
        self._prepaid = np.zeros(0)  # per client: output tokens charged but not yet generated

    def _grow(self, n_clients: int) -> None:
        extra = n_clients - self._counter.shape[0]
        if extra > 0:
            self._counter = np.concatenate([self._counter, np.zeros(extra)])
            self._waiting = np.concatenate([self._waiting, np.zeros(extra, dtype=np.int64)])
            self._prepaid = np.concatenate([self._prepaid, np.zeros(extra)])

    # -- hooks -----------------------------------------------------------------------------------
    def on_arrival(self, request: Request, now_s: float) -> None:
        c = self.client_index(request.client)
        if self._waiting[c] == 0:
            self._counter[c] = max(self._counter[c], self._lift_reference())
        self._wait(request.request_id, c)

    def on_dispatch(self, request: Request, now_s: float) -> None:
        c = self.client_index(request.client)
        self._unwait(request.request_id)
        if request.request_id not in self._tags:  # first dispatch: charge the prompt
            tag = float(self._counter[c])
            self._tags[request.request_id] = tag
            heapq.heappush(self._tag_heap, (tag, request.request_id))
            cost = self.w_p * request.prompt_tokens
            if self._precharge:
                cost += self.w_q * request.output_tokens
                self._prepaid[c] += request.output_tokens
            self._counter[c] += cost / self._weights[c]
        if self._waiting[c] == 0:
            self._last_left = float(self._counter[c])

    def on_service(
        self, client: str, prefill_tokens: int, decode_tokens: int, now_s: float
    ) -> None:
        self._charge_decode(self.client_index(client), decode_tokens)

    def on_service_run(self, decode_tokens: Sequence[tuple[str, int]],
                       ends_s: Sequence[float]) -> None:
        # Counters are additive and ignore time: one charge per client for the whole run (equal
        # to per-step charges whenever w_q·tokens/weight sums exactly, e.g. integer weights).
        # Prepaid tokens (priority mode) are used up in the same total as step by step.
        k = len(ends_s)
        for client, d in decode_tokens:
            self._charge_decode(self.client_index(client), d * k)

    def _charge_decode(self, c: int, decode_tokens: int) -> None:
        """Charge `decode_tokens` output tokens to client index `c`, first from its prepayment."""
        # Hot (once per client per engine step): nothing is prepaid outside priority mode, and
        # float(weight) divides to the same double as the numpy scalar would.
        if self._precharge and self._prepaid[c] > 0:
            paid = min(float(self._prepaid[c]), float(decode_tokens))
            self._prepaid[c] -= paid
            decode_tokens -= int(paid)
        self._counter[c] += self.w_q * decode_tokens / float(self._weights[c])

    def on_preempt(self, request: Request, now_s: float) -> None:
        if request.request_id not in self._waiting_ids:
            self._wait(request.request_id, self.client_index(request.client))

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self._forget(request.request_id)

    def on_drop(self, request: Request, now_s: float) -> None:
        self._forget(request.request_id)

    # -- ranking ---------------------------------------------------------------------------------
    def client_scores(self, now_s: float) -> FloatArray:
        return self._counter.copy()

    def scores_of(self, indices: IntArray, now_s: float) -> FloatArray:
        return self._counter[indices]

    def submission_priority(self, request: Request, now_s: float) -> int:
        """Priority mode: the client's counter (after the lift at arrival), i.e. the request's
        start tag; switches on the charging at submission described in the module docstring."""
        self._precharge = True
        return round(float(self._counter[self.client_index(request.client)]))

    def state_snapshot(self, now_s: float) -> dict[str, list[float]]:
        return {"counter": [float(x) for x in self._counter]}

    def state_snapshot_of(self, indices: Sequence[int], now_s: float) -> dict[str, list[float]]:
        return {"counter": self._counter[np.asarray(indices, dtype=np.int64)].tolist()}

    @property
    def counters(self) -> FloatArray:
        """Per-client counters (weighted tokens), by client index (copy)."""
        return self._counter.copy()

    def waiting_counts(self) -> npt.NDArray[np.int64]:
        """Requests the policy believes are waiting, per client index (copy)."""
        return self._waiting.copy()

    # -- internals -------------------------------------------------------------------------------
    def _wait(self, rid: int, c: int) -> None:
        if rid not in self._waiting_ids:
            self._waiting_ids[rid] = c
            self._waiting[c] += 1
            self._waiting_clients.add(c)

    def _unwait(self, rid: int) -> None:
        c = self._waiting_ids.pop(rid, None)
        if c is not None:
            self._waiting[c] -= 1
            if self._waiting[c] == 0:
                self._waiting_clients.discard(c)

    def _forget(self, rid: int) -> None:
        c = self._waiting_ids.get(rid)
        self._unwait(rid)
        if c is not None and self._waiting[c] == 0:
            self._last_left = float(self._counter[c])
        had_tag = self._tags.pop(rid, None) is not None
        if had_tag and len(self._tag_heap) > 2 * len(self._tags) + 1024:
            # Bound the lazily cleaned heap by the live tags.
            self._tag_heap = [(t, r) for r, t in self._tags.items()]
            heapq.heapify(self._tag_heap)

    def _lift_reference(self) -> float:
        waiting = self._waiting_clients
        if not self._precharge and waiting:
            # Over the waiting clients only (not a mask over every registered one); the
            # minimum of the same values, whatever the order.
            counter = self._counter
            if len(waiting) <= 8:
                return float(min(counter[c] for c in waiting))
            return float(counter[np.fromiter(waiting, dtype=np.int64)].min())
        heap = self._tag_heap
        while heap and self._tags.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if heap:
            return heap[0][0]
        return self._last_left
