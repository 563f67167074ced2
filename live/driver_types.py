"""Values a live run produces and carries: the run's output (`LiveRunOutput`, with its
`ClockCheck`), progress snapshots (`Progress`), the driver's per-request state while a request is in
the engine (`Flight`), the records built from a flight or an unserved request, and the
client-vs-engine clock check computed over served flights.

Split from `exfairs.live.driver` (which re-exports the public names) so the records and values
can be read without the driver's control flow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from exfairs.live.backend import EngineTimes
from exfairs.records import Outcome, PolicySample, Request, RequestRecord


@dataclass(frozen=True, slots=True)
class ClockCheck:
    """Client-side vs engine-side timestamps of the same events (milliseconds, client − engine):
    the delivery lag between the engine core emitting a token and the driver seeing it."""

    n: int
    first_token_lag_p50_ms: float
    first_token_lag_p99_ms: float
    last_token_lag_p50_ms: float
    last_token_lag_p99_ms: float
    max_abs_lag_ms: float


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot for progress displays."""

    now_s: float
    arrived: int
    queued: int
    inflight: int
    done: int
    total: int
    violations: int


@dataclass(frozen=True, slots=True)
class LiveRunOutput:
    """What a live run produced. `records` holds one record per workload request, by request id.
    `stopped` is None when the run completed normally, else why it stopped early (the records
    are then a valid partial run)."""

    records: tuple[RequestRecord, ...]
    policy_samples: tuple[PolicySample, ...]
    stopped: str | None
    wall_time_s: float
    end_s: float
    clock_check: ClockCheck | None


@dataclass(slots=True)
class Flight:
    """One request between its release/submission and its record: what the stream has
    delivered so far (run-clock seconds; `*_mono` in `time.monotonic()` seconds) and the
    tasks that serve and time it out. Mutable: the driver updates it as chunks arrive."""

    request: Request
    dispatch_s: float
    priority: int
    first_token_s: float | None = None
    token_times: list[float] = field(default_factory=list)
    engine: EngineTimes | None = None
    first_token_mono: float | None = None
    last_token_mono: float | None = None
    preemptions: int = 0
    timed_out: bool = False
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None


def flight_record(fl: Flight, outcome: Outcome, *, finish_s: float | None,
                  error: str | None) -> RequestRecord:
    """The record of a request that reached the engine, from what its flight collected (the
    engine's preemption count, when it reports one, over the count seen in the stream)."""
    r = fl.request
    preempt = fl.engine.preemptions if fl.engine is not None else fl.preemptions
    return RequestRecord(
        request_id=r.request_id, client=r.client, arrival_s=r.arrival_s,
        prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens, slo=r.slo,
        outcome=outcome, dispatch_s=fl.dispatch_s, first_token_s=fl.first_token_s,
        finish_s=finish_s, generated_tokens=len(fl.token_times),
        token_times_s=tuple(fl.token_times), preemptions=preempt, error=error,
    )


def unserved_record(request: Request, error: str) -> RequestRecord:
    """The ABORTED record of a request the run stopped before it reached the engine."""
    return RequestRecord(
        request_id=request.request_id, client=request.client, arrival_s=request.arrival_s,
        prompt_tokens=request.prompt_tokens, output_tokens=request.output_tokens,
        slo=request.slo, outcome=Outcome.ABORTED, error=error,
    )


def clock_check(served: Sequence[Flight]) -> ClockCheck | None:
    """Delivery lag of the first and last token (client − engine, milliseconds) over the
    `served` flights that carry engine timestamps; None when there are none."""
    first: list[float] = []
    last: list[float] = []
    for fl in served:
        e = fl.engine
        if e is None:
            continue
        if e.first_token_mono is not None and fl.first_token_mono is not None:
            first.append((fl.first_token_mono - e.first_token_mono) * 1e3)
        if e.last_token_mono is not None and fl.last_token_mono is not None:
            last.append((fl.last_token_mono - e.last_token_mono) * 1e3)
    if not first or not last:
        return None
    f, la = np.asarray(first), np.asarray(last)
    return ClockCheck(
        n=len(first),
        first_token_lag_p50_ms=float(np.percentile(f, 50)),
        first_token_lag_p99_ms=float(np.percentile(f, 99)),
        last_token_lag_p50_ms=float(np.percentile(la, 50)),
        last_token_lag_p99_ms=float(np.percentile(la, 99)),
        max_abs_lag_ms=float(max(np.abs(f).max(), np.abs(la).max())),
    )
