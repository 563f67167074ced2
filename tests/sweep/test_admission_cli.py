"""Admission on the command line and in sweep files (issue 15): `exfairs-sim run/sweep
--admission SPEC` and a sweep file's ``[admission]`` table reach `simulate`, are part of a cell's
cache key only when active, are recorded with the run, and bad values exit 2 naming the field."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from sweep_helpers import TINY_SCENARIO

from exfairs.errors import InputError
from exfairs.policies.admission import AdmissionConfig
from exfairs.records import Outcome
from exfairs.results import read_result
from exfairs.sim.cli import main
from exfairs.sim.sweep import Cell, SweepConfig, sweep_from_toml

# The tiny scenario with SLOs a small multiple of the unloaded latency: overloaded, requests
# become hopeless and the predictive limit has something to hold back.
TIGHT = TINY_SCENARIO.replace("scale = 10", "scale = 2")
SPEC = "hopeless=reject,limit=predictive"


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "tight.toml"
    path.write_text(TIGHT, encoding="utf-8")
    return path


def test_inactive_admission_leaves_the_cache_key_unchanged() -> None:
    base = Cell("default", "QUEUE_FCFS", 0, 1.0, "a100-llama2-7b")
    assert Cell("default", "QUEUE_FCFS", 0, 1.0, "a100-llama2-7b",
                admission=AdmissionConfig()).key() == base.key()
    # headroom matters only with a limit: with limit=off it is the same run.
    assert Cell("default", "QUEUE_FCFS", 0, 1.0, "a100-llama2-7b",
                admission=AdmissionConfig(headroom=0.5)).key() == base.key()
    keys = {Cell("default", "QUEUE_FCFS", 0, 1.0, "a100-llama2-7b",
                 admission=AdmissionConfig.parse(s)).key()
            for s in ("hopeless=demote", "hopeless=reject", "limit=predictive",
                      "limit=predictive,headroom=0.5", SPEC, "limit=feedback",
                      "limit=feedback,backoff=0.5", "limit=predictive+feedback")}
    assert base.key() not in keys and len(keys) == 8


def test_sweep_file_admission_table() -> None:
    config = sweep_from_toml('experiments = ["QUEUE_VTC", "ENGINE_VTC"]\n'
                             '[admission]\nhopeless = "demote"\n', "s.toml")
    assert config.admission == AdmissionConfig(hopeless="demote")
    assert {c.admission for c in config.cells()} == {AdmissionConfig(hopeless="demote")}
    assert sweep_from_toml('experiments = ["FCFS"]\n', "s.toml").admission == AdmissionConfig()
    fb = sweep_from_toml('experiments = ["QUEUE_VTC"]\n[admission]\nhopeless = "reject"\n'
                         'limit = "predictive+feedback"\nbackoff = 0.5\nincrease = 2.0\n'
                         'min_inflight = 4\n', "s.toml").admission
    assert fb == AdmissionConfig(hopeless="reject", limit="predictive+feedback", backoff=0.5,
                                 increase=2.0, min_inflight=4)


@pytest.mark.parametrize(("text", "field", "value"), [
    ('experiments = ["QUEUE_VTC"]\nadmission = "x"', "admission", "x"),
    ('experiments = ["QUEUE_VTC"]\n[admission]\nhopless = "demote"', "admission.hopless",
     "demote"),
    ('experiments = ["QUEUE_VTC"]\n[admission]\nhopeless = "maybe"', "admission.hopeless",
     "maybe"),
    ('experiments = ["QUEUE_VTC"]\n[admission]\nhopeless = 1', "admission.hopeless", "1"),
    ('experiments = ["QUEUE_VTC"]\n[admission]\nlimit = "feedbak"', "admission.limit",
     "feedbak"),
    ('experiments = ["QUEUE_VTC"]\n[admission]\nlimit = "feedback"\nbackoff = 1.5',
     "admission.backoff", "1.5"),
    ('experiments = ["QUEUE_VTC"]\n[admission]\nlimit = "feedback"\nmin_inflight = 0',
     "admission.min_inflight", "0"),
    ('experiments = ["QUEUE_VTC"]\n[admission]\nlimit = "feedback"\nincrease = -1',
     "admission.increase", "-1"),
    ('experiments = ["ENGINE_VTC"]\n[admission]\nlimit = "feedback"', "admission",
     "limit=feedback"),
    ('experiments = ["QUEUE_VTC"]\n[admission]\nheadroom = 0', "admission.headroom", "0"),
    ('experiments = ["VTC"]\n[admission]\nhopeless = "demote"', "admission", "hopeless=demote"),
])
def test_bad_admission_tables_name_the_field(text: str, field: str, value: str) -> None:
    with pytest.raises(InputError) as info:
        sweep_from_toml(text, "bad.toml")
    assert info.value.field == field and value in str(info.value)
    assert "bad.toml" in str(info.value)


def test_admission_needs_a_mode_that_takes_it() -> None:
    with pytest.raises(InputError, match="FCFS is in priority mode"):
        SweepConfig(experiments=("QUEUE_FCFS", "FCFS"),
                    admission=AdmissionConfig(hopeless="demote")).cells()
    # Engine mode takes every option (decided inside the scheduler).
    for adm in (AdmissionConfig(hopeless="demote"),
                AdmissionConfig(hopeless="reject", limit="predictive")):
        SweepConfig(experiments=("ENGINE_VTC",), admission=adm).cells()


def test_run_with_admission_end_to_end(tmp_path: Path) -> None:
    scen = _scenario(tmp_path)
    common = ["run", str(scen), "-e", "QUEUE_FCFS", "--load", "1.5", "--seed", "2", "--no-plots"]
    assert main([*common, "--out", str(tmp_path / "off")]) == 0
    assert main([*common, "--admission", SPEC, "--out", str(tmp_path / "on")]) == 0
    (off,) = (read_result(p) for p in (tmp_path / "off").glob("*.json"))
    (on,) = (read_result(p) for p in (tmp_path / "on").glob("*.json"))
    assert "admission" not in dict(off.info.engine_knobs)
    assert dict(on.info.engine_knobs)["admission"] == SPEC
    outcomes_off = Counter(r.outcome for r in off.records)
    outcomes_on = Counter(r.outcome for r in on.records)
    assert outcomes_off[Outcome.REJECTED] == 0 < outcomes_on[Outcome.REJECTED]
    assert len(on.records) == len(off.records)


def test_sweep_admission_option_overrides_the_file_and_reuses_cells(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen = _scenario(tmp_path)
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'name = "s"\nscenarios = ["{scen}"]\nexperiments = ["QUEUE_VTC"]\n'
                     'load_factors = [1.5]\n[admission]\nhopeless = "reject"\n', encoding="utf-8")
    out = tmp_path / "out"
    base = ["sweep", str(sweep), "--jobs", "1", "--no-plots", "--out", str(out)]
    assert main(base) == 0
    (first,) = out.glob("*.json")
    assert dict(read_result(first).info.engine_knobs)["admission"] == "hopeless=reject"
    capsys.readouterr()
    assert main(base) == 0  # same admission: the cell is reused
    assert "1 cell(s) already done were reused" in capsys.readouterr().err
    assert main([*base, "--admission", "off"]) == 0  # another cell, without admission
    files = sorted(out.glob("*.json"))
    assert len(files) == 2
    knobs = sorted(str(dict(read_result(p).info.engine_knobs).get("admission")) for p in files)
    assert knobs == ["None", "hopeless=reject"]


@pytest.mark.parametrize(("args", "field", "value"), [
    (["--admission", "hopeless=bogus", "-e", "QUEUE_VTC"], "admission.hopeless", "bogus"),
    (["--admission", "headroom=2", "-e", "QUEUE_VTC"], "admission.headroom", "2"),
    (["--admission", "limit", "-e", "QUEUE_VTC"], "admission", "limit"),
    (["--admission", "hopeless=reject"], "admission", "hopeless=reject"),  # default: FCFS
])
def test_bad_admission_option_exits_2_naming_the_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str,
        value: str) -> None:
    out = tmp_path / "out"
    assert main(["run", "default", *args, "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("exfairs-sim: error:")]
    assert f"field '{field}'" in line and value in line, line
    assert not os.path.exists(out)
