"""The Dask executor: same bytes as the process pool, an existing scheduler by address, and
clear errors (exit 2) when Dask is missing or the scheduler cannot be reached."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sweep_helpers import comparable_bytes, leftovers, result_files

from exfairs.sim.cli import main

# The brief's tiny grid on the bundled default scenario.
GRID = ["sweep", "--scenario", "default", "--seeds", "0", "--loads", "1.0", "-e", "FCFS",
        "-e", "QUEUE_VTC", "--no-plots"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    msg = err[err.index("exfairs-sim: error:"):].strip()
    assert "\n\n" not in msg  # one paragraph
    return msg


def test_missing_dask_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # A None entry in sys.modules makes `import distributed` raise ImportError.
    monkeypatch.setitem(sys.modules, "distributed", None)
    code = main([*GRID, "--executor", "dask", "--out", str(tmp_path / "out")])
    assert code == 2
    msg = _error(capsys)
    assert "exfairs[dist]" in msg and "--executor" in msg and "'dask'" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path, address: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    addr = address.format(port=_free_port())  # nothing listens there
    code = main([*GRID, "--executor", "dask", "--scheduler", addr, "--out", str(tmp_path / "o")])
    assert code == 2
    msg = _error(capsys)
    assert "cannot reach the Dask scheduler" in msg and "--scheduler" in msg and addr in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("address", ["not-an-address", "tcp://127.0.0.1:http", "tcp://:"])
def test_malformed_scheduler_address_is_a_clear_error(
        tmp_path: Path, address: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*GRID, "--executor", "dask", "--scheduler", address,
                 "--out", str(tmp_path / "o")])
    assert code == 2
    msg = _error(capsys)
    assert "--scheduler" in msg and repr(address) in msg
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def process_pool_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid run by the process pool (the reference for the Dask runs)."""
    out = tmp_path_factory.mktemp("pool")
    assert main([*GRID, "--jobs", "2", "--out", str(out)]) == 0
    assert len(result_files(out)) == 2
    return out


def _assert_same_results(reference: Path, other: Path) -> None:
    names = [p.name for p in result_files(reference)]
    assert [p.name for p in result_files(other)] == names  # same cells, same config hashes
    for name in names:
        assert comparable_bytes(other / name) == comparable_bytes(reference / name), name
    assert leftovers(other) == []
    assert (other / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()


@pytest.mark.slow
def test_local_cluster_equals_process_pool(tmp_path: Path, process_pool_sweep: Path) -> None:
    out = tmp_path / "dask"
    assert main([*GRID, "--executor", "dask", "--jobs", "2", "--out", str(out)]) == 0
    _assert_same_results(process_pool_sweep, out)


@pytest.fixture()
def scheduler() -> Iterator[str]:
    """A 2-worker Dask cluster listening on a fixed port of 127.0.0.1."""
    from distributed import LocalCluster

    port = _free_port()
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        scheduler_port=port, dashboard_address=None)
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        cluster.close()


@pytest.mark.slow
def test_existing_scheduler_equals_process_pool(tmp_path: Path, scheduler: str,
                                                process_pool_sweep: Path) -> None:
    out = tmp_path / "remote"
    assert main([*GRID, "--executor", "dask", "--scheduler", scheduler, "--out", str(out)]) == 0
    _assert_same_results(process_pool_sweep, out)
    # Rerunning against the cluster reuses the cells (resume works the same with Dask).
    assert main([*GRID, "--executor", "dask", "--scheduler", scheduler, "--out", str(out)]) == 0
    _assert_same_results(process_pool_sweep, out)
