"""The client side of a live run: replays a workload's arrivals on the run clock and drives the same
policy objects as the simulator in gate or priority mode (docs/design.md §2).

* gate mode: arrivals wait in a `PolicyQueue`; whenever fewer than `max_inflight` requests are in
  the engine, the policy's best-ranked request is released (submitted with priority 0); with
  `admission` (`exfairs.live.gate`) hopeless requests are demoted or refused (REJECTED) and the
  predictive limit may hold the pick back (re-checked at every event and tick);
* priority mode: every arrival is submitted at once with ``policy.submission_priority`` (the engine
  must schedule by priority);
* engine mode: every arrival is submitted at once (priority 0); the policy lives in the engine
  (the scheduler plug-in, `exfairs.live.engine_plugin`), so the driver's own policy object hears
  nothing and takes no samples: the engine's samples come back through the plug-in's report.

With `run_tag` set, every request carries the plug-in's extra args (`request_xargs`), so the
plug-in's step log can name the workload request and client of every scheduled vLLM request.

The policy hears about the run as the simulator tells it: `on_arrival` at arrival, `on_dispatch`
at release/submission, `on_service` with real token counts as they stream (the prompt's tokens
with the first output token, then one decode token per output token), `on_violation` via
`SloTracker` (advanced every `advance_every_s`, at every event and at every SLO deadline, so a
violation reaches the policy within about a millisecond of it), `on_finish` at the last token.

Clock: ``time.monotonic()`` minus the run's start, in seconds. Every request of the workload ends
in exactly one `RequestRecord`, whatever happens: finished/violated when all tokens came,
FAILED on an engine or server error, TIMED_OUT when the client gave up, ABORTED when the run
stopped first (drain limit, Ctrl-C, engine death) — including requests still queued or not yet
arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from exfairs.live.backend import Backend, BackendError, BackendTimeout, EngineDead
from exfairs.live.config import DriverConfig
from exfairs.live.driver_types import (
    ClockCheck,
    Flight,
    LiveRunOutput,
    Progress,
    clock_check,
    flight_record,
    unserved_record,
)
from exfairs.live.gate import LiveGate, check_live_admission
from exfairs.live.plugin_protocol import request_xargs
from exfairs.policies.admission import AdmissionConfig, GateLimiter
from exfairs.policies.base import FloatArray, Policy
from exfairs.policies.experiments import Mode
from exfairs.policies.queue import PolicyQueue
from exfairs.records import (
    Outcome,
    PolicySample,
    Request,
    RequestRecord,
    Workload,
    slo_met,
)
from exfairs.rng import stream
from exfairs.slo import Resolution, SloTracker

# Re-exported: the run's values moved to `exfairs.live.driver_types`; callers import them here.
__all__ = ["ClockCheck", "LiveDriver", "LiveRunOutput", "Progress", "prompt_token_ids"]

_log = logging.getLogger(__name__)
#: Shortest sleep of the ticker: a deadline due now is resolved by the `_advance` that follows.
_MIN_TICK_S = 1e-3


def prompt_token_ids(seed: int, request: Request, vocab_size: int, min_token_id: int = 10
                     ) -> list[int]:
    """Deterministic prompt of exactly `request.prompt_tokens` ids in [min_token_id, vocab_size),
    from the stream ("live", "prompt", <request id>) under `seed`: the same run always sends the
    same tokens, and one request's prompt does not depend on any other."""
    rng = stream(seed, "live", "prompt", str(request.request_id))
    return [int(x) for x in rng.integers(min_token_id, vocab_size, size=request.prompt_tokens)]


class _EngineSide(Policy):
    """Stands in for the policy on the driver side in engine mode: the real one runs in the
    engine, so this one only registers clients and hears hooks it ignores."""

    def client_scores(self, now_s: float) -> FloatArray:
        return np.zeros(self.n_clients)



