"""Results files: round trip, compact token times, clear errors, atomic writes, provenance."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from metrics_factory import make_record, make_result

from exfairs import results as results_mod
from exfairs.atomic import atomic_writer
from exfairs.errors import InputError
from exfairs.metrics import compute_metrics
from exfairs.records import SLO, ClientInfo, Outcome
from exfairs.results import (
    SCHEMA_VERSION,
    RunResult,
    git_revision,
    read_result,
    read_results,
    write_result,
)


def _mixed_result() -> RunResult:
    recs = [
        make_record(0, "a", slo=SLO(e2e_s=5.0, ttft_s=1.0, tpot_s=0.2), preemptions=2),
        make_record(1, "b", arrival_s=0.3, slo=SLO(e2e_s=0.1)),
        make_record(2, "a", arrival_s=0.7, generated=2),
        make_record(3, "b", arrival_s=1.1, ttft_s=None, outcome=Outcome.TIMED_OUT, queue_s=None),
        make_record(4, "b", arrival_s=1.2, ttft_s=None, outcome=Outcome.FAILED),
        make_record(5, "a", arrival_s=1.5, output_tokens=1),
    ]
    recs[4] = replace(recs[4], error="engine said no")
    # An irregular float to make sure token times survive bit for bit.
    recs[0] = replace(recs[0], token_times_s=(0.1 + 0.2, 1 / 3, math.pi, 7.000000000000001))
    return make_result("QUEUE_ExFairS", 7, records=recs, clients=("a", "b", "idle"))


def test_round_trip_equal(tmp_path: Path) -> None:
    res = _mixed_result()
    # The idle client has no requests: NaN metrics must survive the trip too.
    assert math.isnan(res.metrics.client("idle").metrics.slo_attainment)
    path = tmp_path / "run.json"
    write_result(res, path)
    back = read_result(path)
    assert back == res
    assert back.records[0].token_times_s == (0.1 + 0.2, 1 / 3, math.pi, 7.000000000000001)
    assert back.info.engine_knobs == res.info.engine_knobs
    assert isinstance(dict(back.info.engine_knobs)["enable_chunked_prefill"], bool)
    assert isinstance(dict(back.info.engine_knobs)["max_num_seqs"], int)
    assert back.records[3].outcome is Outcome.TIMED_OUT
    # Strict JSON (no NaN tokens) with a schema header.
    doc = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert doc["schema"] == "exfairs.result" and doc["schema_version"] == SCHEMA_VERSION


def test_round_trip_of_a_window_and_samples(tmp_path: Path) -> None:
    res = make_result("VTC", 3, window=(2.0, 15.0))
    assert res.policy_samples
    write_result(res, tmp_path / "r.json")
    assert read_result(tmp_path / "r.json") == res
    assert read_results([tmp_path]) == [res]


def test_file_size_for_600_requests_of_256_tokens(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    recs = []
    for i in range(600):
        gaps = rng.uniform(0.01, 0.06, 255)
        recs.append(make_record(i, "ab"[i % 2], arrival_s=float(rng.uniform(0, 600)),
                                output_tokens=256, ttft_s=float(rng.uniform(0.1, 3)),
                                gaps_s=gaps.tolist(), slo=SLO(e2e_s=17.0)))
    res = make_result("VTC", 0, records=recs)
    path = tmp_path / "big.json"
    write_result(res, path)
    size = path.stat().st_size + path.with_suffix(".parquet").stat().st_size
    plain = sum(len(json.dumps(list(r.token_times_s))) for r in recs)
    v1 = len(json.dumps({"schema": "exfairs.result", "schema_version": 1,
                         **results_mod._encode(res)}, separators=(",", ":")))
    print(f"result for 600 x 256 random-gap tokens: {size / 1e6:.2f} MB (schema 1: "
          f"{v1 / 1e6:.2f} MB; token times as decimal JSON alone: {plain / 1e6:.2f} MB)")
    # Random float gaps are the worst case for lossless compression (benchmarks/results/
    # results_size.md has real runs); still smaller than the old zlib+base64 form.
    assert size < 0.5 * plain and size < v1
    assert read_result(path) == res


def test_malformed_files_name_file_and_field(tmp_path: Path) -> None:
    res = _mixed_result()
    good = results_mod.result_to_dict(res)

    def write(doc: object, name: str) -> Path:
        p = tmp_path / name
        p.write_text(json.dumps(doc))
        return p

    # The metrics are read from the flat summary: errors name its keys.
    bad_knob = json.loads(json.dumps(good))
    bad_knob["num_prompts"] = "soon"
    with pytest.raises(InputError) as e:
        read_result(write(bad_knob, "knob.json"))
    assert e.value.field == "num_prompts"
    assert "knob.json" in str(e.value) and "soon" in str(e.value)

    missing = json.loads(json.dumps(good))
    del missing["run"]["info"]["seed"]
    with pytest.raises(InputError, match=r"run\.info\.seed"):
        read_result(write(missing, "missing.json"))

    # Version 1 (records inline) is still read, with its own field paths.
    v1 = {"schema": "exfairs.result", "schema_version": 1, **results_mod._encode(res)}
    assert read_result(write(v1, "v1.json")) == res
    bad_outcome = json.loads(json.dumps(v1))
    bad_outcome["records"][0]["outcome"] = "exploded"
    with pytest.raises(InputError, match=r"records\[0\]\.outcome"):
        read_result(write(bad_outcome, "outcome.json"))
    bad_times = json.loads(json.dumps(v1))
    bad_times["records"][0]["token_times_s"] = {"f64z": "!!!"}
    with pytest.raises(InputError, match="token_times_s"):
        read_result(write(bad_times, "times.json"))

    # The records file: missing, or not the one this JSON was written with.
    write_result(res, tmp_path / "a.json")
    write_result(replace(res, records=res.records[:2]), tmp_path / "b.json")
    (tmp_path / "a.parquet").replace(tmp_path / "kept.parquet")
    with pytest.raises(InputError, match="records file is missing"):
        read_result(tmp_path / "a.json")
    assert read_result(tmp_path / "a.json", records=False).records == ()
    (tmp_path / "b.parquet").replace(tmp_path / "a.parquet")
    with pytest.raises(InputError, match="does not belong"):
        read_result(tmp_path / "a.json")
    with pytest.raises(InputError, match="does not belong"):  # the cheap check finds it too
        results_mod.check_result(tmp_path / "a.json")
    write_result(res, tmp_path / "c.json")
    assert results_mod.check_result(tmp_path / "c.json").records == ()
    (tmp_path / "a.parquet").write_bytes(b"not parquet")
    doc = json.loads((tmp_path / "a.json").read_text())
    doc["records_sha256"] = results_mod._sha256(tmp_path / "a.parquet")
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"a\.parquet.*cannot read the records file"):
        read_result(tmp_path / "a.json")
    with pytest.raises(InputError, match=r"a\.parquet.*cannot read the records file"):
        results_mod.check_result(tmp_path / "a.json")

    version = dict(good, schema_version=99)
    with pytest.raises(InputError, match="schema_version"):
        read_result(write(version, "version.json"))

    with pytest.raises(InputError, match="schema"):
        read_result(write({"hello": 1}, "other.json"))

    trunc = tmp_path / "trunc.json"
    write_result(res, trunc)
    trunc.write_text(trunc.read_text()[:200])
    with pytest.raises(InputError, match=r"trunc\.json.*not valid JSON"):
        read_result(trunc)

    with pytest.raises(InputError, match="cannot read"):
        read_result(tmp_path / "absent.json")


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    path = tmp_path / "run.json"
    res = _mixed_result()
    write_result(res, path)
    before = path.read_bytes()

    def broken_dump(obj: object, fp: object, **kw: object) -> None:
        fp.write('{"schema": "exfairs.result", "partial": ')  # type: ignore[attr-defined]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(results_mod.json, "dump", broken_dump)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_result(res, path)
    assert path.read_bytes() == before  # the old file is intact
    new = tmp_path / "new.json"
    with pytest.raises(RuntimeError):
        write_result(res, new)
    assert not new.exists() and not new.with_suffix(".parquet").exists()
    # No temp files left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.parquet",
                                                          "run.samples.parquet"]


def test_atomic_writer_context(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "x.txt"
    with atomic_writer(p) as f:
        f.write("hello")
        assert not p.exists()  # not visible until complete
    assert p.read_text() == "hello"


def test_git_revision_never_fails(tmp_path: Path) -> None:
    assert git_revision(tmp_path) == ""
    assert git_revision(tmp_path / "does-not-exist") == ""
    rev = git_revision()
    assert rev == "" or len(rev) == 40


def test_compute_metrics_roundtrip_recomputes_identically(tmp_path: Path) -> None:
    res = _mixed_result()
    write_result(res, tmp_path / "r.json")
    back = read_result(tmp_path / "r.json")
    assert compute_metrics(back.records, back.clients) == res.metrics
    assert back.clients[2] == ClientInfo("idle")


def test_policy_samples_go_to_their_own_parquet_file(tmp_path: Path) -> None:
    """Samples are stored beside the JSON (not in it), come back exactly, and a samples file
    that is not the JSON's is refused; a rewrite without samples removes the old file."""
    res = make_result("VTC", 3, window=(2.0, 15.0))
    assert res.policy_samples
    path = tmp_path / "r.json"
    write_result(res, path)
    doc = json.loads(path.read_text())
    assert doc["run"]["policy_samples"] == [] and doc["samples_file"] == "r.samples.parquet"
    assert read_result(path).policy_samples == res.policy_samples
    assert read_result(path, records=False).policy_samples == res.policy_samples
    other = replace(res, policy_samples=res.policy_samples[:1])
    write_result(other, tmp_path / "o.json")
    (tmp_path / "o.samples.parquet").replace(tmp_path / "r.samples.parquet")
    with pytest.raises(InputError, match="samples_file"):
        read_result(path)
    write_result(replace(res, policy_samples=()), path)
    assert not (tmp_path / "r.samples.parquet").exists()
    assert read_result(path).policy_samples == ()
