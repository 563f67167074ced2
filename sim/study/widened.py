"""The widened study (issue 15, items 5-6): a spec file (`load_widened`) that expands into one
sweep per (engine regime, arm or ablation variant) — admission and policy parameters are
per-sweep settings — and the collected results (`WideData`), keyed by regime, scenario, load and
an experiment *label* that names the admission and the changed parameters.

Spec file (TOML, e.g. studies/exfairs-widened.toml)::

    name, description, scenarios (bundled names or paths relative to the file), held_out
    (scenario names), seeds, load_factors, profile, target_regime, target_loads
    [regimes.NAME]          engine knobs of one regime (empty: the profile's own)
    [[arms]]                name, experiments, admission = {hopeless, limit, headroom}
    [[ablations]]           name, arm (whose admission it takes), experiments,
                            params (ExFairS parameters changed from the defaults)

Bad input raises InputError naming the file, the field and the value.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exfairs.errors import InputError
from exfairs.paths import read_input_bytes
from exfairs.policies import Mode, parse_experiment
from exfairs.policies.admission import AdmissionConfig
from exfairs.results import RunResult
from exfairs.sim.study.data import EXFAIRS_POLICY, run_study_sweep
from exfairs.sim.sweep_file import admission_from_table
from exfairs.sim.sweep_grid import Knobs, SweepConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@dataclass(frozen=True, slots=True)
class Arm:
    """Experiments run with one admission setting; an ablation variant also changes ExFairS's
    parameters (`params`, empty for an arm)."""

    name: str
    experiments: tuple[str, ...]
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    params: Knobs = ()

    def label(self, experiment: str) -> str:
        """The experiment's label in the document: the name, then the admission and the changed
        parameters when there are any (`QUEUE_ExFairS + hopeless=reject,limit=predictive
        [alpha=1]`)."""
        out = experiment
        if self.admission.active:
            out += f" + {self.admission.label}"
        if self.params:
            out += " [" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in self.params) + "]"
        return out


@dataclass(frozen=True, slots=True)
class WidenedSpec:
    """A widened study: its grid, its regimes, arms and ablation variants (see the module
    docstring); `scenarios` are what the sweeps receive (paths resolved), `scenario_names`
    the names results carry."""

    name: str
    description: str
    scenarios: tuple[str, ...]
    scenario_names: tuple[str, ...]
    held_out: tuple[str, ...]
    seeds: tuple[int, ...]
    load_factors: tuple[float, ...]
    profile: str
    regimes: tuple[tuple[str, Knobs], ...]
    arms: tuple[Arm, ...]
    ablations: tuple[Arm, ...]
    target_regime: str
    target_loads: tuple[float, ...]
    source: str = ""

    def sweeps(self) -> list[tuple[str, Arm, bool, SweepConfig]]:
        """One (regime, arm, is_ablation, sweep) per regime and arm / ablation variant."""
        out: list[tuple[str, Arm, bool, SweepConfig]] = []
        # Regime by regime, in the spec's order (the target's regime first in the bundled spec),
        # so that `--regimes` can document a run that finished only its first regimes.
        for regime, knobs in self.regimes:
            for arm, is_abl in [(a, False) for a in self.arms] + [(a, True) for a in
                                                                  self.ablations]:
                params = (((EXFAIRS_POLICY, arm.params),) if arm.params else ())
                out.append((regime, arm, is_abl, SweepConfig(
                    name=f"{self.name}-{regime}-{arm.name}", scenarios=self.scenarios,
                    experiments=arm.experiments, seeds=self.seeds,
                    load_factors=self.load_factors, profile=self.profile, engine=knobs,
                    policy_params=params, admission=arm.admission, source=self.source)))
        return out

    def n_cells(self) -> int:
        return sum(len(s.cells()) for *_, s in self.sweeps())


def _fail(msg: str, fname: str, value: object, source: str) -> InputError:
    return InputError(msg, field=fname, value=value, source=source)


def _str_list(doc: dict[str, Any], key: str, source: str) -> tuple[str, ...]:
    v = doc.get(key)
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise _fail("must be a non-empty list of strings", key, v, source)
    return tuple(v)


def _scalar_table(v: Any, fname: str, source: str) -> Knobs:
    if not isinstance(v, dict):
        raise _fail("must be a table", fname, v, source)
    for k, x in v.items():
        if not isinstance(x, (int, float, str, bool)):
            raise _fail("must be a number, string or boolean", f"{fname}.{k}", x, source)
    return tuple(sorted(v.items()))


def _arm(t: Any, where: str, source: str, arms: dict[str, Arm] | None) -> Arm:
    if not isinstance(t, dict):
        raise _fail("must be a table", where, t, source)
    allowed = {"name", "experiments", "admission"} if arms is None else \
        {"name", "experiments", "arm", "params"}
    extra = sorted(set(t) - allowed)
    if extra:
        raise _fail(f"unknown key; expected some of {sorted(allowed)}", f"{where}.{extra[0]}",
                    t[extra[0]], source)
    name = t.get("name")
    if not isinstance(name, str) or not name.replace("-", "").replace(".", "").isalnum():
        raise _fail("must be letters, digits, '-' or '.'", f"{where}.name", name, source)
    exps = _str_list(t, "experiments", source) if "experiments" in t else ()
    if not exps:
        raise _fail("must be a non-empty list of strings", f"{where}.experiments",
                    t.get("experiments"), source)
    if arms is None:
        adm = admission_from_table(t["admission"], source) if "admission" in t \
            else AdmissionConfig()
        return Arm(name, exps, adm)
    base = t.get("arm")
    if base not in arms:
        raise _fail(f"must name an arm ({', '.join(arms)})", f"{where}.arm", base, source)
    params = _scalar_table(t.get("params", {}), f"{where}.params", source)
    if not params:
        raise _fail("must change at least one ExFairS parameter", f"{where}.params", {}, source)
    for e in exps:
        if parse_experiment(e).policy != EXFAIRS_POLICY:
            raise _fail("ablation variants change ExFairS's parameters: list ExFairS "
                        "experiments only", f"{where}.experiments", e, source)
    return Arm(name, exps, arms[str(base)].admission, params)


def widened_from_toml(text: str, source: str, base_dir: Path) -> WidenedSpec:
    """Parse a widened-study file; scenario paths are relative to `base_dir`."""
    try:
        doc = tomllib.loads(text)
    except ValueError as exc:
        raise _fail(f"not valid TOML: {' '.join(str(exc).split())}", "(file)", source,
                    source) from None
    known = {"name", "description", "scenarios", "held_out", "seeds", "load_factors", "profile",
             "regimes", "arms", "ablations", "target_regime", "target_loads"}
    extra = sorted(set(doc) - known)
    if extra:
        raise _fail(f"unknown key; expected some of {sorted(known)}", extra[0], doc[extra[0]],
                    source)
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise _fail("must be a non-empty string", "name", name, source)
    scen_in = _str_list(doc, "scenarios", source)
    scenarios = tuple(str((base_dir / s).resolve()) if s.endswith(".toml") else s
                      for s in scen_in)
    names = tuple(Path(s).stem if s.endswith(".toml") else s for s in scen_in)
    held = _str_list(doc, "held_out", source) if "held_out" in doc else ()
    for h in held:
        if h not in names:
            raise _fail("names no scenario of the study", "held_out", h, source)
    regimes_t = doc.get("regimes")
    if not isinstance(regimes_t, dict) or not regimes_t:
        raise _fail("must be a table of regimes (engine knobs each)", "regimes", regimes_t,
                    source)
    regimes = tuple((k, _scalar_table(v, f"regimes.{k}", source)) for k, v in regimes_t.items())
    arms_t = doc.get("arms")
    if not isinstance(arms_t, list) or not arms_t:
        raise _fail("must be a non-empty array of tables", "arms", arms_t, source)
    arms: dict[str, Arm] = {}
    for i, t in enumerate(arms_t):
        a = _arm(t, f"arms[{i}]", source, None)
        if a.name in arms:
            raise _fail("duplicate arm name", f"arms[{i}].name", a.name, source)
        arms[a.name] = a
    abl_t = doc.get("ablations", [])
    if not isinstance(abl_t, list):
        raise _fail("must be an array of tables", "ablations", abl_t, source)
    ablations = tuple(_arm(t, f"ablations[{i}]", source, arms) for i, t in enumerate(abl_t))
    target_regime = doc.get("target_regime", regimes[0][0])
    if target_regime not in dict(regimes):
        raise _fail("must name a regime", "target_regime", target_regime, source)
    loads = doc.get("load_factors")
    tl = doc.get("target_loads", loads)
    for fname, v in (("load_factors", loads), ("target_loads", tl)):
        if not isinstance(v, list) or not v or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise _fail("must be a non-empty list of numbers", fname, v, source)
    assert isinstance(loads, list) and isinstance(tl, list)
    if not set(tl) <= set(loads):
        raise _fail("must be among load_factors", "target_loads", tl, source)
    seeds = doc.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise _fail("must be a non-empty list of integers", "seeds", seeds, source)
    profile = doc.get("profile", "a100-llama2-7b")
    if not isinstance(profile, str):
        raise _fail("must be a string", "profile", profile, source)
    desc = doc.get("description", "")
    if not isinstance(desc, str):
        raise _fail("must be a string", "description", desc, source)
    spec = WidenedSpec(
        name=name, description=desc, scenarios=scenarios, scenario_names=names, held_out=held,
        seeds=tuple(seeds), load_factors=tuple(float(x) for x in loads), profile=profile,
        regimes=regimes, arms=tuple(arms.values()), ablations=ablations,
        target_regime=str(target_regime), target_loads=tuple(float(x) for x in tl),
        source=source)
    try:
        for *_, sweep in spec.sweeps():  # experiment names, seeds and admission rules
            sweep.cells()
    except InputError as exc:
        raise exc.with_source(source) from None
    return spec


def load_widened(path: Path) -> WidenedSpec:
    """Read and parse a widened-study file (InputError if unreadable or invalid)."""
    data = read_input_bytes(path, field="spec", what="widened-study file")
    return widened_from_toml(data.decode("utf-8"), str(path), path.parent)


@dataclass(frozen=True, slots=True)
class Variant:
    """One experiment label: its experiment, policy, mode, arm and whether it is ExFairS, an
    ablation variant, and runs with admission."""

    label: str
    experiment: str
    policy: str
    mode: Mode
    arm: str
    admitted: bool
    ablation: bool

    @property
    def is_exfairs(self) -> bool:
        return self.policy == EXFAIRS_POLICY


@dataclass(frozen=True, slots=True)
class WideData:
    """The widened study's results: per (regime, scenario, load, label) the runs by seed."""

    spec: WidenedSpec
    variants: tuple[Variant, ...]
    runs: dict[tuple[str, str, float, str], dict[int, RunResult]]

    @property
    def regimes(self) -> list[str]:
        return [r for r, _ in self.spec.regimes]

    @property
    def scenarios(self) -> list[str]:
        return list(self.spec.scenario_names)

    @property
    def loads(self) -> list[float]:
        return list(self.spec.load_factors)

    def variant(self, label: str) -> Variant:
        return next(v for v in self.variants if v.label == label)

    def main_variants(self) -> list[Variant]:
        """Every label of the arms (not the ablation variants), in the spec's order."""
        return [v for v in self.variants if not v.ablation]

    def cells(self) -> list[tuple[str, str, float]]:
        """Every (regime, scenario, load), in the spec's order."""
        return [(r, s, x) for r in self.regimes for s in self.scenarios for x in self.loads]


def variants_of(spec: WidenedSpec) -> tuple[Variant, ...]:
    out: list[Variant] = []
    for arm, abl in [(a, False) for a in spec.arms] + [(a, True) for a in spec.ablations]:
        for e in arm.experiments:
            exp = parse_experiment(e)
            out.append(Variant(arm.label(exp.name), exp.name, exp.policy, exp.mode, arm.name,
                               arm.admission.active, abl))
    return tuple(dict.fromkeys(out))


def run_widened(spec: WidenedSpec, out_dir: Path, *, jobs: int, force: bool,
                report: Callable[[str], object]) -> WideData:
    """Run (or reuse) every sweep of `spec` into OUT/REGIME/ARM and collect the results."""
    runs: dict[tuple[str, str, float, str], dict[int, RunResult]] = {}
    for regime, arm, _abl, sweep in spec.sweeps():
        data = run_study_sweep(sweep, out_dir / regime / arm.name, jobs=jobs, force=force,
                               report=report)
        for (scen, load, exp), by_seed in data.runs.items():
            runs[(regime, scen, load, arm.label(exp))] = dict(by_seed)
    return WideData(spec, variants_of(spec), runs)
