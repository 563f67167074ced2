"""SLO-aware admission for the gate: how much is admitted, and what happens to hopeless requests
(issue 15; docs/policies.md, "Admission").

One mechanism for every policy, configured by `AdmissionConfig` (the ``admission`` argument of
`exfairs.sim.runner.simulate`, `exfairs-sim run/sweep --admission`, a sweep file's
``[admission]`` table; live: `exfairs.live.gate`, ``exfairs-live --admission``); the policy
still chooses *who* is admitted:

* ``hopeless`` — ``keep`` (default: today's behaviour), ``demote`` (a queued request that can no
  longer meet its deadline — ``now + unloaded_e2e > deadline``, its latency alone on an idle
  engine — goes behind every savable request of every client: `PolicyQueue(hopeless_last=True)`),
  ``reject`` (demote, and refuse such requests at the gate with outcome ``rejected``, counted as
  a violation and reported separately, so they stop consuming capacity).
* ``limit`` — ``off`` (default: the gate's fixed ``max_inflight``) or ``predictive``: before
  releasing the policy's pick r, the gate predicts the decode pace with one more request in
  flight and releases r only if every in-flight request and r keep their per-token budget:

      b_r = min(tpot_r, (deadline_r − t − t_prefill(P_r)) / O_r)      (seconds per token)

  fixed when r is released (t its release time); ``t_prefill(P) = step(1) + p·P`` with ``p`` the
  profile's prefill cost per token; with N requests in flight the mean step is

      step(N) = decode_step(N, N·(P̄ + Ō/2)) + N·p·P̄ / Ō

  (the profile's decode step of N sequences at their mean context, plus every request's prefill
  spread over the mean output length Ō: prefill chunks share the steps). The gate waits while
  ``step(inflight + 1) > headroom · min over in-flight b`` (releasing r would make an admitted
  request late); otherwise r is released if ``step(inflight + 1) ≤ headroom · b_r`` or the
  engine is empty. A pick that fits the others' budgets but not its own (it waited too long for
  this pace) is *late at load*: with ``hopeless=reject`` it is rejected, otherwise released
  without binding the others — so one old request cannot shrink the batch for everyone. P̄, Ō
  are the means over the requests released so far (r included). The gate still never exceeds
  ``max_inflight``, and it always releases into an empty engine, so the engine never idles while
  a request waits. With ``kv_tokens`` (the simulator passes the engine's KV capacity) it also
  holds back a release that would make ``(inflight + 1)·(P̄ + Ō)`` exceed it: such a request
  would wait in the engine's own FCFS queue or be preempted, out of the policy's order. The
  policy's pick blocks the gate (head of line): an order that admits
  someone else would replace the policy's choice; a blocked pick that runs out of time becomes
  hopeless and is demoted or rejected.

``limit=feedback`` learns the in-flight limit instead, from the observed first tokens and finishes
of the requests the gate released (AIMD; `exfairs.policies.admission_feedback`), and
``limit=predictive+feedback`` applies both.

Parameters: ``headroom`` ∈ (0, 1] (default 0.9): the share of the budget the prediction may use
(feedback: a finish counts as good when it used at most that share of what it was allowed).
Feedback only: ``backoff`` ∈ (0, 1) (default 0.9, concurrency-limits' AIMD ``backoffRatio``): the
factor a violation multiplies the limit by; ``increase`` > 0 (default 1): slots added per limit's
worth of good finishes; ``min_inflight`` ≥ 1 (default 1): the floor of the limit.
Not in priority mode (priorities are fixed at submission and there is no gate). Engine mode
takes every option but the feedback limit: its waiting queue is a `PolicyQueue`
(``hopeless_last`` for demotion), and `exfairs.policies.admission_engine.EngineAdmission` applies
rejection and the limit inside the engine's scheduler (the simulator's and the vLLM plug-in's).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from exfairs.errors import ConfigError
from exfairs.policies.experiments import Mode
from exfairs.records import Request

HOPELESS = ("keep", "demote", "reject")
LIMITS = ("off", "predictive", "feedback", "predictive+feedback")
#: The keys of ``AdmissionConfig.parse`` and a sweep file's ``[admission]`` table.
KEYS = ("hopeless", "limit", "headroom", "backoff", "increase", "min_inflight")
_DEFAULT_BACKOFF, _DEFAULT_INCREASE = 0.9, 1.0


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    """See the module docstring; the defaults change nothing."""

    hopeless: str = "keep"
    limit: str = "off"
    headroom: float = 0.9
    backoff: float = _DEFAULT_BACKOFF
    increase: float = _DEFAULT_INCREASE
    min_inflight: int = 1

    def __post_init__(self) -> None:
        if self.hopeless not in HOPELESS:
            raise ConfigError(f"must be one of {', '.join(HOPELESS)}", field="admission.hopeless",
                              value=self.hopeless)
        if self.limit not in LIMITS:
            raise ConfigError(f"must be one of {', '.join(LIMITS)}", field="admission.limit",
                              value=self.limit)
        h = self.headroom
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 < h <= 1:
            raise ConfigError("must be a number in (0, 1]", field="admission.headroom", value=h)
        b = self.backoff
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b < 1:
            raise ConfigError("must be a number in (0, 1)", field="admission.backoff", value=b)
        a = self.increase
        if (isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a)
                or a <= 0):
            raise ConfigError("must be a finite number > 0", field="admission.increase", value=a)
        m = self.min_inflight
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ConfigError("must be an integer ≥ 1", field="admission.min_inflight", value=m)

    @property
    def feedback(self) -> bool:
        """True when the in-flight limit learns from observed latencies (``limit=feedback`` or
        ``predictive+feedback``)."""
        return self.limit in ("feedback", "predictive+feedback")

    @property
    def predictive(self) -> bool:
        """True when the profile's cost model limits releases (``predictive`` or
        ``predictive+feedback``)."""
        return self.limit in ("predictive", "predictive+feedback")

    @property
    def active(self) -> bool:
        """False for the defaults (the gate behaves exactly as without admission)."""
        return self.hopeless != "keep" or self.limit != "off"

    @property
    def label(self) -> str:
        """Short name for tables: ``hopeless=reject,limit=predictive``."""
        parts = []
        if self.hopeless != "keep":
            parts.append(f"hopeless={self.hopeless}")
        if self.limit != "off":
            parts.append(f"limit={self.limit}")
            if self.headroom != 0.9:
                parts.append(f"headroom={self.headroom:g}")
            if self.feedback:
                if self.backoff != _DEFAULT_BACKOFF:
                    parts.append(f"backoff={self.backoff:g}")
                if self.increase != _DEFAULT_INCREASE:
                    parts.append(f"increase={self.increase:g}")
                if self.min_inflight != 1:
                    parts.append(f"min_inflight={self.min_inflight}")
        return ",".join(parts) or "off"

    @classmethod
    def parse(cls, spec: str) -> AdmissionConfig:
        """``"hopeless=reject,limit=feedback,headroom=0.9,backoff=0.9"`` (any subset of `KEYS`;
        ``""`` or ``"off"``: the defaults). ConfigError naming ``admission`` for a malformed
        item, ``admission.<key>`` for a bad value."""
        spec = spec.strip()
        if spec in ("", "off"):
            return cls()
        kw: dict[str, object] = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in KEYS:
                raise ConfigError("expected items hopeless=keep|demote|reject, limit="
                                  f"{'|'.join(LIMITS)}, headroom=NUMBER, backoff=NUMBER, "
                                  "increase=NUMBER, min_inflight=INTEGER", field="admission",
                                  value=spec)
            value = value.strip()
            if key in ("headroom", "backoff", "increase"):
                try:
                    kw[key] = float(value)
                except ValueError:
                    raise ConfigError("must be a number", field=f"admission.{key}",
                                      value=value) from None
            elif key == "min_inflight":
                try:
                    kw[key] = int(value)
                except ValueError:
                    raise ConfigError("must be an integer ≥ 1", field="admission.min_inflight",
                                      value=value) from None
            else:
                kw[key] = value
        return cls(**kw)  # type: ignore[arg-type]


#: (number of decoding sequences, their summed context in tokens) → one step, seconds.
DecodeStep = Callable[[int, int], float]


class SloAdmission:
    """The predictive in-flight limit of the module docstring (no clock: times are passed in)."""

    def __init__(self, config: AdmissionConfig, decode_step_s: DecodeStep,
                 prefill_token_s: float, max_inflight: int, kv_tokens: int = 0) -> None:
        self.config = config
        self._step = decode_step_s
        self._ptok = max(0.0, float(prefill_token_s))
        self.max_inflight = max_inflight
        self.kv_tokens = kv_tokens
        self._step1 = decode_step_s(1, 1)
        self._budgets: list[tuple[float, int]] = []  # (budget, request id), lazily cleaned
        self._live: dict[int, float] = {}  # in-flight request id → its budget
        self._prompt_sum = 0.0
        self._output_sum = 0.0
        self._released = 0

    def budget_s(self, request: Request, now_s: float) -> float:
        """Seconds per output token `request` may take if released at `now_s` (inf: none)."""
        b = math.inf
        if request.slo.tpot_s is not None:
            b = request.slo.tpot_s
        deadline = request.deadline_s
        if math.isfinite(deadline):
            pre = self._step1 + self._ptok * request.prompt_tokens
            b = min(b, (deadline - now_s - pre) / max(1, request.output_tokens))
        return b

    def hopeless(self, request: Request, now_s: float) -> bool:
        """True when `request`, released at `now_s`, would miss its budget even alone on the
        engine (budget below one unloaded step): the gate rejects it (``hopeless=reject``)."""
        return self.budget_s(request, now_s) < self._step1

    def mean_step_s(self, n: int, prompt: float, output: float) -> float:
        """Predicted mean step with `n` requests in flight of mean `prompt`, `output` tokens."""
        ctx = int(n * (prompt + output / 2))
        return self._step(n, ctx) + n * self._ptok * prompt / max(1.0, output)

    def decide(self, request: Request, now_s: float, inflight: int) -> str:
        """``"admit"``, ``"wait"`` (the gate holds the pick) or ``"late"`` (releasing it keeps
        the in-flight requests on pace, but the pick itself would miss its own budget at that
        pace: the gate rejects it with ``hopeless=reject``, else releases it without letting
        its budget bind the others), with `inflight` requests in the engine."""
        if inflight == 0:
            return "admit"
        if inflight >= self.max_inflight:
            return "wait"
        k = self._released + 1
        prompt = (self._prompt_sum + request.prompt_tokens) / k
        output = (self._output_sum + request.output_tokens) / k
        if self.kv_tokens and (inflight + 1) * (prompt + output) > self.kv_tokens:
            return "wait"  # it would wait (or be preempted) inside the engine, out of order
        tightest = self._tightest()
        own = self.budget_s(request, now_s)
        if math.isinf(tightest) and math.isinf(own):
            return "admit"
        step = self.mean_step_s(inflight + 1, prompt, output)
        h = self.config.headroom
        if step > h * tightest:
            return "wait"
        return "admit" if step <= h * own else "late"

    def admit(self, request: Request, now_s: float, inflight: int) -> bool:
        """`decide` is ``"admit"``."""
        return self.decide(request, now_s, inflight) == "admit"

    def released(self, request: Request, now_s: float, *, binding: bool = True) -> None:
        """`request` was released at `now_s`: its budget binds the later releases (unless
        `binding` is false: a pick released although `decide` called it late)."""
        b = self.budget_s(request, now_s) if binding else math.inf
        self._released += 1
        self._prompt_sum += request.prompt_tokens
        self._output_sum += request.output_tokens
        self._live[request.request_id] = b
        if self._step1 <= b < math.inf:
            heapq.heappush(self._budgets, (b, request.request_id))

    def first_token(self, request_id: int, now_s: float) -> None:
        """Observations do not change the prediction (the `GateLimiter` interface)."""

    def finished(self, request_id: int, now_s: float | None = None, generated: int = 0) -> None:
        """The request left the engine (finished or dropped; the time and tokens are for the
        `GateLimiter` interface and unused here)."""
        self._live.pop(request_id, None)

    def _tightest(self) -> float:
        h = self._budgets
        while h and self._live.get(h[0][1]) != h[0][0]:
            heapq.heappop(h)
        return h[0][0] if h else math.inf


class GateLimiter(Protocol):
    """What a gate (the simulator's, `exfairs.live.gate.LiveGate`) asks of an in-flight limit:
    a verdict for the policy's pick, and the observations of what it released."""

    def decide(self, request: Request, now_s: float, inflight: int) -> str:
        """``"admit"``, ``"wait"`` or ``"late"`` (`SloAdmission.decide`)."""
        ...

    def released(self, request: Request, now_s: float, *, binding: bool = True) -> None:
        """`request` was released at `now_s` (`binding` false: `decide` called it late)."""
        ...

    def first_token(self, request_id: int, now_s: float) -> None:
        """A released request's first output token came at `now_s`."""
        ...

    def finished(self, request_id: int, now_s: float | None = None, generated: int = 0) -> None:
        """A released request left the engine at `now_s` with `generated` tokens (None: it
        failed or was aborted)."""
        ...


#: Why a mode cannot take an admission spec (`admission_refusal`): priority mode takes no option
#: (priorities are fixed at submission; there is no gate), engine mode all but the feedback limit
#: (it learns from a gate's releases).
AdmissionRefusal = Literal["priority_mode", "engine_feedback"]


def admission_refusal(mode: Mode, config: AdmissionConfig) -> AdmissionRefusal | None:
    """The rule every caller applies (the simulator, a sweep grid, a live run): None when `mode`
    takes `config`, else the reason; each caller words its own error."""
    if not config.active or mode is Mode.GATE:
        return None
    if mode is Mode.PRIORITY:
        return "priority_mode"
    if config.feedback:
        return "engine_feedback"
    return None


def make_limiter(config: AdmissionConfig, max_inflight: int,
                 decode_step_s: DecodeStep | None = None, prefill_token_s: float = 0.0,
                 kv_tokens: int = 0) -> GateLimiter | None:
    """The gate's in-flight limit for `config`: None for ``limit=off``, `SloAdmission` for
    ``predictive`` (needs `decode_step_s`), `FeedbackLimit` for ``feedback`` (around a
    `SloAdmission` for ``predictive+feedback``)."""
    if config.limit == "off":
        return None
    inner: SloAdmission | None = None
    if config.predictive:
        if decode_step_s is None:
            raise ValueError("the predictive limit needs the profile's decode step")
        inner = SloAdmission(config, decode_step_s, prefill_token_s, max_inflight,
                             kv_tokens=kv_tokens)
        if not config.feedback:
            return inner
    from exfairs.policies.admission_feedback import FeedbackLimit

    return FeedbackLimit(config, max_inflight, inner)
