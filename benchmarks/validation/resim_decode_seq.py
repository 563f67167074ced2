"""Re-simulate the recorded validation workloads with a per-decode-sequence step cost added to the
cpu-llama-60m profile, and compare with the SAME live results (no new live run needed).

    .venv/bin/python benchmarks/validation/resim_decode_seq.py 1.1   # decode_seq_ms

The workload (and its SLOs) is drawn with the bundled profile, exactly as the live runs did; only
the simulated step costs change.
"""

import dataclasses
import sys
from pathlib import Path

from exfairs.calibration.profile import load_profile, profile_from_json
from exfairs.live.run import prepare_run
from exfairs.live.validate import compare_results, format_report
from exfairs.metrics import compute_metrics
from exfairs.results import RunResult, read_result
from exfairs.sim.runner import simulate

slope = float(sys.argv[1])
doc = load_profile("cpu-llama-60m").to_json()
doc["coefficients"]["decode_seq_ms"] = slope
doc["metadata"]["id"] = f"cpu-llama-60m+seq{slope}"
prof = profile_from_json(doc)
for scen, load in (("mix", 0.9), ("burst", 1.2)):
    base = Path(f"benchmarks/results/validation/cpu-val-{scen}")
    # the workload and SLOs stay those of the bundled profile (what the live run served)
    p = prepare_run(f"benchmarks/validation/cpu-val-{scen}.toml", 0, load_factor=load,
                    profile="cpu-llama-60m", duration_s=90)
    pairs = []
    for e in ("QUEUE_FCFS", "QUEUE_VTC", "QUEUE_ExFairS"):
        live = read_result(base / f"cpu-val-{scen}__{e}__load{load:g}__seed0__live.json")
        ids = [r.request_id for r in p.workload.requests]
        assert [r.request_id for r in live.records] == ids
        s = simulate(p.workload, e, prof, engine=p.engine)
        m = compute_metrics(s.records, p.workload.clients, window=p.window)
        info = dataclasses.replace(live.info, backend="sim", profile_id=prof.id)
        sim = RunResult(info=info, clients=live.clients, records=s.records, metrics=m)
        pairs.append((sim, live))
    r = compare_results(pairs)
    txt = format_report(r)
    keep = ("(all)", "ranking", "targets")
    print(f"== cpu-val-{scen}, decode_seq_ms = {slope}")
    print("\n".join(line for line in txt.splitlines() if any(k in line for k in keep)))
