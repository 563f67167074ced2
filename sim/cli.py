"""`exfairs-sim`: simulate scenarios under scheduling policies.

    exfairs-sim run SCENARIO -e ExFairS -e VTC [--seed 0] [--load 1.0] [--profile ID|FILE]
                    [--admission hopeless=reject,limit=predictive]   # gate/engine modes only
    exfairs-sim sweep [SWEEP_FILE] [--jobs N] [--out DIR]  # no arguments: the default sweep
    exfairs-sim list                     # scenarios, sweeps, datasets, experiments, profiles
    exfairs-sim compare A B [--json OUT]   # two runs (files or directories), paired differences

Bad input exits with code 2 and a one-paragraph message; Ctrl-C exits 130 keeping finished cells.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exfairs.cliutil import add_plot_format_flag, add_version_flag, run_command
from exfairs.errors import InputError
from exfairs.paths import check_output_file, check_results_dir

_log = logging.getLogger("exfairs.sim.cli")


def _engine_fields() -> list[dataclasses.Field[Any]]:
    from exfairs.sim.config import EngineConfig

    return list(dataclasses.fields(EngineConfig))


def _field_type(f: dataclasses.Field[Any]) -> type:
    hints = typing.get_type_hints(_engine_config_cls())
    t = hints.get(f.name, str)
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    if typing.get_origin(t) is typing.Literal:
        return str
    return t if isinstance(t, type) else str


def _engine_config_cls() -> type:
    from exfairs.sim.config import EngineConfig

    return EngineConfig


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "engine knobs (vLLM names; default: the profile's values)",
        "--submit-latency-s defaults to the profile's measured latency (0 where it has none); "
        "--prompt-credit (first_token), --reserve-full-prompt (on) and --hook-order (stream) "
        "default to what vLLM 0.32 and the live driver do; --prompt-credit chunk "
        "--no-reserve-full-prompt --hook-order step is the behaviour before issue 12 "
        "(exfairs.sim.config.EngineConfig)")
    for f in _engine_fields():
        t = _field_type(f)
        flag = f"--{f.name.replace('_', '-')}"
        if t is bool:  # --enable-prefix-caching / --no-enable-prefix-caching, as vLLM's CLI
            g.add_argument(flag, dest=f"engine__{f.name}", default=None,
                           action=argparse.BooleanOptionalAction)
            continue
        g.add_argument(flag, dest=f"engine__{f.name}", type=t, default=None,
                       metavar=t.__name__.upper())
    # The gate's bound travels with the engine knobs (exfairs.sim.sweep.GATE_KNOB), as in live runs.
    g.add_argument("--max-inflight", dest="engine__max_inflight", type=int, default=None,
                   metavar="INT", help="gate mode (QUEUE_*): requests released into the engine at "
                   "most (default max_num_seqs); a warning says when it exceeds the KV cache")


def _engine_overrides(ns: argparse.Namespace) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k[len("engine__"):], v) for k, v in vars(ns).items()
                        if k.startswith("engine__") and v is not None))


def _policy_params(items: Sequence[str]) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    from exfairs.policies.params import parse_param_args

    return tuple(sorted((k, tuple(sorted(v.items())))
                        for k, v in parse_param_args(items).items()))


def _add_admission_option(p: argparse.ArgumentParser, default_text: str) -> None:
    p.add_argument("--admission", default=None, metavar="SPEC",
                   help="SLO-aware admission for every experiment: comma-separated "
                        "hopeless=keep|demote|reject, "
                        "limit=off|predictive|feedback|predictive+feedback, "
                        "headroom=(0,1], feedback: backoff=(0,1), increase=N>0, min_inflight=N "
                        "(e.g. hopeless=reject,limit=predictive; 'off' for none). Gate (QUEUE_) "
                        "and engine (ENGINE_) experiments take every option, priority-mode "
                        f"ones none (default: {default_text})")


def _add_samples_option(p: argparse.ArgumentParser, default_text: str) -> None:
    from exfairs.records import SAMPLE_LAYOUTS

    p.add_argument("--policy-samples", choices=SAMPLE_LAYOUTS, default=None,
                   help="policy samples (every 1 s of simulated time) in the results: sparse = "
                        "the clients heard from by each sample time, dense = every registered "
                        "client, off = none; records and metrics are the same "
                        f"(default: {default_text})")


def _admission(spec: str | None) -> Any:
    """The AdmissionConfig of ``--admission SPEC`` (None: not given); InputError naming it."""
    from exfairs.policies.admission import AdmissionConfig

    if spec is None:
        return None
    try:
        return AdmissionConfig.parse(spec)
    except InputError as exc:
        raise exc.with_source("--admission") from None


def _add_horizon_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration", type=float, default=None, metavar="S",
                   help="arrival horizon in seconds instead of the scenario's duration_s (its "
                        "warm-up and cool-down unchanged)")
    g.add_argument("--num-prompts", type=int, default=None, metavar="N",
                   help="serve exactly N requests (the first N arrivals; warm-up and cool-down "
                        "keep their share of the horizon), as vllm bench serve --num-prompts")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exfairs-sim",
        description="Simulate multi-tenant LLM serving on a vLLM-V1 engine model under "
                    "scheduling policies, and compare SLO attainment and fairness.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    add_version_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{run,sweep,list,compare}")

    run = sub.add_parser("run", help="one scenario, one or more experiments",
                         description="Simulate one scenario under each experiment (policy + mode) "
                                     "with one seed and load; write results, plots and a table.")
    run.add_argument("scenario", help="bundled scenario name or a scenario TOML file")
    run.add_argument("-e", "--experiment", action="append", dest="experiments",
                     help="experiment name, repeatable (e.g. ExFairS, QUEUE_VTC); "
                          "default: FCFS VTC ExFairS")
    run.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    run.add_argument("--load", type=float, default=1.0,
                     help="load factor: scales every client's rate (default 1.0)")
    run.add_argument("--profile", default="a100-llama2-7b",
                     help="calibration profile id or file (default a100-llama2-7b)")
    run.add_argument("--out", type=Path, default=Path("results/run"), help="output directory")
    run.add_argument("--jobs", type=int, default=1, help="parallel processes (default 1)")
    run.add_argument("--policy-param", action="append", default=[], metavar="POLICY.PARAM=VALUE",
                     help="policy parameter, repeatable (e.g. ExFairS.alpha=0.5)")
    _add_admission_option(run, "off")
    _add_samples_option(run, "sparse")
    _add_horizon_options(run)
    run.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                     help="write the plots (default: yes)")
    add_plot_format_flag(run)
    _add_engine_options(run)

    sw = sub.add_parser("sweep", help="a grid of scenarios × experiments × seeds × loads",
                        description="Run a sweep in parallel processes: one results file per "
                                    "cell, a summary (CSV and table, mean and 95%% CI over seeds) "
                                    "and aggregated plots. Finished cells are reused on rerun.")
    sw.add_argument("sweep", nargs="?", default="default",
                    help="sweep TOML file or bundled sweep name (default: the bundled default)")
    sw.add_argument("--scenario", action="append", dest="scenarios", help="override: scenarios")
    sw.add_argument("-e", "--experiment", action="append", dest="experiments",
                    help="override: experiments")
    sw.add_argument("--seeds", type=int, nargs="+", help="override: seeds")
    sw.add_argument("--loads", type=float, nargs="+", dest="load_factors",
                    help="override: load factors")
    sw.add_argument("--profile", help="override: calibration profile id or file")
    sw.add_argument("--jobs", type=int, default=None,
                    help="parallel processes (default: number of CPUs)")
    sw.add_argument("--out", type=Path, default=None,
                    help="output directory (default results/<sweep name>)")
    sw.add_argument("--force", action=argparse.BooleanOptionalAction, default=False,
                    help="recompute cells already done (default: reuse them)")
    sw.add_argument("--executor", choices=("process", "dask"), default="process",
                    help="process pool (default) or Dask (needs the 'dist' extra)")
    sw.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                    help="with --executor dask: an existing Dask scheduler (default: a local "
                         "cluster of --jobs workers)")
    _add_horizon_options(sw)
    sw.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                    help="write the plots (default: yes)")
    add_plot_format_flag(sw)
    sw.add_argument("--policy-param", action="append", default=[], metavar="POLICY.PARAM=VALUE",
                    help="policy parameter, repeatable")
    _add_admission_option(sw, "the sweep file's [admission] table, else off")
    _add_samples_option(sw, "the sweep file's policy_samples, else sparse")
    _add_engine_options(sw)

    sub.add_parser("list", help="bundled scenarios, sweeps, datasets, experiment names and "
                                "profiles")

    cmp_ = sub.add_parser(
        "compare", help="two runs or sets of runs side by side, with paired differences",
        description="Pair the runs of A and B by (scenario, load factor, seed) and show every "
                    "headline metric of both with the mean paired difference B - A and its 95%% "
                    "interval (Student t over the pairs). A and B are results files or "
                    "directories of them (simulated or live).")
    cmp_.add_argument("a", type=Path, metavar="A", help="results file or directory")
    cmp_.add_argument("b", type=Path, metavar="B", help="results file or directory")
    cmp_.add_argument("--json", type=Path, default=None, metavar="OUT",
                      help="also write the comparison as JSON to OUT")
    rep = sub.add_parser(
        "report", help="one self-contained HTML report of runs (tables and inline SVG figures)",
        description="Write one HTML file with the summary table (mean and 95%% interval over "
                    "seeds), the per-client table and the figures (aggregated lines against load; "
                    "per scenario and load the lowest seed's fairness figure) inline as SVG.")
    rep.add_argument("dirs", type=Path, nargs="+", metavar="DIR",
                     help="results file or directory of them (simulated or live)")
    rep.add_argument("--html", type=Path, required=True, metavar="OUT", help="the HTML file")
    rep.add_argument("--no-figures", action="store_true", help="tables only (fast)")
    return parser


def _cmd_report(ns: argparse.Namespace) -> int:
    from exfairs.report import write_html_report

    for path in ns.dirs:
        if not path.exists():
            raise InputError("no such file or directory", field="DIR", value=str(path))
    check_output_file(ns.html, field="--html")
    out = write_html_report(ns.dirs, ns.html, figures=not ns.no_figures)
    sys.stdout.write(f"report: {out}\n")
    return 0


def _progress(label: str) -> Any:
    from exfairs.progress import CellProgress

    return CellProgress(label, sys.stderr)


def _finish(config: Any, run: Any, out_dir: Path, plots: bool,
            formats: Sequence[str] | None = None) -> None:
    from exfairs.plots import DEFAULT_FORMATS, plot_aggregated, plot_fairness, plot_performance
    from exfairs.results import read_result
    from exfairs.summary import format_table, summarize, write_summary_csv

    rows = summarize(run.light_results())
    write_summary_csv(rows, out_dir / "summary.csv")
    sys.stdout.write(format_table(rows) + "\n")
    made: list[Path] = []
    if plots:
        plot_dir = out_dir / "plots"
        fmt = tuple(formats or DEFAULT_FORMATS)
        made += plot_aggregated(rows, plot_dir, formats=fmt)
        # Per-run plots for the first seed at each (scenario, load): all experiments side by side.
        first_seed = min(config.seeds)
        groups: dict[tuple[str, float], list[Any]] = {}
        for o in run.outcomes:
            if o.cell.seed == first_seed:
                r = read_result(o.path)
                groups.setdefault((r.info.scenario, r.info.load_factor), []).append(r)
        for (scen, load), group in sorted(groups.items()):
            sub_dir = plot_dir / f"{scen}__load{load:g}"
            made += plot_performance(group, sub_dir, formats=fmt)
            made += plot_fairness(group, sub_dir, formats=fmt)
    sys.stdout.write(
        f"\n{len(run.outcomes)} results in {out_dir}/, summary in {out_dir / 'summary.csv'}"
        + (f", {len(made)} plot files in {out_dir / 'plots'}/" if plots else "") + "\n")


def _cmd_run(ns: argparse.Namespace) -> int:
    from exfairs.policies.admission import AdmissionConfig
    from exfairs.records import DEFAULT_SAMPLE_LAYOUT
    from exfairs.sim.sweep import SweepConfig, run_sweep

    config = SweepConfig(
        name="run", scenarios=(ns.scenario,),
        experiments=tuple(ns.experiments or ("FCFS", "VTC", "ExFairS")),
        seeds=(ns.seed,), load_factors=(ns.load,), profile=ns.profile,
        engine=_engine_overrides(ns), policy_params=_policy_params(ns.policy_param),
        duration_s=ns.duration, num_prompts=ns.num_prompts,
        admission=_admission(ns.admission) or AdmissionConfig(),
        policy_samples=ns.policy_samples or DEFAULT_SAMPLE_LAYOUT)
    config.cells()  # experiment names and their modes against --admission, before any output
    if ns.jobs < 1:
        raise InputError("must be ≥ 1", field="--jobs", value=ns.jobs)
    check_results_dir(ns.out)
    # Summary and plots are written while run_sweep still holds the directory's lock.
    run_sweep(config, ns.out, jobs=ns.jobs, force=True, progress=_progress("run"),
              on_done=lambda run: _finish(config, run, ns.out, plots=ns.plots,
                                          formats=ns.plot_formats))
    return 0


def _cmd_sweep(ns: argparse.Namespace) -> int:
    import os

    from exfairs.sim.sweep import load_sweep, override, run_sweep

    config = load_sweep(ns.sweep)
    changes: dict[str, Any] = {
        "scenarios": tuple(ns.scenarios) if ns.scenarios else None,
        "experiments": tuple(ns.experiments) if ns.experiments else None,
        "seeds": tuple(ns.seeds) if ns.seeds else None,
        "load_factors": tuple(ns.load_factors) if ns.load_factors else None,
        "profile": ns.profile,
        "duration_s": ns.duration,
        "num_prompts": ns.num_prompts,
        "admission": _admission(ns.admission),
        "policy_samples": ns.policy_samples,
    }
    knobs = _engine_overrides(ns)
    if knobs:
        changes["engine"] = tuple(sorted({**dict(config.engine), **dict(knobs)}.items()))
    if ns.policy_param:
        merged = {k: dict(v) for k, v in config.policy_params}
        for k, v in _policy_params(ns.policy_param):
            merged.setdefault(k, {}).update(dict(v))
        changes["policy_params"] = tuple(sorted((k, tuple(sorted(v.items())))
                                                for k, v in merged.items()))
    config = override(config, changes)
    jobs = ns.jobs if ns.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise InputError("must be ≥ 1", field="--jobs", value=jobs)
    out_dir = ns.out if ns.out is not None else Path("results") / config.name
    check_results_dir(out_dir)
    n = len(config.cells())
    sys.stderr.write(f"sweep {config.name!r}: {n} cells, {jobs} process(es) → {out_dir}/\n")
    if ns.scheduler is not None and ns.executor != "dask":
        raise InputError("--scheduler needs --executor dask", field="--scheduler",
                         value=ns.scheduler)

    def done(run: Any) -> None:  # called while run_sweep still holds the directory's lock
        skipped = sum(o.skipped for o in run.outcomes)
        if skipped:
            sys.stderr.write(f"{skipped} cell(s) already done were reused (--force recomputes)\n")
        _finish(config, run, out_dir, plots=ns.plots, formats=ns.plot_formats)

    run_sweep(config, out_dir, jobs=jobs, force=ns.force, progress=_progress("sweep"),
              executor=ns.executor, scheduler=ns.scheduler, on_done=done)
    return 0


def _cmd_list() -> int:
    from exfairs.calibration.profile import bundled_profile_ids
    from exfairs.datasets import bundled_datasets
    from exfairs.policies import experiment_names
    from exfairs.scenario import bundled_scenarios
    from exfairs.sim.sweep import bundled_sweeps

    sys.stdout.write("scenarios:   " + " ".join(bundled_scenarios()) + "\n")
    sys.stdout.write("sweeps:      " + " ".join(bundled_sweeps()) + "\n")
    sys.stdout.write("datasets:    " + " ".join(bundled_datasets()) + "\n")
    sys.stdout.write("experiments: " + " ".join(experiment_names()) + "\n")
    sys.stdout.write("profiles:    " + " ".join(bundled_profile_ids()) + "\n")
    return 0


def _cmd_compare(ns: argparse.Namespace) -> int:
    from exfairs.compare import compare, format_comparison, write_comparison_json
    from exfairs.results import read_results

    for name, path in (("A", ns.a), ("B", ns.b)):
        if not path.exists():
            raise InputError("no such file or directory", field=name, value=str(path))
    if ns.json is not None:
        check_output_file(ns.json, field="--json")
    comparisons = compare(read_results([ns.a], records=False),
                          read_results([ns.b], records=False))
    sys.stdout.write(format_comparison(comparisons))
    if ns.json is not None:
        write_comparison_json(comparisons, ns.json)
        sys.stdout.write(f"comparison JSON: {ns.json}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `exfairs-sim`; returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    parser = _build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(ns.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    commands = {"run": _cmd_run, "sweep": _cmd_sweep, "compare": _cmd_compare,
                "report": _cmd_report}

    def body() -> int:
        command = commands.get(ns.command)
        return command(ns) if command is not None else _cmd_list()

    return run_command("exfairs-sim", body,
                       interrupted="interrupted; every finished cell's results file is kept")


if __name__ == "__main__":
    raise SystemExit(main())
