"""Measure a machine's front end → engine-core latency from recorded live gate runs.

    .venv/bin/python benchmarks/submit_latency.py RUN_DIR [--scenario NAME ...]

For every gate-mode live result (``*__live.json``) in RUN_DIR with its step log (the path the
result names, else RUN_DIR/steplogs/), the release-to-engine latency that best explains the
run's own releases at arrival (`exfairs.live.replay.fitted_gate_latency_s`: a request released
`g` seconds before a ``schedule()`` start joined that step live iff `g` exceeds the latency).
Prints one line per run and the median over the runs: the value a profile fitted from these
runs records as ``engine.submit_latency_s`` (`exfairs.calibration.profile.EngineDefaults`),
which a plain simulation on that profile then uses. `--scenario` keeps the runs of the named
scenarios only (e.g. those a profile was fitted on). Exit status 1 when no run gives a value.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from exfairs.live.replay import fitted_gate_latency_s
from exfairs.live.steplog import read_steplog
from exfairs.policies.experiments import Mode, parse_experiment
from exfairs.results import read_result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--scenario", action="append", default=None,
                    help="keep this scenario's runs (repeatable; default: all)")
    ns = ap.parse_args(argv)
    values: list[float] = []
    for path in sorted(ns.run_dir.glob("*__live.json")):
        live = read_result(path)
        if ns.scenario and live.info.scenario not in ns.scenario:
            continue
        if parse_experiment(live.info.experiment).mode is not Mode.GATE:
            continue
        logged = Path(str(dict(live.info.engine_knobs).get("steplog_path", "")))
        if not logged.is_file():  # the run directory may have moved
            logged = ns.run_dir / "steplogs" / logged.name
        if not logged.is_file():
            sys.stdout.write(f"{path.name}: no step log, skipped\n")
            continue
        lat = fitted_gate_latency_s(live, read_steplog(logged))
        if lat is None:
            sys.stdout.write(f"{path.name}: no release at arrival while busy, skipped\n")
            continue
        values.append(lat)
        sys.stdout.write(f"{path.name}: {lat * 1e3:.3f} ms\n")
    if not values:
        sys.stdout.write("no gate run gave a latency\n")
        return 1
    q = statistics.quantiles(values, n=10) if len(values) > 1 else [values[0]] * 9
    sys.stdout.write(f"runs {len(values)}; median {statistics.median(values) * 1e3:.3f} ms; "
                     f"p10 {q[0] * 1e3:.3f} ms; p90 {q[-1] * 1e3:.3f} ms; min "
                     f"{min(values) * 1e3:.3f} ms; max {max(values) * 1e3:.3f} ms\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
