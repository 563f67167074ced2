"""Engine-mode admission (issue 15): the request the scheduler admits is the one the predictive
limit judged, even when refusing a late head changes the policy's ranking.

The bug this guards against: `EngineAdmission.head` refused late heads and chose the next head
before the refusals reached the policy (``on_violation``, ``on_drop``); a policy that reacts to
violations (ExFairS) then ranked the queue differently at the scheduler's pop, and the engine
admitted a request the limit never saw, with its (tight) budget binding every later admission.
On admission-azure16 at load 1.0 (seed 2) that pinned ENGINE_ExFairS's batch at 8-22 requests
and its worst-client attainment at 0.105 against ENGINE_VTC's 0.556."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from exfairs.policies.admission import AdmissionConfig, SloAdmission
from exfairs.policies.admission_engine import EngineAdmission
from exfairs.policies.base import Policy
from exfairs.records import SLO, Request
from exfairs.sim.queues import PolicyWaiting, Seq

STEP_S = 0.01  # the toy cost model: every decoding sequence adds 10 ms to a step


class _FlipOnViolation(Policy):
    """Toy policy whose ranking reacts to violations, as ExFairS's does: clients a, b, c go in
    that order until any violation is reported, then a, c, b."""

    def __init__(self) -> None:
        super().__init__()
        self.violations = 0

    def on_violation(self, request: Request, now_s: float) -> None:
        self.violations += 1

    def client_scores(self, now_s: float) -> Any:
        return np.array([0.0, 2.0, 1.0] if self.violations else [0.0, 1.0, 2.0])


class _RecordingLimit(SloAdmission):
    """The predictive limit, remembering the requests it judged."""

    def __init__(self, config: AdmissionConfig) -> None:
        super().__init__(config, lambda n, ctx: STEP_S * n, 0.0, max_inflight=8)
        self.judged: list[int] = []

    def decide(self, request: Request, now_s: float, inflight: int) -> str:
        self.judged.append(request.request_id)
        return super().decide(request, now_s, inflight)


def _req(rid: int, client: str, e2e_s: float | None) -> Request:
    return Request(request_id=rid, client=client, arrival_s=0.0, prompt_tokens=8,
                   output_tokens=10, slo=SLO(e2e_s=e2e_s), unloaded_e2e_s=0.05)


def test_engine_admits_the_head_the_limit_judged_after_a_refusal_reranks() -> None:
    config = AdmissionConfig(hopeless="reject", limit="predictive")
    policy = _FlipOnViolation()
    policy.add_clients([("a", 1.0), ("b", 1.0), ("c", 1.0)])
    limit = _RecordingLimit(config)
    adm = EngineAdmission(config, limit)
    running = _req(0, "b", None)  # one request in flight, no SLO: it binds nothing
    adm.admitted(running, 0.0)
    # a's request is late at this pace: (0.2 - 0.01) / 10 tokens = 19 ms per token, below the
    # 22 ms that two sequences need at headroom 0.9 (2 x 10 ms / 0.9); b's and c's are not.
    late, b_req, c_req = _req(1, "a", 0.2), _req(2, "b", 10.0), _req(3, "c", 10.0)
    seqs: Mapping[int, Seq] = {r.request_id: Seq(r, i)
                               for i, r in enumerate((late, b_req, c_req))}
    refused: list[int] = []

    def refuse(r: Request, now_s: float) -> None:  # as the simulator's driver does
        policy.on_violation(r, now_s)
        policy.on_drop(r, now_s)
        refused.append(r.request_id)

    waiting = PolicyWaiting(policy, seqs, admission=adm, refuse=refuse)
    for r in (late, b_req, c_req):
        policy.on_arrival(r, 0.0)
        waiting.push(seqs[r.request_id], 0.0)

    assert waiting.admissible(0.0)
    assert refused == [1]  # the late head left, and the policy heard of it
    head = waiting.peek(0.0)
    assert head.rid == 3  # the violation put c before b
    assert limit.judged[-1] == head.rid  # the limit judged the request about to be admitted
    assert waiting.pop(0.0).rid == 3


def test_head_without_a_refuse_callback_returns_the_refused() -> None:
    config = AdmissionConfig(hopeless="reject", limit="predictive")
    policy = _FlipOnViolation()
    policy.add_clients([("a", 1.0), ("b", 1.0), ("c", 1.0)])
    adm = EngineAdmission(config, _RecordingLimit(config))
    adm.admitted(_req(0, "b", None), 0.0)
    from exfairs.policies.queue import PolicyQueue

    q = PolicyQueue(policy)
    for r in (_req(1, "a", 0.2), _req(2, "b", 10.0)):
        policy.on_arrival(r, 0.0)
        q.push(r, 0.0)
    verdict, refused = adm.head(q, 0.0)
    assert verdict == "admit" and [r.request_id for r in refused] == [1]
