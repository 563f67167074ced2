"""Unit tests of the input/output safety pieces: bounded reads, output-place checks, the
directory lock, stale temporary files, the memory pre-flight, knob bounds and the naming of
policy parameters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exfairs.atomic import atomic_write_text, is_temp_name, remove_stale_temps
from exfairs.dirlock import LOCK_NAME, locked_dir
from exfairs.errors import ConfigError, InputError
from exfairs.paths import (
    check_output_dir,
    check_output_file,
    check_results_dir,
    read_input_bytes,
)
from exfairs.policies.params import check_params_for, check_policy_params
from exfairs.preflight import (
    CAPACITY_GRID_BYTES,
    check_run_fits,
    estimate_run_memory,
    estimate_setup_memory,
    machine_memory_bytes,
)
from exfairs.records import ClientInfo, Request, Workload
from exfairs.sim.config import MAX_COUNT, EngineConfig, max_num_seqs_limit

# -- bounded reads ---------------------------------------------------------------------------------


def test_read_input_bytes_limits(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_bytes(b"x" * 100)
    assert read_input_bytes(f, field="scenario", what="scenario file", limit=100) == b"x" * 100
    with pytest.raises(InputError, match="over the limit of 99 bytes") as info:
        read_input_bytes(f, field="scenario", what="scenario file", limit=99)
    assert info.value.field == "scenario" and info.value.value == str(f)


@pytest.mark.parametrize("kind", ["dev", "fifo", "dir", "missing"])
def test_read_input_bytes_refuses_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    path = {"dev": Path("/dev/zero"), "fifo": tmp_path / "f", "dir": tmp_path,
            "missing": tmp_path / "nope.toml"}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # opening it would block: it must be refused without opening
    with pytest.raises(InputError) as info:
        read_input_bytes(path, field="sweep", what="sweep file")
    assert info.value.field == "sweep" and str(path) in str(info.value)


def test_proc_files_reporting_size_zero_are_bounded() -> None:
    # /proc files are "regular" with st_size 0: the read itself must stop at the limit.
    with pytest.raises(InputError, match="over the limit"):
        read_input_bytes("/proc/self/maps", field="f", what="file", limit=10)


# -- output places ---------------------------------------------------------------------------------


def test_output_dir_checks_create_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert check_output_dir(target) == target
    assert list(tmp_path.iterdir()) == []  # the probe file is gone and no folder was made
    (tmp_path / "f").write_text("x")
    for bad, msg in ((tmp_path / "f", "not a directory"), (tmp_path / "f" / "x", "goes through"),
                     (Path("/proc/x"), "/proc"), (Path("/dev/shm/x/y"), "/dev")):
        with pytest.raises(InputError, match=msg) as info:
            check_output_dir(bad, field="--out")
        assert info.value.field == "--out"


def test_output_file_and_results_dir(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        check_output_file(tmp_path / "d", field="--report")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError, match="not a regular file"):
        check_output_file(tmp_path / "fifo", field="--report")
    with pytest.raises(InputError) as info:
        check_output_file("/proc/x.json", field="--out")
    assert info.value.value == "/proc/x.json"  # the file given, not its folder
    (tmp_path / "r" / "summary.csv").mkdir(parents=True)
    with pytest.raises(InputError, match=r"summary\.csv"):
        check_results_dir(tmp_path / "r")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "plots").write_text("x")
    with pytest.raises(InputError, match="plots"):
        check_results_dir(tmp_path / "p")


# -- atomic writes and stale temporary files -------------------------------------------------------


def test_atomic_write_errors_name_the_destination(tmp_path: Path) -> None:
    (tmp_path / "summary.csv").mkdir()
    with pytest.raises(InputError) as info:
        atomic_write_text(tmp_path / "summary.csv", "a,b\n")
    assert info.value.value == str(tmp_path / "summary.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]  # no temporary left


def test_remove_stale_temps_removes_only_temporaries(tmp_path: Path) -> None:
    keep = [tmp_path / "cell.json", tmp_path / ".hidden", tmp_path / ".x.tmp",
            tmp_path / "plots" / "a.png"]
    (tmp_path / "plots").mkdir()
    for p in keep:
        p.write_text("k")
    # What a writer killed mid-write leaves: temporaries named as this module names them.
    import tempfile

    stale = []
    for folder, name in ((tmp_path / "plots", "b.png"), (tmp_path, "cell.json"),
                         (tmp_path, "cell.parquet")):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        os.write(fd, b"partial")
        os.close(fd)
        stale.append(Path(tmp))
    assert all(is_temp_name(p.name) for p in stale)
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert all(p.exists() for p in keep)


# -- the directory lock ----------------------------------------------------------------------------


def test_lock_refuses_a_second_holder_and_is_released(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with locked_dir(out):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(InputError, match=f"pid {os.getpid()}") as info, locked_dir(out):
            pass
        assert info.value.field == "--out"
    assert not (out / LOCK_NAME).exists()
    (out / LOCK_NAME).write_text("999999\n")  # stale: its holder died without cleaning up
    with locked_dir(out):
        pass
    assert not (out / LOCK_NAME).exists()


# -- memory pre-flight -----------------------------------------------------------------------------


def _workload(n_clients: int, n_requests: int, tokens_each: int, duration_s: float) -> Workload:
    clients = tuple(ClientInfo(name=f"c{i}") for i in range(n_clients))
    reqs = tuple(Request(request_id=i, client=f"c{i % n_clients}", arrival_s=i * 0.01,
                         prompt_tokens=10, output_tokens=tokens_each)
                 for i in range(n_requests))
    return Workload(name="w", seed=0, clients=clients, requests=reqs, duration_s=duration_s)


@settings(max_examples=50, deadline=None)
@given(n_c=st.integers(1, 50), n_r=st.integers(0, 50), tok=st.integers(1, 500),
       step=st.floats(1e-3, 1.0))
def test_estimate_grows_with_clients_and_tokens(n_c: int, n_r: int, tok: int,
                                                step: float) -> None:
    base = estimate_run_memory(_workload(n_c, n_r, tok, 10.0), min_step_s=step)
    more_clients = estimate_run_memory(_workload(n_c + 1, n_r, tok, 10.0), min_step_s=step)
    more_tokens = estimate_run_memory(_workload(n_c, n_r, tok + 1, 10.0), min_step_s=step)
    assert more_clients.total_bytes >= base.total_bytes
    assert more_tokens.total_bytes >= base.total_bytes
    assert base.setup_bytes == n_c * CAPACITY_GRID_BYTES
    # steps never exceed the tokens (a batch of one) nor the simulated time over the step
    assert base.timeline_points <= 2 * (min(n_r * tok, 20.0 / step + 1) + 2 * n_r)


def test_check_run_fits_names_clients_and_the_limit() -> None:
    est = estimate_setup_memory(10_000)
    check_run_fits(est, what="s", available_bytes=100 * 2**30)
    with pytest.raises(InputError, match=r"over the limit of 1\.6 GiB") as info:
        check_run_fits(est, what="scenario s", available_bytes=2 * 2**30)
    assert info.value.field == "clients" and info.value.value == 10_000
    with pytest.raises(InputError, match="4 parallel jobs"):
        check_run_fits(est, what="s", parallel=4, available_bytes=8 * 2**30)


@settings(max_examples=30, deadline=None)
@given(n_r=st.integers(1, 200), tok=st.integers(1, 300), idle=st.integers(1, 100_000))
def test_idle_clients_cost_only_their_setup_grids(n_r: int, tok: int, idle: int) -> None:
    """The service timeline and sparse samples grow with senders and tokens, not registered
    clients: clients that never send add their capacity grids and nothing to the run's part."""
    base = estimate_run_memory(_workload(n_r, n_r, tok, 10.0), min_step_s=0.01)
    more = estimate_run_memory(_workload(n_r + idle, n_r, tok, 10.0), min_step_s=0.01)
    assert more.timeline_bytes == base.timeline_bytes
    assert more.samples_bytes == base.samples_bytes
    assert more.setup_bytes - base.setup_bytes == idle * CAPACITY_GRID_BYTES
    dense = estimate_run_memory(_workload(n_r + idle, n_r, tok, 10.0), min_step_s=0.01,
                                dense_samples=True)
    assert dense.samples_bytes > more.samples_bytes


