"""ANDES: a QoE scheduler after Andes (Liu et al., "Andes: Defining and Enhancing
Quality-of-Experience in LLM-Based Text Streaming Services", 2024, arXiv:2404.16283).

Andes gives every request an *expected token timeline* (first token by a target TTFT, then one
token per target TPOT) and, at each step, serves the requests whose QoE — how closely delivery
follows that timeline — gains most from being served now, picking them as a knapsack (value =
QoE gain, weight = KV memory) when memory is tight; requests whose QoE can no longer be saved go
last. Here, with the simulator's per-client ranking (docs/policies.md), for a waiting request r
at time t:

* target end ``E_r``: its e2e deadline, or without one ``arrival + ttft + output·tpot`` from its
  SLO's TTFT/TPOT or the parameters ``expected_ttft_s``, ``expected_tpot_s``;
  span ``D_r = E_r − arrival``; slack ``s_r = E_r − unloaded_e2e_r − t`` (its latency alone on
  an idle engine, as the queue's "can still meet" rule);
* QoE if started now ``q_r = 1 − max(0, −s_r) / D_r`` (a linear stand-in for Andes' ratio of
  delivered to expected token area): it falls as the request runs late, reaching 0 one span late;
* key (lower first): **at risk** (``s_r ≤ horizon_s`` and ``q_r > 0``): ``−g_r / w_r`` with the
  QoE gained per second served sooner ``g_r = 1 / D_r`` and weight ``w_r = 1``, or, when the
  in-flight tokens the policy has dispatched reach ``kv_high · kv_tokens`` (high KV use),
  ``w_r = prompt + output`` tokens: value per unit of KV, the greedy knapsack order;
  **safe** (``s_r > horizon_s``): ``BIG + s_r`` (least slack first, after every at-risk one);
  **lost** (``q_r ≤ 0``): ``2·BIG + arrival`` (arrival order, after everything savable).
* client score = the smallest key among its waiting requests; within a client the queue releases
  requests that can still meet their deadline first (``deadline_aware``).

Priority mode: ``round(key × 10^6)`` of the request at submission.

Parameters: ``horizon_s`` > 0 (default 1 s), ``expected_ttft_s`` > 0 (default 1 s),
``expected_tpot_s`` > 0 (default 0.1 s), ``kv_tokens`` ≥ 0 (the engine's KV capacity in tokens;
0 = unknown, never knapsack; default 0), ``kv_high`` ∈ [0, 1] (default 0.9).
"""

from __future__ import annotations

import numpy as np

from exfairs.policies.base import FloatArray, Policy
from exfairs.policies.params import non_negative, positive, unit_interval
from exfairs.policies.registry import register_policy
from exfairs.records import Request

BIG = 1e9  # separates the key classes (keys of at-risk requests are > −1e9 for spans > 1 ns)


@register_policy("ANDES")
class Andes(Policy):
    """Expected-timeline QoE order with a knapsack weighting at high KV use."""

    deadline_aware = True
    priority_scale = 1e6

    def __init__(self, horizon_s: float = 1.0, expected_ttft_s: float = 1.0,
                 expected_tpot_s: float = 0.1, kv_tokens: float = 0.0,
                 kv_high: float = 0.9) -> None:
        super().__init__()
        self.horizon_s = positive("horizon_s", horizon_s)
        self.expected_ttft_s = positive("expected_ttft_s", expected_ttft_s)
        self.expected_tpot_s = positive("expected_tpot_s", expected_tpot_s)
        self.kv_tokens = non_negative("kv_tokens", kv_tokens)
        self.kv_high = unit_interval("kv_high", kv_high)
        self._waiting: dict[int, tuple[int, float, float, float, float, float]] = {}
        self._inflight: dict[int, int] = {}  # dispatched, running request id → its tokens
        self._inflight_tokens = 0
        self._arrays: tuple[np.ndarray, ...] | None = None  # cached columns of _waiting

    # -- hooks -----------------------------------------------------------------------------------
    def _target_end(self, r: Request) -> float:
        if np.isfinite(r.deadline_s):
            return r.deadline_s
        ttft = r.slo.ttft_s if r.slo.ttft_s is not None else self.expected_ttft_s
        tpot = r.slo.tpot_s if r.slo.tpot_s is not None else self.expected_tpot_s
        return r.arrival_s + ttft + r.output_tokens * tpot

    def _wait(self, r: Request) -> None:
        if r.request_id in self._waiting:
            return
        end = self._target_end(r)
        span = max(end - r.arrival_s, 1e-9)
        self._waiting[r.request_id] = (self.client_index(r.client), r.arrival_s, end,
                                       span, r.unloaded_e2e_s,
                                       float(r.prompt_tokens + r.output_tokens))
        self._arrays = None

    def _unwait(self, rid: int) -> None:
        if self._waiting.pop(rid, None) is not None:
            self._arrays = None

    def _stop(self, rid: int) -> None:
        self._inflight_tokens -= self._inflight.pop(rid, 0)

    def on_arrival(self, request: Request, now_s: float) -> None:
        self._wait(request)

    def on_preempt(self, request: Request, now_s: float) -> None:
        self._stop(request.request_id)  # its KV blocks were freed
        self._wait(request)

    def on_dispatch(self, request: Request, now_s: float) -> None:
        self._unwait(request.request_id)
        if request.request_id not in self._inflight:
            tokens = request.prompt_tokens + request.output_tokens
            self._inflight[request.request_id] = tokens
            self._inflight_tokens += tokens

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self._unwait(request.request_id)
        self._stop(request.request_id)

    def on_drop(self, request: Request, now_s: float) -> None:
        self._unwait(request.request_id)
        self._stop(request.request_id)

    # -- ranking ---------------------------------------------------------------------------------
    @property
    def kv_high_now(self) -> bool:
        """True when the dispatched, unfinished requests' tokens reach ``kv_high · kv_tokens``."""
        return self.kv_tokens > 0 and self._inflight_tokens >= self.kv_high * self.kv_tokens

    def _keys(self, client: np.ndarray, arrival: np.ndarray, end: np.ndarray, span: np.ndarray,
              unloaded: np.ndarray, tokens: np.ndarray, now_s: float) -> np.ndarray:
        slack = end - unloaded - now_s
        qoe = 1.0 - np.maximum(0.0, -slack) / span
        weight = tokens if self.kv_high_now else np.ones_like(tokens)
        at_risk = -(1.0 / span) / weight
        keys: np.ndarray = np.where(qoe <= 0.0, 2 * BIG + arrival,
                                    np.where(slack <= self.horizon_s, at_risk, BIG + slack))
        return keys

    def client_scores(self, now_s: float) -> FloatArray:
        out = np.full(self.n_clients, np.inf)
        if not self._waiting:
            return out
        if self._arrays is None:
            rows = np.asarray(list(self._waiting.values()), dtype=np.float64)
            self._arrays = tuple(rows[:, j] for j in range(rows.shape[1]))
        client, arrival, end, span, unloaded, tokens = self._arrays
        keys = self._keys(client, arrival, end, span, unloaded, tokens, now_s)
        np.minimum.at(out, client.astype(np.int64), keys)
        return out

    def submission_priority(self, request: Request, now_s: float) -> int:
        end = self._target_end(request)
        span = max(end - request.arrival_s, 1e-9)
        one = np.asarray
        key = self._keys(one([0.0]), one([request.arrival_s]), one([end]), one([span]),
                         one([request.unloaded_e2e_s]),
                         one([float(request.prompt_tokens + request.output_tokens)]), now_s)
        return round(float(key[0]) * self.priority_scale)
