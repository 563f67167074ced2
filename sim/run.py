"""One simulation run assembled: modes, queues, admission, cost model, clock and processes.

`Run` puts together what `exfairs.sim.runner.simulate` checked: the engine's waiting queue and
victim rule for the mode (`exfairs.sim.queues`), the gate or in-engine admission
(`exfairs.policies.admission`), the scheduler and its cost model, and the SimPy environment with
the engine, arrival and sample processes; its front end (`exfairs.sim.run_front`) and delivery
side (`exfairs.sim.run_delivery`) then drive the policy. `Run.result` runs it to the end and
builds the records.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import replace

from exfairs.calibration.profile import Profile
from exfairs.errors import InputError
from exfairs.policies.admission import (
    AdmissionConfig,
    GateLimiter,
    SloAdmission,
    make_limiter,
)
from exfairs.policies.admission_engine import EngineAdmission
from exfairs.policies.base import Policy
from exfairs.policies.experiments import Experiment, Mode
from exfairs.policies.queue import PolicyQueue
from exfairs.records import (
    DEFAULT_SAMPLE_LAYOUT,
    Outcome,
    PolicySample,
    RequestRecord,
    Workload,
    slo_met,
)
from exfairs.sim.config import EngineConfig
from exfairs.sim.costs import LinearStepCost, StepCostModel
from exfairs.sim.plan import StepObserver
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
from exfairs.sim.run_delivery import Delivery
from exfairs.sim.run_state import SimResult
from exfairs.sim.scheduler import Scheduler
from exfairs.slo import SloTracker


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



class Run(Delivery):
    """One simulation: SimPy environment, engine process, front end (arrivals, gate, SLO
    deadlines, samples, policy wake-ups), policy and bookkeeping. Implements `Frontend`."""

    def __init__(self, workload: Workload, exp: Experiment, profile: Profile, cfg: EngineConfig,
                 policy: Policy, max_inflight: int | None, sample_every_s: float,
                 step_by_step: bool, observer: StepObserver | None,
                 step_cost: StepCostModel | None,
                 admission: AdmissionConfig | None = None,
                 policy_samples: str = DEFAULT_SAMPLE_LAYOUT,
                 latencies: dict[int, float] | None = None,
                 seen_s: Mapping[int, float] | None = None,
                 admission_profile: Profile | None = None) -> None:
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
        last_arrival = last_seen = -math.inf
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
            if seen_s:  # seen later than it arrived (a replay): Seq.arrival_s is the seen time
                t = s.arrival_s = float(seen_s.get(r.request_id, r.arrival_s))
                if not (math.isfinite(t) and t >= r.arrival_s and t >= last_seen):
                    raise InputError("must be finite, ≥ the arrival and in arrival order",
                                     field=f"seen_s[{r.request_id}]", value=t)
                last_seen = t
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
                self.warnings = (warning,)  # logged by `simulate`
        self.inflight = 0
        # submit_latency_s > 0: submissions become visible to the engine that much later. In
        # priority and engine modes every arrival is a submission; gate releases wait in
        # `_in_transit` (visible time, seq) in release order.
        self.latency = float(cfg.submit_latency_s)
        # Per-request latencies (gate mode, `simulate(submit_latencies=...)`) override it.
        self._latencies = latencies or {}
        self._in_flight_lag = bool(self.latency or any(self._latencies.values()))
        # Priority mode with hook_order "stream": the driver hears an arrival (and fixes its
        # priority) at once; only the engine sees it `latency` later (`_ingest`).
        self._heard_early = cfg.hook_order == "stream" and self.mode is Mode.PRIORITY
        self._arrival_lag = self.latency if self.mode is Mode.ENGINE or (
            self.mode is Mode.PRIORITY and not self._heard_early) else 0.0
        self._in_transit: deque[tuple[float, Seq]] = deque()
        # Gate slots free since the previous decision point: a request that arrived during the
        # step would have been released live at its arrival, not at the step end.
        self._early_slots = 0
        # prompt_credit "first_token" (gate and priority modes): prompt tokens reach on_service
        # with the first token; `_resume` holds preempted requests and their tokens then.
        self._credit_first = cfg.prompt_credit == "first_token" and self.mode is not Mode.ENGINE
        self._resume: dict[int, tuple[Seq, int]] = {}
        self._prev_decision_s = 0.0
        # hook_order "stream" (gate and priority modes): a step's arrivals are heard at their
        # own time, and a step that finishes a request is handled request by request in output
        # order, releasing at each finish (`_deliver_streams`).
        self._streams = cfg.hook_order == "stream" and self.mode is not Mode.ENGINE
        cost = step_cost if step_cost is not None else LinearStepCost(
            profile.cost_model(cfg.max_num_batched_tokens))
        self.sched = Scheduler(cfg, waiting, victim, observer)
        self.sched.record_order = self._streams
        # The limit's price list: the run's own step costs, or the profile a live gate priced with.
        price = cost if admission_profile is None else LinearStepCost(
            admission_profile.cost_model(cfg.max_num_batched_tokens))
        decode_s = lambda n, ctx: float(price.decode_run_ms(1, n, ctx)[0]) / 1000.0  # noqa: E731
        prefill_s = (profile if admission_profile is None
                     else admission_profile).coefficients.prefill_token_ms / 1000.0
        # The gate's limit; engine mode's lives in `engine_adm.limiter` (the scheduler asks it).
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
    return replace(cfg, scheduling_policy=policy)  # type: ignore[arg-type]
