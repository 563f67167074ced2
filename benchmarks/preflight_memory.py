"""Does the memory pre-flight (`exfairs.preflight.estimate_run_memory`) bound a run's real peak?

    .venv/bin/python benchmarks/preflight_memory.py [--out benchmarks/results/preflight_memory.md]

Each cell runs in a fresh child process: the workload of `benchmarks/sim_scale.py` (its seeded
streams: Poisson arrivals at 4 req/s, prompts 64–1,024, outputs 16–256 tokens, request i from
client ``i mod C``) with R requests and C registered clients, `simulate()` (FCFS, sparse policy
samples) and `compute_metrics()`. The child reports its peak RSS (ru_maxrss) minus its RSS after
the imports (the estimate's `BASE_BYTES` stands for that part) and the estimate's parts. The
workload is built directly, so the capacity grids (`setup`, held before the run and freed) are
not exercised: the run's part of the estimate (timeline + records + samples) must be at least the
measured peak (a pre-flight that under-estimates lets a run die of memory); the ratio says how
pessimistic it is.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

CELLS = ((10, 1000), (10_000, 1000), (100, 4000), (10_000, 4000), (2000, 8000))


def _rss_bytes() -> int:
    """Current resident set, bytes (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(n_clients: int, n_requests: int) -> dict[str, float]:
    """One cell in this process; returns the measured and estimated bytes."""
    import numpy as np  # noqa: F401  (imported before the baseline, as in a real run)

    from exfairs.calibration.profile import DEFAULT_PROFILE_ID, load_profile
    from exfairs.metrics import compute_metrics
    from exfairs.preflight import BASE_BYTES, estimate_run_memory
    from exfairs.records import SLO, ClientInfo, Request, Workload
    from exfairs.rng import stream
    from exfairs.sim.config import EngineConfig
    from exfairs.sim.runner import simulate

    profile = load_profile(DEFAULT_PROFILE_ID)
    engine = EngineConfig.from_profile(profile, max_num_seqs=48)
    arrivals = stream(0, "sim_scale", "arrivals").exponential(0.25, n_requests).cumsum()
    prompts = stream(0, "sim_scale", "prompt").integers(64, 1025, n_requests)
    outputs = stream(0, "sim_scale", "output").integers(16, 257, n_requests)
    slo = SLO(e2e_s=30.0, ttft_s=5.0)
    reqs = tuple(Request(request_id=i, client=f"c{i % n_clients}", arrival_s=float(arrivals[i]),
                         prompt_tokens=int(prompts[i]), output_tokens=int(outputs[i]), slo=slo)
                 for i in range(n_requests))
    clients = tuple(ClientInfo(f"c{c}") for c in range(n_clients))
    wl = Workload(name="preflight", seed=0, clients=clients, requests=reqs,
                  duration_s=float(arrivals[-1]) + 1.0)
    base = _rss_bytes()
    min_step_s = profile.cost_model(engine.max_num_batched_tokens).step_ms(0, 0, 1, 1) / 1e3
    est = estimate_run_memory(wl, min_step_s=min_step_s)
    res = simulate(wl, "FCFS", profile, engine=engine)
    compute_metrics(res.records, wl.clients)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"clients": n_clients, "requests": n_requests, "tokens": est.tokens,
            "measured_bytes": float(max(0, peak - base)),
            "estimate_bytes": float(est.total_bytes - BASE_BYTES),
            "run_bytes": float(est.timeline_bytes + est.records_bytes + est.samples_bytes),
            "timeline_bytes": float(est.timeline_bytes), "records_bytes": float(est.records_bytes),
            "samples_bytes": float(est.samples_bytes), "setup_bytes": float(est.setup_bytes)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    p.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    if ns.child:
        sys.stdout.write(json.dumps(run_one(*ns.child)) + "\n")
        return 0
    rows = []
    for n_c, n_r in CELLS:
        out = subprocess.run([sys.executable, __file__, "--child", str(n_c), str(n_r)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    mib = 2.0**20
    lines = ["# Memory pre-flight against measured peaks", "",
             "Produced by `python benchmarks/preflight_memory.py --out "
             "benchmarks/results/preflight_memory.md` (peak RSS of the run above the process's "
             "RSS after its imports; the run's part of the estimate: timeline + records + "
             "samples; the setup grids are not exercised, see the script's docstring).", "",
             "| clients | requests | tokens | measured MiB | run estimate MiB | "
             "estimate / measured | timeline MiB | records MiB | samples MiB | setup MiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ok = True
    for r in rows:
        ratio = r["run_bytes"] / max(r["measured_bytes"], 1.0)
        ok &= ratio >= 1.0
        lines.append(
            f"| {r['clients']:,} | {r['requests']:,} | {int(r['tokens']):,} | "
            f"{r['measured_bytes'] / mib:.1f} | {r['run_bytes'] / mib:.1f} | {ratio:.2f} | "
            f"{r['timeline_bytes'] / mib:.1f} | {r['records_bytes'] / mib:.1f} | "
            f"{r['samples_bytes'] / mib:.1f} | {r['setup_bytes'] / mib:.1f} |")
    lines += ["", f"Estimate at least the measured peak in every cell: {'yes' if ok else 'NO'}."]
    text = "\n".join(lines) + "\n"
    if ns.out:
        from exfairs.atomic import atomic_write_text

        atomic_write_text(ns.out, text)
    sys.stdout.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
