"""Pre-flight: will a run fit in this machine's memory? Estimated from the drawn workload.

Two structures grow with the number of clients. Before the workload is drawn, the capacity
estimate (`exfairs.calibration.capacity.capacity_estimate`) keeps two 120 × 120 float64 grids per
client (230 kB each client: 2.3 GB for 10,000 clients). After the run, the largest structure is the
metrics' service timeline (`exfairs.metrics`): for each
client, cumulative service and a backlog flag (8 + 1 bytes) at every point of a time grid of
about two points per event, where the events are every token emission, arrival and completion of
the whole run (tokens of one engine step share a time). It grows with clients × engine steps, so
many clients at tiny rates, where every step emits a token or two, are not cheap: 10,000 clients
and 100,000 steps need about 18 GB. Records (a float per
emitted token) and policy samples (a float per client and metric every sampled second) come on
top. The estimate is checked against the machine's memory before any work starts.
"""

from __future__ import annotations

import logging
import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path

from exfairs.errors import InputError
from exfairs.records import Workload

_log = logging.getLogger(__name__)

#: Bytes per client of the capacity estimate's quantile grids (2 arrays of 120 × 120 float64).
CAPACITY_GRID_BYTES = 2 * 120 * 120 * 8
#: Memory of the interpreter and the imported libraries (numpy, scipy, matplotlib), measured.
BASE_BYTES = 150 * 2**20
#: Bytes per client per timeline point: float64 cumulative service + bool backlog flag.
TIMELINE_BYTES = 9
#: Bytes per emitted token in the records (a float in a tuple) and its service event arrays.
TOKEN_BYTES = 64
#: Bytes per request: its Request and RequestRecord objects and metric rows.
REQUEST_BYTES = 2048
#: Bytes per policy-sample value (a Python float in a tuple), assuming 3 metrics per client.
SAMPLE_BYTES = 3 * 32
#: Share of the machine's memory one run may plan to use.
USABLE_SHARE = 0.8
#: Cost of the pairwise service-gap metric (exfairs.metrics.max_service_gap) per client pair
#: and per pair and timeline point, seconds: from a profiled 2,000-client run on the 2-core
#: development machine (2,000,000 pairs × 4,245 points took 4.4 s).
PAIR_S, PAIR_POINT_S = 0.5e-6, 0.4e-9
#: Estimated metric time beyond which a warning is logged, seconds.
SLOW_METRICS_S = 60.0


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Estimated peak memory of one run (bytes), by part; `timeline_points` is the metrics'
    grid size and `pair_points` the work of the pairwise service-gap metric. `setup_bytes` is
    held while the workload is drawn and freed before the run, so the peak is the larger of the
    setup and the run's parts, plus `BASE_BYTES`."""

    clients: int
    requests: int
    tokens: int
    timeline_points: int
    timeline_bytes: int
    records_bytes: int
    samples_bytes: int
    pair_points: float
    setup_bytes: int

    @property
    def pair_metric_s(self) -> float:
        """Estimated time of the pairwise service-gap metric, seconds (development machine)."""
        pairs = self.clients * (self.clients - 1) / 2
        return pairs * PAIR_S + self.pair_points * PAIR_POINT_S

    @property
    def total_bytes(self) -> int:
        """Estimated peak: base + max(setup, timeline + records + samples)."""
        run = self.timeline_bytes + self.records_bytes + self.samples_bytes
        return BASE_BYTES + max(self.setup_bytes, run)


def estimate_setup_memory(n_clients: int) -> MemoryEstimate:
    """The part of the estimate known before the workload is drawn (the capacity grids): check
    it first, since drawing allocates it."""
    return MemoryEstimate(clients=n_clients, requests=0, tokens=0, timeline_points=0,
                          timeline_bytes=0, records_bytes=0, samples_bytes=0, pair_points=0.0,
                          setup_bytes=n_clients * CAPACITY_GRID_BYTES)


def estimate_run_memory(workload: Workload, *, min_step_s: float, sample_every_s: float = 1.0,
                        drain_s: float | None = None) -> MemoryEstimate:
    """Estimate one run's peak memory from its drawn workload.

    Tokens emitted in one engine step share one time, so the timeline has a point per step, not
    per token: steps are bounded by the tokens (a batch of one) and by the simulated time over
    `min_step_s`, the shortest step the engine takes (one decoding sequence). `drain_s`:
    simulated time after the last arrival (default: the arrival horizon again, ample near
    capacity; a heavily overloaded run drains longer, with larger batches).
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
        timeline_bytes=n_c * points * TIMELINE_BYTES,
        records_bytes=tokens * TOKEN_BYTES + n_r * REQUEST_BYTES,
        samples_bytes=n_c * samples * SAMPLE_BYTES,
        pair_points=n_c * (n_c - 1) / 2 * points, setup_bytes=n_c * CAPACITY_GRID_BYTES)


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
    return (f"a service timeline of {e.timeline_points} points per client, "
            f"{_gib(e.timeline_bytes)}, for {e.tokens} tokens")


def check_run_fits(estimate: MemoryEstimate, *, what: str, parallel: int = 1,
                   available_bytes: int | None = None) -> None:
    """InputError (field ``clients``) when `parallel` runs of `estimate` need more than
    `USABLE_SHARE` of `available_bytes` (default: `machine_memory_bytes()`); a logged warning
    when the pairwise fairness metric will take minutes. `what` names the run (scenario)."""
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
    if estimate.pair_metric_s > SLOW_METRICS_S:
        _log.warning("%s: %d clients: the pairwise service-gap metric compares %d client pairs "
                     "over %d time points; expect it to take about %.0f minutes per run",
                     what, estimate.clients, estimate.clients * (estimate.clients - 1) // 2,
                     estimate.timeline_points, estimate.pair_metric_s / 60)
