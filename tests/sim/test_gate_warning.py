"""The gate warns, and the results record it, when `max_inflight` exceeds what the KV cache
holds (issue #17: the engine's own FCFS queue then orders the excess, bypassing the gate)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sim_factories import engine, profile, workload

from exfairs.errors import InputError
from exfairs.results import read_result
from exfairs.sim.cli import main
from exfairs.sim.runner import gate_kv_warning, simulate
from exfairs.sim.sweep import Cell, compute_cell


def _wl() -> object:
    return workload([("a", i * 0.01, 64, 32) for i in range(20)], clients=["a"])


def test_warns_and_records_when_the_gate_releases_more_than_the_cache_holds(
        caplog: pytest.LogCaptureFixture) -> None:
    wl = _wl()
    eng = engine(max_num_seqs=8, num_gpu_blocks=24, block_size=16)  # 6 blocks a request: 4 fit
    assert gate_kv_warning(wl, eng, 4) is None  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="exfairs.sim.runner"):
        res = simulate(wl, "QUEUE_FCFS", profile(), engine=eng)  # type: ignore[arg-type]
    assert res.max_inflight == 8
    assert len(res.warnings) == 1 and "exceeds the ~4 requests" in res.warnings[0]
    assert res.warnings[0] in caplog.text
    ok = simulate(wl, "QUEUE_FCFS", profile(), engine=eng, max_inflight=4)  # type: ignore[arg-type]
    assert ok.max_inflight == 4 and ok.warnings == ()
    # Other modes have no gate: nothing to warn about.
    prio = simulate(wl, "FCFS", profile(), engine=eng)  # type: ignore[arg-type]
    assert prio.max_inflight is None and prio.warnings == ()


def test_sweep_cells_pass_and_record_max_inflight() -> None:
    res = compute_cell(Cell("default", "QUEUE_VTC", 0, 0.5, "a100-llama2-7b",
                            engine=(("max_inflight", 3),)))
    knobs = dict(res.info.engine_knobs)
    assert knobs["max_inflight"] == 3 and "gate_warning" not in knobs
    small = compute_cell(Cell("default", "QUEUE_VTC", 0, 0.5, "a100-llama2-7b",
                              engine=(("max_inflight", 40), ("num_gpu_blocks", 64))))
    assert "exceeds" in str(dict(small.info.engine_knobs)["gate_warning"])
    with pytest.raises(InputError, match="max_inflight"):
        compute_cell(Cell("default", "QUEUE_VTC", 0, 0.5, "a100-llama2-7b",
                          engine=(("max_inflight", 0),)))


@pytest.mark.slow
def test_cli_max_inflight_reaches_the_results(tmp_path: Path) -> None:
    assert main(["run", "default", "-e", "QUEUE_FCFS", "--load", "0.5", "--max-inflight", "2",
                 "--num-gpu-blocks", "64", "--out", str(tmp_path), "--no-plots"]) == 0
    (path,) = [p for p in tmp_path.glob("*.json") if p.name != "summary.json"]
    knobs = dict(read_result(path).info.engine_knobs)
    assert knobs["max_inflight"] == 2
