"""Requests and per-request records: the one schema shared by the simulator and the live backend.

Times are seconds on the run's own clock: 0.0 is the start of the workload (the first arrival may
come later). The simulator uses simulated time; the live backend a monotonic clock minus the run's
start, so records from both can be compared field by field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from exfairs.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SLO:
    """A request's service-level objectives in absolute seconds (``None`` = not set).

    `e2e_s` bounds arrival → last token, `ttft_s` arrival → first token, `tpot_s` the mean time per
    output token after the first (docs/design.md §7).
    """

    e2e_s: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None

    def deadline_s(self, arrival_s: float) -> float:
        """The absolute time by which the request must finish (inf when no e2e SLO is set)."""
        return arrival_s + self.e2e_s if self.e2e_s is not None else math.inf

    def first_token_deadline_s(self, arrival_s: float) -> float:
        """The absolute time by which the first token must arrive (inf when no TTFT SLO is set)."""
        return arrival_s + self.ttft_s if self.ttft_s is not None else math.inf


@dataclass(frozen=True, slots=True)
class Request:
    """One request of the workload, drawn up front so that every policy sees identical requests.

    `request_id` is unique within a workload and increases with arrival time (ties broken by client
    order), which makes (arrival_s, request_id) a total order. `output_tokens` is served exactly
    (live runs use ``ignore_eos`` and ``max_tokens = output_tokens``). `unloaded_e2e_s` is the
    request's latency alone on an idle engine under the profile the SLOs were resolved with (0 when
    unknown); policies may use it to judge whether a deadline can still be met. `prompt_text`,
    when set, is the prompt itself (from a dataset): `prompt_tokens` is then its measured or
    estimated length.
    """

    request_id: int
    client: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    slo: SLO = field(default_factory=SLO)
    unloaded_e2e_s: float = 0.0
    #: The prompt as text (a dataset row), sent to live servers as text; None: token ids.
    prompt_text: str | None = None

    @property
    def deadline_s(self) -> float:
        """Absolute e2e deadline in seconds (inf when the client sets no e2e SLO)."""
        return self.slo.deadline_s(self.arrival_s)


class Outcome(str, Enum):
    """How a request ended. Every request ends in exactly one outcome; none is dropped."""

    FINISHED = "finished"  # all tokens served and every SLO of its client met
    VIOLATED = "violated"  # all tokens served, but some SLO missed
    FAILED = "failed"  # the engine or server returned an error
    TIMED_OUT = "timed_out"  # the client gave up waiting
    ABORTED = "aborted"  # the run ended (drain limit, Ctrl-C, engine death) before it finished
    REJECTED = "rejected"  # refused early: it could no longer meet its deadline (admission option)

    @property
    def completed(self) -> bool:
        """True when every output token was served."""
        # Identity tests on module constants: `self in (Outcome.FINISHED, ...)` looked both
        # members up through the enum class on every call, a hot path of metrics and simulator.
        return self is _FINISHED or self is _VIOLATED


_FINISHED = Outcome.FINISHED
_VIOLATED = Outcome.VIOLATED


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What happened to one request, in run-clock seconds.

    `dispatch_s` is when the request left the client side for the engine (the gate's release, or the
    submission in priority and engine modes). `token_times_s` holds the emission time of every
    generated token (its length is `generated_tokens`); the first is `first_token_s`, the last
    `finish_s` for completed requests; for a REJECTED one `finish_s` is when it was refused.
    """

    request_id: int
    client: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    slo: SLO
    outcome: Outcome
    dispatch_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None
    generated_tokens: int = 0
    token_times_s: tuple[float, ...] = ()
    preemptions: int = 0
    error: str | None = None

    @property
    def ttft_s(self) -> float | None:
        """Arrival → first token, seconds."""
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> float | None:
        """Arrival → last token, seconds (None unless completed)."""
        if not self.outcome.completed or self.finish_s is None:
            return None
        return self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> float | None:
        """(e2e − ttft) / (output tokens − 1), seconds; None if single-token or unfinished."""
        e2e, ttft = self.e2e_s, self.ttft_s
        if e2e is None or ttft is None or self.generated_tokens < 2:
            return None
        return (e2e - ttft) / (self.generated_tokens - 1)

    @property
    def queue_s(self) -> float | None:
        """Arrival → dispatch to the engine, seconds."""
        return None if self.dispatch_s is None else self.dispatch_s - self.arrival_s


