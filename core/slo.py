"""SLO bookkeeping shared by the simulator and the live backend.

A request counts as violated the moment its deadline passes, even while it is still queued or
running (docs/design.md §3). `SloTracker` turns arrivals, first tokens, finishes and the passing of
time into exactly one resolution per request, so policies see violations as early as they are
knowable and both worlds report them identically.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from exfairs.records import Request, slo_met


@dataclass(frozen=True, slots=True)
class Resolution:
    """A request whose SLO outcome became known at `time_s` (violated or met)."""

    request: Request
    time_s: float
    met: bool


class SloTracker:
    """Tracks unresolved requests and reports each one's SLO resolution exactly once.

    Drivers call `arrive` on arrival, `first_token` and `finish` as they happen, and `advance(now)`
    whenever they make a decision; each returns the requests resolved by that event, in a
    deterministic order (time, then request id).
    """

    def __init__(self) -> None:
        self._pending: dict[int, Request] = {}
        self._first_token: dict[int, float] = {}
        # (time at which the request is violated unless something happens first, request id,
        # kind: 0 = first-token deadline, 1 = end-to-end deadline)
        self._deadlines: list[tuple[float, int, int]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def arrive(self, request: Request) -> None:
        """Start tracking `request` (must not be tracked already)."""
        if request.request_id in self._pending:
            raise ValueError(f"request {request.request_id} is already tracked")
        self._pending[request.request_id] = request
        ttft_deadline = request.slo.first_token_deadline_s(request.arrival_s)
        if math.isfinite(ttft_deadline):
            heapq.heappush(self._deadlines, (ttft_deadline, request.request_id, 0))
        if math.isfinite(request.deadline_s):
            heapq.heappush(self._deadlines, (request.deadline_s, request.request_id, 1))

    def is_pending(self, request_id: int) -> bool:
        """True while `request_id` is tracked and its SLO outcome is still open."""
        return request_id in self._pending

    def first_token(self, request_id: int, time_s: float) -> Resolution | None:
        """Record the first token; returns a violation if it came after the TTFT deadline."""
        request = self._pending.get(request_id)
        if request is None:
            return None
        self._first_token[request_id] = time_s
        if time_s > request.slo.first_token_deadline_s(request.arrival_s):
            return self._resolve(request_id, time_s, met=False)
        return None

    def next_deadline_s(self) -> float:
        """The earliest deadline that can still resolve a request (``math.inf`` when none):
        its request is pending and, for a first-token deadline, has no first token yet."""
        dl = self._deadlines
        while dl:
            t, rid, kind = dl[0]
            if rid in self._pending and not (kind == 0 and rid in self._first_token):
                return t
            heapq.heappop(dl)  # moot: `advance` would skip it too
        return math.inf

    def advance(self, now_s: float) -> list[Resolution]:
        """Resolve every pending request whose deadline passed strictly before `now_s`."""
        out: list[Resolution] = []
        while self._deadlines and self._deadlines[0][0] < now_s:
            deadline, rid, kind = heapq.heappop(self._deadlines)
            if rid not in self._pending:
                continue
            if kind == 0 and rid in self._first_token:
                continue  # the first token came in time
            out.append(self._resolve(rid, deadline, met=False))
        return out

    def finish(self, request_id: int, time_s: float, generated_tokens: int) -> Resolution | None:
        """The request produced its last token at `time_s`; resolves it if still open."""
        request = self._pending.get(request_id)
        if request is None:
            return None
        first = self._first_token.get(request_id, time_s)
        met = slo_met(request.slo, request.arrival_s, first, time_s, generated_tokens)
        return self._resolve(request_id, time_s, met=met)

    def fail(self, request_id: int, time_s: float) -> Resolution | None:
        """The request failed, timed out or was aborted: a violation if still open."""
        if request_id not in self._pending:
            return None
        return self._resolve(request_id, time_s, met=False)

    def _resolve(self, request_id: int, time_s: float, *, met: bool) -> Resolution:
        request = self._pending.pop(request_id)
        self._first_token.pop(request_id, None)
        return Resolution(request=request, time_s=time_s, met=met)
