"""A run's front end: what happens in time around the engine, and its decision points.

Arrivals, policy-sample times, the earliest open SLO deadline and policy wake-ups are SimPy
events of their own that wake the engine (`EngineProcess.attention`). At each decision point
(`FrontEnd.decide`, the `exfairs.sim.process.Frontend` hook) passed deadlines are resolved,
arrivals taken in, the gate releases (gate mode: with submission latency, through `_in_transit`)
or hopeless requests are refused (admission option), and due policy samples are recorded. The
order is the one `exfairs.sim.runner` documents.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from typing import Any

import simpy

from exfairs.policies.experiments import Mode
from exfairs.records import PolicySample, Request
from exfairs.sim.queues import PolicyWaiting, Seq
from exfairs.sim.run_state import RunState


class FrontEnd(RunState):
    """The processes, events and `Frontend` hooks (decide, preempted, admitted, exhausted) of
    one run; `exfairs.sim.run_delivery.Delivery` adds `deliver`."""

    # -- processes and events ----------------------------------------------------------------------
    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        """Wakes the engine at every arrival time (the engine takes the requests in)."""
        env = self.env
        last = -math.inf
        lag = self._arrival_lag
        for s in self.seqs:
            t = s.arrival_s + lag if lag else s.arrival_s
            if t > last:
                last = t
                if t > env.now:
                    yield env.at(t)
                self.engine.attention(t)

    def _sampler(self) -> Generator[simpy.Event, Any, None]:
        """Wakes the engine at every policy-sample time (runs until the engine process ends)."""
        env = self.env
        k = 0
        while True:
            t = k * self.sample_every_s
            if t > env.now:
                yield env.at(t)
            self.engine.attention(t)
            k += 1

    def _arm_deadline(self) -> None:
        """Keep one event at the earliest open SLO deadline (`SloTracker.next_deadline_s`)."""
        # A request seen after its deadline passed (it arrived during a long step) has a
        # deadline in the past: its event comes now and resolves it at the next decision point.
        t = max(self.tracker.next_deadline_s(), self.env.now)
        if t < self._dl_armed:
            self._dl_armed = t
            self.env.at(t).callbacks.append(self._on_deadline)

    def _on_deadline(self, ev: simpy.Event) -> None:
        now = self.env.now
        if now != self._dl_armed:
            return  # superseded by an earlier deadline
        self._dl_armed = math.inf
        if self.tracker.next_deadline_s() <= now:
            # Resolved at the first decision point after the deadline (SloTracker.advance);
            # that decision point arms the next one.
            self.engine.attention(now, strict=True)
        else:
            self._arm_deadline()

    def _ask_wakeup(self, now: float) -> None:
        if not self._asks_wakeups:
            return
        self._wake_at(self.policy.next_wakeup(now), now)

    def _wake_at(self, t: float, now: float) -> None:
        if t > now and math.isfinite(t) and t not in self._wakes:
            self._wakes.add(t)
            self.env.at(t).callbacks.append(self._on_wakeup)

    def _on_wakeup(self, ev: simpy.Event) -> None:
        now = self.env.now
        self._wakes.discard(now)
        self.engine.attention(now)

    # -- Frontend ----------------------------------------------------------------------------------
    def decide(self, now: float) -> None:
        self._take_in(now)
        gate = self.gate
        if gate is not None:
            self._release(now)
            if self._in_flight_lag:
                self._early_slots = self.max_inflight - self.inflight
                self._prev_decision_s = now
        elif self._in_transit:  # priority mode, submissions on their way (`_ingest`)
            self._drain(now)
        elif self.engine_adm is not None:
            waiting = self.sched.waiting
            assert isinstance(waiting, PolicyWaiting)
            if self._reject:
                waiting.refuse_hopeless(now)
                # Rejection changes by time alone (as at the gate, below).
                self._wake_at(waiting.next_hopeless_s(), now)
        if self._hopeless_wakes and gate is not None:
            # Demotion and rejection change by time alone: decide again when the next queued
            # request turns hopeless (the fast path and step by step then see the same times).
            self._wake_at(gate.next_hopeless_s(), now)
        policy = self.policy
        while self._next_sample_s <= now:
            # With samples off the sample time is still a decision point (records as with them).
            if not self._no_samples:
                clients: tuple[int, ...] | None = None
                if self._sparse_samples:
                    if len(self._heard_sorted) != len(self._heard):
                        self._heard_sorted = tuple(sorted(self._heard))
                    clients = self._heard_sorted
                    snap = policy.state_snapshot_of(clients, now)
                else:
                    snap = policy.state_snapshot(now)
                self.samples.append(PolicySample(
                    time_s=self._next_sample_s,
                    values=tuple((k, tuple(map(float, v))) for k, v in snap.items()),
                    clients=clients))
            self.sample_k += 1
            self._next_sample_s = self.sample_k * self.sample_every_s
        if self._asks_wakeups:
            self._ask_wakeup(now)

    def _take_in(self, now: float) -> None:
        """SLO deadlines passed by `now` are resolved, arrivals due by `now` taken in."""
        policy = self.policy
        # hook_order "stream": the live driver hears a violation at its deadline (it wakes then).
        streams = self._streams
        for res in self.tracker.advance(now):
            policy.on_violation(res.request, res.time_s if streams else now)
        seqs = self.seqs
        i = self.next_arrival
        n = len(seqs)
        lag = self._arrival_lag
        if lag:
            while i < n and seqs[i].arrival_s + lag <= now:
                self._ingest(seqs[i], now)
                i += 1
        else:
            while i < n and seqs[i].arrival_s <= now:
                self._ingest(seqs[i], now)
                i += 1
        # Deadlines only come with arrivals; otherwise the pending event is still the earliest.
        if i != self.next_arrival or self._dl_armed == math.inf:
            self.next_arrival = i
            self._arm_deadline()

    def _release(self, now: float) -> None:
        """Requests in transit that are visible join the engine (gate releases, or priority-mode
        submissions under hook_order "stream"); in gate mode the gate then releases its picks
        while fewer than `max_inflight` requests are in the engine."""
        gate = self.gate
        if self._in_transit:
            self._drain(now)
        if gate is None:  # priority mode: only submissions in transit (`_ingest`)
            return
        waiting = self.sched.waiting
        if self._reject:
            for hopeless in gate.pop_hopeless(now):
                self._refuse(hopeless, now)
        limiter = self.limiter
        while len(gate) and self.inflight < self.max_inflight:
            if limiter is None:
                r: Request | None = gate.pop(now)
            else:
                c = gate.select(now)
                head = gate.head(c)
                verdict = limiter.decide(head, now, self.inflight)
                if verdict == "wait":
                    break
                if verdict == "late" and self._reject:
                    gate.remove(head.request_id)
                    self._refuse(head, now)
                    continue
                r = gate.pop_client(c, now)
                limiter.released(r, now, binding=verdict == "admit")
            assert r is not None
            s = self.by_id[r.request_id]
            self.inflight += 1
            if self._in_flight_lag:
                sent = now
                if self._early_slots > 0:
                    self._early_slots -= 1
                    sent = max(s.arrival_s, self._prev_decision_s)
                s.dispatch_s = sent
                self._send(s, sent + self._latencies.get(s.rid, self.latency), now)
            else:
                s.dispatch_s = now
                waiting.push(s, now)
        # Visible by now already (sent early in the step, or a latency below the clock's
        # resolution at `now`): this decision point sees it.
        if self._in_transit:
            self._drain(now)

    def _drain(self, now: float) -> None:
        """Requests in transit visible by `now` join the waiting queue, in release order (an
        early-sent one may be visible before one released before it)."""
        keep: deque[tuple[float, Seq]] = deque()
        waiting = self.sched.waiting
        for item in self._in_transit:
            if item[0] <= now:
                waiting.push(item[1], now)
            else:
                keep.append(item)
        self._in_transit = keep

    def _send(self, s: Seq, visible_s: float, now: float) -> None:
        """A gate release reaches the engine at `visible_s` (wakes it then, if after `now`)."""
        self._in_transit.append((visible_s, s))
        # `now` may be an arrival inside the step being delivered (hook_order "stream"): a
        # request visible by the step's end is seen at its decision point without an event.
        if visible_s > now and visible_s > self.env.now:
            self.env.at(visible_s).callbacks.append(self._on_visible)

    def _on_visible(self, ev: simpy.Event) -> None:
        self.engine.attention(self.env.now)

    def _refuse(self, req: Request, now: float) -> None:
        """Admission option ``hopeless=reject``: `req`, queued at the gate (or, in engine mode,
        in the engine's waiting queue, never admitted), can no longer meet its deadline and
        leaves the system (a violation, then a drop)."""
        if self.tracker.fail(req.request_id, now) is not None:
            self.policy.on_violation(req, now)
        self.policy.on_drop(req, now)
        self.rejected[req.request_id] = now

    def preempted(self, seqs: tuple[Seq, ...], now_s: float) -> None:
        for s in seqs:
            self.policy.on_preempt(s.req, now_s)
            if self._credit_first:
                self._resume.setdefault(s.rid, (s, s.gen))

    def admitted(self, seqs: tuple[Seq, ...], now_s: float) -> None:
        # Priority and gate modes: the first dispatch was the submission or the gate's release;
        # a preempted request re-admitted by the engine is dispatched again (engine mode's
        # PolicyQueue.pop does this itself). Without it the policy would count the request as
        # waiting until it finished.
        if self.mode is not Mode.ENGINE:
            for s in seqs:
                if s.preemptions:
                    self.policy.on_dispatch(s.req, now_s)

    def exhausted(self) -> bool:
        if self.next_arrival < len(self.seqs):
            return False
        if self._in_transit:
            return False
        if self.gate is not None and len(self.gate):
            raise RuntimeError("simulation stalled with requests left (a bug)")
        return True

    def _ingest(self, s: Seq, now: float) -> None:
        req = s.req
        policy = self.policy
        self.tracker.arrive(req)
        policy.on_arrival(req, now)
        if self._sparse_samples:
            self._heard.add(s.client)
        if s.error is not None:
            res = self.tracker.fail(s.rid, now)
            if res is not None:
                policy.on_violation(req, now)
            policy.on_drop(req, now)
            return
        if self.mode is Mode.GATE:
            assert self.gate is not None
            self.gate.push(req, now)
            return
        s.dispatch_s = now
        if self.mode is Mode.PRIORITY:
            s.prio = policy.submission_priority(req, now)
            policy.on_dispatch(req, now)
            if self._heard_early and self._in_flight_lag:
                self._send(s, now + self._latencies.get(s.rid, self.latency), now)
                return
        self.sched.waiting.push(s, now)
