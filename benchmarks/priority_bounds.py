"""Issue 15, Build 4: do priority-mode VTC and ExFairS keep their service-gap bounds?

Two backlogged clients on the small engine of tests/sim/test_modes.py (max_num_seqs 4, 1024 KV
tokens): the test's 25 : 5 overload, unequal rates (40 : 4 requests/s), unequal outputs (8 vs
128 and 128 vs 8 tokens) and unequal prompts (512 vs 16 tokens). Per experiment the largest
service gap |W_heavy − W_light| (weighted w_p = 1 per prompt token, w_q = 2 per output token) as a
multiple of Sheng et al.'s bound 2·max(w_p·L_in, w_q·M), measured two ways:

* strict — over intervals in which both clients have a request *waiting* (Theorem 4.2's
  backlog; `_backlogged_gap` of the test), with the share of the window both are backlogged;
* loose — over the whole window 5–45 s, a client counting as backlogged while any request of it
  is unfinished (running included); ``*`` marks a case where even that does not hold throughout.

    .venv/bin/python benchmarks/priority_bounds.py [--out benchmarks/results/priority_bounds.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "sim"))

from sim_factories import engine, profile, workload  # noqa: E402
from test_modes import (  # noqa: E402
    ENGINE,
    W_P,
    W_Q,
    WINDOW,
    _backlogged,
    _backlogged_gap,
    _service_curves,
)

from exfairs.atomic import atomic_write_text  # noqa: E402
from exfairs.sim.runner import SimResult, simulate  # noqa: E402

EXPERIMENTS = ("FCFS", "VTC", "ExFairS", "QUEUE_VTC", "QUEUE_ExFairS", "ENGINE_VTC")


def _case(h_rate: float, l_rate: float, h: tuple[int, int], light: tuple[int, int]
          ) -> list[tuple[str, float, int, int]]:
    return ([("heavy", i / h_rate, *h) for i in range(int(h_rate * 50))]
            + [("light", 0.01 + i / l_rate, *light) for i in range(int(l_rate * 50))])


CASES = {
    "25:5, 64/32 both (the test's)": _case(25, 5, (64, 32), (64, 32)),
    "40:4 rates, 64/32 both": _case(40, 4, (64, 32), (64, 32)),
    "25:5, outputs 8 vs 128": _case(25, 5, (64, 8), (64, 128)),
    "25:5, outputs 128 vs 8": _case(25, 5, (64, 128), (64, 8)),
    "25:5, prompts 512 vs 16": _case(25, 5, (512, 32), (16, 32)),
}


def _loose(res: SimResult) -> tuple[float, bool]:
    grid = np.linspace(*WINDOW, 401)
    ok = all(_backlogged(res.records, c, t) for t in grid for c in ("heavy", "light"))
    s = _service_curves(res.records, grid)
    g = (s["heavy"] - s["heavy"][0]) - (s["light"] - s["light"][0])
    return float(np.abs(g).max()), ok


def _both_share(res: SimResult) -> float:
    from test_modes import _waiting

    grid = np.linspace(*WINDOW, 2001)
    return float((_waiting(res.records, "heavy", grid) & _waiting(res.records, "light", grid))
                 .mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results" / "priority_bounds.md"))
    args = ap.parse_args(argv)
    prof = profile(fixed_ms=10.0, prefill_token_ms=0.05, decode_seq_ms=0.5)
    eng = engine(**ENGINE)
    kv = eng.num_gpu_blocks * eng.block_size
    lines = ["# Priority-mode service-gap bounds (issue 15, Build 4), simulator", "",
             f"Command: `.venv/bin/python benchmarks/priority_bounds.py`; "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; load average "
             f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (simulated results do not depend "
             "on it). Cells: gap / VTC bound, strict (share of the window both clients are "
             "backlogged) · loose.", "",
             "| case | bound | " + " | ".join(EXPERIMENTS) + " |",
             "|---|---|" + "---|" * len(EXPERIMENTS)]
    for name, specs in CASES.items():
        wl = workload(specs, clients=["heavy", "light"])
        bound = 2 * max(W_P * max(p for _, _, p, _ in specs), W_Q * kv)
        cells = []
        for exp in EXPERIMENTS:
            params = {} if "FCFS" in exp else {"w_p": W_P, "w_q": W_Q}
            res = simulate(wl, exp, prof, engine=eng, policy_params=params)
            loose, ok = _loose(res)
            cells.append(f"{_backlogged_gap(res) / bound:.2f} ({_both_share(res):.2f}) · "
                         f"{loose / bound:.2f}{'' if ok else '*'}")
        lines.append(f"| {name} | {bound:g} | " + " | ".join(cells) + " |")
    lines.append("")
    atomic_write_text(args.out, "\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
