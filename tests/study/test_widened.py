"""The widened study (`exfairs.sim.study.widened`, run by studies/run_widened.py): the spec file
and its errors, and on a tiny spec that it runs, that the document's target rows are the means
of the results files' metrics, that the verdicts follow from them, and that the same seeds give
the same document."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from exfairs.errors import InputError
from exfairs.results import read_result
from exfairs.sim.study import widened_cli
from exfairs.sim.study.widened import load_widened, variants_of, widened_from_toml
from exfairs.sim.study.widened_doc import (
    TARGET_GAIN,
    TARGET_JAIN,
    build_widened_document,
    target_rows,
)

ROOT = Path(__file__).resolve().parents[2]

_TINY_SPEC = '''name = "tiny-widened"
scenarios = ["{scen}"]
held_out = ["tiny-1"]
seeds = [0, 1]
load_factors = [1.0]
target_loads = [1.0]
[regimes.own]
[regimes.capped]
max_num_seqs = 16
[[arms]]
name = "none"
experiments = ["FCFS", "QUEUE_FCFS", "QUEUE_ExFairS"]
[[arms]]
name = "adm"
admission = {{ hopeless = "reject", limit = "predictive" }}
experiments = ["QUEUE_ExFairS", "QUEUE_FCFS"]
[[ablations]]
name = "alpha-1"
arm = "adm"
experiments = ["QUEUE_ExFairS"]
params = {{ alpha = 1.0 }}
'''


def _tiny_scenario(tmp: Path) -> Path:
    text = (ROOT / "core" / "data" / "scenarios" / "exfairs-1.toml").read_text()
    text = re.sub(r"(?m)^name = .*$", 'name = "tiny-1"', text, count=1)
    text = re.sub(r"(?m)^duration_s = .*$", "duration_s = 30", text)
    text = re.sub(r"(?m)^warmup_s = .*$", "warmup_s = 5", text)
    text = re.sub(r"(?m)^cooldown_s = .*$", "cooldown_s = 5", text)
    path = tmp / "tiny-1.toml"
    path.write_text(text)
    return path


def test_bundled_spec_loads_and_counts_cells() -> None:
    spec = load_widened(ROOT / "studies" / "exfairs-widened.toml")
    per_draw = len(spec.scenarios) * len(spec.seeds) * len(spec.load_factors)
    n_exps = sum(len(a.experiments) for a in spec.arms + spec.ablations)
    assert spec.n_cells() == per_draw * len(spec.regimes) * n_exps
    assert set(spec.held_out) <= set(spec.scenario_names)
    assert len(spec.seeds) >= 5 and {0.6, 0.8, 1.0, 1.2} <= set(spec.load_factors)
    assert dict(spec.regimes)["capped"] == (("max_num_seqs", 48),)
    assert dict(spec.regimes)["own"] == ()
    labels = [v.label for v in variants_of(spec)]
    assert len(labels) == len(set(labels))
    assert "QUEUE_ExFairS + hopeless=reject,limit=predictive [alpha=1]" in labels
    # Scenario paths resolve to existing files.
    for s in spec.scenarios:
        assert not s.endswith(".toml") or Path(s).is_file()


@pytest.mark.parametrize(("change", "field"), [
    (("[[arms]]\nname = \"none\"", "[[arms]]\nname = \"none\"\nbogus = 1"), "arms[0].bogus"),
    (('held_out = ["tiny-1"]', 'held_out = ["nope"]'), "held_out"),
    (('experiments = ["QUEUE_ExFairS"]\nparams', 'experiments = ["QUEUE_FCFS"]\nparams'),
     "ablations[0].experiments"),
    (('arm = "adm"', 'arm = "missing"'), "ablations[0].arm"),
    (("target_loads = [1.0]", "target_loads = [0.5]"), "target_loads"),
    (('experiments = ["QUEUE_ExFairS", "QUEUE_FCFS"]', 'experiments = ["FCFS"]'), "admission"),
    (("seeds = [0, 1]", "seeds = [-1]"), "seeds"),
])
def test_spec_errors_name_the_field(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    text = _TINY_SPEC.format(scen="tiny-1.toml")
    old, new = change
    assert old in text
    with pytest.raises(InputError) as ei:
        widened_from_toml(text.replace(old, new, 1), "spec.toml", tmp_path)
    assert ei.value.field == field
    assert "spec.toml" in str(ei.value)


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(_TINY_SPEC.format(scen=_tiny_scenario(tmp_path)))
    rc = widened_cli.main(["--spec", str(spec), "--regimes", "nope", "--out",
                           str(tmp_path / "o"), "--doc", str(tmp_path / "d.md")], root=tmp_path)
    assert rc == 2
    assert "--regimes" in capsys.readouterr().err
    assert not (tmp_path / "d.md").exists()


@pytest.mark.slow
def test_tiny_widened_study(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(_TINY_SPEC.format(scen=_tiny_scenario(tmp_path)))
    out, doc = tmp_path / "out", tmp_path / "doc.md"
    argv = ["--spec", str(spec_path), "--out", str(out), "--doc", str(doc), "--jobs", "1"]
    assert widened_cli.main(argv, root=tmp_path, explanation="Words.") == 0
    text = doc.read_text()
    assert "## Target check" in text and "## ExFairS score revisit" in text
    assert "tiny-1 (held out)" in text and "Words." in text

    # The target rows are the means over seeds of the metrics in the results files.
    from exfairs.sim.study.widened import run_widened

    spec = load_widened(spec_path)
    data = run_widened(spec, out, jobs=1, force=False, report=lambda _s: None)
    files = list(out.glob("*/*/*.json"))
    assert len(files) == spec.n_cells()

    def file_mean(regime: str, arm: str, exp: str, key: str) -> float:
        vals = []
        for f in (out / regime / arm).glob(f"tiny-1__{exp}__load1__seed*__*.json"):
            m = read_result(f).metrics
            vals.append(float(getattr(m.fairness, key, getattr(m.overall, key, math.nan))))
        assert len(vals) == len(spec.seeds)
        return sum(vals) / len(vals)

    rows = target_rows(data)
    assert [r.cell for r in rows] == [("own", "tiny-1", 1.0), ("capped", "tiny-1", 1.0)]
    for r in rows:
        reg = r.cell[0]
        arm = "adm" if " + " in r.exfairs else "none"
        exp = r.exfairs.split(" + ")[0]
        assert r.worst == pytest.approx(file_mean(reg, arm, exp, "worst_client_attainment"))
        assert r.jain == pytest.approx(file_mean(reg, arm, exp, "jain_attainment"))
        base = max(file_mean(reg, "none", e, "worst_client_attainment")
                   for e in ("FCFS", "QUEUE_FCFS"))
        assert r.baseline_worst == pytest.approx(base)
        assert r.gain_ok == (r.worst - r.baseline_worst >= TARGET_GAIN)
        assert r.jain_ok == (r.jain >= TARGET_JAIN)
        gp = max(file_mean(reg, "none", e, "request_goodput") for e in ("FCFS", "QUEUE_FCFS"))
        assert r.best_goodput == pytest.approx(gp)
        assert (f"| {reg} | tiny-1 (held out) | 1 | `{r.exfairs}` | {r.worst:.3f} |" in text)

    # Same seeds, same document (reusing the cells); a different doc path changes nothing.
    again = build_widened_document(data, command="python studies/run_widened.py --jobs 1",
                                   explanation="Words.")
    assert again == text
