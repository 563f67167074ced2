"""Scale check of a gate: a `PolicyQueue` holding 10,000 queued requests from 1,000 clients.

For each policy, the cost of one gate decision with 1,000 clients × 10 queued requests (10,000
queued) is measured side by side with 10 clients × 10 queued requests (100 queued), in rounds
that interleave the two sizes so that machine noise hits both alike. One decision is what a gate
does when a slot frees (as in benchmarks/policy_decision.py): `PolicyQueue.pop` (which calls
`on_dispatch`), the oldest of 64 in-flight requests finishes (every third after `on_violation`),
the popped client is served 8 decode tokens (`on_service`), and a replacement request for that
client arrives (`on_arrival` + `push`), so the queue stays at its size. Here the popped client
still has 9 queued requests, so the replacement joins a backlogged client (policy_decision.py
measures the idle-client path).

The growth of the median cost, large vs small, must stay within the ≤ 3× bound of
benchmarks/results/policy_decision.md. Memory per queued request is measured with tracemalloc:
the queue's own bookkeeping (heap entries, index dicts, expiry heap) per request pushed, and the
`Request` objects themselves.

    .venv/bin/python benchmarks/gate_scale.py [--reps 20000] \
        [--out benchmarks/results/gate_scale.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from pathlib import Path

import numpy as np

from exfairs.policies import PolicyQueue, available_policies, make_policy
from exfairs.records import SLO, Request

POLICIES = ("FCFS", "ROUND_ROBIN", "VTC", "ExFairS", "EDF")
PER_CLIENT = 10
SMALL, LARGE = 10, 1000  # clients
BOUND = 3.0  # growth bound of benchmarks/results/policy_decision.md


class Gate:
    """One policy's gate with `n_clients` clients, each holding `PER_CLIENT` queued requests."""

    def __init__(self, policy: str, n_clients: int, id_base: int) -> None:
        self.policy = make_policy(policy)
        self.names = [f"c{i:04d}" for i in range(n_clients)]
        for name in self.names:
            self.policy.add_client(name)
        self.queue = PolicyQueue(self.policy)
        self.next_id = id_base
        self.now = 0.0
        self.inflight: deque[Request] = deque()
        self.finished = 0
        for _ in range(PER_CLIENT):
            for name in self.names:
                self.arrive(self.request(name))

    def request(self, client: str) -> Request:
        # Deterministic, cheap lengths and deadlines: a fixed pattern (no RNG in a timing loop).
        rid = self.next_id
        self.next_id += 1
        return Request(rid, client, self.now, 64 + rid % 512, 16 + rid % 128,
                       SLO(e2e_s=5.0 + rid % 7), unloaded_e2e_s=0.5)

    def arrive(self, r: Request) -> None:
        self.policy.on_arrival(r, self.now)
        self.queue.push(r, self.now)

    def decision(self) -> None:
        self.now += 0.001
        r = self.queue.pop(self.now)
        assert r is not None
        self.inflight.append(r)
        if len(self.inflight) > 64:
            done = self.inflight.popleft()
            self.finished += 1
            met = self.finished % 3 != 0
            if not met:
                self.policy.on_violation(done, self.now)
            self.policy.on_finish(done, self.now, met)
        self.policy.on_service(r.client, 0, 8, self.now)
        self.arrive(self.request(r.client))


