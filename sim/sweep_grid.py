"""A sweep's grid and its cells: `SweepConfig` (scenarios × experiments × seeds × load factors,
profile, engine knobs, policy parameters, admission) and `Cell`, one simulation of it, whose
`Cell.key` names its results file by everything that determines the result (`exfairs.identity`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from exfairs import __version__
from exfairs.errors import InputError
from exfairs.policies.admission import AdmissionConfig
from exfairs.records import DEFAULT_SAMPLE_LAYOUT, check_sample_layout
from exfairs.rng import MAX_SEED

Scalar = int | float | str | bool
Knobs = tuple[tuple[str, Scalar], ...]


@dataclass(frozen=True, slots=True)
class Cell:
    """One simulation of a sweep."""

    scenario: str
    experiment: str
    seed: int
    load_factor: float
    profile: str
    engine: Knobs = ()
    policy_params: Knobs = ()
    #: `exfairs.sim.prepare.prepare_run`'s arrival horizon / request count (None: the scenario's).
    duration_s: float | None = None
    num_prompts: int | None = None
    #: SLO-aware admission and hopeless-request handling (`simulate(admission=...)`); the
    #: default is inactive (the gate as without admission).
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    #: `simulate(policy_samples=...)`: "sparse" (default), "dense" or "off"
    #: (`exfairs.records.SAMPLE_LAYOUTS`).
    policy_samples: str = DEFAULT_SAMPLE_LAYOUT

    def key(self) -> str:
        """Hash of everything that determines the cell's result (`exfairs.identity`): scenario
        and referenced traces by content, profile by content, knobs, package version, the
        source of the code that computes results and the versions of Python and the libraries
        that compute them (`exfairs.identity.dependency_identity`)."""
        from exfairs.identity import (
            dependency_identity,
            profile_identity,
            scenario_identity,
            source_identity,
        )
        from exfairs.policies.experiments import parse_experiment

        try:
            policy: str | None = parse_experiment(self.experiment).policy
        except Exception:  # an unknown name fails when the cell runs
            policy = None
        doc = {
            "scenario": scenario_identity(self.scenario),
            "experiment": self.experiment,
            "seed": self.seed,
            "load_factor": self.load_factor,
            "profile": profile_identity(self.profile),
            "engine": sorted(self.engine),
            "policy_params": sorted(self.policy_params),
            "version": __version__,
            "source": source_identity(policy),
            "dependencies": dependency_identity(),
        }
        # Only when set, so that the keys of cells without them are unchanged.
        if self.duration_s is not None:
            doc["duration_s"] = self.duration_s
        if self.num_prompts is not None:
            doc["num_prompts"] = self.num_prompts
        if self.admission.active:
            doc["admission"] = self.admission.label
        # The layout changes the stored samples (never the records): a dense or sample-free
        # cell must not be reused for the default. Old dense-default cells differ in `source`.
        if self.policy_samples != DEFAULT_SAMPLE_LAYOUT:
            doc["policy_samples"] = self.policy_samples
        blob = json.dumps(doc, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def file_name(self) -> str:
        """Results file name: readable prefix plus the configuration hash."""
        scen = Path(self.scenario).stem if self.scenario.endswith(".toml") else self.scenario
        stem = f"{scen}__{self.experiment}__load{self.load_factor:g}__seed{self.seed}"
        return f"{stem}__{self.key()}.json"


@dataclass(frozen=True, slots=True)
class SweepConfig:
    """A sweep: the grid and where to put its results.

    `engine` overrides the profile's engine knobs (vLLM names); `policy_params` maps a policy name
    to its constructor parameters; `admission` applies to every cell (an active one needs gate
    or engine mode experiments, `simulate`'s rules; checked by `cells`); `policy_samples` is
    every cell's sample layout (`exfairs.records.SAMPLE_LAYOUTS`). `source` names the
    sweep file the values came from (None once anything is overridden): errors found when the
    inputs are checked name it.
    """

    name: str = "sweep"
    scenarios: tuple[str, ...] = ("default",)
    experiments: tuple[str, ...] = ("FCFS",)
    seeds: tuple[int, ...] = (0,)
    load_factors: tuple[float, ...] = (1.0,)
    profile: str = "a100-llama2-7b"
    engine: Knobs = ()
    policy_params: tuple[tuple[str, Knobs], ...] = ()
    source: str | None = field(default=None, compare=False)
    #: Every cell's arrival horizon (seconds) or request count instead of the scenario's horizon
    #: (`exfairs-sim --duration / --num-prompts`); None: the scenario's own.
    duration_s: float | None = None
    num_prompts: int | None = None
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    policy_samples: str = DEFAULT_SAMPLE_LAYOUT

    def __post_init__(self) -> None:
        check_sample_layout(self.policy_samples)
        for fname in ("scenarios", "experiments", "seeds", "load_factors"):
            if not getattr(self, fname):
                raise InputError("must list at least one value", field=fname, value=[])
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
                raise InputError(f"seeds must be integers in [0, {MAX_SEED}]", field="seeds",
                                 value=s)
        for lf in self.load_factors:
            # Range first: math.isfinite raises OverflowError on an int beyond float range.
            if isinstance(lf, bool) or not isinstance(lf, (int, float)) or not 0 < lf <= 100 \
                    or not math.isfinite(lf):
                raise InputError("load factors must be numbers in (0, 100]", field="load_factors",
                                 value=lf)
        if self.duration_s is not None and self.num_prompts is not None:
            raise InputError("give --duration or --num-prompts, not both", field="--num-prompts",
                             value=self.num_prompts)
        if self.duration_s is not None and (
                isinstance(self.duration_s, bool) or not isinstance(self.duration_s, (int, float))
                or not 0 < self.duration_s <= 1e7 or not math.isfinite(self.duration_s)):
            raise InputError("must be a number of seconds in (0, 1e7]", field="--duration",
                             value=self.duration_s)
        if self.num_prompts is not None and (
                isinstance(self.num_prompts, bool) or not isinstance(self.num_prompts, int)
                or not 1 <= self.num_prompts <= 5_000_000):
            raise InputError("must be an integer in [1, 5000000]", field="--num-prompts",
                             value=self.num_prompts)

    def cells(self) -> list[Cell]:
        """Every cell of the grid, in a fixed order."""
        from exfairs.policies import parse_experiment

        params = {k.upper(): v for k, v in self.policy_params}
        out: list[Cell] = []
        for scen in self.scenarios:
            for exp_name in self.experiments:
                exp = parse_experiment(exp_name)
                _check_admission(self.admission, exp)
                for lf in self.load_factors:
                    for seed in self.seeds:
                        out.append(Cell(scen, exp.name, seed, float(lf), self.profile, self.engine,
                                        params.get(exp.policy.upper(), ()),
                                        duration_s=self.duration_s,
                                        num_prompts=self.num_prompts,
                                        admission=self.admission,
                                        policy_samples=self.policy_samples))
        return out


def _check_admission(admission: AdmissionConfig, exp: Any) -> None:
    """`simulate`'s mode rules for admission (`admission_refusal`), checked before any cell
    runs."""
    from exfairs.policies.admission import admission_refusal

    refusal = admission_refusal(exp.mode, admission)
    if refusal == "priority_mode":
        raise InputError(f"experiment {exp.name} is in priority mode, which takes no admission "
                         "options: use QUEUE_ (gate) or ENGINE_ experiments",
                         field="admission", value=admission.label)
    if refusal == "engine_feedback":
        raise InputError(f"experiment {exp.name} is in engine mode, which takes hopeless=... and "
                         "limit=predictive, not the feedback limit (it learns from a gate's "
                         "releases): use QUEUE_ experiments", field="admission",
                         value=admission.label)


def override(config: SweepConfig, changes: Mapping[str, Any]) -> SweepConfig:
    """`config` with the given fields replaced (CLI arguments over a sweep file); None values
    are ignored. A changed config no longer comes from its file alone: its `source` is cleared."""
    given = {k: v for k, v in changes.items() if v is not None}
    return replace(config, **given, source=None) if given else config
