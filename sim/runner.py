"""`simulate()`: one workload, one experiment (policy × mode), one profile → per-request records.

The engine model (`exfairs.sim.engine`) runs as a SimPy process; the policy object acts in one of
three modes (DESIGN.md §2, `exfairs.policies.experiments.Mode`):

* gate (``QUEUE_<POLICY>``): a `PolicyQueue` in front of the engine releases the policy's pick
  whenever fewer than `max_inflight` requests (default `max_num_seqs`) are in the engine; the
  engine itself is FCFS (``scheduling_policy="fcfs"``);
* priority (``<POLICY>``): at submission the request gets ``policy.submission_priority`` and the
  engine orders its waiting queue by it (``scheduling_policy="priority"``);
* engine (``ENGINE_<POLICY>``): the engine's waiting queue is a `PolicyQueue`, re-ranked at every
  step, and preemption victims come from ``policy.choose_victim``.

Decision points are the ends of engine steps (and, while the engine idles, arrivals and sample
times). At each one the driver, in this order: resolves SLO deadlines that passed
(`SloTracker.advance` → `on_violation`), takes in the requests that arrived by then (`on_arrival`,
and `on_dispatch` at submission in priority mode; a request that can never run — prompt + output
over `max_model_len`, more KV blocks than the cache holds, or no tokens — fails at once:
`on_violation`, `on_drop`, outcome FAILED), lets the gate release, and records policy samples
whose time has come (values are the policy's state at that decision point, at most one step after
the sample time). After a step it reports the served tokens (`on_service`, once per client, in
client order), first tokens, and finishes (`on_violation` if late, then `on_finish`).
Preemptions are reported at the start of the step that makes them (`on_preempt`).

Hook times are decision times, so they never decrease; an arrival is seen at the first decision
point at or after it, as vLLM takes in requests between steps.

With the fast path (default) runs of identical decode steps are executed as one SimPy event and
the policy gets the run's tokens in one `on_service` call per client, at the run's end. Records
are identical to the step-by-step path (``step_by_step=True``) for every policy whose decisions
depend on the total tokens served (FCFS, round robin, VTC; tested). A policy whose state decays with
time (ExFairS) sees the run's tokens at the run's end instead of step by step: its sampled state
then differs in the last digits (≈ 1e-6 on the tests' workloads, where the records stayed
identical), and a near-tie could in principle be broken differently.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import simpy

from exfairs.calibration.profile import Profile
from exfairs.errors import ConfigError, InputError
from exfairs.policies.base import Policy
from exfairs.policies.experiments import Experiment, Mode, parse_experiment
from exfairs.policies.queue import PolicyQueue
from exfairs.policies.registry import make_policy
from exfairs.records import Outcome, PolicySample, RequestRecord, Workload, slo_met
from exfairs.sim.config import EngineConfig
from exfairs.sim.engine import (
    EngineModel,
    FcfsWaiting,
    PolicyWaiting,
    PriorityWaiting,
    Seq,
    StepObserver,
    VictimChooser,
    WaitingQueue,
    fcfs_victim,
    policy_victim,
    priority_victim,
)
from exfairs.sim.engine import Outcome as StepOutcome
from exfairs.sim.vecengine import VectorEngineModel
from exfairs.slo import SloTracker

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimResult:
    """What a simulation produced.

    `records`: one per workload request, in workload order. `policy_samples`: the policy's
    `state_snapshot` every `sample_every_s` of simulated time. `steps`: engine steps simulated.
    `sim_end_s`: simulated time when the last request was resolved. `engine`: the engine
    configuration actually simulated (its `scheduling_policy` is set by the mode).
    `decision_points`: SimPy events the engine process handled (for benchmarks).
    `max_inflight`: gate mode's bound on released requests (None in the other modes);
    `warnings`: configuration problems found (also logged), e.g. `gate_kv_warning`.
    """

    records: tuple[RequestRecord, ...]
    policy_samples: tuple[PolicySample, ...]
    steps: int
    sim_end_s: float
    engine: EngineConfig | None = None
    decision_points: int = 0
    max_inflight: int | None = None
    warnings: tuple[str, ...] = ()


def gate_kv_warning(workload: Workload, cfg: EngineConfig, max_inflight: int) -> str | None:
    """A warning when the gate may release more requests than the KV cache holds, else None.

    The cache holds about ``num_gpu_blocks // ceil(mean(prompt + output) / block_size)`` requests
    of the workload at full length; beyond that the released requests wait in the engine's own
    FCFS queue (or are preempted), so that queue, not the gate policy, orders them."""
    reqs = workload.requests
    if not reqs:
        return None
    mean_tokens = sum(r.prompt_tokens + r.output_tokens for r in reqs) / len(reqs)
    per_request = max(1, math.ceil(mean_tokens / cfg.block_size))
    holds = max(1, cfg.num_gpu_blocks // per_request)
    if max_inflight <= holds:
        return None
    return (f"gate max_inflight {max_inflight} exceeds the ~{holds} requests the KV cache holds "
            f"({cfg.num_gpu_blocks} blocks of {cfg.block_size} tokens, mean request "
            f"{mean_tokens:.0f} tokens): the engine's FCFS queue orders the excess, bypassing "
            f"the gate policy; use max_inflight <= {holds}")


def simulate(
    workload: Workload,
    experiment: Experiment | str,
    profile: Profile,
    *,
    engine: EngineConfig | None = None,
    policy_params: Mapping[str, Any] | None = None,
    max_inflight: int | None = None,
    sample_every_s: float = 1.0,
    step_by_step: bool = False,
    observer: StepObserver | None = None,
) -> SimResult:
    """Simulate `workload` under `experiment` on an engine with `profile`'s step costs.

    `engine` defaults to `EngineConfig.from_profile(profile)`; its `scheduling_policy` is replaced
    by the mode's (gate: fcfs, priority: priority; engine mode orders by the policy).
    `policy_params` go to the policy's constructor. `max_inflight` (gate mode only; default
    `max_num_seqs`) bounds the requests released into the engine. `sample_every_s` > 0 is the
    policy-sample period in simulated seconds. `step_by_step=True` disables the fast path (the
    reference for tests); `observer` is called after every step or run of steps.

    Deterministic: the same arguments give identical results. Raises InputError/ConfigError for
    bad arguments or a malformed workload.
    """
    exp = parse_experiment(experiment) if isinstance(experiment, str) else experiment
    cfg = engine if engine is not None else EngineConfig.from_profile(profile)
    if not (isinstance(sample_every_s, (int, float)) and math.isfinite(sample_every_s)
            and sample_every_s > 0):
        raise ConfigError("must be a finite number > 0", field="sample_every_s",
                          value=sample_every_s)
    if max_inflight is not None and (isinstance(max_inflight, bool)
                                     or not isinstance(max_inflight, int) or max_inflight < 1):
        raise ConfigError("must be an integer ≥ 1", field="max_inflight", value=max_inflight)
    policy = make_policy(exp.policy, policy_params)
    run = _Run(workload, exp, profile, cfg, policy, max_inflight, float(sample_every_s),
               step_by_step, observer)
    return run.result()


class _Run:
    """One simulation: SimPy environment, engine model, front end, policy and bookkeeping."""

    def __init__(self, workload: Workload, exp: Experiment, profile: Profile, cfg: EngineConfig,
                 policy: Policy, max_inflight: int | None, sample_every_s: float,
                 step_by_step: bool, observer: StepObserver | None) -> None:
        self.mode = exp.mode
        if self.mode is Mode.GATE and cfg.scheduling_policy != "fcfs":
            cfg = _replace_policy(cfg, "fcfs")
        elif self.mode is Mode.PRIORITY and cfg.scheduling_policy != "priority":
            cfg = _replace_policy(cfg, "priority")
        self.cfg = cfg
        self.policy = policy
        self.client_names: list[str] = []
        client_index: dict[str, int] = {}
        for c in workload.clients:
            if c.name in client_index:
                raise InputError("duplicate client name", field="workload.clients", value=c.name)
            client_index[c.name] = policy.add_client(c.name, c.weight)
            self.client_names.append(c.name)
        self.seqs: list[Seq] = []
        self.by_id: dict[int, Seq] = {}
        last_arrival = -math.inf
        for r in workload.requests:
            ci = client_index.get(r.client)
            if ci is None:
                raise InputError("request of a client not in workload.clients",
                                 field=f"request {r.request_id}.client", value=r.client)
            if r.request_id in self.by_id:
                raise InputError("duplicate request id", field="request_id", value=r.request_id)
            if not (math.isfinite(r.arrival_s) and r.arrival_s >= last_arrival):
                raise InputError("requests must be sorted by finite arrival time",
                                 field=f"request {r.request_id}.arrival_s", value=r.arrival_s)
            last_arrival = r.arrival_s
            s = Seq(r, ci)
            s.error = self._unservable(s)
            self.seqs.append(s)
            self.by_id[r.request_id] = s

        self.gate: PolicyQueue | None = None
        waiting: WaitingQueue
        victim: VictimChooser
        if self.mode is Mode.GATE:
            self.gate = PolicyQueue(policy)
            waiting, victim = FcfsWaiting(), fcfs_victim
        elif self.mode is Mode.PRIORITY:
            waiting, victim = PriorityWaiting(), priority_victim
        else:
            waiting, victim = PolicyWaiting(policy, self.by_id), policy_victim(policy)
        self.max_inflight = max_inflight if max_inflight is not None else cfg.max_num_seqs
        self.warnings: tuple[str, ...] = ()
        if self.gate is not None:
            warning = gate_kv_warning(workload, cfg, self.max_inflight)
            if warning is not None:
                _log.warning("%s", warning)
                self.warnings = (warning,)
        self.inflight = 0
        cost = profile.cost_model(cfg.max_num_batched_tokens)
        self.fast = not step_by_step
        self.engine: EngineModel
        if self.fast:
            self.engine = VectorEngineModel(cfg, cost, waiting, victim, len(self.client_names),
                                            observer)
        else:
            self.engine = EngineModel(cfg, cost, waiting, victim, observer)
        self.tracker = SloTracker()
        self.deadlines: list[tuple[float, int, int]] = []  # (time, request id, 0 ttft / 1 e2e)
        self.next_arrival = 0  # index into seqs
        self.sample_every_s = sample_every_s
        self.sample_k = 0
        self.samples: list[PolicySample] = []
        self.decisions = 0
        self.end_s = 0.0
        self.env = simpy.Environment()
        self.env.process(self._main())

    def _unservable(self, s: Seq) -> str | None:
        cfg = self.cfg
        if s.prompt < 1 or s.out < 1:
            return "request needs at least one prompt and one output token"
        if s.prompt + s.out > cfg.max_model_len:
            return (f"prompt + output = {s.prompt + s.out} tokens exceeds max_model_len "
                    f"{cfg.max_model_len}")
        blocks = (s.prompt + s.out - 1 + cfg.block_size - 1) // cfg.block_size
        if blocks > cfg.num_gpu_blocks:
            return f"needs {blocks} KV blocks, the cache has {cfg.num_gpu_blocks}"
        return None

    # -- the SimPy process -----------------------------------------------------------------------
    def _main(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        eng = self.engine
        now = 0.0
        n = len(self.seqs)
        while True:
            self.decisions += 1
            self._decide(now)
            plan = eng.plan(now)
            for s in plan.preempted:
                self.policy.on_preempt(s.req, now)
            if self.mode is not Mode.ENGINE:
                # The engine re-admitting a preempted request is a dispatch too (engine mode's
                # PolicyQueue says so itself): without it the policy would count the request as
                # waiting until it finished.
                for s in plan.admitted:
                    if s.preemptions:
                        self.policy.on_dispatch(s.req, now)
            if not plan.busy:
                if plan.preempted:
                    eng.report_idle_plan(plan, now)
                    continue  # the next step, at the same time
                # Idle: nothing is running or waiting (a lone request always fits the cache).
                if self.next_arrival >= n:
                    if not eng.idle() or (self.gate is not None and len(self.gate)):
                        raise RuntimeError("simulation stalled with requests left (a bug)")
                    break
                t_next = min(self.seqs[self.next_arrival].arrival_s, self._next_sample_s())
                if t_next > now:
                    yield env.timeout(t_next - now)
                    now = t_next
                continue
            horizon = self._horizon_s() if self.fast else math.inf
            out = eng.execute(plan, now, horizon, self.fast)
            yield env.timeout(out.end_s - now)
            now = out.end_s
            self._deliver(out)
        self.end_s = now

    def _next_sample_s(self) -> float:
        return self.sample_k * self.sample_every_s

    def _horizon_s(self) -> float:
        """The earliest time at which a decision point must occur: next arrival, next sample,
        next SLO deadline still open."""
        h = self._next_sample_s()
        if self.next_arrival < len(self.seqs):
            h = min(h, self.seqs[self.next_arrival].arrival_s)
        dl = self.deadlines
        tracker = self.tracker
        while dl:
            t, rid, kind = dl[0]
            if not tracker.is_pending(rid) or (
                    kind == 0 and self.by_id[rid].first_token_s is not None):
                heapq.heappop(dl)
                continue
            h = min(h, t)
            break
        return h

    def _decide(self, now: float) -> None:
        policy = self.policy
        for res in self.tracker.advance(now):
            policy.on_violation(res.request, now)
        seqs = self.seqs
        i = self.next_arrival
        n = len(seqs)
        while i < n and seqs[i].arrival_s <= now:
            self._ingest(seqs[i], now)
            i += 1
        self.next_arrival = i
        gate = self.gate
        if gate is not None:
            waiting = self.engine.waiting
            while len(gate) and self.inflight < self.max_inflight:
                r = gate.pop(now)
                assert r is not None
                s = self.by_id[r.request_id]
                s.dispatch_s = now
                self.inflight += 1
                waiting.push(s, now)
        while self._next_sample_s() <= now:
            snap = policy.state_snapshot(now)
            self.samples.append(PolicySample(
                time_s=self._next_sample_s(),
                values=tuple((k, tuple(float(x) for x in v)) for k, v in snap.items())))
            self.sample_k += 1

    def _ingest(self, s: Seq, now: float) -> None:
        req = s.req
        policy = self.policy
        self.tracker.arrive(req)
        policy.on_arrival(req, now)
        if s.error is not None:
            res = self.tracker.fail(s.rid, now)
            if res is not None:
                policy.on_violation(req, now)
            policy.on_drop(req, now)
            return
        ttft_deadline = req.slo.first_token_deadline_s(req.arrival_s)
        if math.isfinite(ttft_deadline):
            heapq.heappush(self.deadlines, (ttft_deadline, s.rid, 0))
        if math.isfinite(req.deadline_s):
            heapq.heappush(self.deadlines, (req.deadline_s, s.rid, 1))
        if self.mode is Mode.GATE:
            assert self.gate is not None
            self.gate.push(req, now)
            return
        s.dispatch_s = now
        if self.mode is Mode.PRIORITY:
            s.prio = policy.submission_priority(req, now)
            policy.on_dispatch(req, now)
        self.engine.waiting.push(s, now)

    def _deliver(self, out: StepOutcome) -> None:
        if out.before is not None:
            self._deliver(out.before)
        t = out.end_s
        policy = self.policy
        names = self.client_names
        service = out.service
        for c in sorted(service):
            p, d = service[c]
            policy.on_service(names[c], p, d, t)
        tracker = self.tracker
        for s in out.first_tokens:
            s.first_token_s = t
            res = tracker.first_token(s.rid, t)
            if res is not None and not res.met:
                policy.on_violation(s.req, t)
        for s in out.finished:
            s.finish_s = t
            res = tracker.finish(s.rid, t, s.gen)
            met = res.met if res is not None else False
            if res is not None and not met:
                policy.on_violation(s.req, t)
            policy.on_finish(s.req, t, met)
            self.inflight -= 1

    # -- results ---------------------------------------------------------------------------------
    def result(self) -> SimResult:
        self.env.run()
        step_end = self.engine.step_end_s
        records: list[RequestRecord] = []
        for s in self.seqs:
            req = s.req
            if s.error is not None:
                records.append(RequestRecord(
                    request_id=s.rid, client=req.client, arrival_s=req.arrival_s,
                    prompt_tokens=req.prompt_tokens, output_tokens=req.output_tokens,
                    slo=req.slo, outcome=Outcome.FAILED, error=s.error))
                continue
            times: list[float] = []
            for a, b in s.emission_steps():
                times.extend(step_end[a:b])
            assert s.first_token_s is not None and s.finish_s is not None
            assert len(times) == s.gen == s.out, (s.rid, len(times), s.gen, s.out)
            met = slo_met(req.slo, req.arrival_s, s.first_token_s, s.finish_s, s.gen)
            records.append(RequestRecord(
                request_id=s.rid, client=req.client, arrival_s=req.arrival_s,
                prompt_tokens=req.prompt_tokens, output_tokens=req.output_tokens, slo=req.slo,
                outcome=Outcome.FINISHED if met else Outcome.VIOLATED,
                dispatch_s=s.dispatch_s, first_token_s=s.first_token_s, finish_s=s.finish_s,
                generated_tokens=s.gen, token_times_s=tuple(times), preemptions=s.preemptions))
        return SimResult(records=tuple(records), policy_samples=tuple(self.samples),
                         steps=self.engine.steps, sim_end_s=self.end_s, engine=self.cfg,
                         decision_points=self.decisions,
                         max_inflight=self.max_inflight if self.gate is not None else None,
                         warnings=self.warnings)


def _replace_policy(cfg: EngineConfig, policy: str) -> EngineConfig:
    from dataclasses import replace

    return replace(cfg, scheduling_policy=policy)  # type: ignore[arg-type]
