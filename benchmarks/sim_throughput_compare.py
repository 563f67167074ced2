"""Side-by-side simulator throughput of this tree and another installed revision, in one run.

    .venv/bin/python benchmarks/sim_throughput_compare.py --against DIR [--rounds 5]
        [--requests 10000] [-e FCFS ...]

DIR holds another revision installed with ``pip install --no-deps --target DIR <checkout>``.
The workload and timing are those of `benchmarks/sim_throughput.py` (first N Azure conversation
requests, default profile, only `simulate()` timed, process CPU time). Each round runs every
experiment once per revision, alternating, each run in a fresh child process (same interpreter,
``PYTHONPATH=DIR`` for the other revision), so both see the same machine load. Prints, per
experiment, the best and the median over rounds of simulated requests per CPU-second for each
revision and the ratio of the medians (this tree / other).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = """
import sys, time
sys.path.insert(0, {bench!r})
from pathlib import Path
from sim_throughput import TRACE_CANDIDATES, load_trace_workload
from exfairs.calibration.profile import DEFAULT_PROFILE_ID, load_profile
from exfairs.sim.runner import simulate
profile = load_profile(DEFAULT_PROFILE_ID)
trace = next(p for p in TRACE_CANDIDATES if p.is_file())
wl = load_trace_workload(trace, {n}, profile.engine.max_model_len)
c0 = time.process_time()
simulate(wl, {exp!r}, profile)
print(len(wl.requests) / (time.process_time() - c0))
"""


def _run(exp: str, n: int, pythonpath: str | None) -> float:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, "-c", CHILD.format(bench=str(HERE), n=n, exp=exp)],
                         env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="directory with the other revision")
    ap.add_argument("--this", default=None,
                    help="directory with this revision installed (default: the importable one)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("-e", "--experiment", action="append")
    args = ap.parse_args(argv)
    exps = args.experiment or ["FCFS", "QUEUE_FCFS", "ENGINE_FCFS", "VTC", "QUEUE_VTC",
                               "ENGINE_VTC", "ExFairS", "QUEUE_ExFairS"]
    this: dict[str, list[float]] = {e: [] for e in exps}
    other: dict[str, list[float]] = {e: [] for e in exps}
    for r in range(args.rounds):
        for e in exps:
            other[e].append(_run(e, args.requests, args.against))
            this[e].append(_run(e, args.requests, args.this))
        print(f"round {r + 1} done", file=sys.stderr, flush=True)
    print(f"{'experiment':<16}{'other best':>11}{'other med':>10}{'this best':>10}{'this med':>10}"
          f"{'ratio':>7}   (simulated requests per CPU-second)")
    for e in exps:
        om, tm = statistics.median(other[e]), statistics.median(this[e])
        print(f"{e:<16}{max(other[e]):>11,.0f}{om:>10,.0f}{max(this[e]):>10,.0f}{tm:>10,.0f}"
              f"{tm / om:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
