"""SLO-aware admission at the live gate (issue 15; `exfairs.policies.admission`).

The same `AdmissionConfig` as the simulator's gate: ``hopeless=demote`` queues requests that can
no longer meet their deadline behind every savable one (the driver's `PolicyQueue` is built with
``hopeless_last``); ``hopeless=reject`` also refuses them at the gate (outcome REJECTED);
``limit=predictive`` holds the policy's pick back while the profile's predicted decode pace with
one more request in flight would make an admitted request late (`SloAdmission`). The policy
still chooses who is released; this module decides whether and when. No clock, no I/O: the
driver passes the run clock's time and the number of requests in the engine.
"""

from __future__ import annotations

from exfairs.errors import ConfigError
from exfairs.policies.admission import AdmissionConfig, SloAdmission
from exfairs.policies.experiments import Mode
from exfairs.policies.queue import PolicyQueue
from exfairs.records import Request


def check_live_admission(admission: AdmissionConfig, mode: Mode, *, at_gate: bool = False) -> None:
    """ConfigError unless `mode` takes `admission` live: gate mode takes every option (here),
    engine mode too (in the scheduler plug-in, `exfairs.live.engine_queue`; with `at_gate` —
    the driver's own gate — it does not); priority mode none (fixed at submission)."""
    if not admission.active or mode is Mode.GATE:
        return
    if mode is Mode.ENGINE and at_gate:
        raise ConfigError("engine mode's admission runs in the scheduler plug-in (the run "
                          "spec: run_live_experiment), not at the driver's gate",
                          field="admission", value=admission.label)
    if mode is Mode.ENGINE:
        return
    raise ConfigError("live admission needs gate (QUEUE_) or engine (ENGINE_) mode: priority "
                      "mode fixes priorities at submission", field="admission",
                      value=admission.label)


def predictive_limiter(admission: AdmissionConfig, profile: object, max_num_batched_tokens: int,
                       max_inflight: int, kv_tokens: int = 0) -> SloAdmission | None:
    """The predictive limit from the profile's step-cost model (the simulator's: decode steps
    from `LinearStepCost`, prefill seconds per token from the coefficients); None unless
    ``limit=predictive``."""
    if admission.limit != "predictive":
        return None
    from exfairs.calibration.profile import Profile
    from exfairs.sim.costs import LinearStepCost

    assert isinstance(profile, Profile)
    cost = LinearStepCost(profile.cost_model(max_num_batched_tokens))
    return SloAdmission(
        admission, lambda n, ctx: float(cost.decode_run_ms(1, n, ctx)[0]) / 1000.0,
        profile.coefficients.prefill_token_ms / 1000.0, max_inflight, kv_tokens=kv_tokens)


class LiveGate:
    """Which queued requests the gate releases or refuses now.

    `release` returns (released in release order, refused): the driver submits the first and
    records the second as REJECTED (having told the policy `on_violation` and `on_drop`). The
    caller must report every released request leaving the engine with `finished`.
    """

    def __init__(self, queue: PolicyQueue, admission: AdmissionConfig,
                 limiter: SloAdmission | None = None) -> None:
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

    def finished(self, request_id: int) -> None:
        """A released request left the engine (finished, failed, aborted)."""
        if self.limiter is not None:
            self.limiter.finished(request_id)
