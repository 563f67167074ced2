"""ExFairS: experiential fairness (DESIGN.md §3).

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

Order (``order``, default ``"deadline"``). Each request has a key ``k``: its e2e deadline
(``"deadline"``; its arrival time when the client sets no e2e SLO) or its arrival time
(``"arrival"``), in seconds. Requests go in order of the *virtual key* ``k − horizon_s · FR_i``
(``horizon_s`` default 10 s): a client's requests move up to ``horizon_s · α`` seconds earlier
the worse its experience, and no request is overtaken by one whose key is more than
``horizon_s`` later, so none starves. In priority mode the priority is that virtual key in
integer milliseconds, fixed at submission; in gate and engine modes the client score is the
virtual key of the client's waiting request with the smallest key (`client_scores`; waiting =
arrived or preempted, not yet dispatched). ``order = "score"`` is the rule before the study
(issue #8): the client with the highest FR goes first (``client_scores = −FR``), priority
``round(−FR_i · 10^6)`` at submission, with no ageing — under overload it starves the requests of
clients with a low FR, which the study measured as lost throughput.

Within a client, requests that can still meet their deadline go first (``deadline_aware``; the
`PolicyQueue` does this in gate and engine modes). Ties fall to the queue's rule (earliest head
arrival, then request id).

The window is an exponential decay: every event contributes with weight ``2^(−age / window_s)``
(``window_s`` is the half-life, in seconds). ``V``, ``R`` and ``S`` decay at the same rate, so
the ratios above are the decay-weighted violation rate and service share; provisional early
violations weigh as events at the time of the decision.

Unlike the original research code, the resource term is *subtracted* (the original's ``+(1−α)·s_i``
favoured heavy users), scores are recomputed at every decision rather than adjusted pairwise once
per 100 s round, and they are bounded.

Parameters: ``alpha`` ∈ [0, 1] (default 0.7), ``window_s`` > 0 (default 60 s), ``w_p`` ≥ 0
(default 1), ``w_q`` ≥ 0 (default 2), ``horizon_s`` ≥ 0 (default 10 s), all finite;
``early_violations`` (bool, default false); ``order`` ∈ {"deadline", "arrival", "score"}.
The study behind the defaults: docs/results.md.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from exfairs.errors import ConfigError
from exfairs.policies.base import FloatArray, Policy
from exfairs.policies.params import non_negative, positive, unit_interval
from exfairs.policies.registry import register_policy
from exfairs.records import Request

# Stored sums are scaled by 2^((t − t0)/window_s) so that an update touches one entry; they are
# rescaled (and t0 moved) before the scale can overflow.
_RESCALE_HALF_LIVES = 64.0
_ORDERS = ("deadline", "arrival", "score")
#: Priority-mode keys that are times are kept in integer milliseconds (vLLM priorities are ints).
_TIME_PRIORITY_SCALE = 1e3


def _flag(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ConfigError("must be true or false", field=field, value=value)


@register_policy("ExFairS")
class ExFairS(Policy):
    """Composite violation-rate / service-share score; see the module docstring for the formula."""

    deadline_aware = True
    priority_scale = 1e6  # FR ∈ [−1, 1] must survive vLLM's integer priorities

    def __init__(
        self,
        alpha: float = 0.7,
        window_s: float = 60.0,
        w_p: float = 1.0,
        w_q: float = 2.0,
        early_violations: bool = False,
        order: str = "deadline",
        horizon_s: float = 10.0,
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
        self.horizon_s = non_negative("horizon_s", horizon_s)
        # Unresolved requests: id → (client index, time it can no longer meet its deadline), and
        # per client the sorted times, to count the hopeless ones at any `now_s`.
        self._pending: dict[int, tuple[int, float]] = {}
        self._late_at: list[list[float]] = []
        # Waiting requests (arrived or preempted, not dispatched): id → (client index, order key),
        # and per client the sorted keys; the smallest is the client's head.
        self._waiting: dict[int, tuple[int, float]] = {}
        self._keys: list[list[float]] = []
        self._t0 = 0.0
        self._violations = np.zeros(0)
        self._resolved = np.zeros(0)
        self._service = np.zeros(0)
        self._charged: set[int] = set()  # request ids whose prompt was charged
        # keys[c][0] per client (inf when none waits), kept in step with `_keys` so a decision
        # is one vector operation, not a Python loop over every client.
        self._head_key = np.zeros(0)

    def _grow(self, n_clients: int) -> None:
        extra = n_clients - self._service.shape[0]
        if extra > 0:
            self._violations = np.concatenate([self._violations, np.zeros(extra)])
            self._resolved = np.concatenate([self._resolved, np.zeros(extra)])
            self._service = np.concatenate([self._service, np.zeros(extra)])
            self._late_at.extend([] for _ in range(extra))
            self._keys.extend([] for _ in range(extra))
            self._head_key = np.concatenate([self._head_key, np.full(extra, math.inf)])

    # -- hooks -----------------------------------------------------------------------------------
    def on_arrival(self, request: Request, now_s: float) -> None:
        self._wait(request)
        if not self.early_violations or request.request_id in self._pending:
            return
        late_at = request.deadline_s - request.unloaded_e2e_s
        if math.isfinite(late_at):
            c = self.client_index(request.client)
            self._pending[request.request_id] = (c, late_at)
            bisect.insort(self._late_at[c], late_at)

    def on_preempt(self, request: Request, now_s: float) -> None:
        self._wait(request)

    def on_dispatch(self, request: Request, now_s: float) -> None:
        self._unwait(request.request_id)
        if request.request_id in self._charged:
            return  # re-dispatch after a preemption: the prompt was charged already
        self._charged.add(request.request_id)
        c = self.client_index(request.client)
        self._service[c] += self._scale(now_s) * self.w_p * request.prompt_tokens / self._weights[c]

    def on_service(
        self, client: str, prefill_tokens: int, decode_tokens: int, now_s: float
    ) -> None:
        if decode_tokens:
            c = self.client_index(client)
            self._service[c] += self._scale(now_s) * self.w_q * decode_tokens / self._weights[c]

    def on_service_run(self, decode_tokens: Sequence[tuple[str, int]],
                       ends_s: Sequence[float]) -> None:
        # Exactly `on_service` step by step (same arithmetic, same order; `_scale` once per
        # step, as every call at one time returns the same weight), without a call per step.
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
        self._resolve(request.request_id)
        self._unwait(request.request_id)
        self._charged.discard(request.request_id)
        if slo_met:
            self._resolved[self.client_index(request.client)] += self._scale(now_s)

    def on_drop(self, request: Request, now_s: float) -> None:
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
                # In stored units an event at `now_s` weighs 2^((now_s − t0)/window_s); dividing
                # the stored sums by that weight instead keeps every term finite.
                decay = math.pow(2.0, -max(0.0, now_s - self._t0) / self.window_s)
                viol = viol * decay + hopeless
                res = res * decay + hopeless
        out = np.zeros_like(viol)
        np.divide(viol, res, out=out, where=res > 0)
        return out

    def service_shares(self) -> FloatArray:
        """``s_i`` by client index (decay-weighted share of weighted service; 0 when none)."""
        total = float(self._service.sum())
        return self._service / total if total > 0 else np.zeros_like(self._service)

    def fairness_scores(self, now_s: float | None = None) -> FloatArray:
        """``FR_i = α·v_i − (1−α)·s_i`` by client index; higher goes first. `now_s` enables the
        early violations (see `violation_rates`)."""
        return (self.alpha * self.violation_rates(now_s)
                - (1.0 - self.alpha) * self.service_shares())

    def client_scores(self, now_s: float) -> FloatArray:
        fr = self.fairness_scores(now_s)
        if self.order == "score":
            return -fr
        # The head's key (arrival or deadline, s) moved earlier by horizon_s · FR_i; a client with
        # nothing waiting (as far as the hooks tell) goes last.
        return self._head_key - self.horizon_s * fr

    def submission_priority(self, request: Request, now_s: float) -> int:
        """Priority mode (lower runs first), fixed at submission: ``order = "score"``:
        ``round(−FR_i · 10^6)``; otherwise the request's key (arrival time, or e2e deadline)
        moved earlier by ``horizon_s · FR_i`` seconds, in integer milliseconds."""
        fr = float(self.fairness_scores(now_s)[self.client_index(request.client)])
        if self.order == "score":
            return round(-fr * self.priority_scale)
        return round((self._key(request) - self.horizon_s * fr) * _TIME_PRIORITY_SCALE)

    def state_snapshot(self, now_s: float) -> dict[str, list[float]]:
        return {
            "violation_rate": [float(x) for x in self.violation_rates(now_s)],
            "service_share": [float(x) for x in self.service_shares()],
            "fr": [float(x) for x in self.fairness_scores(now_s)],
        }

    # -- internals -------------------------------------------------------------------------------
    def _key(self, request: Request) -> float:
        if self.order == "deadline" and math.isfinite(request.deadline_s):
            return request.deadline_s
        return request.arrival_s

    def _wait(self, request: Request) -> None:
        if request.request_id in self._waiting:
            return
        c = self.client_index(request.client)
        key = self._key(request)
        self._waiting[request.request_id] = (c, key)
        keys = self._keys[c]
        bisect.insort(keys, key)
        self._head_key[c] = keys[0]

    def _unwait(self, rid: int) -> None:
        entry = self._waiting.pop(rid, None)
        if entry is not None:
            keys = self._keys[entry[0]]
            del keys[bisect.bisect_left(keys, entry[1])]
            self._head_key[entry[0]] = keys[0] if keys else math.inf

    def _resolve(self, rid: int) -> None:
        entry = self._pending.pop(rid, None)
        if entry is not None:
            times = self._late_at[entry[0]]
            del times[bisect.bisect_left(times, entry[1])]

    def _scale(self, now_s: float) -> float:
        """The weight, in stored units, of an event at `now_s` (rescales the sums when needed)."""
        half_lives = (now_s - self._t0) / self.window_s
        if half_lives > _RESCALE_HALF_LIVES:
            shrink = math.pow(2.0, -half_lives)
            self._violations *= shrink
            self._resolved *= shrink
            self._service *= shrink
            self._t0 = now_s
            half_lives = 0.0
        return math.pow(2.0, half_lives)
