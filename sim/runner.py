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
`docs/policies.md` lists the order for policy authors. In gate and priority modes the default
``EngineConfig.hook_order = "stream"`` uses the live driver's order instead
(`exfairs.sim.run_delivery.Delivery._deliver_streams`: arrivals during a step are heard at their
own time, before the step's outputs — in priority mode the submission, and its priority, then;
violations at their deadline); ``"step"`` keeps the order above.

Hook times are decision times, so they never decrease; an arrival is seen at the first decision
point at or after it, as vLLM takes in requests between steps. With the fast path (default) a run
of identical decode-only steps is one SimPy event and its tokens reach the policy through one
`Policy.on_service_run` call, whose default replays `on_service` step by step with each step's end
time: hooks, decisions and records are those of the step-by-step path (``step_by_step=True``).

The run itself lives in `exfairs.sim.run` (assembly and records), `exfairs.sim.run_front` (events
and decision points) and `exfairs.sim.run_delivery` (hooks after a step); `SimResult` is in
`exfairs.sim.run_state` and re-exported here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from exfairs.calibration.profile import Profile
from exfairs.errors import ConfigError
from exfairs.policies.admission import AdmissionConfig, admission_refusal
from exfairs.policies.experiments import Experiment, Mode, parse_experiment
from exfairs.policies.registry import make_policy
from exfairs.records import DEFAULT_SAMPLE_LAYOUT, Workload, check_sample_layout
from exfairs.sim.config import EngineConfig
from exfairs.sim.costs import StepCostModel
from exfairs.sim.plan import StepObserver
from exfairs.sim.run import Run, gate_kv_warning
from exfairs.sim.run_state import SimResult

__all__ = ["SimResult", "gate_kv_warning", "simulate"]

_log = logging.getLogger(__name__)


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
    seen_s: Mapping[int, float] | None = None,
    admission_profile: Profile | None = None,
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
    feedback limit (it decides inside the scheduler:
    `exfairs.policies.admission_engine.EngineAdmission`), priority mode none; a rejected
    request's record has outcome REJECTED and `finish_s` = the time it was refused.
    `policy_samples` (`exfairs.records.SAMPLE_LAYOUTS`): "sparse" (default)
    records at each sample time the clients the policy had heard from (`on_arrival`) by then
    (`PolicySample.clients`), so samples cost O(clients seen × samples), not O(registered
    clients × samples); "dense" every registered client; "off" none. The sample times are
    decision points in all three, so records do not depend on the layout.
    `submit_latencies` (gate mode; request id → seconds in [0, 60]) gives a request's own
    release-to-engine latency in place of ``engine.submit_latency_s``: a replay of a live run
    passes each release's recorded hop (`exfairs.live.replay`); requests not in it use the
    engine's. In priority mode with ``hook_order="stream"`` they are the submissions' latencies.
    `seen_s` (request id → run-clock seconds, ≥ the request's arrival, in arrival order) is when
    a request is first seen — by the gate or priority-mode driver, by the engine in engine mode
    — in place of its arrival (+ latency); its deadlines stay the workload's. A replay passes
    the live times. `admission_profile` is the profile whose linear cost model the predictive
    limit prices requests with (default: the run's own step costs, `step_cost` or `profile`'s).
    A live run's limit prices with the profile it was prepared with (`exfairs.live.gate.
    predictive_limiter`, no sampling cost), so a simulation or replay of that run with another
    cost model passes that profile here to decide as the live gate did.

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
    adm = admission if admission is not None else AdmissionConfig()
    refusal = admission_refusal(exp.mode, adm)
    if refusal == "priority_mode":
        raise ConfigError("admission options need gate (QUEUE_) or engine (ENGINE_) mode: "
                          "priority mode fixes priorities at submission", field="admission",
                          value=adm.label)
    if refusal == "engine_feedback":
        raise ConfigError("engine mode takes hopeless=demote|reject and limit=predictive: the "
                          "feedback limit learns from the gate's releases", field="admission",
                          value=adm.label)
    latencies: dict[int, float] = {}
    if submit_latencies and (exp.mode is Mode.ENGINE or (
            exp.mode is Mode.PRIORITY and cfg.hook_order != "stream")):
        raise ConfigError("per-request latencies are gate releases' and priority-mode "
                          "submissions' (hook_order stream); engine mode hears requests in "
                          "the engine", field="submit_latencies", value=exp.name)
    for rid, lat in (submit_latencies or {}).items():
        if isinstance(lat, bool) or not isinstance(lat, (int, float)) or not 0 <= lat <= 60:
            raise ConfigError("must be a number of seconds in [0, 60]",
                              field=f"submit_latencies[{rid}]", value=lat)
        latencies[rid] = float(lat)
    policy = make_policy(exp.policy, policy_params)
    run = Run(workload, exp, profile, cfg, policy, max_inflight, float(sample_every_s),
              step_by_step, observer, step_cost, admission, layout, latencies, seen_s,
              admission_profile)
    for warning in run.warnings:
        _log.warning("%s", warning)
    return run.result()
