"""Simulator throughput: simulated requests per wall-clock second on the Azure conversation trace.

    .venv/bin/python benchmarks/sim_throughput.py [--requests 10000] [--runs 3] [-e FCFS ...]
        [--step-by-step] [--profile-run EXPERIMENT]

Workload: the first N rows of the Azure LLM inference trace 2023, conversation (the bundled
copy ``core/data/traces/azure_llm_2023_conv.csv``; columns TIMESTAMP, ContextTokens,
GeneratedTokens), arrival times relative to the first row, rows mapped round-robin to 4 clients,
prompt + output clamped to the profile's `max_model_len` (output first capped at half of it, then
the prompt cut to fit). Default profile (a100-llama2-7b) and its engine knobs. Only `simulate()`
is timed. Prints one line per experiment: medians over the runs of wall-clock and process CPU time
(the CPU figure is less disturbed by other processes on a shared machine), steps simulated and
SimPy events (decision points) handled.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from exfairs.calibration.profile import DEFAULT_PROFILE_ID, load_profile
from exfairs.records import SLO, ClientInfo, Request, Workload
from exfairs.sim.runner import simulate

# The bundled trace (installed as package data too); `--trace` picks another file.
TRACE_CANDIDATES = (
    Path(__file__).resolve().parents[1] / "core" / "data" / "traces" / "azure_llm_2023_conv.csv",
)
N_CLIENTS = 4


def load_trace_workload(path: Path, n_requests: int, max_model_len: int) -> Workload:
    """The first `n_requests` rows as a workload (see the module docstring)."""
    requests: list[Request] = []
    t0: datetime | None = None
    with path.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i >= n_requests:
                break
            # Timestamps carry 7 fractional digits; datetime takes 6.
            stamp = datetime.fromisoformat(row["TIMESTAMP"][:26])
            if t0 is None:
                t0 = stamp
            out = max(1, min(int(row["GeneratedTokens"]), max_model_len // 2))
            prompt = max(1, min(int(row["ContextTokens"]), max_model_len - out))
            requests.append(Request(
                request_id=i, client=f"client{i % N_CLIENTS}",
                arrival_s=(stamp - t0).total_seconds(), prompt_tokens=prompt, output_tokens=out,
                slo=SLO(e2e_s=60.0, ttft_s=10.0)))
    requests.sort(key=lambda r: (r.arrival_s, r.request_id))
    clients = tuple(ClientInfo(f"client{c}") for c in range(N_CLIENTS))
    duration = requests[-1].arrival_s + 1.0 if requests else 0.0
    return Workload(name=f"azure-conv-{n_requests}", seed=0, clients=clients,
                    requests=tuple(requests), duration_s=duration)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("-e", "--experiment", action="append",
                    help="experiments (default: FCFS QUEUE_FCFS ENGINE_FCFS VTC QUEUE_VTC "
                         "ENGINE_VTC ExFairS QUEUE_ExFairS)")
    ap.add_argument("--step-by-step", action="store_true", help="disable the fast path")
    ap.add_argument("--profile-run", metavar="EXPERIMENT",
                    help="run EXPERIMENT once under pyinstrument and print the profile")
    ap.add_argument("--trace", type=Path, default=None)
    args = ap.parse_args(argv)

    profile = load_profile(DEFAULT_PROFILE_ID)
    trace = args.trace or next((p for p in TRACE_CANDIDATES if p.is_file()), None)
    if trace is None:
        print("trace not found; pass --trace", file=sys.stderr)
        return 2
    wl = load_trace_workload(trace, args.requests, profile.engine.max_model_len)
    n = len(wl.requests)
    print(f"trace {trace.name}: {n} requests over {wl.requests[-1].arrival_s:.0f} s, "
          f"{N_CLIENTS} clients, profile {profile.id}, step_by_step={args.step_by_step}")

    if args.profile_run:
        from pyinstrument import Profiler

        prof = Profiler(interval=0.0005)
        prof.start()
        simulate(wl, args.profile_run, profile, step_by_step=args.step_by_step)
        prof.stop()
        print(prof.output_text(unicode=False, color=False, show_all=False))
        return 0

    exps = args.experiment or ["FCFS", "QUEUE_FCFS", "ENGINE_FCFS", "VTC", "QUEUE_VTC",
                               "ENGINE_VTC", "ExFairS", "QUEUE_ExFairS"]
    print(f"{'experiment':<16}{'req/s':>8}{'req/cpu-s':>10}{'sim/wall':>9}{'wall s':>8}"
          f"{'cpu s':>7}{'steps':>7}{'events':>7}{'sim end s':>10}  runs: wall s")
    for exp in exps:
        walls: list[float] = []
        cpus: list[float] = []
        res = None
        for _ in range(args.runs):
            c0 = time.process_time()
            t0 = time.perf_counter()
            res = simulate(wl, exp, profile, step_by_step=args.step_by_step)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        assert res is not None
        med = statistics.median(walls)
        cpu = statistics.median(cpus)
        print(f"{exp:<16}{n / med:>8,.0f}{n / cpu:>10,.0f}{res.sim_end_s / med:>9,.0f}{med:>8.3f}"
              f"{cpu:>7.3f}{res.steps:>7}{res.decision_points:>7}{res.sim_end_s:>10.1f}  "
              + " ".join(f"{w:.3f}" for w in walls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
