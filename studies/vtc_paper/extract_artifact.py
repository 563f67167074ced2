"""Read the VTC artifact's result files and write the figures the table compares against.

    python studies/vtc_paper/extract_artifact.py --artifact PATH/TO/VTC-artifact \
        [--commit SHA] [--out studies/vtc_paper/artifact_figures.json]

PATH is a checkout of github.com/Ying1123/VTC-artifact; the files read are
``fair_bench/{FCFS,VTC}/all_results_<suite>.jsonl`` (one JSON object per run: ``config`` and
``result.responses``, the per-request records the artifact's plots are drawn from). Each figure is
computed with `vtc_suite.service_shares` / `vtc_suite.response_times` over the experiment's window,
exactly as for our runs. Nothing here runs in the test suite: the JSON it writes is committed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vtc_suite import SUITE, Response, response_times, service_shares

SCHEDULERS = ("FCFS", "VTC")


def _client(adapter: str) -> str:
    # The artifact names client i's adapter "dummy-lora-7b-rank-8-<i-1>" (plot/visualize.py).
    return f"client{int(adapter.rsplit('-', 1)[1]) + 1}"


def _responses(doc: dict[str, Any]) -> list[Response]:
    return [Response(_client(r["adapter_dir"]), float(r["req_time"]),
                     float(r["first_token_latency"]), float(r["request_latency"]),
                     int(r["prompt_len"]), int(r["output_len"]))
            for r in doc["result"]["responses"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", type=Path, required=True)
    ap.add_argument("--commit", default="", help="the artifact commit read (recorded)")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent / "artifact_figures.json")
    ns = ap.parse_args(argv)
    out: dict[str, Any] = {"source": "https://github.com/Ying1123/VTC-artifact",
                           "commit": ns.commit, "experiments": {}}
    for exp in SUITE:
        entry: dict[str, Any] = {}
        for sched in SCHEDULERS:
            rel = f"fair_bench/{sched}/all_results_{exp.suite}.jsonl"
            path = ns.artifact / rel
            if not path.is_file():
                continue
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            doc = json.loads(lines[-1])  # the last run in the file
            resp = _responses(doc)
            entry[sched] = {
                "file": rel,
                "config": doc["config"],
                "throughput_req_s": doc["result"]["throughput"],
                "share": service_shares(resp, exp.clients, exp.lo, exp.hi),
                "response_time_s": response_times(resp, exp.clients, exp.lo, exp.hi),
            }
        out["experiments"][exp.scenario] = entry
    tmp = ns.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    tmp.replace(ns.out)
    sys.stdout.write(f"wrote {ns.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
