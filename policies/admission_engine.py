"""Admission inside the engine's scheduler (engine mode, ``ENGINE_<POLICY>``): the rules of
`exfairs.policies.admission` (hopeless rejection, the predictive limit) applied where the
policy's queue is the engine's waiting queue, for the simulator and the vLLM plug-in alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from exfairs.policies.admission import AdmissionConfig, SloAdmission
from exfairs.records import Request


class EngineAdmission:
    """The admission rules of `exfairs.policies.admission` applied inside the engine's scheduler
    (engine mode, ``ENGINE_<POLICY>``), where the policy's `PolicyQueue` is the engine's waiting
    queue: the simulator's `exfairs.sim.queues.PolicyWaiting` and the vLLM plug-in's queue both
    use it, so the rules live in one place.

    * ``hopeless=reject``: at each decision point `refuse_hopeless` takes out the queued requests
      that can no longer meet their deadline and were never admitted (a request preempted back
      into the queue stays: it holds output already, and its record is a served one);
    * ``limit=predictive``: before the scheduler admits the queue's head it asks `head`, which
      applies `SloAdmission.decide` with the requests admitted and not yet finished in place of
      the gate's in-flight count (a preempted request still counts: it will be re-admitted).
      ``"wait"`` stops admission for this step; a late head is refused (``hopeless=reject``) or
      admitted without binding the others, as at the gate. A re-admission after a preemption is
      never held back: that request was admitted once and its budget binds already.

    `hopeless=demote` needs nothing here: the queue is built with ``hopeless_last``. No clock:
    times are passed in; the caller reports admissions (`admitted`) and departures (`left`).
    """

    def __init__(self, config: AdmissionConfig, limiter: SloAdmission | None = None) -> None:
        self.config = config
        self.limiter = limiter
        self.reject = config.hopeless == "reject"
        self._admitted: set[int] = set()  # request ids admitted once and not finished since

    @property
    def inflight(self) -> int:
        """Requests admitted and not yet finished (running, or preempted back to the queue)."""
        return len(self._admitted)

    def was_admitted(self, request_id: int) -> bool:
        """True when `request_id` was admitted before (a re-admission after a preemption)."""
        return request_id in self._admitted

    def refuse_hopeless(self, queue: PolicyQueueLike, now_s: float) -> list[Request]:
        """``hopeless=reject``: remove and return the never-admitted queued requests that can no
        longer meet their deadline at `now_s` (none otherwise), in (arrival, id) order."""
        if not self.reject:
            return []
        out = []
        for r in queue.pop_hopeless(now_s):
            if r.request_id in self._admitted:
                queue.push(r, now_s)  # preempted earlier: back in the queue, still late
            else:
                out.append(r)
        return out

    def head(self, queue: PolicyQueueLike, now_s: float,
             refuse: Callable[[Request, float], None] | None = None,
             ) -> tuple[str, list[Request]]:
        """The verdict on the queue's head at `now_s` — ``"admit"``, ``"late"`` (admit, not
        binding) or ``"wait"`` (stop admitting this step) — and the requests refused on the way
        (late heads under ``hopeless=reject``, removed from `queue`). The head is then the
        request `queue.pop(now_s)` returns (the policy's state is not touched here).

        With `refuse`, each refused head is handed to it (request, `now_s`) as soon as it leaves
        the queue, *before* the next head is chosen, and is not in the returned list. A caller
        whose refusals reach the policy (``on_violation``, ``on_drop``) must pass it: a policy
        that reacts to them (ExFairS counts violations) would otherwise rank the queue
        differently at the pop than when its head was judged, and the scheduler would admit a
        request the limit never saw — binding, whatever its budget."""
        refused: list[Request] = []
        limiter = self.limiter
        while len(queue):
            if limiter is None:
                return "admit", refused
            head = queue.head(queue.select(now_s))
            if head.request_id in self._admitted:
                return "admit", refused
            verdict = limiter.decide(head, now_s, len(self._admitted))
            if verdict == "late" and self.reject:
                queue.remove(head.request_id)
                if refuse is not None:
                    refuse(head, now_s)
                else:
                    refused.append(head)
                continue
            return verdict, refused
        return "wait", refused

    def admitted(self, request: Request, now_s: float, verdict: str = "admit") -> None:
        """The scheduler admitted `request` at `now_s` after `head` said `verdict`."""
        rid = request.request_id
        if rid in self._admitted:
            return
        self._admitted.add(rid)
        if self.limiter is not None:
            self.limiter.released(request, now_s, binding=verdict == "admit")

    def left(self, request_id: int) -> None:
        """`request_id` left the engine (finished or dropped)."""
        self._admitted.discard(request_id)
        if self.limiter is not None:
            self.limiter.finished(request_id)


class PolicyQueueLike(Protocol):
    """The part of `exfairs.policies.queue.PolicyQueue` `EngineAdmission` uses."""

    def __len__(self) -> int: ...
    def select(self, now_s: float) -> int: ...
    def head(self, c: int) -> Request: ...
    def remove(self, request_id: int) -> bool: ...
    def push(self, request: Request, now_s: float) -> None: ...
    def pop_hopeless(self, now_s: float) -> list[Request]: ...
