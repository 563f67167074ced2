"""The feedback in-flight limit of SLO-aware admission (issue 15; ``limit=feedback``).

Where ``limit=predictive`` computes the in-flight limit from the profile's cost model, the
feedback limit learns it from what the gate observes of the requests it released: their
release times, first-token times and finishes (and the passing of their SLO limits while they
are in flight) — exactly what the live driver sees, so the simulator's gate and the live gate run
the same code. It is additive-increase / multiplicative-decrease on the gate's in-flight cap
(Jacobson, "Congestion avoidance and control", SIGCOMM 1988; Chiu & Jain, "Analysis of the
increase and decrease algorithms for congestion avoidance", 1989; the same rule as the
``AIMDLimit`` of Netflix's concurrency-limits library, with its ``backoffRatio`` 0.9):

* The gate keeps the observed *stretch* σ̂, the engine's slowdown: an exponentially weighted
  mean over finished requests of ``(finish − t_r) / unloaded_e2e`` (gain 1/8, the smoothed
  round-trip time of RFC 6298; starts at 1). A pick that would be late at that pace,
  ``σ̂ · unloaded_e2e > headroom · (d − now)``, is *late at load* (`decide` → ``"late"``): with
  ``hopeless=reject`` the gate rejects it, otherwise it is released without being judged — the
  observed counterpart of the predictive limit's verdict, so a request that waited too long at
  the gate does not shrink the limit for everyone.
* Each released request is judged on the part of its latency the engine caused, from its
  release time t_r: with deadline d, TTFT limit a + ttft (a its arrival) and TPOT limit tpot,

      used_e2e  = finish − t_r           allowed_e2e  = d − t_r
      used_ttft = first_token − t_r      allowed_ttft = a + ttft − t_r
      used_tpot = (finish − first_token) / (generated − 1)       allowed_tpot = tpot

  A request released already hopeless (``t_r + unloaded_e2e > d``: late before the engine saw
  it), or released although it was late at load (``binding=False``), is not judged: its
  outcome says nothing about the batch the gate allowed.
* **Violation** (some used > allowed; seen at the first token or finish, or as soon as an
  observation comes after an e2e deadline or TTFT limit that passed while the request was in
  flight): ``limit ← max(min_inflight, limit · backoff)``, at most once per *window*: a
  violation of a request released before the last decrease does not decrease again (it was
  admitted under the old limit; TCP's one reduction per window of data).
* **Good** (every used ≤ headroom · allowed, at the finish): ``limit ← min(max_inflight,
  limit + increase / limit)`` — ``increase`` more slots per limit's worth of good finishes
  (TCP congestion avoidance) — but only while at least half the limit is in use (otherwise the
  limit is not what holds admission back; concurrency-limits' rule against growing without
  bound while idle). Neither (between headroom and 1): no change.

The limit starts at ``max_inflight`` (the gate's fixed cap), so on a load that meets its SLOs
the feedback limit releases exactly what the plain gate does. The gate releases its pick while
``inflight < floor(limit)``, and always into an empty engine. With ``limit=predictive+feedback``
both must allow the release (the predictive verdict under the feedback cap).

Every update is a function of the observed times only, processed in time order (passed SLO
limits are taken in before any observation at a later time), so the limit does not depend on
how often the gate is asked: the simulator's fast path and step-by-step run give the same limit.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from exfairs.policies.admission import AdmissionConfig, SloAdmission
from exfairs.records import Request

#: The smoothing gain of the observed stretch (RFC 6298's α for the smoothed round-trip time).
_GAIN = 0.125


@dataclass(slots=True)
class _Flight:
    """One judged request in flight: what its verdict needs (mutable: its first token)."""

    release_s: float
    unloaded_s: float
    window: int  # release sequence number: violations count once per window
    allowed_e2e_s: float  # seconds from release; inf: no e2e SLO
    allowed_ttft_s: float  # seconds from release; inf: no TTFT SLO
    tpot_s: float  # inf: no TPOT SLO
    first_token_s: float | None = None


class FeedbackLimit:
    """The AIMD in-flight limit of the module docstring (no clock: times are passed in).

    `decide` → ``"admit"``, ``"wait"`` or ``"late"`` (late at load: at the observed stretch, or
    by the inner predictive limiter's verdict);
    `released`, `first_token`, `finished` report what the gate saw. `limit` is the current cap
    (a float in [min_inflight, max_inflight]; the gate uses its floor).
    """

    def __init__(self, config: AdmissionConfig, max_inflight: int,
                 inner: SloAdmission | None = None) -> None:
        self.config = config
        self.max_inflight = max_inflight
        self.min_inflight = min(config.min_inflight, max_inflight)
        self.limit = float(max_inflight)
        self.stretch = 1.0  # σ̂: observed (finish − release) / unloaded_e2e, smoothed
        self.inner = inner
        self.decreases = 0  # counts, for tests and reports
        self.increases = 0
        self._released = 0  # release sequence number of the latest release
        self._window_start = 0  # releases numbered ≤ this were admitted before the last decrease
        self._flights: dict[int, _Flight] = {}
        self._live_ids: set[int] = set()  # released and not yet finished (judged or not)
        self._expiry: list[tuple[float, int, int]] = []  # (time limit, kind 0 ttft/1 e2e, id)

    @property
    def cap(self) -> int:
        """The in-flight cap the gate applies now: ``floor(limit)``."""
        return int(self.limit)

    def decide(self, request: Request, now_s: float, inflight: int) -> str:
        """``"wait"`` while `inflight` ≥ the cap (never with an empty engine), else the inner
        predictive limiter's verdict if not ``"admit"``, else ``"late"`` when the pick would
        miss its deadline at the observed stretch, else ``"admit"``."""
        self._expire(now_s)
        if inflight == 0:
            return "admit"
        if inflight >= self.cap:
            return "wait"
        if self.inner is not None:
            verdict = self.inner.decide(request, now_s, inflight)
            if verdict != "admit":
                return verdict
        # The headroom as in the predictive verdict: the observed pace may use that share of
        # the time left (a pick with less slack would be late at a slightly slower pace).
        if self.stretch * request.unloaded_e2e_s > self.config.headroom * (
                request.deadline_s - now_s):
            return "late"
        return "admit"

    def admit(self, request: Request, now_s: float, inflight: int) -> bool:
        """`decide` is ``"admit"``."""
        return self.decide(request, now_s, inflight) == "admit"

    def released(self, request: Request, now_s: float, *, binding: bool = True) -> None:
        """`request` was released at `now_s`; it is judged unless `binding` is false or it was
        already hopeless (module docstring)."""
        self._expire(now_s)
        if self.inner is not None:
            self.inner.released(request, now_s, binding=binding)
        self._released += 1
        self._live_ids.add(request.request_id)
        deadline = request.deadline_s
        if not binding or now_s + request.unloaded_e2e_s > deadline:
            return
        slo = request.slo
        allowed_e2e = deadline - now_s
        allowed_ttft = (request.arrival_s + slo.ttft_s - now_s if slo.ttft_s is not None
                        else math.inf)
        tpot = slo.tpot_s if slo.tpot_s is not None else math.inf
        if math.isinf(allowed_e2e) and math.isinf(allowed_ttft) and math.isinf(tpot):
            return  # no SLO: nothing to judge
        rid = request.request_id
        self._flights[rid] = _Flight(now_s, request.unloaded_e2e_s, self._released, allowed_e2e,
                                     allowed_ttft, tpot)
        if math.isfinite(allowed_ttft):
            heapq.heappush(self._expiry, (now_s + allowed_ttft, 0, rid))
        if math.isfinite(allowed_e2e):
            heapq.heappush(self._expiry, (deadline, 1, rid))

    def first_token(self, request_id: int, now_s: float) -> None:
        """The first output token of a released request came at `now_s`."""
        self._expire(now_s)
        fl = self._flights.get(request_id)
        if fl is None or fl.first_token_s is not None:
            return
        fl.first_token_s = now_s
        if now_s - fl.release_s > fl.allowed_ttft_s:
            self._violation(request_id, fl)

    def finished(self, request_id: int, now_s: float | None = None, generated: int = 0) -> None:
        """A released request left the engine at `now_s` having generated `generated` tokens
        (`now_s` None: it failed or was aborted — it leaves without a verdict)."""
        self._live_ids.discard(request_id)
        if self.inner is not None:
            self.inner.finished(request_id)
        if now_s is None:
            self._flights.pop(request_id, None)
            return
        self._expire(now_s)
        fl = self._flights.pop(request_id, None)
        if fl is None:
            return
        first = fl.first_token_s if fl.first_token_s is not None else now_s
        used_e2e = now_s - fl.release_s
        if fl.unloaded_s > 0:
            self.stretch += _GAIN * (used_e2e / fl.unloaded_s - self.stretch)
        used_ttft = first - fl.release_s
        used_tpot = (now_s - first) / (generated - 1) if generated > 1 else 0.0
        if used_e2e > fl.allowed_e2e_s or used_ttft > fl.allowed_ttft_s or used_tpot > fl.tpot_s:
            self._violation(request_id, fl)
            return
        h = self.config.headroom
        if (used_e2e <= h * fl.allowed_e2e_s and used_ttft <= h * fl.allowed_ttft_s
                and used_tpot <= h * fl.tpot_s):
            self._good()

    # -- the AIMD rule ---------------------------------------------------------------------------
    def _violation(self, request_id: int, fl: _Flight) -> None:
        # One verdict per request: a violated request is judged no further.
        self._flights.pop(request_id, None)
        if fl.window <= self._window_start:
            return  # admitted under the limit before the last decrease
        self.limit = max(float(self.min_inflight), self.limit * self.config.backoff)
        self._window_start = self._released
        self.decreases += 1

    def _good(self) -> None:
        if 2 * len(self._live_ids) < self.limit:
            return  # the limit is not what holds admission back
        self.limit = min(float(self.max_inflight),
                         self.limit + self.config.increase / self.limit)
        self.increases += 1

    def _expire(self, now_s: float) -> None:
        """Take in every SLO limit of an in-flight request that passed before `now_s`."""
        q = self._expiry
        while q and q[0][0] < now_s:
            _, kind, rid = heapq.heappop(q)
            fl = self._flights.get(rid)
            if fl is None or (kind == 0 and fl.first_token_s is not None):
                continue  # finished, judged, or its first token came in time
            self._violation(rid, fl)
