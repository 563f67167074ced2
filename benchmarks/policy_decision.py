"""Cost of one gate/engine-mode decision per policy with 10, 100 and 1,000 backlogged clients.

One decision = what a gate does when a slot frees: `PolicyQueue.pop` of the next request (which
calls `on_dispatch`), then the hooks that follow in a real run — the oldest in-flight request
finishes (every third one after an `on_violation`), the popped client is served a few decode
tokens (`on_service`), and a replacement request for that client arrives (`on_arrival` + `push`).
Every client holds one queued request, so each replacement arrival finds its client idle (VTC's
lift path runs every time).

Samples are taken with `time.perf_counter_ns`, sizes interleaved in rounds so that machine noise
hits all sizes alike. Writes a markdown table (median and p99 per decision, and the growth ratio
1,000 vs 10 clients; target ≤ 3×).

    .venv/bin/python benchmarks/policy_decision.py [--reps 20000] \
        [--out benchmarks/results/policy_decision.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

from exfairs.policies import PolicyQueue, available_policies, make_policy
from exfairs.records import SLO, Request

SIZES = (10, 100, 1000)
POLICIES = ("FCFS", "ROUND_ROBIN", "VTC", "ExFairS", "EDF")


class _Bench:
    """One policy with `n_clients` backlogged clients and a stream of pre-built requests."""

    def __init__(self, policy: str, n_clients: int, seed_offset: int) -> None:
        self.policy = make_policy(policy)
        names = [f"c{i:04d}" for i in range(n_clients)]
        for name in names:
            self.policy.add_client(name)
        self.queue = PolicyQueue(self.policy)
        self.names = names
        # Deterministic, cheap lengths: a fixed pattern (no RNG needed for timing).
        self.next_id = seed_offset
        self.now = 0.0
        self.inflight: deque[Request] = deque()
        self.finished = 0
        for name in names:
            self._arrive(name)

    def _request(self, client: str) -> Request:
        rid = self.next_id
        self.next_id += 1
        return Request(rid, client, self.now, 64 + rid % 512, 16 + rid % 128,
                       SLO(e2e_s=5.0 + rid % 7), unloaded_e2e_s=0.5)

    def _arrive(self, client: str) -> None:
        r = self._request(client)
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
        self._arrive(r.client)


def measure(policy: str, reps: int, rounds: int) -> dict[int, np.ndarray]:
    benches = {n: _Bench(policy, n, 1_000_000 * i) for i, n in enumerate(SIZES)}
    samples: dict[int, list[int]] = {n: [] for n in SIZES}
    per_round = max(1, reps // rounds)
    for b in benches.values():  # warm-up: fill in-flight lists, settle caches
        for _ in range(min(2000, per_round)):
            b.decision()
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for n, b in benches.items():
            out = samples[n]
            for _ in range(per_round):
                t0 = clock()
                b.decision()
                out.append(clock() - t0)
    return {n: np.asarray(v, dtype=np.float64) for n, v in samples.items()}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=20000, help="timed decisions per policy and size")
    ap.add_argument("--rounds", type=int, default=10, help="interleaving rounds")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/policy_decision.md"))
    ap.add_argument("--policies", nargs="*", default=list(POLICIES))
    args = ap.parse_args(argv)
    known = set(available_policies())
    policies = [p for p in args.policies if p in known]

    rows = []
    for name in policies:
        res = measure(name, args.reps, args.rounds)
        med = {n: float(np.median(v)) / 1000 for n, v in res.items()}
        p99 = {n: float(np.percentile(v, 99)) / 1000 for n, v in res.items()}
        rows.append((name, med, p99))
        print(f"{name:12s} " + "  ".join(
            f"n={n}: {med[n]:.2f}/{p99[n]:.2f} us" for n in SIZES
        ) + f"  growth {med[1000] / med[10]:.2f}x", flush=True)

    cmd = ".venv/bin/python benchmarks/policy_decision.py " + " ".join(argv if argv is not None
                                                               else sys.argv[1:])
    lines = [
        "# Policy decision cost",
        "",
        "One decision = `PolicyQueue.pop` (with `on_dispatch`) + the hooks that follow it in a "
        "run: one in-flight request finishes (every third after `on_violation`), `on_service` of "
        "8 decode tokens, and a replacement arrival (`on_arrival` + `push`) for the popped client, "
        "which had no other request queued. All clients backlogged. Microseconds per decision; "
        "sizes measured interleaved in the same process.",
        "",
        f"- date (UTC): {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs (shared with other jobs: absolute numbers are noisy, "
        "ratios within a row are the measurement)",
        f"- load average at the end (1/5/15 min): "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"- python {platform.python_version()}, numpy {np.__version__}",
        f"- command: `{cmd.strip()}` ({args.reps} timed decisions per cell, {args.rounds} rounds)",
        "",
        "| policy | median µs (10) | median µs (100) | median µs (1,000) | p99 µs (10) "
        "| p99 µs (100) | p99 µs (1,000) | growth 1,000 vs 10 (median) | target ≤ 3× |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, med, p99 in rows:
        growth = med[1000] / med[10]
        lines.append(
            f"| {name} | {med[10]:.2f} | {med[100]:.2f} | {med[1000]:.2f} | {p99[10]:.2f} | "
            f"{p99[100]:.2f} | {p99[1000]:.2f} | {growth:.2f}× | "
            f"{'met' if growth <= 3.0 else 'MISSED'} |"
        )
    _write_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
