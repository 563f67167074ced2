"""`simulate()`: one workload, one experiment (policy × mode), one profile → per-request records.

The engine model (`exfairs.sim.scheduler`, driven by `exfairs.sim.process.EngineProcess`) runs as
a SimPy process; the policy object acts in one of three modes (docs/design.md §2,
`exfairs.policies.experiments.Mode`):

* gate (``QUEUE_<POLICY>``): a `PolicyQueue` in front of the engine releases the policy's pick
  whenever fewer than `max_inflight` requests (default `max_num_seqs`) are in the engine; the
  engine itself is FCFS (``scheduling_policy="fcfs"``);
* priority (``<POLICY>``): at submission the request gets ``policy.submission_priority`` and the
  engine orders its waiting queue by it (``scheduling_policy="priority"``);
* engine (``ENGINE_<POLICY>``): the engine's waiting queue is a `PolicyQueue`, re-ranked at every
  step, and preemption victims come from ``policy.choose_victim``.

What happens in time is a SimPy event of its own: every arrival, every SLO deadline still open,
every policy sample time and every time a policy asks to be woken (`Policy.next_wakeup`). Each
wakes the engine or cuts its current run of decode steps; the engine then has a decision point at
the first step end at or after it (after it, for deadlines). At each decision point, in this order:
SLO deadlines that passed are resolved (`SloTracker.advance` → `on_violation`), requests that
arrived by then are taken in (`on_arrival`, and `on_dispatch` at submission in priority mode; a
request that can never run — prompt + output over `max_model_len`, more KV blocks than the cache
holds, or no tokens — fails at once: `on_violation`, `on_drop`, outcome FAILED), the gate releases
(`on_dispatch`), and policy samples whose time has come are recorded (values are the policy's
state at that decision point, at most one step after the sample time). Preemptions are reported
when the step that makes them is planned (`on_preempt`), and so are admissions of previously
preempted requests in priority and gate modes (`on_dispatch` again; engine mode dispatches every
admission). After a step come the served tokens (`on_service`, once per client, in client
order), first tokens, and finishes (`on_violation` if late, then `on_finish`).
`docs/policies.md` lists the order for policy authors. In gate mode the default
``EngineConfig.hook_order = "stream"`` uses the live driver's order instead
(`_Run._deliver_streams`); ``"step"`` keeps the order above.

Hook times are decision times, so they never decrease; an arrival is seen at the first decision
point at or after it, as vLLM takes in requests between steps. With the fast path (default) a run
of identical decode-only steps is one SimPy event and its tokens reach the policy through one
`Policy.on_service_run` call, whose default replays `on_service` step by step with each step's end
time: hooks, decisions and records are those of the step-by-step path (``step_by_step=True``).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import simpy

from exfairs.calibration.profile import Profile
from exfairs.errors import ConfigError, InputError
from exfairs.policies.admission import (
    AdmissionConfig,
    EngineAdmission,
    GateLimiter,
    SloAdmission,
    make_limiter,
)
from exfairs.policies.base import Policy
from exfairs.policies.experiments import Experiment, Mode, parse_experiment
from exfairs.policies.queue import PolicyQueue
from exfairs.policies.registry import make_policy
from exfairs.records import (
    DEFAULT_SAMPLE_LAYOUT,
    Outcome,
    PolicySample,
    Request,
    RequestRecord,
    Workload,
    check_sample_layout,
    slo_met,
)
from exfairs.sim.config import EngineConfig
from exfairs.sim.costs import LinearStepCost, StepCostModel
from exfairs.sim.plan import StepObserver, StepOutcome
from exfairs.sim.process import EngineProcess, SimEnvironment
from exfairs.sim.queues import (
    FcfsWaiting,
    PolicyWaiting,
    PriorityWaiting,
    Seq,
    VictimChooser,
    WaitingQueue,
    fcfs_victim,
    policy_victim,
    priority_victim,
)
from exfairs.sim.replay import ClockedStepCost
from exfairs.sim.scheduler import Scheduler
from exfairs.slo import SloTracker

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimResult:
    """What a simulation produced.

    `records`: one per workload request, in workload order. `policy_samples`: the policy's
    state every `sample_every_s` of simulated time, in `simulate`'s `policy_samples` layout.
    `steps`: engine steps simulated.
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
    step_cost: StepCostModel | None = None,
    admission: AdmissionConfig | None = None,
    policy_samples: str = DEFAULT_SAMPLE_LAYOUT,
    submit_latencies: Mapping[int, float] | None = None,
) -> SimResult:
    """Simulate `workload` under `experiment` on an engine with `profile`'s step costs.

    `engine` defaults to `EngineConfig.from_profile(profile)`; its `scheduling_policy` is replaced
    by the mode's (gate: fcfs, priority: priority; engine mode orders by the policy).
    `policy_params` go to the policy's constructor. `max_inflight` (gate mode only; default
    `max_num_seqs`) bounds the requests released into the engine. `sample_every_s` > 0 is the
    policy-sample period in simulated seconds. `step_by_step=True` disables the fast path (the
    reference for tests); `observer` is called after every step or run of steps. `step_cost`
    replaces the profile's linear cost model (`exfairs.sim.costs.StepCostModel`). `admission`
    (`exfairs.policies.admission.AdmissionConfig`; default: none) adds SLO-aware admission and
    hopeless-request handling: gate mode takes every option, engine mode every one but the
    feedback limit (it decides inside the scheduler: `exfairs.policies.admission.EngineAdmission`),
    priority mode none; a rejected request's record has outcome REJECTED and `finish_s` = the
    time it was refused.
    `policy_samples` (`exfairs.records.SAMPLE_LAYOUTS`): "sparse" (default)
    records at each sample time the clients the policy had heard from (`on_arrival`) by then
    (`PolicySample.clients`), so samples cost O(clients seen × samples), not O(registered
    clients × samples); "dense" every registered client; "off" none. The sample times are
    decision points in all three, so records do not depend on the layout.
    `submit_latencies` (gate mode; request id → seconds in [0, 60]) gives a request's own
    release-to-engine latency in place of ``engine.submit_latency_s``: a replay of a live run
    passes each release's recorded hop (`exfairs.live.replay`); requests not in it use the
    engine's.

    Deterministic: the same arguments give identical results. Raises InputError/ConfigError for
    bad arguments or a malformed workload.
    """
    exp = parse_experiment(experiment) if isinstance(experiment, str) else experiment
    layout = check_sample_layout(policy_samples)
    cfg = engine if engine is not None else EngineConfig.from_profile(profile)
    if not (isinstance(sample_every_s, (int, float)) and math.isfinite(sample_every_s)
            and sample_every_s > 0):
        raise ConfigError("must be a finite number > 0", field="sample_every_s",
                          value=sample_every_s)
    if max_inflight is not None and (isinstance(max_inflight, bool)
                                     or not isinstance(max_inflight, int) or max_inflight < 1):
        raise ConfigError("must be an integer ≥ 1", field="max_inflight", value=max_inflight)
    if admission is not None and admission.active and exp.mode is Mode.PRIORITY:
        raise ConfigError("admission options need gate (QUEUE_) or engine (ENGINE_) mode: "
                          "priority mode fixes priorities at submission", field="admission",
                          value=admission.label)
    if admission is not None and admission.active and exp.mode is Mode.ENGINE \
            and admission.feedback:
        raise ConfigError("engine mode takes hopeless=demote|reject and limit=predictive: the "
                          "feedback limit learns from the gate's releases", field="admission",
                          value=admission.label)
    latencies: dict[int, float] = {}
    if submit_latencies and exp.mode is not Mode.GATE:
        raise ConfigError("per-request latencies are gate releases' (QUEUE_ experiments); "
                          "other modes submit at arrival", field="submit_latencies",
                          value=exp.name)
    for rid, lat in (submit_latencies or {}).items():
        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or not 0 <= lat <= 60:
            raise ConfigError("must be a number of seconds in [0, 60]",
                              field=f"submit_latencies[{rid}]", value=lat)
        latencies[rid] = float(lat)
    policy = make_policy(exp.policy, policy_params)
    run = _Run(workload, exp, profile, cfg, policy, max_inflight, float(sample_every_s),
               step_by_step, observer, step_cost, admission, layout, latencies)
    return run.result()


