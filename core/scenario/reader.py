"""Reading scenarios from TOML files and bundled names (the format: `exfairs.scenario`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from exfairs.dataset_spec import dataset_spec_from_dict
from exfairs.errors import InputError
from exfairs.paths import read_input_bytes
from exfairs.scenario.arrivals import read_arrival
from exfairs.scenario.arrivals.poisson import PoissonArrivals
from exfairs.scenario.lengths import LengthDist, read_length
from exfairs.scenario.model import (
    DEFAULT_CLASSES,
    PROMPT_CLASSES,
    RATE_BASES,
    ClientSpec,
    Scenario,
    dataset_lengths,
)
from exfairs.scenario.slos import SloSpec, SloTarget
from exfairs.scenario.table import ReadContext, Table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


def _slo(t: Table) -> SloSpec:
    targets: dict[str, SloTarget] = {}
    for kind in ("e2e", "ttft", "tpot"):
        sub = t.table(kind)
        if sub is None:
            continue
        secs = sub.number("seconds", None)
        scale = sub.number("scale", None)
        secs = None if secs is None else float(secs)
        scale = None if scale is None else float(scale)
        sub.close()
        targets[kind] = sub.build(SloTarget, seconds=secs, scale=scale)
    t.close()
    return SloSpec(**targets)


def _classes(doc: Table, ctx: ReadContext) -> dict[str, tuple[LengthDist, LengthDist]]:
    out = dict(DEFAULT_CLASSES)
    t = doc.table("classes")
    if t is None:
        return out
    for name in list(t.data):
        if name not in PROMPT_CLASSES:
            raise t.error(name, "unknown prompt class (expected one of "
                          f"{', '.join(PROMPT_CLASSES)})", t.data[name])
        c = t.table(name)
        assert c is not None
        prompt_t, output_t = c.table("prompt"), c.table("output")
        c.close()
        default_p, default_o = out[name]
        out[name] = (read_length(prompt_t, ctx) if prompt_t else default_p,
                     read_length(output_t, ctx) if output_t else default_o)
    t.close()
    return out


def _client(t: Table, classes: Mapping[str, tuple[LengthDist, LengthDist]],
            ctx: ReadContext) -> ClientSpec:
    name = t.string("name")
    pclass = t.string("prompt_class", "mix", choices=PROMPT_CLASSES)
    rate = float(t.number("rate_per_min"))
    weight = float(t.number("weight", 1.0))
    arrival_t = t.table("arrival")
    arrival = read_arrival(arrival_t, ctx) if arrival_t else PoissonArrivals()
    prompt_t, output_t = t.table("prompt"), t.table("output")
    default_p, default_o = classes[pclass]
    prompt = read_length(prompt_t, ctx) if prompt_t else default_p
    output = read_length(output_t, ctx) if output_t else default_o
    slo_t = t.table("slo")
    slo = _slo(slo_t) if slo_t else SloSpec()
    t.close()
    return t.build(ClientSpec, name=name, prompt_class=pclass, rate_per_min=rate,
                   arrival=arrival, prompt=prompt, output=output, weight=weight, slo=slo)


def scenario_from_dict(doc: Mapping[str, Any], *, source: str = "<scenario>",
                       default_name: str = "scenario", base_dir: Path | None = None) -> Scenario:
    """Validate and build a scenario from a parsed TOML document (see the module docstring).

    `base_dir` resolves relative trace paths. InputError names `source`, the field and the value.
    """
    ctx = ReadContext(base_dir)
    top = Table(dict(doc), "", source)
    name = top.string("name", default_name)
    description = top.string("description", "")
    duration = top.number("duration_s")
    warmup = top.number("warmup_s", 0.0)
    cooldown = top.number("cooldown_s", 0.0)
    basis = top.string("rate_basis", "absolute", choices=RATE_BASES)
    lf_raw = top.raw("load_factors", [1.0])
    if not isinstance(lf_raw, list):
        raise top.error("load_factors", "must be an array of numbers", lf_raw)
    lfs = Table({f"load_factors[{i}]": v for i, v in enumerate(lf_raw)}, "", source)
    load_factors = tuple(float(lfs.number(k)) for k in list(lfs.data))
    classes = _classes(top, ctx)
    client_tables = top.tables("clients")
    if not client_tables:
        raise top.error("clients", "a scenario needs at least one [[clients]] table", [])
    clients = tuple(_client(c, classes, ctx) for c in client_tables)
    ds_doc = top.raw("dataset", None)
    dataset = None
    if ds_doc is not None:
        dataset = dataset_spec_from_dict(ds_doc, source=source, base_dir=base_dir)
        clients = dataset_lengths(dataset, clients)
    top.close()
    return top.build(Scenario, name=name, description=description, duration_s=float(duration),
                     warmup_s=float(warmup), cooldown_s=float(cooldown), rate_basis=basis,
                     clients=clients, load_factors=load_factors, dataset=dataset)


def scenario_from_toml(text: str, *, source: str = "<scenario>", default_name: str = "scenario",
                       base_dir: Path | None = None) -> Scenario:
    """Parse and validate a scenario from TOML text; InputError names `source`."""
    if not text.strip():
        raise InputError("empty scenario file", field="(file)", value=source, source=source)
    try:
        doc = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        # TOMLDecodeError is a ValueError; so is an integer literal too long to convert, and
        # absurdly deep nesting exhausts the parser's recursion.
        raise InputError(f"not valid TOML: {_one_line(exc)}", field="(file)", value=source,
                         source=source) from None
    return scenario_from_dict(doc, source=source, default_name=default_name, base_dir=base_dir)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _bundled_root() -> Any:
    return resources.files("exfairs").joinpath("data", "scenarios")


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    return sorted(p.name[:-5] for p in _bundled_root().iterdir() if p.name.endswith(".toml"))


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc}", field="(file)", value=source,
                         source=source) from None


def load_scenario(path_or_name: str | os.PathLike[str]) -> Scenario:
    """A scenario from a TOML file, or a bundled scenario by name (see `bundled_scenarios`).

    Raises InputError (naming the file, field and value) for a missing, unreadable, empty,
    non-UTF-8, non-TOML or invalid file.
    """
    source = os.fspath(path_or_name)
    p = Path(source)
    if p.suffix == ".toml" or p.exists() or os.sep in source:
        data = read_input_bytes(p, field="scenario", what="scenario file")
        return scenario_from_toml(_decode(data, source), source=source, default_name=p.stem,
                                  base_dir=p.parent)
    names = bundled_scenarios()
    if source not in names:
        raise InputError(f"no such scenario file or bundled scenario (bundled: {', '.join(names)})",
                         field="scenario", value=source)
    res = _bundled_root().joinpath(f"{source}.toml")
    label = f"<bundled scenario {source}>"
    return scenario_from_toml(_decode(res.read_bytes(), label), source=label, default_name=source)
