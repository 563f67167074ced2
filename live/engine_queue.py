"""The waiting queue the scheduler plug-in gives vLLM: vLLM's own queue plus, during an engine-mode
run, the run's `PolicyQueue` (docs/design.md §2, engine mode).

Requests that are not part of an engine-mode run (warm-ups, gate and priority runs, other traffic)
stay in vLLM's own queue (`base`, FCFS or priority as the engine was configured) and go first, so
the plug-in changes nothing for them. Requests of an engine-mode run are held here and ordered by
the run's policy: `PolicyQueue` re-ranks at every `peek`/`pop` (the policy's client scores; ties
by head arrival, then request id; within a client, arrival order, deadline-aware policies putting
requests that can still meet their deadline first) and `pop` tells the policy (`on_dispatch`).
A preempted request comes back through `prepend_request` and keeps its arrival time, so it
returns to the front of its client's queue, as in the simulator's `PolicyWaiting`.

New requests wait in `pending` until the next `schedule()` entry, where `ingest` hands them to
the run (so the policy hears of them at the decision point, after the deadlines that passed).
If the policy raises, `fallback` moves the run's requests into `base` in arrival order.

With engine-mode admission (``RunSpec.admission``; the simulator's rules, `EngineAdmission`)
`admission_step` refuses hopeless requests at the decision point and judges the head; after
each admission `pop_request` judges the next head, and `on_block` tells the scheduler to stop
admitting when the predictive limit holds it back.

vLLM 0.32 calls ``pop_request`` then ``prepend_requests`` for requests it skips (blocked on KV
transfer, grammars, LoRA limits); none of those occur in ExFairS runs, and the policy would hear
one extra `on_dispatch` for such a request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from exfairs.live.engine_run import EngineRun
from exfairs.live.inprocess import import_vllm
from exfairs.records import Request

# Through importlib: to mypy these are Any (see exfairs.live.engine_plugin).
RequestQueue: Any = import_vllm("vllm.v1.core.sched.request_queue").RequestQueue
VRequest = Any  # vllm.v1.request.Request


class PluginWaitingQueue(RequestQueue):  # type: ignore[misc]  # (Any base)
    """vLLM's `RequestQueue` interface over `base` + the active run's policy queue.

    `tag(vreq)` returns the workload request of a vLLM request of the active run, else None.
    `now_s` is the run-clock time of the current decision point (set by the scheduler)."""

    def __init__(self, base: Any, tag: Callable[[VRequest], Request | None]) -> None:
        self.base = base
        self.run: EngineRun | None = None
        self.now_s = 0.0
        self._tag = tag
        self._members: dict[int, VRequest] = {}  # workload id → vLLM request, in run.queue
        self._pending: list[tuple[VRequest, Request]] = []
        # Engine-mode admission (`admission_step`): requests refused this step, out of the
        # queue, for the scheduler to finish; the verdict on the head the next pop takes; and
        # what to call when the limit holds the next head back in the middle of a step.
        self.refused: list[VRequest] = []
        self._verdict = "admit"
        self.on_block: Callable[[], None] | None = None

    # -- run control -------------------------------------------------------------------------------
    def _engine_request(self, vreq: VRequest) -> Request | None:
        run = self.run
        if run is None or not run.engine_mode:
            return None
        return self._tag(vreq)

    def ingest(self, now_s: float) -> None:
        """A decision point: hand the pending arrivals to the run (which pushes them into its
        queue after resolving deadlines), or fall back if the policy fails."""
        self.now_s = now_s
        run = self.run
        if run is None:
            return
        arrivals = [r for _, r in self._pending]
        for vreq, r in self._pending:
            self._members[r.request_id] = vreq
        self._pending = []
        run.begin_step(now_s, arrivals)
        if not run.engine_mode:
            self.fallback()

    def admission_step(self) -> str:
        """A decision point of a run with engine-mode admission (`EngineRun.admission`): refuse
        the hopeless never-admitted requests, then judge the policy's head
        (`EngineAdmission.head`): ``"wait"`` means admit nothing of the run this step. Refused
        requests leave the queue for `refused`; the scheduler finishes them."""
        run = self.run
        if run is None or run.admission is None or run.queue is None or not run.engine_mode:
            return "admit"
        adm, queue = run.admission, run.queue
        try:
            self._refuse(adm.refuse_hopeless(queue, self.now_s))
            return self._judge()
        except Exception as exc:  # the policy's scores: contained, see EngineRun.fail
            run.fail("client_scores (admission)", exc)
            self.fallback()
            return "admit"

    def _judge(self) -> str:
        run = self.run
        assert run is not None and run.admission is not None and run.queue is not None
        if not self._members or run.admission.limiter is None:
            self._verdict = "admit"
            return "admit"
        verdict, refused = run.admission.head(run.queue, self.now_s)
        self._refuse(refused)
        self._verdict = verdict
        return verdict

    def _refuse(self, requests: list[Request]) -> None:
        run = self.run
        assert run is not None
        for r in requests:
            vreq = self._members.pop(r.request_id, None)
            if vreq is not None:
                self.refused.append(vreq)
                run.rejected.append((r.request_id, self.now_s))

    def fallback(self) -> None:
        """Move every request held for the run into `base`, in arrival order."""
        held = list(self._members.values()) + [v for v, _ in self._pending]
        self._members.clear()
        self._pending = []
        for vreq in sorted(held, key=lambda v: (v.arrival_time, v.request_id)):
            self.base.add_request(vreq)
        if self.run is not None:
            self.run.queue = None

    def _policy_call(self, fn: Any, *args: Any) -> Request | None:
        run = self.run
        assert run is not None and run.queue is not None
        try:
            return fn(*args)  # type: ignore[no-any-return]
        except Exception as exc:  # the policy's scores: contained, see EngineRun.fail
            run.fail("client_scores (queue order)", exc)
            self.fallback()
            return None

    def _run_queue_ready(self) -> bool:
        run = self.run
        return run is not None and run.engine_mode and run.queue is not None and bool(
            self._members)

    # -- RequestQueue ------------------------------------------------------------------------------
    def add_request(self, request: VRequest) -> None:
        r = self._engine_request(request)
        if r is None:
            self.base.add_request(request)
        else:
            self._pending.append((request, r))

    def peek_request(self) -> VRequest:
        if self.base or not self._run_queue_ready():
            return self.base.peek_request()
        assert self.run is not None and self.run.queue is not None
        r = self._policy_call(self.run.queue.peek, self.now_s)
        if r is None:
            return self.base.peek_request()
        return self._members[r.request_id]

    def pop_request(self) -> VRequest:
        if self.base or not self._run_queue_ready():
            return self.base.pop_request()
        assert self.run is not None and self.run.queue is not None
        r = self._policy_call(self.run.queue.pop, self.now_s)
        if r is None:
            return self.base.pop_request()
        vreq = self._members.pop(r.request_id)
        adm = self.run.admission
        if adm is not None:
            adm.admitted(r, self.now_s, self._verdict)
            if adm.limiter is not None:
                # The next head, with this one in flight: the scheduler stops admitting the
                # run's requests this step if the limit holds it back.
                try:
                    held = self._judge() == "wait"
                except Exception as exc:
                    self.run.fail("client_scores (admission)", exc)
                    self.fallback()
                    held = False
                if held and self.on_block is not None:
                    self.on_block()
        return vreq

    def prepend_request(self, request: VRequest) -> None:
        r = self._engine_request(request)
        if r is None or self.run is None or self.run.queue is None:
            self.base.prepend_request(request)
            return
        self._members[r.request_id] = request
        queue = self.run.queue
        try:
            queue.push(r, self.now_s)
        except Exception as exc:
            self.run.fail("requeue after preemption", exc)
            self.fallback()

    def prepend_requests(self, requests: Iterable[VRequest]) -> None:
        others = []
        for vreq in requests:
            if self._engine_request(vreq) is not None:
                self.prepend_request(vreq)
            else:
                others.append(vreq)
        if others:
            self.base.prepend_requests(others)

    def remove_request(self, request: VRequest) -> None:
        self.remove_requests((request,))

    def remove_requests(self, requests: Iterable[VRequest]) -> None:
        others = []
        for vreq in requests:
            r = self._tag(vreq)
            if r is not None and self._members.get(r.request_id) is vreq:
                del self._members[r.request_id]
                if self.run is not None and self.run.queue is not None:
                    self.run.queue.remove(r.request_id)
            elif r is not None and any(v is vreq for v, _ in self._pending):
                self._pending = [(v, q) for v, q in self._pending if v is not vreq]
            else:
                others.append(vreq)
        if others:
            self.base.remove_requests(others)

    def __bool__(self) -> bool:
        return bool(self.base) or bool(self._members) or bool(self._pending)

    def __len__(self) -> int:
        return len(self.base) + len(self._members) + len(self._pending)

    def __iter__(self) -> Iterator[VRequest]:
        yield from self.base
        yield from (v for v, _ in self._pending)
        yield from sorted(self._members.values(), key=lambda v: (v.arrival_time, v.request_id))