class _Run:
    """One simulation: SimPy environment, engine process, front end (arrivals, gate, SLO
    deadlines, samples, policy wake-ups), policy and bookkeeping. Implements `Frontend`."""

    def __init__(self, workload: Workload, exp: Experiment, profile: Profile, cfg: EngineConfig,
                 policy: Policy, max_inflight: int | None, sample_every_s: float,
                 step_by_step: bool, observer: StepObserver | None,
                 step_cost: StepCostModel | None,
                 admission: AdmissionConfig | None = None,
                 policy_samples: str = DEFAULT_SAMPLE_LAYOUT,
                 latencies: dict[int, float] | None = None) -> None:
        self.mode = exp.mode
        if self.mode is Mode.GATE and cfg.scheduling_policy != "fcfs":
            cfg = _replace_policy(cfg, "fcfs")
        elif self.mode is Mode.PRIORITY and cfg.scheduling_policy != "priority":
            cfg = _replace_policy(cfg, "priority")
        self.cfg = cfg
        self.policy = policy
        self.client_names: list[str] = []
        seen: set[str] = set()
        for c in workload.clients:
            if c.name in seen:
                raise InputError("duplicate client name", field="workload.clients", value=c.name)
            seen.add(c.name)
            self.client_names.append(c.name)
        # One bulk registration: per-client add_client calls grow every state array once per
        # client, O(clients²) for thousands of clients.
        client_index = dict(zip(self.client_names, policy.add_clients(
            [(c.name, c.weight) for c in workload.clients]), strict=True))
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

        adm = admission if admission is not None else AdmissionConfig()
        self._reject = adm.hopeless == "reject"
        self._hopeless_wakes = adm.hopeless != "keep"
        self.rejected: dict[int, float] = {}  # request id → time refused (admission option)
        self.engine_adm: EngineAdmission | None = None
        self.gate: PolicyQueue | None = None
        waiting: WaitingQueue
        victim: VictimChooser
        if self.mode is Mode.GATE:
            self.gate = PolicyQueue(policy, hopeless_last=adm.hopeless != "keep")
            waiting, victim = FcfsWaiting(), fcfs_victim
        elif self.mode is Mode.PRIORITY:
            waiting, victim = PriorityWaiting(), priority_victim
        else:
            # Rejection and the limit decide inside the scheduler (EngineAdmission); its limiter
            # is set below, once the cost model is known.
            self.engine_adm = (EngineAdmission(adm) if adm.hopeless == "reject"
                               or adm.limit != "off" else None)
            waiting = PolicyWaiting(policy, self.by_id, hopeless_last=adm.hopeless != "keep",
                                    admission=self.engine_adm, refuse=self._refuse)
            victim = policy_victim(policy)
        self.max_inflight = max_inflight if max_inflight is not None else cfg.max_num_seqs
        self.warnings: tuple[str, ...] = ()
        if self.gate is not None:
            warning = gate_kv_warning(workload, cfg, self.max_inflight)
            if warning is not None:
                _log.warning("%s", warning)
                self.warnings = (warning,)
        self.inflight = 0
        # submit_latency_s > 0: submissions become visible to the engine that much later. In
        # priority and engine modes every arrival is a submission; gate releases wait in
        # `_in_transit` (visible time, seq) in release order.
        self.latency = float(cfg.submit_latency_s)
        # Per-request latencies (gate mode, `simulate(submit_latencies=...)`) override it.
        self._latencies = latencies or {}
        self._in_flight_lag = bool(self.latency or any(self._latencies.values()))
        self._arrival_lag = self.latency if self.mode is not Mode.GATE else 0.0
        self._in_transit: deque[tuple[float, Seq]] = deque()
        # Gate slots free since the previous decision point: a request that arrived during the
        # step would have been released live at its arrival, not at the step end.
        self._early_slots = 0
        # prompt_credit "first_token" (gate and priority modes): prompt tokens reach on_service
        # with the first token; `_resume` holds preempted requests and their tokens then.
        self._credit_first = cfg.prompt_credit == "first_token" and self.mode is not Mode.ENGINE
        self._resume: dict[int, tuple[Seq, int]] = {}
        self._prev_decision_s = 0.0
        # hook_order "stream" (gate mode): a step that finishes a request is handled request by
        # request in output order, releasing at each finish (`_deliver_streams`).
        self._streams = cfg.hook_order == "stream" and self.gate is not None
        cost = step_cost if step_cost is not None else LinearStepCost(
            profile.cost_model(cfg.max_num_batched_tokens))
        self.sched = Scheduler(cfg, waiting, victim, observer)
        self.sched.record_order = self._streams
        decode_s = lambda n, ctx: float(cost.decode_run_ms(1, n, ctx)[0]) / 1000.0  # noqa: E731
        prefill_s = profile.coefficients.prefill_token_ms / 1000.0
        self.limiter: GateLimiter | None = None
        if self.gate is not None:
            # The KV capacity holds back releases that would wait in the engine's FCFS queue,
            # out of the policy's order.
            self.limiter = make_limiter(adm, self.max_inflight, decode_s, prefill_s,
                                        kv_tokens=cfg.kv_capacity_tokens)
        elif self.engine_adm is not None and adm.predictive:
            # Engine mode: the waiting queue is the policy's, so no KV hold-back.
            engine_limit = SloAdmission(adm, decode_s, prefill_s, self.max_inflight, kv_tokens=0)
            self.engine_adm.limiter = engine_limit
            self.limiter = engine_limit
            assert isinstance(waiting, PolicyWaiting)
            self.sched.admit_check = waiting.admissible
        # The feedback limit observes first tokens and finishes (`_first_token`, `_finished`).
        self._observes = self.gate is not None and self.limiter is not None and adm.feedback
        self.tracker = SloTracker()
        self.next_arrival = 0  # index into seqs
        self.sample_every_s = sample_every_s
        self.sample_k = 0
        self.samples: list[PolicySample] = []
        # Sparse samples: client indices heard from (`on_arrival`), and their sorted tuple.
        self._sparse_samples = policy_samples == "sparse"
        self._no_samples = policy_samples == "off"
        self._heard: set[int] = set()
        self._heard_sorted: tuple[int, ...] = ()
        self._wakes: set[float] = set()
        # Only a policy that overrides next_wakeup can ask for one (saves a call per decision).
        self._asks_wakeups = type(policy).next_wakeup is not Policy.next_wakeup
        self._next_sample_s = 0.0
        self._dl_armed = math.inf  # time of the pending deadline event
        self.env = SimEnvironment(initial_time=0.0)
        self.engine = EngineProcess(self.env, self.sched, cost, self, fast=not step_by_step)
        if isinstance(cost, ClockedStepCost):
            engine_proc = self.engine
            cost.bind_clock(lambda: engine_proc.now_s)
        self.env.process(self._arrivals())
        self.env.process(self._sampler())

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
        for res in self.tracker.advance(now):
            policy.on_violation(res.request, now)
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
        """Gate mode: requests in transit that are visible join the engine; the gate releases
        its picks while fewer than `max_inflight` requests are in the engine."""
        gate = self.gate
        assert gate is not None
        waiting = self.sched.waiting
        if self._in_transit:
            self._drain(now)
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
        self.sched.waiting.push(s, now)

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
        tracker = self.tracker
        for s in out.first_tokens:
            s.first_token_s = t
            if self._observes:
                self._observe_first(s.rid, t)
            res = tracker.first_token(s.rid, t)
            if res is not None and not res.met:
                policy.on_violation(s.req, t)
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

    def _observe_first(self, rid: int, t: float) -> None:
        assert self.limiter is not None
        self.limiter.first_token(rid, t)

    def _deliver_streams(self, out: StepOutcome) -> None:
        """hook_order "stream" (gate mode): the live driver's order.

        Live, what arrived during a step is heard (`on_arrival` at its arrival time, and
        released then while a slot is free) before the step's outputs come. The output handler
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
        tracker = self.tracker
        if not out.order:
            if out.n_steps == 1:
                service = self._first_token_credit(out) if self._credit_first else out.service
            else:
                service = out.service
            for c, p, d in service:
                policy.on_service(names[c], p, d, t)
            for s in out.first_tokens:
                s.first_token_s = t
                if self._observes:
                    self._observe_first(s.rid, t)
                res = tracker.first_token(s.rid, t)
                if res is not None and not res.met:
                    policy.on_violation(s.req, t)
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
                s.first_token_s = t
                if self._observes:
                    self._observe_first(s.rid, t)
                res = tracker.first_token(s.rid, t)
                if res is not None and not res.met:
                    policy.on_violation(s.req, t)
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

    # -- results ---------------------------------------------------------------------------------
    def result(self) -> SimResult:
        self.env.run(until=self.engine.process)
        step_end = self.sched.step_end_s
        records: list[RequestRecord] = []
        where = "at the gate" if self.gate is not None else "by the engine's admission"
        for s in self.seqs:
            req = s.req
            if s.error is not None:
                records.append(RequestRecord(
                    request_id=s.rid, client=req.client, arrival_s=req.arrival_s,
                    prompt_tokens=req.prompt_tokens, output_tokens=req.output_tokens,
                    slo=req.slo, outcome=Outcome.FAILED, error=s.error))
                continue
            if s.rid in self.rejected:
                records.append(RequestRecord(
                    request_id=s.rid, client=req.client, arrival_s=req.arrival_s,
                    prompt_tokens=req.prompt_tokens, output_tokens=req.output_tokens,
                    slo=req.slo, outcome=Outcome.REJECTED, finish_s=self.rejected[s.rid],
                    error=f"rejected {where}: it could no longer meet its deadline"))
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
                         steps=self.sched.steps, sim_end_s=self.engine.end_s, engine=self.cfg,
                         decision_points=self.engine.decisions,
                         max_inflight=self.max_inflight if self.gate is not None else None,
                         warnings=self.warnings)


def _replace_policy(cfg: EngineConfig, policy: str) -> EngineConfig:
    from dataclasses import replace

    return replace(cfg, scheduling_policy=policy)  # type: ignore[arg-type]