def slo_met(
    slo: SLO, arrival_s: float, first_token_s: float, finish_s: float, generated_tokens: int
) -> bool:
    """Whether a *completed* request met every SLO set in `slo` (docs/design.md §7)."""
    if slo.e2e_s is not None and finish_s - arrival_s > slo.e2e_s:
        return False
    if slo.ttft_s is not None and first_token_s - arrival_s > slo.ttft_s:
        return False
    if slo.tpot_s is not None and generated_tokens >= 2:
        tpot = (finish_s - first_token_s) / (generated_tokens - 1)
        if tpot > slo.tpot_s:
            return False
    return True


class LatencyModel(Protocol):
    """Unloaded (idle-engine) latencies of a request under a cost profile, in seconds.

    SLOs given as multiples of the unloaded latency are resolved against this, so one scenario is
    meaningful on a GPU profile and on the CPU tiny model alike.
    """

    def unloaded_ttft_s(self, prompt_tokens: int) -> float:
        """Time to first token of a lone request with `prompt_tokens` prompt tokens."""
        ...

    def unloaded_e2e_s(self, prompt_tokens: int, output_tokens: int) -> float:
        """End-to-end latency of a lone request."""
        ...

    def unloaded_tpot_s(self, prompt_tokens: int, output_tokens: int) -> float:
        """Mean time per output token after the first, of a lone request."""
        ...


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A client (tenant) as the engines, policies and metrics see it."""

    name: str
    weight: float = 1.0  # VTC/ExFairS service weight; the fair share is proportional to it
    prompt_class: str = "mix"  # short / long / mix, for labelling


@dataclass(frozen=True, slots=True)
class Workload:
    """A fully drawn workload: clients in their canonical order and all requests by arrival.

    `requests` is sorted by (arrival_s, request_id); `duration_s` is the arrival horizon the
    workload was drawn for (arrivals lie in [0, duration_s)).
    """

    name: str
    seed: int
    clients: tuple[ClientInfo, ...]
    requests: tuple[Request, ...]
    duration_s: float


#: How a run records its policy samples (`exfairs.sim.runner.simulate(policy_samples=...)`,
#: ``exfairs-sim --policy-samples``, a sweep file's ``policy_samples``): "sparse" (the default)
#: holds, at each sample time, the clients the policy had heard from by then; "dense" every
#: registered client; "off" no samples. Records and metrics are the same in all three.
SAMPLE_LAYOUTS: tuple[str, ...] = ("sparse", "dense", "off")
DEFAULT_SAMPLE_LAYOUT = "sparse"


def check_sample_layout(value: object, field: str = "policy_samples") -> str:
    """`value` if it is one of `SAMPLE_LAYOUTS`; else `exfairs.errors.ConfigError` naming
    `field` and the value."""
    if not isinstance(value, str) or value not in SAMPLE_LAYOUTS:
        raise ConfigError(f"must be one of {', '.join(SAMPLE_LAYOUTS)}", field=field,
                          value=value)
    return value


@dataclass(frozen=True, slots=True)
class PolicySample:
    """Policy state at one time, for plots. `clients` None: a dense sample, `values[metric]`
    indexed like `Workload.clients` (every registered client). Otherwise a sparse sample (the
    default layout): `clients` holds ascending client indices (into `Workload.clients`) of the
    clients whose first request had arrived by `time_s` (the policy had seen its `on_arrival`),
    and `values[metric][k]` is client ``clients[k]``'s value. A client absent from a sparse
    sample had sent nothing yet: the policy holds no state of its own for it, so it has no value
    (`dense` gives NaN; plots draw nothing there). Once present, a client stays in every later
    sample of the run."""

    time_s: float
    values: tuple[tuple[str, tuple[float, ...]], ...]
    clients: tuple[int, ...] | None = None

    def dense(self, n_clients: int) -> tuple[tuple[str, tuple[float, ...]], ...]:
        """`values` indexed like `Workload.clients` (`n_clients` entries); NaN for a client a
        sparse sample leaves out."""
        if self.clients is None:
            return self.values
        out = []
        for name, vals in self.values:
            row = [math.nan] * n_clients
            for c, v in zip(self.clients, vals, strict=True):
                row[c] = v
            out.append((name, tuple(row)))
        return tuple(out)
