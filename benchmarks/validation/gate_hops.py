"""Gate releases of recorded live runs against the engine's step boundaries (issue 12, item 4):
how long each release took to reach the engine core, and which side of a ``schedule()`` start it
landed on. No engine; reads live results and their step logs.

    python benchmarks/validation/gate_hops.py DIR [DIR ...] [--releases]

DIR: any directory holding live results (``*__live.json``, searched recursively) with their step
logs in a ``steplogs/`` folder beside them (a `run_validation.py` out's ``live/``, an
``exfairs-live run --out``). Only gate (``QUEUE_``) experiments count. A step lasts until the
next ``schedule()`` start while the engine stays busy (`exfairs.live.replay.step_ends`). Per
release: its live dispatch d (run clock), the engine core's ``added_mono`` a; "at arrival" =
released within 5 ms of arriving, or later with no request finishing in between (the driver
woke late); "at a finish" = the rest. For releases at arrival while the engine was mid-step:
g = the next step's ``schedule()`` start − d and whether the release joined that step
(a ≤ start). Times in ms. ``--releases`` also lists every release at arrival.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
from pathlib import Path

import numpy as np

from exfairs.live.replay import run_steps, step_ends
from exfairs.live.steplog import read_steplog
from exfairs.results import read_result

AT_ARRIVAL_S = 0.005


def _q(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    a = np.asarray(xs) * 1e3
    return (f"n {len(a)}, p10 {np.percentile(a, 10):.2f}, median {np.median(a):.2f}, "
            f"p90 {np.percentile(a, 90):.2f}, max {a.max():.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--releases", action="store_true",
                   help="list every release at arrival: run, request, arrival, d − arrival, "
                        "engine idle or mid-step, g, joined the next step, a − d")
    ns = p.parse_args()
    idle_hop: list[float] = []
    busy: list[tuple[float, bool, str]] = []  # (gap, joined, run)
    late: list[float] = []
    finish_hop: list[float] = []
    finish_extra = 0  # releases at a finish that reached the core after a whole further step
    runs = 0
    for d in ns.dirs:
        for path in sorted(d.rglob("*__live.json")):
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("mode") != "gate":
                continue
            live = read_result(path)
            knobs = dict(live.info.engine_knobs)
            log_path = path.parent / "steplogs" / Path(str(knobs.get("steplog_path", ""))).name
            zero = knobs.get("run_zero_mono")
            if not log_path.is_file() or not isinstance(zero, (int, float)):
                sys.stderr.write(f"gate_hops: {path}: no step log or run_zero_mono, skipped\n")
                continue
            runs += 1
            log = read_steplog(log_path)
            steps = run_steps(log)
            starts = [s.start_mono - zero for s in steps]
            ends = step_ends(steps, float(zero))  # the next start while busy
            added = {r.request_id: r.added_mono - zero for r in log.requests
                     if r.request_id is not None and math.isfinite(r.added_mono)}
            finishes = sorted(r.finish_s for r in live.records if r.finish_s is not None)
            for r in live.records:
                a = added.get(r.request_id)
                if r.dispatch_s is None or a is None:
                    continue
                dd = r.dispatch_s
                j = bisect.bisect_right(starts, dd) - 1  # the step in progress (or last) at d
                mid_step = j >= 0 and ends[j] > dd
                lag = dd - r.arrival_s
                between = bisect.bisect_left(finishes, dd) - bisect.bisect_left(finishes,
                                                                               r.arrival_s)
                if lag <= AT_ARRIVAL_S or between == 0:
                    if lag > AT_ARRIVAL_S:
                        late.append(lag)
                    if not mid_step:
                        idle_hop.append(a - dd)
                    elif j + 1 < len(starts):
                        busy.append((starts[j + 1] - dd, a <= starts[j + 1], path.name))
                    if ns.releases:
                        g = starts[j + 1] - dd if mid_step and j + 1 < len(starts) else math.nan
                        sys.stdout.write(
                            f"{path.parent.name}/{path.name} request {r.request_id}: arrival "
                            f"{r.arrival_s:.4f} s, d − arrival {lag * 1e3:.2f}, "
                            f"{'mid-step' if mid_step else 'idle'}, g {g * 1e3:.2f}, "
                            f"joined {'-' if math.isnan(g) else a <= starts[j + 1]}, "
                            f"a − d {(a - dd) * 1e3:.2f}\n")
                else:
                    finish_hop.append(a - dd)
                    k = bisect.bisect_left(starts, a)  # the step that took it in
                    if mid_step and k > j + 2:
                        finish_extra += 1
    out = sys.stdout.write
    out(f"{runs} gate runs\n")
    out(f"released at arrival, engine idle: hop a − d {_q(idle_hop)}\n")
    joined = [g for g, ok, _ in busy if ok]
    missed = [g for g, ok, _ in busy if not ok]
    out(f"released at arrival, engine mid-step: {len(busy)}; joined the next step: "
        f"{len(joined)} (smallest g {min(joined) * 1e3:.2f})" if joined else "")
    out(f"; joined a later one: {len(missed)}"
        f"{f' (largest g {max(missed) * 1e3:.2f})' if missed else ''}\n")
    # One latency L for the run explains a release iff (g > L) == joined; count the
    # releases the best single L per run still gets wrong.
    wrong = 0
    for run in sorted({n for _, _, n in busy}):
        xs = [(g, ok) for g, ok, n in busy if n == run]
        cuts = sorted({0.0, *(g for g, _ in xs)})
        wrong += min(sum((g > lat) != ok for g, ok in xs)
                     for lat in [*(c + 1e-7 for c in cuts)])
    out(f"  of those, wrong with the best single latency per run: {wrong}\n")
    out(f"  0 < g ≤ 3 ms: joined {sum(0 < g <= 3e-3 for g in joined)}, "
        f"missed {sum(0 < g <= 3e-3 for g in missed)}\n")
    out(f"released at arrival more than 5 ms late (driver woke late): {_q(late)}\n")
    out(f"released at a finish: a − d {_q(finish_hop)}; reached the core after a further "
        f"whole step: {finish_extra}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
