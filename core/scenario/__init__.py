"""Scenarios: who sends what, how often, under which SLOs (docs/design.md §6).

A scenario is a list of clients, each with a rate, an arrival process, prompt and output length
distributions, a weight and SLOs, plus the arrival horizon and the measured window. It is pure data:
`exfairs.workload.draw_workload` turns it into requests. Scenarios ship as TOML files
(``exfairs-sim list`` shows the bundled ones); the file format, field by field::

    name = "my-scenario"            # default: the file's stem
    description = "..."
    duration_s = 300                # arrivals are drawn in [0, duration_s)
    warmup_s = 30                   # metrics count arrivals in [warmup_s, duration_s − cooldown_s]
    cooldown_s = 30
    rate_basis = "capacity"         # "absolute" (default): rate_per_min × load factor;
                                    # "capacity": rates are proportions; the total rate is
                                    # load factor × the engine's estimated capacity
    load_factors = [0.8, 1.0, 1.2]  # the loads the scenario is meant for (sweeps may use them)

    [classes.short]                 # length distributions of a prompt class (short / long / mix);
    prompt = {kind = "lognormal", mean = 300, sigma = 1.1, cap = 1792}   # classes not given
    output = {kind = "lognormal", mean = 150, sigma = 0.8, cap = 256}    # use DEFAULT_CLASSES

    [[clients]]
    name = "alice"                  # letters, digits, '_', '-', '.'; unique
    prompt_class = "short"
    rate_per_min = 32
    weight = 1.0                    # fair-share weight (VTC, ExFairS)
    arrival = {process = "poisson"} # or {process = "gamma", cv2 = 4} (CV² of the gaps; or
                                    # shape = 0.25: the gamma shape 1/cv2, vllm bench serve's
                                    # burstiness; the old key burstiness reads as cv2),
                                    # {process = "deterministic"}, or
                                    # {process = "trace", trace = "azure-conv", start_row = 0}
    prompt = {kind = "fixed", tokens = 512}      # optional; overrides the class's
    output = {kind = "uniform", low = 16, high = 256}
    slo = {e2e = {scale = 10}, ttft = {seconds = 2.0}}   # any of e2e / ttft / tpot

Length distributions (`kind`): ``fixed`` {tokens}, ``uniform`` {low, high} (inclusive),
``lognormal`` {mean, sigma, cap, min} (`mean` of the uncapped distribution in tokens, `sigma` of
its logarithm; draws are rounded and clipped to [min, cap]), ``empirical`` {trace, column =
"input" | "output", cap} (resampled from a trace column), ``mixture`` {components = [{weight, kind,
...}, ...]}. Trace references name a bundled trace (``azure-conv``, ``azure-code``) or a file,
relative to the scenario file; generic traces add `timestamp`, `input`, `output`, `time_unit`
and `format` keys naming their columns (`exfairs.traces.TraceColumns`).

An SLO given as ``{scale = K}`` is K × the request's own unloaded latency on the profile in use
(`LatencyModel`: unloaded_e2e_s / unloaded_ttft_s / unloaded_tpot_s), so one scenario is meaningful
on a GPU profile and on the CPU tiny model alike; ``{seconds = X}`` is absolute.

The package's modules: `exfairs.scenario.lengths` and `exfairs.scenario.arrivals` (registries of
length distributions and arrival processes: one class per file, found by module discovery, entry
points ``exfairs.lengths`` / ``exfairs.arrivals`` for third parties), `.slos` (SLO targets),
`.model` (ClientSpec, Scenario, prompt-class defaults), `.table` (the TOML field reader) and
`.reader` (scenario_from_toml, load_scenario). Every name is importable from `exfairs.scenario`.

Every error is an `InputError` naming the file, the field path (``clients[2].slo.e2e.scale``) and
the value. Unknown keys, non-finite, negative and absurdly large values are rejected.
"""

from __future__ import annotations

from exfairs.scenario.arrivals import (
    ArrivalProcess,
    arrival_class,
    available_arrivals,
    register_arrival,
)
from exfairs.scenario.arrivals.deterministic import DeterministicArrivals
from exfairs.scenario.arrivals.gamma import GammaArrivals
from exfairs.scenario.arrivals.poisson import PoissonArrivals
from exfairs.scenario.arrivals.trace import TraceArrivals
from exfairs.scenario.checks import (
    MAX_CLIENTS,
    MAX_CV2,
    MAX_LOAD_FACTOR,
    MAX_RATE_PER_MIN,
    MAX_SCALE,
    MAX_SECONDS,
    MAX_TOKENS,
    MAX_WEIGHT,
)
from exfairs.scenario.lengths import (
    LengthDist,
    available_lengths,
    length_class,
    register_length,
)
from exfairs.scenario.lengths.empirical import EmpiricalLength
from exfairs.scenario.lengths.fixed import FixedLength
from exfairs.scenario.lengths.lognormal import LognormalLength
from exfairs.scenario.lengths.mixture import MixtureLength
from exfairs.scenario.lengths.uniform import UniformLength
from exfairs.scenario.model import (
    DEFAULT_CLASSES,
    DEFAULT_OUTPUT,
    LONG_PROMPT,
    PROMPT_CLASSES,
    RATE_BASES,
    SHORT_PROMPT,
    ClientSpec,
    PromptClass,
    RateBasis,
    Scenario,
    dataset_lengths,
    scale_for_seconds,
    with_clients,
)
from exfairs.scenario.reader import (
    bundled_scenarios,
    load_scenario,
    scenario_from_dict,
    scenario_from_toml,
)
from exfairs.scenario.slos import SloSpec, SloTarget

__all__ = [
    "DEFAULT_CLASSES", "DEFAULT_OUTPUT", "LONG_PROMPT", "MAX_CLIENTS", "MAX_CV2",
    "MAX_LOAD_FACTOR", "MAX_RATE_PER_MIN", "MAX_SCALE", "MAX_SECONDS", "MAX_TOKENS", "MAX_WEIGHT",
    "PROMPT_CLASSES", "RATE_BASES", "SHORT_PROMPT", "ArrivalProcess", "ClientSpec",
    "DeterministicArrivals", "EmpiricalLength", "FixedLength", "GammaArrivals", "LengthDist",
    "LognormalLength", "MixtureLength", "PoissonArrivals", "PromptClass", "RateBasis", "Scenario",
    "SloSpec", "SloTarget", "TraceArrivals", "UniformLength", "arrival_class",
    "available_arrivals", "available_lengths", "bundled_scenarios", "dataset_lengths",
    "length_class", "load_scenario", "register_arrival", "register_length", "scale_for_seconds",
    "scenario_from_dict", "scenario_from_toml", "with_clients",
]
