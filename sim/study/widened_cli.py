"""The widened study's command line (studies/run_widened.py is a thin wrapper around `main`):
run every sweep of the spec, then write the document."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from exfairs.atomic import atomic_write_text
from exfairs.errors import InputError
from exfairs.sim.study.widened import load_widened, run_widened
from exfairs.sim.study.widened_doc import build_widened_document

#: The spec file the document names (in the repository's studies/ folder).
WIDENED_SPEC_NAME = "exfairs-widened.toml"


def _parser(root: Path) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_widened.py", description="Run the widened ExFairS study (issue 15) and write "
        "docs/results-widened.md from its results.")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--out", type=Path, default=root / "results" / "exfairs-widened",
                   help="results directory (default results/exfairs-widened); one folder per "
                        "regime and arm")
    p.add_argument("--force", action="store_true",
                   help="recompute every cell (cells are keyed by configuration, version and "
                        "the results-computing source; --force also redoes unchanged ones)")
    p.add_argument("--seeds", type=int, nargs="+", help="override the spec's seeds")
    p.add_argument("--loads", type=float, nargs="+",
                   help="override the spec's load factors (a partial study)")
    p.add_argument("--scenarios", nargs="+",
                   help="run only these scenarios of the spec, by name (a partial study)")
    p.add_argument("--regimes", nargs="+",
                   help="run and document only these regimes of the spec (a partial study: "
                        "the document names the regimes it has)")
    p.add_argument("--spec", type=Path, default=root / "studies" / WIDENED_SPEC_NAME,
                   help="the widened-study spec file")
    p.add_argument("--doc", type=Path, default=root / "docs" / "results-widened.md",
                   help="the document to write (default docs/results-widened.md)")
    return p


def main(argv: Sequence[str] | None, *, root: Path, explanation: str = "") -> int:
    """Run the sweeps and write the document; returns the exit code (2 on bad input)."""
    ns = _parser(root).parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    report = sys.stderr.write
    try:
        if ns.jobs < 1:
            raise InputError("must be ≥ 1", field="--jobs", value=ns.jobs)
        t0 = time.perf_counter()
        spec = load_widened(ns.spec)
        if ns.seeds:
            spec = replace(spec, seeds=tuple(ns.seeds))
        if ns.loads:
            spec = replace(spec, load_factors=tuple(ns.loads), target_loads=tuple(
                x for x in spec.target_loads if x in ns.loads))
        if ns.scenarios:
            by_name = dict(zip(spec.scenario_names, spec.scenarios, strict=True))
            for name in ns.scenarios:
                if name not in by_name:
                    raise InputError(f"must name a scenario of the spec ({', '.join(by_name)})",
                                     field="--scenarios", value=name)
            spec = replace(spec, scenario_names=tuple(ns.scenarios),
                           scenarios=tuple(by_name[n] for n in ns.scenarios),
                           held_out=tuple(h for h in spec.held_out if h in ns.scenarios))
        if ns.regimes:
            known = dict(spec.regimes)
            for r in ns.regimes:
                if r not in known:
                    raise InputError(f"must name a regime of the spec ({', '.join(known)})",
                                     field="--regimes", value=r)
            spec = replace(spec, regimes=tuple((r, known[r]) for r in ns.regimes))
        for *_, sweep in spec.sweeps():
            sweep.cells()  # the overrides' range checks
        report(f"widened study {spec.name!r}: {spec.n_cells()} simulations\n")
        data = run_widened(spec, ns.out, jobs=ns.jobs, force=ns.force, report=report)
        command = f"python studies/run_widened.py --jobs {ns.jobs}" + (
            " --seeds " + " ".join(str(s) for s in ns.seeds) if ns.seeds else "") + (
            " --regimes " + " ".join(ns.regimes) if ns.regimes else "") + (
            " --scenarios " + " ".join(ns.scenarios) if ns.scenarios else "") + (
            " --loads " + " ".join(f"{x:g}" for x in ns.loads) if ns.loads else "")
        doc = build_widened_document(data, command=command, explanation=explanation)
        ns.doc.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(ns.doc, doc)
        report(f"wrote {ns.doc} in {time.perf_counter() - t0:.0f} s\n")
        return 0
    except InputError as exc:
        report(f"run_widened.py: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        report("\nrun_widened.py: interrupted; finished cells are kept\n")
        return 130
