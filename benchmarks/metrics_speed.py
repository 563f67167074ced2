"""`compute_metrics` now against the same function at a git revision, on study cells: the two
must give identical metrics (compared by repr, so NaNs and every bit count), and the CPU time of
each, alternating, median over repeats.

    python benchmarks/metrics_speed.py [--base HEAD] [--every 10] [--repeats 5]

The cells: every `--every`-th cell of studies/exfairs-study.toml at seed 0, simulated once here.
The revision's metrics are loaded from git as a separate module `metrics_base`, whichever layout
the revision has: the single file core/metrics.py (`git show BASE:core/metrics.py`) or the package
core/metrics/ (every file of it, their `exfairs.metrics` imports pointed at `metrics_base` so the
revision's own submodules are used). Either imports the installed `exfairs` for records and errors.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import exfairs.metrics as current
from exfairs.policies import parse_experiment
from exfairs.sim.runner import simulate
from exfairs.sim.sweep import _prepare, load_sweep, split_gate_knob

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def _module_at(rev: str, where: Path) -> ModuleType:
    """`rev`'s metrics as the module (or package) `metrics_base`, written under `where`."""
    files = _git("ls-tree", "-r", "--name-only", rev, "--", "core/metrics.py", "core/metrics")
    names = [f for f in files.splitlines() if f.endswith(".py")]
    if names == ["core/metrics.py"]:
        path = where / "metrics_base.py"
        path.write_text(_git("show", f"{rev}:core/metrics.py"))
        spec = importlib.util.spec_from_file_location("metrics_base", path)
    elif names and all(n.startswith("core/metrics/") for n in names):
        pkg = where / "metrics_base"
        pkg.mkdir()
        for name in names:
            src = re.sub(r"\bexfairs\.metrics\b", "metrics_base", _git("show", f"{rev}:{name}"))
            (pkg / name.removeprefix("core/metrics/")).write_text(src)
        spec = importlib.util.spec_from_file_location(
            "metrics_base", pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    else:
        raise SystemExit(f"{rev} has neither core/metrics.py nor core/metrics/")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["metrics_base"] = mod  # dataclasses look their module up while being built
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="HEAD")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    config = load_sweep(ROOT / "studies" / "exfairs-study.toml")
    cells = [c for c in config.cells() if c.seed == 0][:: args.every]
    runs = []
    for cell in cells:
        p = _prepare(cell)
        sim = simulate(p.workload, parse_experiment(cell.experiment), p.profile, engine=p.engine,
                       policy_params=dict(cell.policy_params),
                       max_inflight=split_gate_knob(cell.engine)[1])
        runs.append((sim.records, p.workload.clients, p.window))
    with tempfile.TemporaryDirectory() as tmp:
        base = _module_at(args.base, Path(tmp))
        for recs, clients, window in runs:
            a = repr(base.compute_metrics(recs, clients, window=window))
            b = repr(current.compute_metrics(recs, clients, window=window))
            if a.replace("metrics_base.", "") != b.replace("exfairs.metrics.", ""):
                raise SystemExit(f"metrics differ from {args.base} on a cell")
        times: dict[str, list[float]] = {"base": [], "current": []}
        for _ in range(args.repeats):
            for name, mod in (("base", base), ("current", current)):
                t = time.process_time()
                for recs, clients, window in runs:
                    mod.compute_metrics(recs, clients, window=window)
                times[name].append(time.process_time() - t)
    b, c = statistics.median(times["base"]), statistics.median(times["current"])
    n_req = sum(len(r[0]) for r in runs)
    print(f"{len(runs)} cells ({n_req} records): identical metrics to {args.base}")
    print(f"compute_metrics CPU s per pass (median of {args.repeats}, alternating): "
          f"{args.base} {b:.3f}, current {c:.3f}, speed-up {b / c:.2f}x")


if __name__ == "__main__":
    main()
