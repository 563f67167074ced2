"""SLO-aware admission at the live gate (issue 15; `exfairs.policies.admission`).

The same `AdmissionConfig` as the simulator's gate: ``hopeless=demote`` queues requests that can
no longer meet their deadline behind every savable one (the driver's `PolicyQueue` is built with
``hopeless_last``); ``hopeless=reject`` also refuses them at the gate (outcome REJECTED);
``limit=predictive`` holds the policy's pick back while the profile's predicted decode pace with
one more request in flight would make an admitted request late (`SloAdmission`);
``limit=feedback`` caps the requests in flight at a limit learnt from the first tokens and
finishes the driver reports (`exfairs.policies.admission_feedback.FeedbackLimit`, the
simulator's code). The policy
still chooses who is released; this module decides whether and when. No clock, no I/O: the
driver passes the run clock's time and the number of requests in the engine.
"""

from __future__ import annotations

from exfairs.errors import ConfigError
from exfairs.policies.admission import (
    AdmissionConfig,
    GateLimiter,
    admission_refusal,
    make_limiter,
)
from exfairs.policies.experiments import Mode
from exfairs.policies.queue import PolicyQueue
from exfairs.records import Request


def check_live_admission(admission: AdmissionConfig, mode: Mode, *, at_gate: bool = False) -> None:
    """ConfigError unless `mode` takes `admission` live: gate mode takes every option (here),
    engine mode all but the feedback limit (in the scheduler plug-in, `exfairs.live.engine_queue`;
    with `at_gate` — the driver's own gate — none); priority mode none (fixed at submission)."""
    if not admission.active or mode is Mode.GATE:
        return
    if mode is Mode.ENGINE and at_gate:
        raise ConfigError("engine mode's admission runs in the scheduler plug-in (the run "
                          "spec: run_live_experiment), not at the driver's gate",
                          field="admission", value=admission.label)
    refusal = admission_refusal(mode, admission)
    if refusal == "engine_feedback":
        raise ConfigError("engine mode takes hopeless=demote|reject and limit=predictive: the "
                          "feedback limit learns from the gate's releases", field="admission",
                          value=admission.label)
    if refusal == "priority_mode":
        raise ConfigError("live admission needs gate (QUEUE_) or engine (ENGINE_) mode: "
                          "priority mode fixes priorities at submission", field="admission",
                          value=admission.label)


def predictive_limiter(admission: AdmissionConfig, profile: object, max_num_batched_tokens: int,
                       max_inflight: int, kv_tokens: int = 0) -> GateLimiter | None:
    """The gate's in-flight limit (`exfairs.policies.admission.make_limiter`): the predictive
    one from the profile's step-cost model (the simulator's: decode steps from
    `LinearStepCost`, prefill seconds per token from the coefficients), the feedback one, or
    both; None for ``limit=off``."""
    if admission.limit == "off":
        return None
    if not admission.predictive:
        return make_limiter(admission, max_inflight)
    from exfairs.calibration.profile import Profile
    from exfairs.sim.costs import LinearStepCost

    assert isinstance(profile, Profile)
    cost = LinearStepCost(profile.cost_model(max_num_batched_tokens))
    return make_limiter(
        admission, max_inflight, lambda n, ctx: float(cost.decode_run_ms(1, n, ctx)[0]) / 1000.0,
        profile.coefficients.prefill_token_ms / 1000.0, kv_tokens=kv_tokens)


class LiveGate:
    """Which queued requests the gate releases or refuses now.

    `release` returns (released in release order, refused): the driver submits the first and
    records the second as REJECTED (having told the policy `on_violation` and `on_drop`). The
    caller must report every released request leaving the engine with `finished`.
    """

    def __init__(self, queue: PolicyQueue, admission: AdmissionConfig,
                 limiter: GateLimiter | None = None) -> None:
        self.queue = queue
        self.admission = admission
        self.limiter = limiter
        self._reject = admission.hopeless == "reject"

    @property
    def time_driven(self) -> bool:
        """True when the decision can change by time alone (the driver re-checks on its tick)."""
        return self.admission.active

    def release(self, now_s: float, inflight: int, max_inflight: int
                ) -> tuple[list[Request], list[Request]]:
        q = self.queue
        released: list[Request] = []
        refused: list[Request] = []
        if self._reject:
            refused.extend(q.pop_hopeless(now_s))
        limiter = self.limiter
        while len(q) and inflight < max_inflight:
            if limiter is None:
                r = q.pop(now_s)
                if r is None:
                    break
            else:
                c = q.select(now_s)
                head = q.head(c)
                verdict = limiter.decide(head, now_s, inflight)
                if verdict == "wait":
                    break
                if verdict == "late" and self._reject:
                    q.remove(head.request_id)
                    refused.append(head)
                    continue
                r = q.pop_client(c, now_s)
                limiter.released(r, now_s, binding=verdict == "admit")
            released.append(r)
            inflight += 1
        return released, refused

    def first_token(self, request_id: int, now_s: float) -> None:
        """A released request's first output token came at `now_s` (run clock)."""
        if self.limiter is not None:
            self.limiter.first_token(request_id, now_s)

    def finished(self, request_id: int, now_s: float | None = None, generated: int = 0) -> None:
        """A released request left the engine: at `now_s` with `generated` tokens when it
        completed, `now_s` None when it failed or was aborted (no verdict)."""
        if self.limiter is not None:
            self.limiter.finished(request_id, now_s, generated)
