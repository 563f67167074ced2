"""Fuzz: malformed scenario, sweep, profile and trace files fed to `exfairs-sim` in process.

Each case starts from a valid document and applies one fault (a wrong type, a missing field, a
negative / NaN / infinite / huge number, an unknown key, bad UTF-8, a truncation, an empty file),
chosen so that the result is always invalid. The CLI must exit 2 with a one-paragraph message
naming the file, field and value, print no traceback and leave the output directory empty.
The loaders themselves must raise only InputError on arbitrary bytes and documents.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fuzz_docs import (
    BAD_NUMBERS,
    BAD_UTF8,
    CASES,
    EMPTY_TEXTS,
    NOT_NUMBERS,
    NOT_STRINGS,
    NOT_TABLES,
    assert_rejected,
    delete_at,
    insert_bytes,
    run_cli,
    set_at,
    to_toml,
    toml_value,
    truncate_toml,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exfairs.calibration.costmodel import COEFFICIENT_NAMES
from exfairs.calibration.profile import load_profile
from exfairs.errors import InputError
from exfairs.scenario import load_scenario
from exfairs.sim.sweep import load_sweep
from exfairs.traces import read_trace

# EXFAIRS_FUZZ_EXAMPLES raises the number of cases per test for a longer run.
FUZZ = settings(max_examples=int(os.environ.get("EXFAIRS_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

Path_ = tuple[Any, ...]

# -- scenario ----------------------------------------------------------------------------------

SCENARIO: dict[str, Any] = {
    "name": "fz", "description": "fuzz base", "duration_s": 6.0, "warmup_s": 1.0,
    "cooldown_s": 1.0, "rate_basis": "absolute",
    "clients": [{
        "prompt_class": "short", "rate_per_min": 20.0, "weight": 1.0,
        "arrival": {"process": "gamma", "cv2": 2.0},
        "prompt": {"kind": "fixed", "tokens": 64},
        "output": {"kind": "uniform", "low": 4, "high": 16},
        "slo": {"e2e": {"scale": 10.0}, "ttft": {"seconds": 2.0}},
        "name": "a",  # last: a truncation anywhere leaves it missing or unterminated
    }],
}
C = ("clients", 0)
# Numeric fields; True where 0 is also invalid.
SCEN_NUMBERS: dict[Path_, bool] = {
    ("duration_s",): True, ("warmup_s",): False, ("cooldown_s",): False,
    (*C, "rate_per_min"): True, (*C, "weight"): True, (*C, "arrival", "cv2"): True,
    (*C, "prompt", "tokens"): True, (*C, "output", "low"): True, (*C, "output", "high"): True,
    (*C, "slo", "e2e", "scale"): True, (*C, "slo", "ttft", "seconds"): True,
}
SCEN_INTS = [(*C, "prompt", "tokens"), (*C, "output", "low"), (*C, "output", "high")]
# String fields with the strings that are still valid there (None: any string is valid).
SCEN_STRINGS: dict[Path_, list[str] | None] = {
    ("name",): None, ("description",): None, ("rate_basis",): ["absolute", "capacity"],
    (*C, "prompt_class"): ["short", "long", "mix"], (*C, "name"): None,
    (*C, "arrival", "process"): ["poisson", "gamma", "deterministic", "trace"],
    (*C, "prompt", "kind"): ["fixed", "uniform", "lognormal", "empirical", "mixture"],
}
SCEN_TABLES = [(*C, "arrival"), (*C, "prompt"), (*C, "output"), (*C, "slo"),
               (*C, "slo", "e2e")]
SCEN_REQUIRED = [("duration_s",), ("clients",), (*C, "name"), (*C, "rate_per_min"),
                 (*C, "arrival", "process"), (*C, "arrival", "cv2"),
                 (*C, "prompt", "kind"), (*C, "prompt", "tokens"), (*C, "output", "kind"),
                 (*C, "output", "low"), (*C, "output", "high"), (*C, "slo", "e2e", "scale")]
ALL_KEYS = {"name", "description", "duration_s", "warmup_s", "cooldown_s", "rate_basis",
            "load_factors", "classes", "clients", "prompt_class", "rate_per_min", "weight",
            "arrival", "prompt", "output", "slo", "process", "burstiness", "cv2", "shape",
            "dataset", "trace",
            "start_row", "kind", "tokens", "low", "high", "mean", "sigma", "cap", "min",
            "column", "components", "e2e", "ttft", "tpot", "seconds", "scale", "timestamp",
            "input", "time_unit", "format", "on_zero_output"}
SCEN_TABLE_PATHS = [(), C, *SCEN_TABLES, (*C, "slo", "ttft")]
BAD_CLIENT_NAMES = st.one_of(
    st.sampled_from(["", " ", "-lead", "a b", "x" * 65, "é", "a/b", ".dot", "a:b"]),
    st.text(min_size=1, max_size=12).filter(
        lambda s: not all(c.isascii() and (c.isalnum() or c in "_.-") for c in s)))


def _bad_string(path: Path_, valid: list[str] | None) -> st.SearchStrategy[Any]:
    if path == (*C, "name"):
        return st.one_of(NOT_STRINGS, BAD_CLIENT_NAMES)
    if path == ("name",):
        return st.one_of(NOT_STRINGS, st.sampled_from(["", "   "]))
    if valid is None:
        return NOT_STRINGS
    return st.one_of(NOT_STRINGS, st.text(max_size=10).filter(lambda s: s not in valid))


@st.composite
def bad_structured(draw: st.DrawFn, base: dict[str, Any], numbers: dict[Path_, bool],
                   ints: list[Path_], strings: dict[Path_, list[str] | None],
                   tables: list[Path_], required: list[Path_], table_paths: list[Path_],
                   known: set[str]) -> tuple[str, dict[str, Any]]:
    """(fault kind, document with that one fault)."""
    kind = draw(st.sampled_from(["type", "number", "missing", "unknown", "string", "table"]))
    if kind == "type":
        path = draw(st.sampled_from(sorted(numbers)))
        return kind, set_at(base, path, draw(NOT_NUMBERS))
    if kind == "number":
        path = draw(st.sampled_from(sorted(numbers)))
        choices = list(BAD_NUMBERS) + ([0, 0.0] if numbers[path] else [])
        if path in ints:
            choices += [1.5, 64.25]
        return kind, set_at(base, path, draw(st.sampled_from(choices)))
    if kind == "missing":
        return kind, delete_at(base, draw(st.sampled_from(required)))
    if kind == "unknown":
        where = draw(st.sampled_from(table_paths))
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in known))
        doc = copy.deepcopy(base)
        table = doc
        for p in where:
            table = table[p]
        table[key] = draw(st.one_of(st.integers(), st.text(max_size=5), st.booleans()))
        return kind, doc
    if kind == "string":
        path = draw(st.sampled_from(sorted(strings, key=str)))
        return kind, set_at(base, path, draw(_bad_string(path, strings[path])))
    path = draw(st.sampled_from(tables))
    return kind, set_at(base, path, draw(st.one_of(NOT_TABLES, st.just({}))
                                         if path != (*C, "slo") else NOT_TABLES))


@st.composite
def bad_file(draw: st.DrawFn, text: str, structured: st.SearchStrategy[tuple[str, Any]],
             serialise: Any, truncate: Any) -> tuple[str, bytes]:
    """(fault kind, file bytes): a structured fault, or a whole-file one."""
    kind = draw(st.sampled_from(["structured"] * 4 + ["empty", "encoding", "truncated",
                                                      "deep", "long_int"]))
    if kind == "deep":  # nesting deep enough to exhaust a recursive parser
        n = draw(st.integers(2_000, 60_000))
        return kind, (("[" * n + "]" * n) if text.lstrip().startswith("{")
                      else f"zz = {'[' * n}{']' * n}\n{text}").encode()
    if kind == "long_int":  # beyond Python's 4300-digit int-parsing limit
        digits = "9" * draw(st.integers(4_301, 6_000))
        return kind, re.sub(r"(?<=[=:] )\d+(\.\d+)?", digits, text, count=1).encode()
    if kind == "structured":
        sub, doc = draw(structured)
        return sub, serialise(doc).encode("utf-8")
    if kind == "empty":
        return kind, draw(EMPTY_TEXTS).encode()
    if kind == "encoding":
        return kind, insert_bytes(text.encode(), draw(st.floats(0, 1)), draw(BAD_UTF8))
    return kind, truncate(text, draw(st.floats(0, 1)), draw(st.floats(0, 1))).encode()


SCEN_STRUCT = bad_structured(SCENARIO, SCEN_NUMBERS, SCEN_INTS, SCEN_STRINGS, SCEN_TABLES,
                             SCEN_REQUIRED, SCEN_TABLE_PATHS, ALL_KEYS)


def test_base_documents_are_valid(tmp_path: Path) -> None:
    """The unmutated documents run (so every fault below is what makes its case invalid)."""
    scen = tmp_path / "s.toml"
    scen.write_text(to_toml(SCENARIO))
    code, err = run_cli(["run", str(scen), "-e", "FCFS", "--no-plots",
                         "--out", str(tmp_path / "o1")])
    assert code == 0, err
    for suffix, data in (("csv", CSV_TRACE), ("jsonl", JSONL_TRACE)):
        trace = tmp_path / f"t.{suffix}"
        trace.write_text(data)
        ts = tmp_path / f"ts_{suffix}.toml"
        ts.write_text(_trace_scenario(trace.name))
        code, err = run_cli(["run", str(ts), "-e", "FCFS", "--no-plots",
                             "--out", str(tmp_path / f"o_{suffix}")])
        assert code == 0, err
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(PROFILE))
    code, err = run_cli(["run", str(scen), "-e", "FCFS", "--profile", str(prof), "--no-plots",
                         "--out", str(tmp_path / "o2")])
    assert code == 0, err
    sw = tmp_path / "w.toml"
    sw.write_text(to_toml(_sweep_doc(str(scen))))
    code, err = run_cli(["sweep", str(sw), "--jobs", "1", "--no-plots",
                         "--out", str(tmp_path / "o3")])
    assert code == 0, err


@FUZZ
@given(case=bad_file(to_toml(SCENARIO), SCEN_STRUCT, to_toml, truncate_toml))
def test_cli_rejects_malformed_scenarios(case: tuple[str, bytes]) -> None:
    kind, data = case
    CASES[f"scenario/{kind}"] += 1
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bad scenario.toml"
        path.write_bytes(data)
        out = Path(d) / "out"
        assert_rejected(["run", str(path), "-e", "FCFS", "--no-plots", "--out", str(out)],
                        out, [str(path)])


# -- sweep -------------------------------------------------------------------------------------

def _sweep_doc(scenario: str) -> dict[str, Any]:
    return {"name": "fz", "scenarios": [scenario], "experiments": ["FCFS"], "seeds": [0],
            "load_factors": [1.0], "profile": "a100-llama2-7b",
            "engine": {"max_num_seqs": 8}, "policy_params": {"FCFS": {}}}


SWEEP_FAULTS: list[tuple[Path_, list[Any]]] = [
    (("name",), [5, True, [], {}, "", "../up", "a/b", ".hidden", "x" * 65]),
    (("description",), [5, [], {}]),
    (("scenarios",), [[], 5, [5], [True], [{}], ["no-such-scenario"],
                      ["missing-file.toml"]]),
    (("experiments",), [[], 7, [7], ["NOT_A_POLICY"], ["QUEUE_"], [""], [[]]]),
    (("seeds",), [[], [-1], [1.5], ["0"], [True], [2**63], [10**30], [math.nan], {}]),
    (("load_factors",), [[], [0], [-1.0], [math.nan], [math.inf], [1e300], [10**400],
                         [101], ["1"], [True]]),
    (("profile",), [5, [], "no-such-profile", "missing.json"]),
    (("engine",), [5, "x", [], {"max_num_seqs": 0}, {"max_num_seqs": -1},
                   {"max_num_seqs": "x"}, {"max_num_seqs": math.nan}, {"max_num_seqs": 1.5},
                   {"max_num_seqs": True}, {"max_num_seqs": 10**30},
                   {"not_a_knob": 1}, {"max_num_seqs": [1]}, {"max_num_seqs": {}}]),
    (("policy_params",), [5, {"VTC": 5}, {"VTC": {"no_such_param": 1}},
                          {"FCFS": {"x": [1]}}, {"NO_SUCH_POLICY": {}},
                          {"FCFS": {"no_such_param": True}}]),
]


@st.composite
def bad_sweep_doc(draw: st.DrawFn, base: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(["value", "unknown"]))
    if kind == "unknown":
        key = draw(st.text(min_size=1, max_size=12).filter(
            lambda k: k not in set(base) | {"description"}))
        return kind, {**base, key: draw(st.integers())}
    path, values = draw(st.sampled_from(SWEEP_FAULTS))
    return f"{path[0]}", set_at(base, path, draw(st.sampled_from(values)))


@FUZZ
@given(data=st.data())
def test_cli_rejects_malformed_sweeps(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        scen = Path(d) / "scen.toml"
        scen.write_text(to_toml(SCENARIO))
        base = _sweep_doc(str(scen))
        text = to_toml(base)
        kind, blob = data.draw(bad_file(text, bad_sweep_doc(base), to_toml, truncate_toml))
        CASES[f"sweep/{kind}"] += 1
        path = Path(d) / "bad sweep.toml"
        path.write_bytes(blob)
        out = Path(d) / "out"
        msg = assert_rejected(["sweep", str(path), "--jobs", "1", "--no-plots",
                               "--out", str(out)], out, [str(path), "missing", "no-such",
                                                         "NOT_A_POLICY", "QUEUE_"])
        assert str(scen) not in msg or "field 'scenario" not in msg  # the base scenario is fine


# -- profile -----------------------------------------------------------------------------------

_BUNDLED = load_profile("a100-llama2-7b").to_json()
PROFILE: dict[str, Any] = {**_BUNDLED, "measurements": _BUNDLED["measurements"][:2]}
M0 = ("measurements", 0)
PROF_NUMBERS: dict[Path_, bool] = {
    ("metadata", "tensor_parallel_size"): True,
    **{("engine", k): True for k in PROFILE["engine"]},
    **{("coefficients", k): False for k in PROFILE["coefficients"]},
    **{("fit", k): False for k in PROFILE["fit"]},
    **{(*M0, k): False for k in PROFILE["measurements"][0]},
}
PROF_INTS = [("metadata", "tensor_parallel_size"), *[("engine", k) for k in PROFILE["engine"]],
             ("fit", "n_train"), ("fit", "n_test"), (*M0, "prefill_tokens"),
             (*M0, "decode_seqs"), (*M0, "decode_ctx")]
PROF_STRINGS: dict[Path_, list[str] | None] = {
    ("schema",): ["exfairs.profile"], **{("metadata", k): None for k in ("id", "hardware",
                                                                         "model", "notes")}}
PROF_TABLES = [("metadata",), ("engine",), ("coefficients",), M0]
PROF_REQUIRED = [("schema",), ("schema_version",), ("metadata",), ("metadata", "id"),
                 ("metadata", "hardware"), ("metadata", "model"), ("engine",),
                 ("engine", "num_gpu_blocks"), ("coefficients",),
                 # Schema 2's structured terms and a measurement's rows and sampling mode are
                 # optional (a schema-2 file may hold a linear fit): only schema 1's are required.
                 *[("coefficients", k) for k in COEFFICIENT_NAMES],
                 *[(*M0, k) for k in PROFILE["measurements"][0]
                   if k not in ("rows", "sampling")]]
PROF_KNOWN = {"schema", "schema_version", "metadata", "engine", "coefficients", "fit",
              "measurements", *PROFILE["metadata"], *PROFILE["engine"],
              *PROFILE["coefficients"], *PROFILE["fit"], *PROFILE["measurements"][0]}


def _to_json(doc: Any) -> str:
    return json.dumps(doc, indent=1)  # NaN and Infinity literals: Python's json reads them


def _truncate_json(text: str, _pick: float, cut: float) -> str:
    body = text.rstrip()
    return body[: int(cut * (len(body) - 1))]  # never the closing brace


@FUZZ
@given(case=bad_file(_to_json(PROFILE), st.one_of(
    bad_structured(PROFILE, PROF_NUMBERS, PROF_INTS, PROF_STRINGS, PROF_TABLES, PROF_REQUIRED,
                   [(), ("metadata",), ("engine",), ("coefficients",), ("fit",), M0],
                   PROF_KNOWN),
    st.tuples(st.just("schema_version"), st.sampled_from([99, 0, "1", True, None, 1.5]).map(
        lambda v: set_at(PROFILE, ("schema_version",), v))),
    st.tuples(st.just("top_level"), st.sampled_from([[], 5, "profile", None]))),
    _to_json, _truncate_json))
def test_cli_rejects_malformed_profiles(case: tuple[str, bytes]) -> None:
    kind, data = case
    CASES[f"profile/{kind}"] += 1
    with tempfile.TemporaryDirectory() as d:
        scen = Path(d) / "scen.toml"
        scen.write_text(to_toml(SCENARIO))
        path = Path(d) / "bad profile.json"
        path.write_bytes(data)
        out = Path(d) / "out"
        assert_rejected(["run", str(scen), "-e", "FCFS", "--profile", str(path), "--no-plots",
                         "--out", str(out)], out, [str(path)])


# -- traces (through a scenario whose client replays them) -------------------------------------

ROWS = [(0.0, 120, 20), (0.5, 300, 12), (1.25, 80, 40), (2.0, 512, 8), (3.5, 64, 16)]
CSV_TRACE = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
    f"{t},{i},{o}\n" for t, i, o in ROWS)
JSONL_TRACE = "".join(json.dumps({"TIMESTAMP": t, "ContextTokens": i, "GeneratedTokens": o})
                      + "\n" for t, i, o in ROWS)


def _trace_scenario(trace: str) -> str:
    return to_toml({
        "name": "tr", "duration_s": 6.0, "warmup_s": 1.0, "cooldown_s": 1.0,
        "clients": [{"name": "replay", "prompt_class": "short", "rate_per_min": 20.0,
                     "arrival": {"process": "trace", "trace": trace},
                     "output": {"kind": "empirical", "trace": trace, "column": "output"}}]})


BAD_TIME_CELLS = ["abc", "", "nan", "inf", "-inf", "1e400", "12:00", "2024-13-45T00:00:00"]
BAD_TOKEN_CELLS = ["abc", "", "-1", "0", "1.5", "nan", "inf", "1e10", "1e400", "9" * 30, "true"]


@st.composite
def bad_csv(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["cell", "header", "fields", "empty", "header_only",
                                 "encoding", "truncated", "same_times", "one_row"]))
    header = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
    rows = [[str(t), str(i), str(o)] for t, i, o in ROWS]
    if kind == "cell":
        r = draw(st.integers(0, len(rows) - 1))
        c = draw(st.integers(0, 2))
        rows[r][c] = draw(st.sampled_from(BAD_TIME_CELLS if c == 0 else BAD_TOKEN_CELLS))
        kind = f"cell/{header[c]}"
    elif kind == "header":
        n = draw(st.integers(1, 3))
        for c in draw(st.permutations(range(3)))[:n]:
            header[c] = draw(st.sampled_from(["", "Foo", header[c].lower(), header[c] + " x"]))
    elif kind == "fields":
        r = draw(st.integers(0, len(rows) - 1))
        rows[r] = rows[r] + ["7"] if draw(st.booleans()) else rows[r][:2]
    elif kind == "same_times":
        rows = [["1.0", r[1], r[2]] for r in rows]
    elif kind == "one_row":
        rows = rows[:1]
    text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    if kind == "empty":
        return kind, draw(EMPTY_TEXTS).encode()
    if kind == "header_only":
        return kind, (",".join(header) + "\n").encode()
    if kind == "encoding":
        return kind, insert_bytes(text.encode(), draw(st.floats(0, 1)), draw(BAD_UTF8))
    if kind == "truncated":
        # Cut inside the last row at or before its second comma: too few fields, or an empty
        # output count (a cut later could leave a shorter but valid number).
        start = text.rstrip("\n").rfind("\n") + 1
        second = text.index(",", text.index(",", start) + 1)
        return kind, text[: draw(st.integers(start + 1, second + 1))].encode()
    return kind, text.encode()


@st.composite
def bad_jsonl(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["value", "missing", "not_object", "not_json", "empty",
                                 "encoding", "truncated", "huge_int"]))
    objs: list[Any] = [{"TIMESTAMP": t, "ContextTokens": i, "GeneratedTokens": o}
                       for t, i, o in ROWS]
    r = draw(st.integers(0, len(objs) - 1))
    key = draw(st.sampled_from(["TIMESTAMP", "ContextTokens", "GeneratedTokens"]))
    if kind == "value":
        bad_time: list[Any] = ["abc", None, [], {}, True, math.nan, math.inf, 1e400]
        bad_tok: list[Any] = ["abc", None, [], {}, True, -1, 0, 1.5, math.nan, math.inf, 1e10,
                              10**400]
        objs[r][key] = draw(st.sampled_from(bad_time if key == "TIMESTAMP" else bad_tok))
    elif kind == "missing":
        del objs[r][key]
    elif kind == "not_object":
        objs[r] = draw(st.sampled_from([[1, 2, 3], 5, "row", None]))
    lines = [json.dumps(o) for o in objs]
    if kind == "not_json":
        lines[r] = draw(st.sampled_from(["{", "{'a': 1}", "TIMESTAMP=1", "[1,", "{\"a\":}"]))
    if kind == "huge_int":  # beyond Python's 4300-digit int-parsing limit
        lines[r] = lines[r].replace(str(ROWS[r][1]), "1" * 5000, 1)
    text = "\n".join(lines) + "\n"
    if kind == "empty":
        return kind, draw(EMPTY_TEXTS).encode()
    if kind == "encoding":
        return kind, insert_bytes(text.encode(), draw(st.floats(0, 1)), draw(BAD_UTF8))
    if kind == "truncated":
        start = text.rstrip("\n").rfind("\n") + 1
        end = len(text.rstrip("\n"))
        return kind, text[: draw(st.integers(start + 1, end - 1))].encode()
    return kind, text.encode()


@FUZZ
@given(case=st.one_of(st.tuples(st.just("csv"), bad_csv()),
                      st.tuples(st.just("jsonl"), bad_jsonl())))
def test_cli_rejects_malformed_traces(case: tuple[str, tuple[str, bytes]]) -> None:
    suffix, (kind, data) = case
    CASES[f"trace-{suffix}/{kind}"] += 1
    with tempfile.TemporaryDirectory() as d:
        trace = Path(d) / f"bad trace.{suffix}"
        trace.write_bytes(data)
        scen = Path(d) / "scen.toml"
        scen.write_text(_trace_scenario(trace.name))
        out = Path(d) / "out"
        msg = assert_rejected(["run", str(scen), "-e", "FCFS", "--no-plots", "--out", str(out)],
                              out, [str(scen)])
        assert trace.name in msg, msg  # the trace file at fault is named too


# -- direct API: arbitrary bytes and documents raise only InputError ----------------------------

JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12)
TOMLISH = st.dictionaries(st.sampled_from(sorted(ALL_KEYS | {"experiments", "seeds", "x"})),
                          JSONISH.filter(lambda v: v is not None), max_size=6)


def _toml_of(doc: dict[str, Any]) -> str:
    def clean(v: Any) -> Any:  # TOML has no null
        if isinstance(v, list):
            return [clean(x) for x in v if x is not None]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        return v
    return "\n".join(f"{json.dumps(k)} = {toml_value(clean(v))}" for k, v in doc.items()) + "\n"


def _only_input_errors(fn: Any, path: Path) -> None:
    with contextlib.suppress(InputError):  # anything else fails the test
        fn(path)


@FUZZ
@given(blob=st.one_of(st.binary(max_size=300),
                      TOMLISH.map(lambda d: _toml_of(d).encode()),
                      JSONISH.map(lambda d: json.dumps(d).encode()),
                      st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass"))),
       suffix=st.sampled_from([".toml", ".json", ".csv", ".jsonl"]))
def test_loaders_raise_only_input_error(blob: bytes, suffix: str) -> None:
    CASES[f"api/{suffix}"] += 1
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"f{suffix}"
        path.write_bytes(blob)
        if suffix == ".toml":
            _only_input_errors(load_scenario, path)
            _only_input_errors(load_sweep, path)
        elif suffix == ".json":
            _only_input_errors(load_profile, path)
        else:
            _only_input_errors(read_trace, path)


@pytest.mark.parametrize("name", ["no-such-thing", "missing.toml", "dir/"])
def test_missing_files_are_input_errors(tmp_path: Path, name: str) -> None:
    for fn in (load_scenario, load_sweep, load_profile, read_trace):
        with pytest.raises(InputError):
            fn(str(tmp_path / name) if "/" in name else name)