def measure(policy: str, reps: int, rounds: int) -> dict[int, np.ndarray]:
    """Nanoseconds per decision for each size, sizes interleaved round by round."""
    gates = {SMALL: Gate(policy, SMALL, 0), LARGE: Gate(policy, LARGE, 10_000_000)}
    for g in gates.values():
        assert len(g.queue) == PER_CLIENT * len(g.names)
    samples: dict[int, list[int]] = {n: [] for n in gates}
    per_round = max(1, reps // rounds)
    for g in gates.values():  # warm-up: fill the in-flight window, settle caches
        for _ in range(min(2000, per_round)):
            g.decision()
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for n, g in gates.items():
            out = samples[n]
            for _ in range(per_round):
                t0 = clock()
                g.decision()
                out.append(clock() - t0)
    for g in gates.values():  # the queue really held its size throughout
        assert len(g.queue) == PER_CLIENT * len(g.names)
    return {n: np.asarray(v, dtype=np.float64) for n, v in samples.items()}


def memory_per_request(policy: str) -> tuple[float, float]:
    """(queue bookkeeping, Request objects) in bytes per queued request, 10,000 queued."""
    gc.collect()
    tracemalloc.start()
    try:
        pol = make_policy(policy)
        names = [f"c{i:04d}" for i in range(LARGE)]
        for name in names:
            pol.add_client(name)
        queue = PolicyQueue(pol)
        queue.push(Request(-1, names[0], 0.0, 64, 16, SLO(e2e_s=5.0), unloaded_e2e_s=0.5), 0.0)
        queue.remove(-1)  # per-client arrays allocated before the measurement
        n = PER_CLIENT * LARGE
        base = tracemalloc.take_snapshot()
        reqs = [Request(i, names[i % LARGE], 0.0, 64 + i % 512, 16 + i % 128,
                        SLO(e2e_s=5.0 + i % 7), unloaded_e2e_s=0.5) for i in range(n)]
        built = tracemalloc.take_snapshot()
        for r in reqs:
            queue.push(r, 0.0)
        pushed = tracemalloc.take_snapshot()
        assert len(queue) == n
    finally:
        tracemalloc.stop()

    def grown(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot) -> int:
        return sum(s.size_diff for s in after.compare_to(before, "filename"))

    return grown(pushed, built) / n, grown(built, base) / n


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20000, help="timed decisions per policy and size")
    ap.add_argument("--rounds", type=int, default=10, help="interleaving rounds")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gate_scale.md"))
    ap.add_argument("--policies", nargs="*", default=list(POLICIES))
    args = ap.parse_args(argv)
    known = set(available_policies())
    policies = [p for p in args.policies if p in known]

    rows = []
    for name in policies:
        res = measure(name, args.reps, args.rounds)
        med = {n: float(np.median(v)) / 1000 for n, v in res.items()}
        p99 = {n: float(np.percentile(v, 99)) / 1000 for n, v in res.items()}
        queue_b, req_b = memory_per_request(name)
        rows.append((name, med, p99, queue_b, req_b))
        print(f"{name:12s} small {med[SMALL]:.2f}/{p99[SMALL]:.2f} us  large "
              f"{med[LARGE]:.2f}/{p99[LARGE]:.2f} us  growth {med[LARGE] / med[SMALL]:.2f}x  "
              f"memory {queue_b:.0f} B queue + {req_b:.0f} B request", flush=True)

    cmd = ".venv/bin/python benchmarks/gate_scale.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines = [
        "# Gate scale: 10,000 queued requests from 1,000 clients",
        "",
        "A `PolicyQueue` gate with 1,000 clients × 10 queued requests (10,000 queued) against 10 "
        "clients × 10 queued requests (100 queued), measured in the same process with the two "
        "sizes interleaved round by round. One decision = `pop` (with `on_dispatch`), one of 64 "
        "in-flight requests finishes (every third after `on_violation`), `on_service` of 8 "
        "tokens, and a replacement arrival (`on_arrival` + `push`) for the popped client, which "
        "keeps the queue at its size. Microseconds per decision. Growth bound ≤ 3× as in "
        "benchmarks/results/policy_decision.md. Memory (tracemalloc, 10,000 pushed): the queue's "
        "own bookkeeping per queued request, and the `Request` object itself.",
        "",
        f"- date (UTC): {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs (shared with other jobs: absolute numbers are noisy, "
        "the ratio within a row is the measurement)",
        f"- load average at the end (1/5/15 min): "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"- python {platform.python_version()}, numpy {np.__version__}",
        f"- command: `{cmd.strip()}` ({args.reps} timed decisions per cell, {args.rounds} rounds)",
        "",
        "| policy | median µs (10 clients, 100 queued) | median µs (1,000 clients, 10,000 queued) "
        "| p99 µs (100 queued) | p99 µs (10,000 queued) | growth (median) | target ≤ 3× "
        "| queue bytes / queued request | Request bytes |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, med, p99, queue_b, req_b in rows:
        growth = med[LARGE] / med[SMALL]
        lines.append(
            f"| {name} | {med[SMALL]:.2f} | {med[LARGE]:.2f} | {p99[SMALL]:.2f} | "
            f"{p99[LARGE]:.2f} | {growth:.2f}× | {'met' if growth <= BOUND else 'MISSED'} | "
            f"{queue_b:.0f} | {req_b:.0f} |")
    _write_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
