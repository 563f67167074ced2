"""What one simulation run holds, shared by its parts, and what it returns.

`SimResult` is `exfairs.sim.runner.simulate`'s result. `RunState` declares the state of one run
(`exfairs.sim.run.Run`): the front end (`exfairs.sim.run_front`: arrivals, gate, SLO deadlines,
samples, wake-ups) and the delivery side (`exfairs.sim.run_delivery`: tokens, first tokens,
finishes, prompt credit) read and write the same fields, which `Run.__init__` sets; declaring them
once here lets each part be checked on its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from exfairs.policies.admission import GateLimiter
from exfairs.policies.admission_engine import EngineAdmission
from exfairs.policies.base import Policy
from exfairs.policies.experiments import Mode
from exfairs.policies.queue import PolicyQueue
from exfairs.records import PolicySample, RequestRecord
from exfairs.sim.config import EngineConfig
from exfairs.sim.process import EngineProcess, SimEnvironment
from exfairs.sim.queues import Seq
from exfairs.sim.scheduler import Scheduler
from exfairs.slo import SloTracker


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


class RunState:
    """The fields of one run (set by `Run.__init__`, which says what each is for); no behaviour.

    Times are simulated seconds; `rid` keys are request ids; client indices are positions in
    `client_names`.
    """

    mode: Mode
    cfg: EngineConfig
    policy: Policy
    client_names: list[str]
    seqs: list[Seq]
    by_id: dict[int, Seq]
    # Admission options.
    _reject: bool
    _hopeless_wakes: bool
    rejected: dict[int, float]
    engine_adm: EngineAdmission | None
    gate: PolicyQueue | None
    limiter: GateLimiter | None
    _observes: bool
    max_inflight: int
    warnings: tuple[str, ...]
    inflight: int
    # Submission latency and gate releases in transit.
    latency: float
    _latencies: dict[int, float]
    _in_flight_lag: bool
    _arrival_lag: float
    _heard_early: bool
    _in_transit: deque[tuple[float, Seq]]
    _early_slots: int
    _prev_decision_s: float
    # prompt_credit "first_token" and hook_order "stream".
    _credit_first: bool
    _resume: dict[int, tuple[Seq, int]]
    _streams: bool
    # Engine, clock and SLO bookkeeping.
    sched: Scheduler
    tracker: SloTracker
    env: SimEnvironment
    engine: EngineProcess
    next_arrival: int
    _dl_armed: float
    # Policy samples and wake-ups.
    sample_every_s: float
    sample_k: int
    samples: list[PolicySample]
    _sparse_samples: bool
    _no_samples: bool
    _heard: set[int]
    _heard_sorted: tuple[int, ...]
    _next_sample_s: float
    _wakes: set[float]
    _asks_wakeups: bool
