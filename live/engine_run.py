"""One run as the scheduler plug-in keeps it inside vLLM's engine core (no vLLM import here).

`EngineRun` owns what the plug-in needs for one `RunSpec`: the step log buffer, step counters and,
in engine mode, the policy object, its `PolicyQueue`, an `SloTracker` and the policy samples. The
plug-in feeds it what the engine did, at the moments the simulator does (``sim/runner.py``):

* at the entry of every ``schedule()`` (a decision point): deadlines that passed
  (`on_violation`), then the requests added since the previous step (`on_arrival`), then the
  policy samples whose time has come;
* while scheduling: `on_dispatch` when the engine admits a request from the queue (by
  `PolicyQueue.pop`), `choose_victim` when it must preempt, and `on_preempt` for each request
  the step preempted (after the schedule, at the step's start time);
* at the entry of ``update_from_output()`` (the step's end): `on_service` once per client in
  client order with the step's prefill and decode tokens (the simulator's convention: a 1-token
  piece on top of a caught-up cache of a request that has output is a decode token, anything
  else prefill; a request that catches up emits one token), then first tokens (a TTFT violation
  if late), then finishes (`on_violation` if late, then `on_finish`);
* an abort (client timeout, run stop) gives `on_violation` and `on_drop`; so does a rejection
  by the engine's admission (``RunSpec.admission``, `EngineAdmission`: the simulator's rules),
  which the report lists (`RunReport.rejected`).

Run clock: seconds since the run's zero, which the plug-in fixes as ``monotonic − arrival_s``
of the first request of the run it sees (the driver submits every request at its arrival
time in engine mode, so the two clocks agree up to the delivery lag, about a millisecond on one
machine; it also works when the server is on another machine).

A policy that raises is contained: the run is marked failed with the error (policy name, hook,
exception), the policy is not consulted again, and the run's waiting requests fall back to
arrival order, so every request still completes and the driver reports the run as failed.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exfairs.atomic import atomic_write_text
from exfairs.errors import InputError
from exfairs.live.plugin_protocol import K_SPEC, RunSpec
from exfairs.live.steplog import StepLogBuffer
from exfairs.policies.admission import AdmissionConfig, SloAdmission
from exfairs.policies.admission_engine import EngineAdmission
from exfairs.policies.base import Policy
from exfairs.policies.queue import PolicyQueue
from exfairs.policies.registry import make_policy
from exfairs.records import PolicySample, Request
from exfairs.slo import SloTracker

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunReport:
    """What the plug-in reports about one run (``<run>.report.json``).

    `error` is None unless the policy raised inside the engine (the run is then invalid).
    `steps` counts ``schedule()`` calls, `busy_s` the time from each one's entry to the end of
    its ``update_from_output()`` (seconds, summed; `step_ms_p50`/`p90` are its per-step
    percentiles in ms, NaN without steps); `steplog_write_s` is the time writing the log took.
    `policy_samples` are sparse (`PolicySample.clients`: indices into the spec's clients, those
    heard from by each sample time; a report without them, written before, reads as dense).
    `steplog_path` is None when the step log was switched off."""

    run_id: str
    mode: str
    policy: str
    steps: int
    busy_s: float
    error: str | None
    policy_samples: tuple[PolicySample, ...]
    steplog_path: str | None
    preemptions: int = 0
    step_ms_p50: float = math.nan
    step_ms_p90: float = math.nan
    steplog_write_s: float = 0.0
    #: (workload request id, run-clock time) of each request the engine's admission rejected
    #: (engine mode with ``hopeless=reject``): the driver records them as REJECTED.
    rejected: tuple[tuple[int, float], ...] = ()

    def to_json(self) -> str:
        return json.dumps({
            "run_id": self.run_id, "mode": self.mode, "policy": self.policy,
            "steps": self.steps, "busy_s": self.busy_s, "error": self.error,
            "preemptions": self.preemptions, "steplog_path": self.steplog_path,
            "step_ms_p50": _num(self.step_ms_p50), "step_ms_p90": _num(self.step_ms_p90),
            "steplog_write_s": self.steplog_write_s,
            "rejected": [[i, t] for i, t in self.rejected],
            "policy_samples": [[s.time_s, [[k, [x if math.isfinite(x) else None for x in v]]
                                           for k, v in s.values]]
                               + ([] if s.clients is None else [list(s.clients)])
                               for s in self.policy_samples]}, allow_nan=False)


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _float(x: object) -> float:
    return math.nan if x is None else float(x)  # type: ignore[arg-type]


def read_report(path: str | Path) -> RunReport:
    """Read a run report written by the plug-in (ValueError/OSError if unreadable)."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    # [time, values] (dense, as written before sparse samples) or [time, values, clients].
    samples = tuple(PolicySample(time_s=float(s[0]), values=tuple(
        (str(k), tuple(math.nan if x is None else float(x) for x in v)) for k, v in s[1]),
        clients=tuple(int(c) for c in s[2]) if len(s) > 2 else None)
        for s in d["policy_samples"])
    return RunReport(run_id=str(d["run_id"]), mode=str(d["mode"]), policy=str(d["policy"]),
                     steps=int(d["steps"]), busy_s=float(d["busy_s"]),
                     error=None if d.get("error") is None else str(d["error"]),
                     policy_samples=samples, steplog_path=d.get("steplog_path"),
                     preemptions=int(d.get("preemptions", 0)),
                     step_ms_p50=_float(d.get("step_ms_p50")),
                     step_ms_p90=_float(d.get("step_ms_p90")),
                     steplog_write_s=float(d.get("steplog_write_s", 0.0)),
                     rejected=tuple((int(i), float(t)) for i, t in d.get("rejected") or ()))