def test_many_idle_clients_at_tiny_rates_fit() -> None:
    """10,000 clients and 100,000 steps: the dense timeline needed ~18 GB and was refused on a
    24 GB machine; the sparse one needs a few hundred MB (setup grids: 2.3 GB)."""
    est = estimate_run_memory(_workload(10_000, 10_000, 10, 1000.0), min_step_s=0.02)
    check_run_fits(est, what="scenario tiny-rates", available_bytes=24 * 2**30)
    assert est.timeline_bytes < 2**30


def test_machine_memory_is_positive() -> None:
    assert machine_memory_bytes() > 0


# -- knob bounds -----------------------------------------------------------------------------------


def _engine(**kw: int) -> EngineConfig:
    base = {"max_num_seqs": 8, "max_num_batched_tokens": 512, "block_size": 16,
            "num_gpu_blocks": 100, "max_model_len": 512}
    return EngineConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("knob", ["max_num_batched_tokens", "max_model_len", "block_size",
                                  "num_gpu_blocks", "long_prefill_token_threshold"])
def test_knobs_are_bounded(knob: str) -> None:
    with pytest.raises(ConfigError, match=str(MAX_COUNT)) as info:
        _engine(**{knob: MAX_COUNT + 1})
    assert info.value.field in (knob, "num_gpu_blocks")


def test_max_num_seqs_is_bounded_by_memory() -> None:
    limit = max_num_seqs_limit()
    assert _engine(max_num_seqs=limit, max_num_batched_tokens=limit).max_num_seqs == limit
    with pytest.raises(ConfigError, match=f"≤ {limit}"):
        _engine(max_num_seqs=limit + 1, max_num_batched_tokens=limit + 1)


# -- policy parameters named as POLICY.PARAM -------------------------------------------------------


@pytest.mark.parametrize(("policy", "params", "field"), [
    ("ExFairS", {"alpha": 2}, "ExFairS.alpha"), ("EXFAIRS", {"alpha": float("nan")},
                                                  "ExFairS.alpha"),
    ("exfairs", {"window_s": 0}, "ExFairS.window_s"), ("VTC", {"w_p": -1}, "VTC.w_p"),
    ("VTC", {"nope": 1}, "VTC.nope"), ("NOPOLICY", {"x": 1}, "NOPOLICY.x"),
])
def test_policy_param_errors_name_policy_dot_param(policy: str, params: dict[str, object],
                                                   field: str) -> None:
    with pytest.raises(InputError) as info:
        check_policy_params(policy, params)
    assert info.value.field == field


def test_params_for_a_policy_not_run_are_checked() -> None:
    check_params_for(["FCFS"], {})
    with pytest.raises(InputError) as info:
        check_params_for(["FCFS"], {"VTC": {"w_p": -1}})
    assert info.value.field == "VTC.w_p"
