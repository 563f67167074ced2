"""Simulator cost in registered clients: the same 1,000 requests from 10 or 10,000 clients.

    .venv/bin/python benchmarks/sim_scale.py [--requests 1000] [--clients 10 10000]
        [-e FCFS -e QUEUE_VTC ...] [--sample-every 1.0] [--no-metrics]
        [--policy-samples sparse|dense|off] [--senders S]

Workload: `--requests` requests, Poisson arrivals at 4 req/s from the stream ("sim_scale",
"arrivals") under seed 0, prompt 64–1,024 and output 16–256 tokens (uniform, streams "prompt" /
"output"), request i sent by client ``i mod C`` — so with C ≥ requests most registered clients
never send anything — or, with ``--senders S``, by client ``i mod S`` (the same S clients send
at every C; the others are registered and idle: cost in registered clients alone). SLO e2e
30 s, TTFT 5 s. Default profile (a100-llama2-7b), max_num_seqs 48.
Each (experiment, clients) cell runs in a fresh child process, which reports the CPU time of
`simulate()` plus `compute_metrics()` and the child's peak RSS (ru_maxrss). Policy samples in
`simulate`'s default layout (sparse) unless `--policy-samples` says otherwise. Prints one line
per cell and the ratio of the largest to the smallest client count.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_one(n_requests: int, n_clients: int, experiment: str, sample_every_s: float,
            with_metrics: bool = True, policy_samples: str | None = None,
            senders: int | None = None) -> dict[str, float]:
    from exfairs.calibration.profile import DEFAULT_PROFILE_ID, load_profile
    from exfairs.metrics import compute_metrics
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
    senders = n_clients if senders is None else min(senders, n_clients)
    reqs = tuple(Request(request_id=i, client=f"c{i % senders}", arrival_s=float(arrivals[i]),
                         prompt_tokens=int(prompts[i]), output_tokens=int(outputs[i]), slo=slo)
                 for i in range(n_requests))
    clients = tuple(ClientInfo(f"c{c}") for c in range(n_clients))
    wl = Workload(name="scale", seed=0, clients=clients, requests=reqs,
                  duration_s=float(arrivals[-1]) + 1.0)
    c0 = time.process_time()
    layout = {} if policy_samples is None else {"policy_samples": policy_samples}
    res = simulate(wl, experiment, profile, engine=engine, sample_every_s=sample_every_s,
                   **layout)
    c1 = time.process_time()
    rss_sim = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if with_metrics:
        compute_metrics(res.records, wl.clients)
    c2 = time.process_time()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"sim_cpu_s": c1 - c0, "metrics_cpu_s": c2 - c1, "cpu_s": c2 - c0,
            "sim_rss_mb": rss_sim, "rss_mb": rss_mb, "steps": res.steps,
            "sim_end_s": res.sim_end_s, "samples": len(res.policy_samples)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 10_000])
    ap.add_argument("-e", "--experiment", action="append")
    ap.add_argument("--sample-every", type=float, default=1.0)
    ap.add_argument("--no-metrics", action="store_true", help="time simulate() only")
    ap.add_argument("--policy-samples", choices=("sparse", "dense", "off"), default=None,
                    help="simulate's policy_samples (default: simulate's default, sparse)")
    ap.add_argument("--senders", type=int, default=None,
                    help="only the first S clients send (default: every client in turn)")
    ap.add_argument("--child", nargs=2, metavar=("CLIENTS", "EXPERIMENT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        out = run_one(args.requests, int(args.child[0]), args.child[1], args.sample_every,
                      not args.no_metrics, args.policy_samples, args.senders)
        print(json.dumps(out))
        return 0
    exps = args.experiment or ["FCFS", "QUEUE_FCFS", "ENGINE_FCFS", "VTC", "QUEUE_VTC",
                               "ENGINE_VTC", "ExFairS", "QUEUE_ExFairS", "ENGINE_ExFairS",
                               "QUEUE_ROUND_ROBIN", "EDF", "QUEUE_EDF"]
    print(f"{'experiment':<18}{'clients':>8}{'cpu s':>8}{'sim cpu s':>10}{'metrics s':>10}"
          f"{'peak RSS MB':>12}{'steps':>7}{'samples':>8}")
    for exp in exps:
        rows = []
        for n in args.clients:
            proc = subprocess.run(
                [sys.executable, __file__, "--requests", str(args.requests), "--sample-every",
                 str(args.sample_every), "--child", str(n), exp]
                + (["--no-metrics"] if args.no_metrics else [])
                + (["--policy-samples", args.policy_samples] if args.policy_samples else [])
                + (["--senders", str(args.senders)] if args.senders else []),
                capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{exp:<18}{n:>8}{r['cpu_s']:>8.3f}{r['sim_cpu_s']:>10.3f}"
                  f"{r['metrics_cpu_s']:>10.3f}{r['rss_mb']:>12.1f}{r['steps']:>7}"
                  f"{r['samples']:>8}", flush=True)
        lo, hi = rows[0], rows[-1]
        print(f"{'':<18}{'ratio':>8}{hi['cpu_s'] / lo['cpu_s']:>8.2f}"
              f"{hi['sim_cpu_s'] / lo['sim_cpu_s']:>10.2f}{'':>10}"
              f"{hi['rss_mb'] / lo['rss_mb']:>12.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
