"""The VTC-paper regression suite (studies/vtc_paper), short version: on a 150-s 1 : 2 overload
every fair experiment splits the service evenly, FCFS follows the arrival rates, and the
artifact's figures the table compares against are the ones its files give."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from exfairs.scenario import load_scenario

HERE = Path(__file__).resolve().parents[2] / "studies" / "vtc_paper"
sys.path.insert(0, str(HERE))

import regenerate  # noqa: E402
import vtc_suite  # noqa: E402


def test_scenarios_load_and_artifact_figures_cover_the_suite() -> None:
    figures = json.loads((HERE / "artifact_figures.json").read_text())["experiments"]
    for exp in vtc_suite.SUITE:
        s = load_scenario(str(regenerate.scenario_path(exp)))
        assert [c.name for c in s.clients] == list(exp.clients)
        assert "VTC" in figures[exp.scenario]
    # The artifact's overload (Figure 3): VTC splits it evenly, FCFS 1 : 2.
    over = figures["vtc-overload"]
    assert over["VTC"]["share"]["client1"] == pytest.approx(0.5, abs=0.02)
    assert over["FCFS"]["share"]["client1"] == pytest.approx(1 / 3, abs=0.01)


def test_shares_and_response_times_by_hand() -> None:
    r = [vtc_suite.Response("client1", 0.0, 1.0, 3.0, 10, 5),  # service 20 over [1, 3]
         vtc_suite.Response("client2", 0.0, 2.0, 6.0, 20, 10),  # 40 over [2, 6]
         vtc_suite.Response("client2", 5.0, -1.0, 0.0, 20, 10)]  # aborted
    shares = vtc_suite.service_shares(r, ("client1", "client2"), 0.0, 4.0)
    assert shares["client1"] == pytest.approx(20 / 40)  # client2: 40 · 2/4 = 20 by t = 4
    rt = vtc_suite.response_times(r, ("client1", "client2"), 0.0, 10.0)
    assert rt == {"client1": 1.0, "client2": 2.0}


@pytest.mark.slow
def test_short_overload_shares() -> None:
    rows = {r.experiment: r for r in regenerate.run_experiment(vtc_suite.SUITE[0], short=True)}
    for exp in ("QUEUE_FCFS", "FCFS"):
        assert rows[exp].share["client1"] == pytest.approx(1 / 3, abs=0.02), exp
    for exp in ("QUEUE_VTC", "VTC", "ENGINE_VTC", "QUEUE_ExFairS", "ExFairS", "ENGINE_ExFairS"):
        assert 0.45 <= rows[exp].share["client1"] <= 0.55, (exp, rows[exp].share)
