"""exfairs-calibrate end to end: fit, show, public; exit code 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from calib_synthetic import TRUE, synthetic_steps

from exfairs.calibration.cli import main
from exfairs.calibration.measurements import MeasurementSet, StepRecord, save_measurements
from exfairs.calibration.profile import load_profile


def _measurements_file(tmp_path: Path) -> Path:
    base = load_profile("a100-llama2-7b")
    steps = tuple(StepRecord(m.prefill_tokens, m.prefill_attn, m.decode_seqs, m.decode_ctx,
                             m.duration_ms, "synthetic", 0)
                  for m in synthetic_steps(TRUE, noise=0.02, seed=5, repeats=2))
    ms = MeasurementSet(base.metadata, base.engine, steps, wall_time_s=1.5)
    path = tmp_path / "steps.json"
    save_measurements(ms, path)
    return path


def test_fit_then_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steps = _measurements_file(tmp_path)
    out = tmp_path / "prof.json"
    assert main(["fit", str(steps), "--out", str(out), "--id", "synthetic-test",
                 "--keep-measurements", "20"]) == 0
    prof = load_profile(out)
    assert prof.id == "synthetic-test" and len(prof.measurements) == 20
    assert prof.fit is not None and prof.fit.median_ape < 3.0
    assert prof.coefficients.prefill_token_ms == pytest.approx(TRUE.prefill_token_ms, rel=0.15)
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "synthetic-test" in text and "held-out error: median" in text
    assert "prefill (one prompt" in text and "decode step at context 512" in text


def test_show_bundled_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show"]) == 0
    listed = capsys.readouterr().out
    for pid in ("a100-llama2-7b", "a100-llama2-70b-tp4", "h100-llama2-70b-tp4"):
        assert pid in listed
    assert main(["show", "a100-llama2-7b"]) == 0
    assert "Vidur" in capsys.readouterr().out


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "no-such-profile"]) == 2
    assert "no-such-profile" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "exfairs.measurements", "schema_version": 1}))
    assert main(["fit", str(bad), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "field 'metadata'" in err and err[-1] == "\n" and err.count("\n") == 1
    assert main(["fit", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o.json")]) == 2
    steps = _measurements_file(tmp_path)
    assert main(["fit", str(steps), "--out", str(tmp_path / "o.json"), "--test-share",
                 "0.9"]) == 2
    assert not (tmp_path / "o.json").exists()
    assert main(["profile", "--backend", "torch", "--out", str(tmp_path / "t.json")]) == 2
    assert "--hidden-size" in capsys.readouterr().err


def test_public_writes_three_profiles_from_the_bundled_data(tmp_path: Path) -> None:
    assert main(["public", "--out-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "a100-llama2-70b-tp4.json", "a100-llama2-7b.json", "h100-llama2-70b-tp4.json"]
    assert main(["public", "--data", str(tmp_path), "--out-dir", str(tmp_path)]) == 2