class LiveDriver:
    """Runs one workload through one backend under one policy and mode. Single use.

    `stop` (optional) is an event the caller may set (e.g. on SIGINT) to end the run early; the
    run then aborts what is in flight and still returns every record. `admission` (gate mode
    only; ConfigError otherwise) and `limiter` (its in-flight limit, predictive or feedback:
    `exfairs.live.gate.predictive_limiter`) add SLO-aware admission at the gate.
    """

    def __init__(
        self,
        workload: Workload,
        policy: Policy,
        mode: Mode,
        backend: Backend,
        config: DriverConfig | None = None,
        *,
        prompt_seed: int | None = None,
        progress: Callable[[Progress], None] | None = None,
        progress_every_s: float = 1.0,
        run_tag: str | None = None,
        admission: AdmissionConfig | None = None,
        limiter: GateLimiter | None = None,
    ) -> None:
        adm = admission if admission is not None else AdmissionConfig()
        check_live_admission(adm, mode, at_gate=True)
        self._workload = workload
        self._policy = policy if mode is not Mode.ENGINE else _EngineSide()
        self._run_tag = run_tag
        self._mode = mode
        self._backend = backend
        self._config = config or DriverConfig()
        self._prompt_seed = workload.seed if prompt_seed is None else prompt_seed
        self._progress = progress
        self._progress_every_s = progress_every_s
        limit = self._config.max_inflight or backend.max_num_seqs
        self._max_inflight = limit if limit is not None else 256
        self._tracker = SloTracker()
        self._queue = PolicyQueue(policy, hopeless_last=adm.hopeless != "keep")
        self._gate = LiveGate(self._queue, adm, limiter)
        self._flights: dict[int, Flight] = {}
        self._records: dict[int, RequestRecord] = {}
        self._samples: list[PolicySample] = []
        # Sparse samples, as the simulator's default: client indices heard from (`on_arrival`).
        self._heard: set[int] = set()
        self._heard_sorted: tuple[int, ...] = ()
        self._arrived = 0
        self._violations = 0
        self._t0 = 0.0
        self._stop_reason: str | None = None
        self._stop = asyncio.Event()
        self._all_done = asyncio.Event()
        self._served: list[Flight] = []
        self._used = False

    @property
    def max_inflight(self) -> int:
        """The gate's in-flight limit (gate mode)."""
        return self._max_inflight

    @property
    def start_monotonic(self) -> float:
        """`time.monotonic()` at the run clock's zero (valid once `run` has started)."""
        return self._t0

    # -- clock and bookkeeping -------------------------------------------------------------------
    def _now(self) -> float:
        # Whole microseconds: finer than any HTTP stream resolves, and the records file then
        # stores every token time exactly as an integer gap (exfairs.export).
        return round((time.monotonic() - self._t0) * 1e6) / 1e6

    def _apply(self, resolutions: Sequence[Resolution] | Resolution | None, now_s: float) -> None:
        if resolutions is None:
            return
        if isinstance(resolutions, Resolution):
            resolutions = (resolutions,)
        for res in resolutions:
            if not res.met:
                self._violations += 1
                self._policy.on_violation(res.request, now_s)

    def _advance(self, now_s: float) -> None:
        self._apply(self._tracker.advance(now_s), now_s)

    def _finalize(self, record: RequestRecord) -> None:
        if record.request_id in self._records:
            raise RuntimeError(f"request {record.request_id} was resolved twice")
        self._records[record.request_id] = record
        if len(self._records) == len(self._workload.requests):
            self._all_done.set()

    # -- arrivals and dispatch ---------------------------------------------------------------------
    async def _arrivals(self) -> None:
        loop = asyncio.get_running_loop()
        for request in self._workload.requests:
            delay = self._t0 + request.arrival_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stop.is_set():
                return
            now = self._now()
            self._arrived += 1
            self._advance(now)
            self._tracker.arrive(request)
            self._policy.on_arrival(request, now)
            self._heard.add(self._policy.client_index(request.client))
            if self._mode is Mode.GATE:
                self._queue.push(request, now)
                self._pump(now)
            elif self._mode is Mode.ENGINE:
                self._launch(request, now, 0)
            else:
                priority = self._policy.submission_priority(request, now)
                self._policy.on_dispatch(request, now)
                self._launch(request, now, priority)

    def _pump(self, now_s: float) -> None:
        """Gate: release queued requests in policy order while the engine has free slots."""
        if self._stop.is_set():
            return
        released, refused = self._gate.release(now_s, len(self._flights), self._max_inflight)
        for request in refused:
            self._refuse(request, now_s)
        for request in released:
            self._launch(request, now_s, 0)

    def _refuse(self, request: Request, now_s: float) -> None:
        """Admission ``hopeless=reject``: a queued request that can no longer meet its deadline
        leaves at the gate (a violation, then a drop), as in the simulator."""
        self._apply(self._tracker.fail(request.request_id, now_s), now_s)
        self._policy.on_drop(request, now_s)
        self._finalize(RequestRecord(
            request_id=request.request_id, client=request.client, arrival_s=request.arrival_s,
            prompt_tokens=request.prompt_tokens, output_tokens=request.output_tokens,
            slo=request.slo, outcome=Outcome.REJECTED, finish_s=now_s,
            error="rejected at the gate: it could no longer meet its deadline"))

    def _launch(self, request: Request, now_s: float, priority: int) -> None:
        fl = Flight(request=request, dispatch_s=now_s, priority=priority)
        self._flights[request.request_id] = fl
        fl.task = asyncio.get_running_loop().create_task(self._serve(fl))
        if math.isfinite(self._config.request_timeout_s):
            fl.timer = asyncio.get_running_loop().call_at(
                self._t0 + now_s + self._config.request_timeout_s, self._time_out, fl)

    def _time_out(self, fl: Flight) -> None:
        if fl.task is not None and not fl.task.done():
            fl.timed_out = True
            fl.task.cancel()

    # -- one request -----------------------------------------------------------------------------
    async def _serve(self, fl: Flight) -> None:
        r = fl.request
        outcome: Outcome | None = None
        error: str | None = None
        finish_s: float | None = None
        try:
            ids = prompt_token_ids(self._prompt_seed, r, self._config.vocab_size,
                                   self._config.min_token_id)
            # aclosing: a stream left early (timeout, stop) is closed at once, releasing the
            # engine slot or HTTP connection.
            kw = {} if self._run_tag is None else {
                "extra_args": request_xargs(r, self._run_tag)}
            async with contextlib.aclosing(self._backend.stream(r, ids, fl.priority,
                                                                **kw)) as chunks:
                async for chunk in chunks:
                    now = self._now()
                    if chunk.engine is not None:
                        fl.engine = chunk.engine
                    if chunk.preemptions > fl.preemptions:
                        # Seen at the next output; vLLM recomputes prompt + output so far.
                        for _ in range(chunk.preemptions - fl.preemptions):
                            self._policy.on_preempt(r, now)
                        fl.preemptions = chunk.preemptions
                        recompute = r.prompt_tokens + len(fl.token_times)
                    else:
                        recompute = 0
                    n = chunk.new_tokens
                    if n > 0:
                        if fl.first_token_s is None:
                            fl.first_token_s = now
                            fl.first_token_mono = now + self._t0
                            self._policy.on_service(r.client, r.prompt_tokens, n, now)
                            self._apply(self._tracker.first_token(r.request_id, now), now)
                            self._gate.first_token(r.request_id, now)
                        else:
                            self._policy.on_service(r.client, recompute, n, now)
                        fl.token_times.extend([now] * n)
                        fl.last_token_mono = now + self._t0
                    # No break on `finished`: the stream then ends by itself, so the engine sees
                    # a completed request rather than a client that went away.
            now = self._now()
            got = len(fl.token_times)
            if got < r.output_tokens:
                outcome, error = Outcome.FAILED, (
                    f"stream ended after {got} of {r.output_tokens} tokens")
            else:
                finish_s = fl.token_times[-1]
                assert fl.first_token_s is not None
                met = slo_met(r.slo, r.arrival_s, fl.first_token_s, finish_s, got)
                self._apply(self._tracker.finish(r.request_id, finish_s, got), now)
                self._policy.on_finish(r, now, met)
                outcome = Outcome.FINISHED if met else Outcome.VIOLATED
        except asyncio.CancelledError:
            if fl.timed_out:
                outcome, error = Outcome.TIMED_OUT, (
                    f"client timeout after {self._config.request_timeout_s:g} s")
            else:
                outcome, error = Outcome.ABORTED, f"run stopped: {self._stop_reason or 'cancelled'}"
        except EngineDead as exc:
            outcome, error = Outcome.FAILED, str(exc)
            self.request_stop(f"engine died: {exc}")
        except BackendTimeout as exc:
            outcome, error = Outcome.TIMED_OUT, str(exc)
        except BackendError as exc:
            outcome, error = Outcome.FAILED, str(exc)
        except Exception as exc:  # a bug in a policy or backend must not lose the record
            _log.exception("request %d failed in the driver", r.request_id)
            outcome, error = Outcome.FAILED, f"driver error: {type(exc).__name__}: {exc}"
        finally:
            if fl.timer is not None:
                fl.timer.cancel()
            now = self._now()
            if outcome is None:
                outcome, error = Outcome.ABORTED, "run stopped"
            if not outcome.completed:
                self._apply(self._tracker.fail(r.request_id, now), now)
                self._policy.on_drop(r, now)
            self._flights.pop(r.request_id, None)
            self._gate.finished(r.request_id, finish_s, len(fl.token_times))
            self._served.append(fl)
            self._finalize(flight_record(fl, outcome, finish_s=finish_s, error=error))
            self._pump(now)

    # -- periodic work ---------------------------------------------------------------------------
    async def _ticker(self) -> None:
        next_sample = 0.0
        next_progress = 0.0
        while True:
            now = self._now()
            self._advance(now)
            if now >= next_sample and self._mode is not Mode.ENGINE:
                if len(self._heard_sorted) != len(self._heard):
                    self._heard_sorted = tuple(sorted(self._heard))
                snap = self._policy.state_snapshot_of(self._heard_sorted, now)
                self._samples.append(PolicySample(
                    time_s=now,
                    values=tuple((k, tuple(float(x) for x in v)) for k, v in sorted(snap.items())),
                    clients=self._heard_sorted))
                next_sample = now + self._config.sample_every_s
            if self._mode is Mode.GATE and self._gate.time_driven:
                self._pump(now)  # demotion, rejection and the limit change with time alone
            if self._progress is not None and now >= next_progress:
                self._progress(self.progress())
                next_progress = now + self._progress_every_s
            # Wake at the next SLO deadline too, so a violation reaches the policy when it
            # happens (as in the simulator), not up to `advance_every_s` later (issue 12).
            until_deadline = min(self._tracker.next_deadline_s(),
                                 self._queue.next_hopeless_s()) - self._now()
            await asyncio.sleep(min(self._config.advance_every_s,
                                    max(_MIN_TICK_S, until_deadline)))

    def progress(self) -> Progress:
        """Counts at this moment."""
        return Progress(
            now_s=self._now(), arrived=self._arrived, queued=len(self._queue),
            inflight=len(self._flights), done=len(self._records),
            total=len(self._workload.requests), violations=self._violations,
        )

    def request_stop(self, reason: str) -> None:
        """End the run early (first reason wins); safe to call from signal handlers on the loop."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stop.set()

    # -- the run ---------------------------------------------------------------------------------
    async def run(self) -> LiveRunOutput:
        """Replay the workload; returns when every request has its record."""
        if self._used:
            raise RuntimeError("a LiveDriver runs once; make a new one")
        self._used = True
        for c in self._workload.clients:
            self._policy.add_client(c.name, c.weight)
        wall0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        if abs(self._t0 - time.monotonic()) > 1.0:  # the loop's clock is monotonic on CPython
            self._t0 = time.monotonic()
        if not self._workload.requests:
            self._all_done.set()
        arrivals = loop.create_task(self._arrivals())
        ticker = loop.create_task(self._ticker())
        stop_wait = loop.create_task(self._stop.wait())
        done_wait = loop.create_task(self._all_done.wait())
        try:
            await asyncio.wait({arrivals, stop_wait, done_wait},
                               return_when=asyncio.FIRST_COMPLETED)
            if arrivals.done() and not arrivals.cancelled() and arrivals.exception() is not None:
                exc = arrivals.exception()
                _log.error("arrival replay failed: %r", exc)
                self.request_stop(f"driver error: {type(exc).__name__}: {exc}")
            # _arrivals finished: wait for the drain, or a stop.
            if not self._stop.is_set() and not self._all_done.is_set():
                await asyncio.wait({stop_wait, done_wait}, timeout=self._config.drain_timeout_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                if not self._all_done.is_set() and not self._stop.is_set():
                    self._stop_reason = (
                        f"drain limit: {self._config.drain_timeout_s:g} s after the last arrival")
        except asyncio.CancelledError:
            self.request_stop("cancelled")
            raise
        finally:
            await self._shutdown(arrivals, ticker, stop_wait, done_wait)
        end_s = self._now()
        stopped = self._stop_reason if self._stop.is_set() else None
        records = tuple(self._records[r.request_id] for r in self._workload.requests)
        records = tuple(sorted(records, key=lambda x: x.request_id))
        return LiveRunOutput(
            records=records, policy_samples=tuple(self._samples), stopped=stopped,
            wall_time_s=time.perf_counter() - wall0, end_s=end_s,
            clock_check=clock_check(self._served),
        )

    async def _shutdown(self, *tasks: asyncio.Task[object]) -> None:
        if not self._all_done.is_set():
            self._stop.set()
        for t in tasks:
            t.cancel()
        pending = [fl.task for fl in list(self._flights.values()) if fl.task is not None]
        for t in pending:
            t.cancel()
        for t in (*tasks, *pending):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        now = self._now()
        reason = self._stop_reason or "run stopped"
        for i, request in enumerate(self._workload.requests):
            rid = request.request_id
            if rid in self._records:
                continue
            if i < self._arrived:  # arrivals are replayed in order: this one waited in the gate
                self._apply(self._tracker.fail(rid, now), now)
                self._queue.remove(rid)
                self._policy.on_drop(request, now)
                self._finalize(unserved_record(request, f"queued when {reason}"))
            else:
                self._finalize(unserved_record(
                    request, f"not submitted: {reason} at {now:.3f} s"))
