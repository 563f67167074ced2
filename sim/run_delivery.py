"""A run's delivery side: a step's (or a run of steps') tokens, first tokens and finishes.

`Delivery.deliver` (the `exfairs.sim.process.Frontend` hook) reports them to the policy in the
hook order `exfairs.sim.runner` documents (``hook_order="step"``), or, in gate mode with
``hook_order="stream"``, stream by stream as the live driver does (`_deliver_streams`), releasing
into each freed slot. Under ``prompt_credit="first_token"`` prompt tokens reach `on_service` with
the first token (and a preempted request's recomputation with its next token), as a client sees
them.
"""

from __future__ import annotations

from exfairs.sim.plan import StepOutcome
from exfairs.sim.queues import Seq
from exfairs.sim.run_front import FrontEnd


class Delivery(FrontEnd):
    """`deliver` and what it needs; it releases and takes in through the front end (stream
    order), so it builds on `FrontEnd`."""

    def deliver(self, out: StepOutcome) -> None:
        if self._streams:
            self._deliver_streams(out)
            return
        t = out.end_s
        policy = self.policy
        names = self.client_names
        if out.n_steps == 1:
            service = self._first_token_credit(out) if self._credit_first else out.service
            for c, p, d in service:
                policy.on_service(names[c], p, d, t)
        else:
            run = tuple((names[c], d) for c, _, d in out.service)
            head = self._run_head_credit(out) if self._credit_first and self._resume else ()
            if head:  # the run's first step credits a recomputed prompt: delivered on its own
                for c, p, d in head:
                    policy.on_service(names[c], p, d, out.ends_s[0])
                policy.on_service_run(run, out.ends_s[1:])
            else:
                policy.on_service_run(run, out.ends_s)
        for s in out.first_tokens:
            self._first_token(s, t)
        for s in out.finished:
            self._finished(s, t)
        if self._asks_wakeups:
            self._ask_wakeup(t)

    def _finished(self, s: Seq, t: float) -> None:
        s.finish_s = t
        res = self.tracker.finish(s.rid, t, s.gen)
        met = res.met if res is not None else False
        if res is not None and not met:
            self.policy.on_violation(s.req, t)
        self.policy.on_finish(s.req, t, met)
        self.inflight -= 1
        if self.engine_adm is not None:
            self.engine_adm.left(s.rid)
        elif self.limiter is not None:
            self.limiter.finished(s.rid, t, s.gen)

    def _first_token(self, s: Seq, t: float) -> None:
        """`s`'s first token came at `t`: recorded, seen by the feedback limit, and a violation
        if its TTFT was late."""
        s.first_token_s = t
        if self._observes:
            assert self.limiter is not None
            self.limiter.first_token(s.rid, t)
        res = self.tracker.first_token(s.rid, t)
        if res is not None and not res.met:
            self.policy.on_violation(s.req, t)

    def _deliver_streams(self, out: StepOutcome) -> None:
        """hook_order "stream" (gate and priority modes): the live driver's order.

        Live, what arrived during a step is heard (`on_arrival` at its arrival time, and
        released then while a slot is free; in priority mode submitted then) before the step's
        outputs come. The output handler
        then wakes each request's stream in output order, and each handles its tokens, its
        first token and its finish, releasing into the freed slot before the next stream runs;
        in a step that finishes nothing the order cannot matter, so its tokens come per client.
        A run's earlier steps are delivered as a run (nothing arrived or finished in them)."""
        t = out.end_s
        policy = self.policy
        names = self.client_names
        if out.n_steps > 1:
            run = tuple((names[c], d) for c, _, d in out.service)
            head = self._run_head_credit(out) if self._credit_first and self._resume else ()
            for c, p, d in head:  # as in `deliver`
                policy.on_service(names[c], p, d, out.ends_s[0])
            if out.n_steps > 1 + bool(head):
                policy.on_service_run(run, out.ends_s[bool(head):-1])
        # Each arrival of the step at its own time, released at once while a slot is free (in
        # arrival order, as the driver does; the engine queue then holds them in that order).
        seqs = self.seqs
        while self.next_arrival < len(seqs) and seqs[self.next_arrival].arrival_s <= t:
            a = seqs[self.next_arrival].arrival_s
            self._take_in(a)
            self._release(a)
        self._take_in(t)
        self._release(t)
        if not out.order:
            if out.n_steps == 1:
                service = self._first_token_credit(out) if self._credit_first else out.service
            else:
                service = out.service
            for c, p, d in service:
                policy.on_service(names[c], p, d, t)
            for s in out.first_tokens:
                self._first_token(s, t)
            if self._asks_wakeups:
                self._ask_wakeup(t)
            return
        firsts = {s.rid for s in out.first_tokens}
        done = {s.rid for s in out.finished}
        for s, p, d in out.order:
            first = s.rid in firsts
            if self._credit_first:
                p = self._stream_credit(s, first)
            if p or d:
                policy.on_service(names[s.client], p, d, t)
            if first:
                self._first_token(s, t)
            if s.rid in done:
                self._finished(s, t)
                self._release(t)
        if self._asks_wakeups:
            self._ask_wakeup(t)

    def _stream_credit(self, s: Seq, first: bool) -> int:
        """Prompt tokens one stream's output credits under prompt_credit "first_token", as the
        live driver: the prompt with the first token; after a preemption, prompt + the output
        so far with the next token (once, not on top of a first token)."""
        item = self._resume.get(s.rid) if self._resume else None
        if item is not None and s.gen > item[1]:
            del self._resume[s.rid]
            if not first:
                return s.prompt + item[1]
        return s.prompt if first else 0

    def _run_head_credit(self, out: StepOutcome) -> tuple[tuple[int, int, int], ...]:
        """prompt_credit "first_token", a run of decode steps: the first step's service with
        the recomputed prompt + output of each preempted request whose next token came in it
        (the fast path folds a recomputation's last 1-token piece into a decode run), or ()
        when there is none. A run's steps all serve the same requests, so that token is the
        run's first; step by step `_first_token_credit` credits it there."""
        credit: dict[int, int] = {}
        for rid, (s, gen) in list(self._resume.items()):
            if s.gen > gen:
                del self._resume[rid]
                credit[s.client] = credit.get(s.client, 0) + s.prompt + gen
        if not credit:
            return ()
        return tuple((c, p, d) for c, _, d in out.service if (p := credit.pop(c, 0)) or d)

    def _first_token_credit(self, out: StepOutcome) -> tuple[tuple[int, int, int], ...]:
        """`out.service` with prefill credits moved to first tokens (prompt_credit)."""
        credit: dict[int, int] = {}
        for s in out.first_tokens:
            credit[s.client] = credit.get(s.client, 0) + s.prompt
        if self._resume:
            firsts = {s.rid for s in out.first_tokens}
            for rid, (s, gen) in list(self._resume.items()):
                if s.gen > gen:  # its next token after the recomputation
                    del self._resume[rid]
                    # Preempted before its first token: the client saw nothing until now, so
                    # the first token above is the one credit (as `_stream_credit`).
                    if rid not in firsts:
                        credit[s.client] = credit.get(s.client, 0) + s.prompt + gen
        # A client whose step was only a prefill chunk has nothing to hear yet: no call.
        rows = [(c, p, d) for c, _, d in out.service if (p := credit.pop(c, 0)) or d]
        return tuple(rows)
