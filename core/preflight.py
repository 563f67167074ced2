"""Pre-flight: will a run fit in this machine's memory? Estimated from the drawn workload.

Two structures grow with the number of clients. Before the workload is drawn, the capacity
estimate (`exfairs.calibration.capacity.capacity_estimate`) keeps two 120 × 120 float64 grids per
client (230 kB each client: 2.3 GB for 10,000 clients). After the run, the metrics' service
timeline (`exfairs.metrics.service_timeline`) is sparse: one shared time grid of about two points
per event (every engine step that emits a token, every arrival and completion), and per client
only its own service events and backlog stretches, so it grows with engine steps and emitted
tokens, not with clients × steps. Records (a float per emitted token) and policy samples (a float
per client and metric every sampled second; sparse samples hold only clients that have sent)
come on top. The estimate is checked against the machine's memory before any work starts.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path

from exfairs.errors import InputError
from exfairs.records import Workload

#: Bytes per client of the capacity estimate's quantile grids (2 arrays of 120 × 120 float64).
CAPACITY_GRID_BYTES = 2 * 120 * 120 * 8
#: Memory of the interpreter and the imported libraries (numpy, scipy, matplotlib), measured.
BASE_BYTES = 150 * 2**20
#: Bytes per point of the timeline's shared time grid while it is built (the event times, the
#: midpoints, their concatenation and the sorted grid, float64 each).
GRID_POINT_BYTES = 32
#: Peak bytes per service event (an emitted token or a prompt credit) while the timeline is
#: built: its time, client, value, sort key and order, running sum and the kept copies
#: (`benchmarks/preflight_memory.py` measures it with tracemalloc).
SERVICE_EVENT_BYTES = 96
#: Bytes per emitted token in the records (a float in a tuple) and its service event arrays.
TOKEN_BYTES = 64
#: Bytes per request: its Request and RequestRecord objects and metric rows.
REQUEST_BYTES = 2048
#: Bytes per policy-sample value (a Python float in a tuple), assuming 3 metrics per client.
SAMPLE_BYTES = 3 * 32
#: Share of the machine's memory one run may plan to use.
USABLE_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Estimated peak memory of one run (bytes), by part; `timeline_points` is the metrics'
    grid size. `setup_bytes` is
    held while the workload is drawn and freed before the run, so the peak is the larger of the
    setup and the run's parts, plus `BASE_BYTES`."""

    clients: int
    requests: int
    tokens: int
    timeline_points: int
    timeline_bytes: int
    records_bytes: int
    samples_bytes: int
    setup_bytes: int

    @property
    def total_bytes(self) -> int:
        """Estimated peak: base + max(setup, timeline + records + samples)."""
        run = self.timeline_bytes + self.records_bytes + self.samples_bytes
        return BASE_BYTES + max(self.setup_bytes, run)


def estimate_setup_memory(n_clients: int) -> MemoryEstimate:
    """The part of the estimate known before the workload is drawn (the capacity grids): check
    it first, since drawing allocates it."""
    return MemoryEstimate(clients=n_clients, requests=0, tokens=0, timeline_points=0,
                          timeline_bytes=0, records_bytes=0, samples_bytes=0,
                          setup_bytes=n_clients * CAPACITY_GRID_BYTES)


def estimate_run_memory(workload: Workload, *, min_step_s: float, sample_every_s: float = 1.0,
                        drain_s: float | None = None,
                        dense_samples: bool = False) -> MemoryEstimate:
    """Estimate one run's peak memory from its drawn workload.

    Tokens emitted in one engine step share one time, so the timeline has a point per step, not
    per token: steps are bounded by the tokens (a batch of one) and by the simulated time over
    `min_step_s`, the shortest step the engine takes (one decoding sequence). `drain_s`:
    simulated time after the last arrival (default: the arrival horizon again, ample near
    capacity; a heavily overloaded run drains longer, with larger batches). Policy samples are
    sparse (only clients that have sent; at most one per request) unless `dense_samples`.
    """
    n_c = len(workload.clients)
    n_r = len(workload.requests)
    tokens = sum(r.output_tokens for r in workload.requests)
    horizon = workload.duration_s + (workload.duration_s if drain_s is None else drain_s)
    steps = min(tokens, math.ceil(horizon / min_step_s)) if min_step_s > 0 else tokens
    # Events: one per step, plus an arrival and an end per request; the grid adds a midpoint
    # between consecutive events.
    events = steps + 2 * n_r
    points = max(0, 2 * events - 1)
    samples = int(horizon / sample_every_s) + 1
    return MemoryEstimate(
        clients=n_c, requests=n_r, tokens=tokens, timeline_points=points,
        timeline_bytes=points * GRID_POINT_BYTES + (tokens + n_r) * SERVICE_EVENT_BYTES,
        records_bytes=tokens * TOKEN_BYTES + n_r * REQUEST_BYTES,
        samples_bytes=(n_c if dense_samples else min(n_c, n_r)) * samples * SAMPLE_BYTES,
        setup_bytes=n_c * CAPACITY_GRID_BYTES)


def machine_memory_bytes() -> int:
    """Memory this process may use: physical memory, or the cgroup (container) limit or the
    address-space limit (``ulimit -v``) if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        total = min(total, soft)
    for limit_file in (Path("/sys/fs/cgroup/memory.max"),
                       Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            text = limit_file.read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _detail(e: MemoryEstimate) -> str:
    if e.setup_bytes >= e.timeline_bytes + e.records_bytes + e.samples_bytes:
        return f"capacity estimate grids of {_gib(e.setup_bytes)}"
    return (f"a service timeline of {e.timeline_points} points, {_gib(e.timeline_bytes)}, "
            f"and records of {_gib(e.records_bytes)}, for {e.tokens} tokens")


def check_run_fits(estimate: MemoryEstimate, *, what: str, parallel: int = 1,
                   available_bytes: int | None = None) -> None:
    """InputError (field ``clients``) when `parallel` runs of `estimate` need more than
    `USABLE_SHARE` of `available_bytes` (default: `machine_memory_bytes()`). `what` names the
    run (scenario)."""
    avail = machine_memory_bytes() if available_bytes is None else available_bytes
    need = estimate.total_bytes * max(1, parallel)
    budget = int(avail * USABLE_SHARE)
    if need > budget:
        jobs = f" × {parallel} parallel jobs" if parallel > 1 else ""
        raise InputError(
            f"{what}: the run would need about {_gib(need)}{jobs} for {estimate.clients} clients "
            f"({_detail(estimate)}), over the limit of {_gib(budget)} "
            f"({USABLE_SHARE:.0%} of this machine's {_gib(avail)}); use fewer clients, a shorter "
            "duration or a lower load" + (", or fewer jobs" if parallel > 1 else ""),
            field="clients", value=estimate.clients)
