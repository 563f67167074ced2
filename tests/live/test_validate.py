"""The sim-vs-live comparison report (pure computation on result objects)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from exfairs.live.validate import (
    ALL_CLIENTS,
    compare_results,
    format_report,
    plot_validation,
    ranking,
    write_report,
)
from exfairs.metrics import compute_metrics
from exfairs.records import SLO, ClientInfo, Outcome, RequestRecord
from exfairs.results import RunInfo, RunResult

CLIENTS = (ClientInfo("a"), ClientInfo("b"))


def _records(ttft_s: float, tpot_s: float, late_every: int = 0) -> tuple[RequestRecord, ...]:
    out = []
    for i in range(20):
        arrival = i * 0.5
        first = arrival + ttft_s
        times = tuple(first + k * tpot_s for k in range(5))
        violated = late_every and i % late_every == 0
        out.append(RequestRecord(
            request_id=i, client="ab"[i % 2], arrival_s=arrival, prompt_tokens=10,
            output_tokens=5, slo=SLO(e2e_s=0.001 if violated else 100.0),
            outcome=Outcome.VIOLATED if violated else Outcome.FINISHED, dispatch_s=arrival,
            first_token_s=first, finish_s=times[-1], generated_tokens=5, token_times_s=times))
    return tuple(out)


def _result(backend: str, experiment: str, recs: tuple[RequestRecord, ...]) -> RunResult:
    info = RunInfo(backend=backend, scenario="s", experiment=experiment, policy=experiment,  # type: ignore[arg-type]
                   mode="gate", seed=0, load_factor=1.0, profile_id="p",
                   engine_knobs=(("live_status", "complete"),) if backend == "live" else ())
    return RunResult(info=info, clients=CLIENTS, records=recs,
                     metrics=compute_metrics(recs, CLIENTS))


def test_errors_are_relative_for_latency_and_absolute_for_rates() -> None:
    sim = _result("sim", "X", _records(0.11, 0.01))
    live = _result("live", "X", _records(0.10, 0.01, late_every=4))
    rep = compare_results([(sim, live)])
    a = next(s for s in rep.scopes if s.scope == ALL_CLIENTS)
    ttft = a.get("mean_ttft_ms")
    assert ttft.sim == pytest.approx(110.0) and ttft.live == pytest.approx(100.0)
    assert ttft.error == pytest.approx(0.10) and ttft.kind == "relative"
    v = a.get("violation_rate")
    assert v.kind == "absolute" and v.error == pytest.approx(0.0 - 5 / 20)
    per_a = next(s for s in rep.scopes if s.scope == "a")
    assert per_a.get("violation_rate").ok is False
    assert per_a.get("mean_e2el_ms").ok is True  # +8.6% is within 10%
    assert rep.targets_total == 2 * 3  # two clients × (TTFT, e2e, violation rate)


def test_ranking_checks_order_in_both_worlds() -> None:
    good, bad = _records(0.1, 0.01), _records(0.1, 0.01, late_every=2)
    pairs = [(_result("sim", "A", good), _result("live", "A", good)),
             (_result("sim", "B", bad), _result("live", "B", bad))]
    rep = compare_results(pairs)
    vr = rep.rankings[0]
    assert vr.metric == "violation_rate" and vr.sim_order == ("A", "B") and vr.same
    assert vr.kendall_tau == 1.0
    swapped = ranking("violation_rate", {"A": pairs[0][0].metrics, "B": pairs[1][0].metrics},
                      {"A": pairs[1][1].metrics, "B": pairs[0][1].metrics})
    assert not swapped.same and swapped.kendall_tau == -1.0


def test_report_json_table_and_plots(tmp_path: Path) -> None:
    sim = _result("sim", "X", _records(0.1, 0.01))
    live = _result("live", "X", _records(0.1, 0.012))
    rep = compare_results([(sim, live)], notes=("n1",))
    write_report(rep, tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["scenario"] == "s" and doc["notes"] == ["n1"]
    assert any(m["metric"] == "mean_tpot_ms" for s in doc["scopes"] for m in s["metrics"])
    table = format_report(rep)
    assert "TTFT mean ms" in table and "targets met" in table
    paths = plot_validation(rep, tmp_path / "plots")
    assert {p.suffix for p in paths} == {".png", ".svg"} and all(p.stat().st_size for p in paths)


def test_unmatched_pairs_and_nan_are_handled() -> None:
    sim = _result("sim", "X", _records(0.1, 0.01))
    with pytest.raises(ValueError, match="unmatched"):
        compare_results([(sim, _result("live", "Y", _records(0.1, 0.01)))])
    with pytest.raises(ValueError):
        compare_results([])
    empty = _result("live", "X", ())
    rep = compare_results([(sim, empty)])
    m = next(s for s in rep.scopes if s.scope == "a").get("mean_ttft_ms")
    assert math.isnan(m.error) and m.ok is False
    assert json.dumps(rep.to_json())  # NaN → null, valid JSON
