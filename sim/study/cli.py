"""The study's command line (studies/run_study.py is a thin wrapper around `main`): run the study
sweep and its before / ablation sweeps, then write the document and its figures."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from exfairs.atomic import atomic_write_text
from exfairs.errors import InputError
from exfairs.sim.study.data import run_study_sweep
from exfairs.sim.study.document import (
    ABLATION_SWEEP_NAME,
    BEFORE_SWEEP_NAME,
    STUDY_SWEEP_NAME,
    Prose,
    build_document,
)
from exfairs.sim.study.figures import make_figures
from exfairs.sim.sweep import load_sweep, override


def load_beside(script: str, filename: str, module_name: str) -> ModuleType:
    """The Python file `filename` in the folder of `script` (a path, e.g. a study script's
    ``__file__``), loaded as module `module_name`: how the study scripts read the hand-written
    prose kept beside them, outside the package."""
    spec = importlib.util.spec_from_file_location(module_name, Path(script).with_name(filename))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parser(root: Path) -> argparse.ArgumentParser:
    studies = root / "studies"
    p = argparse.ArgumentParser(
        prog="run_study.py", description="Run the ExFairS study sweeps and write docs/results.md "
        "and docs/figures/ from their results.")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--out", type=Path, default=root / "results" / "exfairs-study",
                   help="results directory (default results/exfairs-study); the before sweep "
                        "goes to OUT/before")
    p.add_argument("--force", action="store_true",
                   help="recompute every cell (needed after code changes: cells are keyed by "
                        "configuration and package version, not by source)")
    p.add_argument("--seeds", type=int, nargs="+", help="override the sweep files' seeds")
    p.add_argument("--scenarios", nargs="+", help="override the sweep files' scenarios")
    p.add_argument("--loads", type=float, nargs="+", help="override the sweep files' loads")
    p.add_argument("--sweep", type=Path, default=studies / STUDY_SWEEP_NAME,
                   help="the study sweep file")
    p.add_argument("--before", type=Path, default=studies / BEFORE_SWEEP_NAME,
                   help="the before sweep file ('none' to skip)")
    p.add_argument("--ablation", type=Path, default=studies / ABLATION_SWEEP_NAME,
                   help="the ablation sweep file ('none' to skip)")
    p.add_argument("--doc", type=Path, default=root / "docs" / "results.md",
                   help="the document to write (default docs/results.md)")
    p.add_argument("--figures", type=Path, default=root / "docs" / "figures",
                   help="figure folder (default docs/figures; its PNGs are replaced)")
    p.add_argument("--live-dir", type=Path, default=root / "benchmarks" / "results",
                   help="where the live validation reports are (validation*.md)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    return p


def _overrides(ns: argparse.Namespace) -> dict[str, object]:
    return {"seeds": tuple(ns.seeds) if ns.seeds else None,
            "scenarios": tuple(ns.scenarios) if ns.scenarios else None,
            "load_factors": tuple(ns.loads) if ns.loads else None}


def _command(ns: argparse.Namespace) -> str:
    """The command line the document prints to reproduce it (paths left out: the defaults)."""
    parts = ["python studies/run_study.py", f"--jobs {ns.jobs}"]
    if ns.seeds:
        parts.append("--seeds " + " ".join(str(s) for s in ns.seeds))
    if ns.scenarios:
        parts.append("--scenarios " + " ".join(ns.scenarios))
    if ns.loads:
        parts.append("--loads " + " ".join(f"{x:g}" for x in ns.loads))
    return " ".join(parts)


def main(argv: Sequence[str] | None, *, root: Path, prose_loader: Callable[[], Prose]) -> int:
    """Run the sweeps and write the document; returns the exit code (2 on bad input).

    `root` is the repository the default paths are relative to; `prose_loader` gives the
    hand-written paragraphs (called once, after the sweeps)."""
    ns = _parser(root).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = sys.stderr.write
    try:
        if ns.jobs < 1:
            raise InputError("must be ≥ 1", field="--jobs", value=ns.jobs)
        t0 = time.perf_counter()
        config = override(load_sweep(ns.sweep), _overrides(ns))
        data = run_study_sweep(config, ns.out, jobs=ns.jobs, force=ns.force, report=report)
        before = None
        if str(ns.before).lower() != "none":
            bconf = override(load_sweep(ns.before), _overrides(ns))
            before = run_study_sweep(bconf, ns.out / "before", jobs=ns.jobs, force=ns.force,
                                     report=report)
        ablation = None
        if str(ns.ablation).lower() != "none":
            aconf = override(load_sweep(ns.ablation), _overrides(ns))
            ablation = run_study_sweep(aconf, ns.out / "ablation", jobs=ns.jobs, force=ns.force,
                                       report=report)
        figs = [] if ns.no_figures else make_figures(data, before, ns.figures, jobs=ns.jobs)
        prose = prose_loader()
        doc = build_document(data, before, ablation=ablation, doc_path=ns.doc, fig_paths=figs,
                             live_dir=ns.live_dir, prose=prose, command=_command(ns))
        ns.doc.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(ns.doc, doc)
        size = sum(p.stat().st_size for p in figs)
        report(f"wrote {ns.doc} and {len(figs)} figures ({size / 1e6:.1f} MB) in "
               f"{time.perf_counter() - t0:.0f} s\n")
        return 0
    except InputError as exc:
        report(f"run_study.py: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        report("\nrun_study.py: interrupted; finished cells are kept\n")
        return 130