def _limiter(adm: AdmissionConfig, spec: RunSpec) -> SloAdmission | None:
    """The predictive limit of `adm` from the spec's cost model (None unless
    ``limit=predictive``); InputError naming ``admission_model`` when it is missing."""
    if not adm.predictive:
        return None
    if adm.feedback:
        raise InputError("engine mode takes limit=predictive, not the feedback limit",
                         field="admission", value=adm.label)
    from exfairs.calibration.profile import profile_from_json
    from exfairs.live.gate import predictive_limiter

    m = spec.admission_model
    if m is None or "profile" not in m:
        raise InputError("limit=predictive needs the profile's cost model",
                         field="admission_model", value=m)
    profile = profile_from_json(m["profile"], source=K_SPEC)
    # No KV hold-back: in engine mode the waiting queue is the policy's, as in the simulator.
    limiter = predictive_limiter(adm, profile, int(m["max_num_batched_tokens"]),
                                 int(m["max_inflight"]))
    assert isinstance(limiter, SloAdmission)
    return limiter


class EngineRun:
    """The engine-side state of one run (see the module docstring)."""

    def __init__(self, spec: RunSpec, out_dir: str) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.log: StepLogBuffer | None = StepLogBuffer() if spec.steplog else None
        self.steps = 0
        self.busy_s = 0.0
        self.step_busy = array("d")  # seconds per step; one float, logged or not
        self.preemptions = 0
        self.error: str | None = None
        self.zero_mono: float | None = None
        self.policy: Policy | None = None
        self.queue: PolicyQueue | None = None
        # Engine mode with hopeless=reject or limit=predictive: the rules the simulator's
        # scheduler applies, applied at schedule() (`PluginWaitingQueue.admission_step`).
        self.admission: EngineAdmission | None = None
        self.rejected: list[tuple[int, float]] = []
        self._tracker = SloTracker()
        self._samples: list[PolicySample] = []
        self._sample_k = 0
        # Sparse samples, as the simulator's default: client indices heard from (`on_arrival`).
        self._heard: set[int] = set()
        self._heard_sorted: tuple[int, ...] = ()
        self._first_token: set[int] = set()
        if spec.mode == "engine":
            for module in spec.policy_modules:
                importlib.import_module(module)
            policy = make_policy(spec.policy, spec.policy_params)
            for name, weight in spec.clients:
                policy.add_client(name, weight)
            self.policy = policy
            adm = AdmissionConfig.parse(spec.admission)
            self.queue = PolicyQueue(policy, hopeless_last=adm.hopeless != "keep")
            if adm.hopeless == "reject" or adm.limit != "off":
                self.admission = EngineAdmission(adm, _limiter(adm, spec))

    @property
    def engine_mode(self) -> bool:
        """True while the policy orders the queue (engine mode and no error yet)."""
        return self.policy is not None and self.error is None

    # -- clock ------------------------------------------------------------------------------------
    def anchor(self, request: Request, mono: float) -> None:
        """Fix the run's zero from its first request (see the module docstring)."""
        if self.zero_mono is None:
            self.zero_mono = mono - request.arrival_s

    def now(self, mono: float) -> float:
        """Run-clock seconds at monotonic time `mono` (0 before the first request)."""
        return 0.0 if self.zero_mono is None else max(0.0, mono - self.zero_mono)

    # -- errors -----------------------------------------------------------------------------------
    def fail(self, where: str, exc: BaseException) -> None:
        """Record the first policy error; the policy is not consulted afterwards."""
        if self.error is None:
            self.error = (f"policy {self.spec.policy} raised in the engine ({where}): "
                          f"{type(exc).__name__}: {exc}")
            _log.error("exfairs plug-in: %s; run %s falls back to arrival order", self.error,
                       self.spec.run_id)

    def _guard(self, where: str, fn: Any, *args: Any) -> Any:
        if not self.engine_mode:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # a policy bug must not kill the engine or lose requests
            self.fail(where, exc)
            return None

    # -- hooks (engine mode) -----------------------------------------------------------------------
    def begin_step(self, now_s: float, arrivals: list[Request]) -> None:
        """A decision point: violations, then arrivals (pushed into `queue`), then samples."""
        if not self.engine_mode:
            return
        assert self.policy is not None and self.queue is not None
        policy, queue = self.policy, self.queue

        def go() -> None:
            for res in self._tracker.advance(now_s):
                policy.on_violation(res.request, now_s)
            for r in arrivals:
                self._tracker.arrive(r)
                policy.on_arrival(r, now_s)
                self._heard.add(policy.client_index(r.client))
                queue.push(r, now_s)
            period = self.spec.sample_every_s
            while self._sample_k * period <= now_s:
                if len(self._heard_sorted) != len(self._heard):
                    self._heard_sorted = tuple(sorted(self._heard))
                snap = policy.state_snapshot_of(self._heard_sorted, now_s)
                self._samples.append(PolicySample(
                    time_s=self._sample_k * period,
                    values=tuple((k, tuple(float(x) for x in v)) for k, v in sorted(snap.items())),
                    clients=self._heard_sorted))
                self._sample_k += 1

        self._guard("arrival/violation/sample hooks", go)

    def choose_victim(self, running: list[Request], now_s: float) -> Request | None:
        """The policy's victim among `running` (None after an error)."""
        if not self.engine_mode:
            return None
        assert self.policy is not None
        victim: Request | None = self._guard("choose_victim", self.policy.choose_victim,
                                             running, now_s)
        if victim is not None and all(v.request_id != victim.request_id for v in running):
            self.fail("choose_victim", ValueError(
                f"returned request {victim.request_id}, which is not running"))
            return None
        return victim

    def preempted(self, requests: list[Request], now_s: float) -> None:
        self.preemptions += len(requests)
        if requests and self.policy is not None:
            policy = self.policy

            def go() -> None:
                for r in requests:
                    policy.on_preempt(r, now_s)

            self._guard("on_preempt", go)

    def step_done(self, now_s: float, service: dict[int, list[int]],
                  first_tokens: list[Request], finished: list[tuple[Request, int]]) -> None:
        """End of a step: `service` maps client index → [prefill, decode] tokens; `finished`
        holds (request, generated tokens)."""
        if not self.engine_mode:
            return
        assert self.policy is not None
        policy, tracker = self.policy, self._tracker
        names = policy.client_names

        def go() -> None:
            for c in sorted(service):
                p, d = service[c]
                policy.on_service(names[c], p, d, now_s)
            for r in first_tokens:
                res = tracker.first_token(r.request_id, now_s)
                if res is not None and not res.met:
                    policy.on_violation(r, now_s)
            for r, gen in finished:
                if self.admission is not None:
                    self.admission.left(r.request_id)
                res = tracker.finish(r.request_id, now_s, gen)
                met = res.met if res is not None else False
                if res is not None and not met:
                    policy.on_violation(r, now_s)
                policy.on_finish(r, now_s, met)

        self._guard("on_service/on_finish hooks", go)

    def dropped(self, request: Request, now_s: float) -> None:
        """`request` was aborted (queued or running)."""
        if not self.engine_mode:
            return
        assert self.policy is not None
        policy, tracker = self.policy, self._tracker

        if self.admission is not None:
            self.admission.left(request.request_id)

        def go() -> None:
            if tracker.fail(request.request_id, now_s) is not None:
                policy.on_violation(request, now_s)
            policy.on_drop(request, now_s)

        self._guard("on_drop", go)

    def client_index(self, client: str) -> int:
        """Index of `client` in the spec's order (policy registration order)."""
        assert self.policy is not None
        return self.policy.client_index(client)

    # -- output -----------------------------------------------------------------------------------
    def finalize(self) -> RunReport:
        """Write the step log and the report (atomically) and return the report."""
        steplog_path = None
        t0 = time.perf_counter()
        if self.log is not None:
            steplog_path = str(self.log.write(self.spec.steplog_path(self.out_dir),
                                              self.spec.run_id))
        write_s = time.perf_counter() - t0
        busy = np.frombuffer(self.step_busy, dtype="f8") * 1e3 if len(self.step_busy) else None
        p50, p90 = ((math.nan, math.nan) if busy is None else
                    (float(np.percentile(busy, 50)), float(np.percentile(busy, 90))))
        report = RunReport(
            run_id=self.spec.run_id, mode=self.spec.mode, policy=self.spec.policy,
            steps=self.steps, busy_s=self.busy_s, error=self.error,
            policy_samples=tuple(self._samples),
            steplog_path=steplog_path, preemptions=self.preemptions, step_ms_p50=p50,
            step_ms_p90=p90, steplog_write_s=write_s, rejected=tuple(self.rejected))
        atomic_write_text(self.spec.report_path(self.out_dir), report.to_json() + "\n")
        return report
