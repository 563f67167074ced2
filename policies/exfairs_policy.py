"""ExFairS: experiential fairness (docs/design.md §3).

For client i, over a recent window:

* ``v_i`` — SLO violation rate: ``V_i / R_i`` where ``V_i`` counts `on_violation` calls and
  ``R_i`` resolved requests (`on_violation` calls plus `on_finish(..., slo_met=True)` calls);
  ``v_i = 0`` while ``R_i = 0``. A request counts as violated the moment its deadline passes, even
  while queued or running (`exfairs.slo.SloTracker` reports it then). With ``early_violations``
  (default off), an unresolved request also counts as violated — provisionally, until it resolves
  — from the moment it can no longer meet its deadline: ``now ≥ deadline − unloaded_e2e_s`` (its
  latency alone on an idle engine), so the score reacts before the deadline passes. The study
  (docs/results.md) measured no effect of it on any scenario, so it stays off by default.
* ``s_i`` — share of weighted service: ``S_i / Σ_j S_j`` with
  ``S_i = (w_p · prompt tokens + w_q · output tokens) / weight_i``, charged exactly as VTC charges
  its counters (prompt at the first `on_dispatch`, output tokens as `on_service` reports decode
  tokens; prefill in `on_service` is not charged again); ``s_i = 0`` while ``Σ_j S_j = 0``.
* ``FR_i = α · v_i − (1 − α) · s_i``: a client whose experience is worse, per unit of resource it
  got, has a higher FR. ``FR_i ∈ [−(1−α), α]``.

Order (``order``, default ``"deadline"``), lower score first. Since issue #17 the order is a
virtual token counter with bounded experience terms:

    score_i = (1 − α) · c_i + α · B · (u_i / K − v_i)

* ``c_i`` — client i's VTC counter (`exfairs.policies.vtc.VTC`, same charges, same lift when the
  client rejoins the backlog, so idle time is not banked; in priority mode the requested output is
  charged at submission too). It grows with every token the client is served, whoever's request
  was picked within the client, so service feeds back into the order at every decision.
* ``u_i ∈ [0, K]`` — urgency (``K = horizon_s``, default 10 s). ``"deadline"``: the least slack
  ``deadline − unloaded_e2e − now`` among the client's waiting requests that can still meet their
  deadline, clipped to K; K when it has none (only hopeless requests, or no e2e SLO), so hopeless
  requests never raise a client's rank. ``"arrival"``: ``K − min(K, now − oldest waiting arrival)``.
* ``B`` — the credit scale in weighted tokens: ``credit_requests`` (default 4) times the mean VTC
  cost ``w_p·prompt + w_q·output`` of the requests seen so far. A client at the worst experience
  (``v = 1``, an urgent request) is ranked as if it had ``α·B·2/(1−α)`` fewer tokens of service.

**Starvation freedom** (gate and engine modes, ``α < 1``, ``w_p > 0``). Every term but ``c_i`` is
bounded: ``score_i ∈ [(1−α)c_i − αB, (1−α)c_i + αB]``. While client i is backlogged and not
dispatched, its counter grows only by the decode tokens of its in-flight requests (a finite
amount; call the result ``C_i``), while another client j can be dispatched only while
``c_j ≤ T = C_i + 2αB_max/(1−α)`` (``B_max`` the credit at the largest request cost) and each
dispatch raises ``c_j`` by at least ``w_p / weight_j`` (a prompt has ≥ 1 token; counters never
fall). So i is dispatched within ``1 + Σ_{j: c_j ≤ T} (⌊(T − c_j) · weight_j / w_p⌋ + 1)``
decisions, counters taken when its wait begins (tests/policies/test_exfairs_starvation.py
checks this bound with hypothesis). In priority mode the priority is ``round(score)`` of the
request at submission, with ``c_i`` its start tag, so the same argument bounds how many later
submissions overtake it.

The rule it replaces (issue #8: each request keyed by its deadline moved earlier by
``horizon_s · FR_i``, the client ranked by the smallest key among its waiting requests) starved a
client under overload: a hopeless request kept its client's key low while the queue served that
client's savable requests, and the bounded shift could not offset keys that drift apart without
bound, so shares followed arrival rates (issue #17: 0.00 / 1.00 on the 1 : 2 overload).
``order = "score"`` is the rule before issue #8 (the client with the highest FR goes first,
``client_scores = −FR``, priority ``round(−FR_i · 10^6)``, no counter and no ageing): it can
starve and is kept only to reproduce the earlier study.

Within a client, requests that can still meet their deadline go first (``deadline_aware``; the
`PolicyQueue` does this in gate and engine modes); the score does not depend on which of the
client's requests is picked, so this cannot pin a rank. Ties fall to the queue's rule (earliest
head arrival, then request id).

The window is an exponential decay: every event contributes with weight ``2^(−age / window_s)``
(``window_s`` is the half-life, in seconds). ``V``, ``R`` and ``S`` decay at the same rate, so
the ratios above are the decay-weighted violation rate and service share; provisional early
violations weigh as events at the time of the decision.

Unlike the original research code, the resource term is *subtracted* (the original's ``+(1−α)·s_i``
favoured heavy users), scores are recomputed at every decision rather than adjusted pairwise once
per 100 s round, and they are bounded.

Parameters: ``alpha`` ∈ [0, 1] (default 0.7), ``window_s`` > 0 (default 60 s), ``w_p`` ≥ 0
(default 1), ``w_q`` ≥ 0 (default 2), ``horizon_s`` > 0 (default 10 s), ``credit_requests`` ≥ 0
(default 4), all finite;
``early_violations`` (bool, default false); ``order`` ∈ {"deadline", "arrival", "score"}.
The study behind the defaults: docs/results.md.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from exfairs.errors import ConfigError
from exfairs.policies._exfairs_state import _FEW_CLIENTS, ExFairSState, _flag
from exfairs.policies.base import FloatArray, IntArray
from exfairs.policies.params import non_negative, positive, unit_interval
from exfairs.policies.registry import register_policy
from exfairs.policies.vtc import VTC
from exfairs.records import Request

_ORDERS = ("deadline", "arrival", "score")


@register_policy("ExFairS")
class ExFairS(ExFairSState):
    """Counter plus bounded experience terms; see the module docstring for the formula and the
    starvation-freedom property."""

    deadline_aware = True
    priority_scale = 1e6  # order = "score": FR ∈ [−1, 1] must survive vLLM's integer priorities

    def __init__(
        self,
        alpha: float = 0.7,
        window_s: float = 60.0,
        w_p: float = 1.0,
        w_q: float = 2.0,
        early_violations: bool = False,
        order: str = "deadline",
        horizon_s: float = 10.0,
        credit_requests: float = 4.0,
    ) -> None:
        super().__init__()
        self.alpha = unit_interval("alpha", alpha)
        self.window_s = positive("window_s", window_s)
        self.w_p = non_negative("w_p", w_p)
        self.w_q = non_negative("w_q", w_q)
        self.early_violations = _flag("early_violations", early_violations)
        if order not in _ORDERS:
            raise ConfigError(f"must be one of {', '.join(_ORDERS)}", field="order", value=order)
        self.order = order
        self.horizon_s = positive("horizon_s", horizon_s)
        self.credit_requests = non_negative("credit_requests", credit_requests)
        # The counters are VTC's, hook for hook (one implementation of charges and lifts).
        self._vtc = VTC(w_p=self.w_p, w_q=self.w_q)
        # Unresolved requests: id → (client index, time it can no longer meet its deadline), and
        # per client the sorted times, to count the hopeless ones at any `now_s`.
        self._pending: dict[int, tuple[int, float]] = {}
        self._late_at: list[list[float]] = []
        # Waiting requests (arrived or preempted, not dispatched): id → (client index, key), per
        # client the sorted keys. Key: latest start (deadline − unloaded e2e; inf without an e2e
        # SLO) for "deadline", arrival time otherwise.
        self._waiting: dict[int, tuple[int, float]] = {}
        self._keys: list[list[float]] = []
        # Per client the smallest key that was ≥ the last decision time (inf when none): the
        # urgency of "deadline" order, advanced lazily as time passes.
        self._head_key = np.zeros(0)
        self._t0 = 0.0
        self._violations = np.zeros(0)
        self._resolved = np.zeros(0)
        self._service = np.zeros(0)
        self._charged: set[int] = set()  # request ids whose prompt was charged
        self._cost_sum = 0.0  # VTC cost of every request seen, for the credit scale B
        self._cost_n = 0

    def add_client(self, name: str, weight: float = 1.0) -> int:
        self._vtc.add_client(name, weight)
        return super().add_client(name, weight)

    def add_clients(self, clients: Sequence[tuple[str, float]]) -> list[int]:
        self._vtc.add_clients(clients)
        return super().add_clients(clients)

    # -- hooks -----------------------------------------------------------------------------------
    def on_arrival(self, request: Request, now_s: float) -> None:
        self._vtc.on_arrival(request, now_s)
        if request.request_id not in self._waiting:
            self._cost_sum += self.w_p * request.prompt_tokens + self.w_q * request.output_tokens
            self._cost_n += 1
        self._wait(request, now_s)
        if not self.early_violations or request.request_id in self._pending:
            return
        late_at = request.deadline_s - request.unloaded_e2e_s
        if math.isfinite(late_at):
            c = self.client_index(request.client)
            self._pending[request.request_id] = (c, late_at)
            bisect.insort(self._late_at[c], late_at)

    def on_preempt(self, request: Request, now_s: float) -> None:
        self._vtc.on_preempt(request, now_s)
        self._wait(request, now_s)

    def on_dispatch(self, request: Request, now_s: float) -> None:
        self._vtc.on_dispatch(request, now_s)
        self._unwait(request.request_id)
        if request.request_id in self._charged:
            return  # re-dispatch after a preemption: the prompt was charged already
        self._charged.add(request.request_id)
        c = self.client_index(request.client)
        self._service[c] += self._scale(now_s) * self.w_p * request.prompt_tokens / self._weights[c]

    def on_service(
        self, client: str, prefill_tokens: int, decode_tokens: int, now_s: float
    ) -> None:
        self._vtc.on_service(client, prefill_tokens, decode_tokens, now_s)
        if decode_tokens:
            c = self.client_index(client)
            self._service[c] += self._scale(now_s) * self.w_q * decode_tokens / self._weights[c]

    def on_service_run(self, decode_tokens: Sequence[tuple[str, int]],
                       ends_s: Sequence[float]) -> None:
        # Exactly `on_service` step by step (same arithmetic, same order; `_scale` once per
        # step, as every call at one time returns the same weight), without a call per step.
        self._vtc.on_service_run(decode_tokens, ends_s)
        todo = [(self.client_index(client), d) for client, d in decode_tokens if d]
        if not todo:
            return
        w_q = self.w_q
        weights = self._weights
        for t in ends_s:
            g = self._scale(t)
            service = self._service
            for c, d in todo:
                service[c] += g * w_q * d / weights[c]

    def on_violation(self, request: Request, now_s: float) -> None:
        self._resolve(request.request_id)  # stays waiting, if it is, until dispatched or dropped
        c = self.client_index(request.client)
        g = self._scale(now_s)
        self._violations[c] += g
        self._resolved[c] += g

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:
        self._vtc.on_finish(request, now_s, slo_met)
        self._resolve(request.request_id)
        self._unwait(request.request_id)
        self._charged.discard(request.request_id)
        if slo_met:
            self._resolved[self.client_index(request.client)] += self._scale(now_s)

    def on_drop(self, request: Request, now_s: float) -> None:
        self._vtc.on_drop(request, now_s)
        self._resolve(request.request_id)
        self._unwait(request.request_id)
        self._charged.discard(request.request_id)

    # -- ranking ---------------------------------------------------------------------------------
    def violation_rates(self, now_s: float | None = None) -> FloatArray:
        """``v_i`` by client index (decay-weighted violations / resolved; 0 when none resolved).

        With `now_s` and ``early_violations``, unresolved requests that can no longer meet their
        deadline at `now_s` count as violations (resolved at `now_s`)."""
        viol, res = self._violations, self._resolved
        if now_s is not None and self.early_violations and self._pending:
            hopeless = np.asarray([bisect.bisect_right(times, now_s) for times in self._late_at],
                                  dtype=np.float64)
            if hopeless.any():
                return self._rates_with(viol, res, hopeless, now_s)
        return self._rates(viol, res)

    def _rates_with(self, viol: FloatArray, res: FloatArray, hopeless: FloatArray,
                    now_s: float) -> FloatArray:
        """Rates with the `hopeless` counts resolved at `now_s` as violations."""
        # In stored units an event at `now_s` weighs 2^((now_s − t0)/window_s); dividing the
        # stored sums by that weight instead keeps every term finite.
        decay = math.pow(2.0, -max(0.0, now_s - self._t0) / self.window_s)
        return self._rates(viol * decay + hopeless, res * decay + hopeless)

    @staticmethod
    def _rates(viol: FloatArray, res: FloatArray) -> FloatArray:
        """viol / res elementwise, 0 where nothing resolved."""
        out = np.zeros_like(viol)
        np.divide(viol, res, out=out, where=res > 0)
        return out

    def service_shares(self) -> FloatArray:
        """``s_i`` by client index (decay-weighted share of weighted service; 0 when none)."""
        total = float(self._service.sum())
        return self._service / total if total > 0 else np.zeros_like(self._service)

    def fairness_scores(self, now_s: float | None = None) -> FloatArray:
        """``FR_i = α·v_i − (1−α)·s_i`` by client index (higher = worse off; `order = "score"`
        ranks by it). `now_s` enables the early violations (see `violation_rates`)."""
        return (self.alpha * self.violation_rates(now_s)
                - (1.0 - self.alpha) * self.service_shares())

    @property
    def counters(self) -> FloatArray:
        """VTC counters ``c_i`` by client index (weighted tokens; copy)."""
        return self._vtc.counters

    def credit_tokens(self) -> float:
        """``B``: `credit_requests` × the mean VTC cost of the requests seen (0 before any)."""
        return self.credit_requests * (self._cost_sum / self._cost_n if self._cost_n else 0.0)

    def urgency(self, now_s: float) -> FloatArray:
        """``u_i ∈ [0, horizon_s]`` by client index, seconds (see the module docstring)."""
        k = self.horizon_s
        if self.order == "arrival":
            return k - np.clip(now_s - self._oldest_arrival(), 0.0, k)
        self._advance(now_s)
        return np.minimum(self._head_key - now_s, k)

    def client_scores(self, now_s: float) -> FloatArray:
        if self.order == "score":
            return -self.fairness_scores(now_s)
        if (self.order == "deadline" and len(self._names) <= _FEW_CLIENTS
                and not (self.early_violations and self._pending)):
            return self._scores_few(now_s)
        terms = self.urgency(now_s) / self.horizon_s - self.violation_rates(now_s)
        return ((1.0 - self.alpha) * self._vtc.counters
                + self.alpha * self.credit_tokens() * terms)

    def scores_of(self, indices: IntArray, now_s: float) -> FloatArray:
        """`client_scores(now_s)[indices]` computed for those clients only (same operations
        element by element, so the same bits)."""
        if self.order == "score":
            return -self.fairness_scores(now_s)[indices]
        if (self.order == "deadline" and indices.shape[0] <= _FEW_CLIENTS
                and not (self.early_violations and self._pending)):
            return self._scores_few(now_s, indices.tolist())
        k = self.horizon_s
        if self.order == "arrival":
            oldest = np.asarray([keys[0] if keys else math.inf
                                 for keys in (self._keys[c] for c in indices.tolist())])
            urgency = k - np.clip(now_s - oldest, 0.0, k)
        else:
            self._advance(now_s, indices)
            urgency = np.minimum(self._head_key[indices] - now_s, k)
        terms = urgency / self.horizon_s - self._violation_rates_of(indices, now_s)
        return ((1.0 - self.alpha) * self._vtc._counter[indices]
                + self.alpha * self.credit_tokens() * terms)

    def _violation_rates_of(self, indices: IntArray, now_s: float) -> FloatArray:
        """`violation_rates(now_s)[indices]`, for those clients only."""
        viol, res = self._violations[indices], self._resolved[indices]
        if self.early_violations and self._pending:
            hopeless = np.asarray([bisect.bisect_right(self._late_at[c], now_s)
                                   for c in indices.tolist()], dtype=np.float64)
            # `violation_rates` applies the decay when any registered client has a hopeless
            # request; rescaling both sums by one factor changes the ratio's bits, so do so
            # exactly when it would (a client outside `indices` with one counts too).
            if hopeless.any() or any(t <= now_s for _, t in self._pending.values()):
                return self._rates_with(viol, res, hopeless, now_s)
        return self._rates(viol, res)

    def submission_priority(self, request: Request, now_s: float) -> int:
        """Priority mode (lower runs first), fixed at submission: ``order = "score"``:
        ``round(−FR_i · 10^6)``; otherwise the score with the request's own urgency and the
        client's counter as its start tag (`VTC.submission_priority`, which also switches on
        charging the requested output at submission)."""
        c = self.client_index(request.client)
        if self.order == "score":
            return round(-float(self.fairness_scores(now_s)[c]) * self.priority_scale)
        tag = float(self._vtc.submission_priority(request, now_s))
        k = self.horizon_s
        if self.order == "arrival":
            u = k
        else:
            slack = request.deadline_s - request.unloaded_e2e_s - now_s
            u = min(slack, k) if slack >= 0 else k
        v = float(self._violation_rates_of(np.array([c], dtype=np.int64), now_s)[0])
        return round((1.0 - self.alpha) * tag + self.alpha * self.credit_tokens() * (u / k - v))

    def state_snapshot(self, now_s: float) -> dict[str, list[float]]:
        return {
            "violation_rate": [float(x) for x in self.violation_rates(now_s)],
            "service_share": [float(x) for x in self.service_shares()],
            "fr": [float(x) for x in self.fairness_scores(now_s)],
            "counter": [float(x) for x in self._vtc.counters],
        }

    def state_snapshot_of(self, indices: Sequence[int], now_s: float) -> dict[str, list[float]]:
        idx = np.asarray(indices, dtype=np.int64)
        v = self._violation_rates_of(idx, now_s)
        total = float(self._service.sum())
        s = self._service[idx] / total if total > 0 else np.zeros(idx.shape[0])
        return {"violation_rate": v.tolist(), "service_share": s.tolist(),
                "fr": (self.alpha * v - (1.0 - self.alpha) * s).tolist(),
                "counter": self._vtc._counter[idx].tolist()}
