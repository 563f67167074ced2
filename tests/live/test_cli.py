"""`exfairs-live` command line: bad input, HTTP runs against a fake server, Ctrl-C flushing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exfairs.live.cli import main

DATA = Path(__file__).parent / "data"
SCENARIO = str(DATA / "live-tiny.toml")
KNOBS = ["--max-num-seqs", "4", "--max-num-batched-tokens", "1024", "--max-model-len", "1024",
         "--block-size", "32", "--num-gpu-blocks-override", "256"]


def test_needs_exactly_one_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SCENARIO]) == 2
    assert "exactly one of --model" in capsys.readouterr().err
    assert main(["run", SCENARIO, "--model", "m", "--vllm-url", "http://x"]) == 2


def test_bad_experiment_and_scenario_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SCENARIO, "-e", "NOPE", "--model", "m"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert main(["run", str(DATA / "missing.toml"), "--model", "m"]) == 2


def test_unsupported_engine_argument_is_named() -> None:
    from exfairs.errors import ConfigError
    from exfairs.live.config import VllmEngineConfig
    from exfairs.live.inprocess import engine_args_kwargs

    without = frozenset(f.name for f in dataclasses.fields(VllmEngineConfig)
                        if f.name not in ("swap_space", "device"))
    with pytest.raises(ConfigError, match="swap_space"):
        engine_args_kwargs(VllmEngineConfig(model="m", swap_space=4.0), without)
    kw = engine_args_kwargs(VllmEngineConfig(model="m", max_num_seqs=7), without)
    assert kw["model"] == "m" and kw["max_num_seqs"] == 7
    assert "swap_space" not in kw and "device" not in kw and "max_model_len" not in kw


def test_package_imports_without_vllm() -> None:
    code = ("import sys; sys.modules['vllm'] = None; sys.modules['aiohttp'] = None\n"
            "import exfairs.live.cli, exfairs.live.driver, exfairs.live.run, exfairs.live.http\n"
            "import exfairs.live.inprocess as ip\n"
            "from exfairs.live.backend import LiveDependencyError\n"
            "try:\n    ip.import_vllm()\nexcept LiveDependencyError as e:\n"
            "    assert 'exfairs[live]' in str(e); print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.fixture
def fake_server() -> Iterator[Any]:
    """The fake completions server of test_http_faults, on its own thread."""
    pytest.importorskip("aiohttp")
    from test_http_faults import FakeServer

    server = FakeServer(token_s=0.05, require_key="cli-secret-777")
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    url = asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    yield server, url
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "exfairs.live.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_run_over_http_writes_results_without_the_key(fake_server: Any, tmp_path: Path) -> None:
    server, url = fake_server
    p = _cli(["run", SCENARIO, "-e", "QUEUE_VTC", "-e", "ExFairS", "--vllm-url", url,
              "--profile", "a100-llama2-7b", "--duration", "2", "--out", str(tmp_path),
              "--no-plots", "--no-warmup", *KNOBS], env={"EXFAIRS_API_KEY": "cli-secret-777"})
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    files = sorted(tmp_path.glob("*__live.json"))
    assert [f.name.split("__")[1] for f in files] == ["ExFairS", "QUEUE_VTC"]
    for f in files:
        text = f.read_text()
        assert "cli-secret-777" not in text
        doc = json.loads(text)
        assert doc["num_records"] > 0 and f.with_suffix(".parquet").is_file(), "records written"
        assert doc["failed"] == 0 and doc["completed"] > 0
    assert (tmp_path / "summary.csv").exists()
    assert "cli-secret-777" not in out + err
    assert any("priority" in b for b in server.bodies)


@pytest.mark.slow
def test_sigint_flushes_partial_results(fake_server: Any, tmp_path: Path) -> None:
    from exfairs.records import Outcome
    from exfairs.results import read_result

    _, url = fake_server
    p = _cli(["run", SCENARIO, "-e", "QUEUE_FCFS", "--vllm-url", url, "--api-key-env", "K",
              "--profile", "a100-llama2-7b", "--out", str(tmp_path), "--no-plots",
              "--no-warmup", *KNOBS], env={"K": "cli-secret-777"})
    assert p.stderr is not None
    deadline = time.monotonic() + 60
    seen = ""
    while "done " not in seen or " done 0 " in seen.splitlines()[-1]:
        line = p.stderr.readline()
        assert line or p.poll() is None, seen
        seen += line
        assert time.monotonic() < deadline, seen
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, seen + err
    (path,) = tmp_path.glob("*__live.json")
    res = read_result(path)
    status = dict(res.info.engine_knobs)["live_status"]
    assert str(status).startswith("partial: interrupted")
    n = len(res.records)
    assert n == len({r.request_id for r in res.records}) and n > 0
    outcomes = {r.outcome for r in res.records}
    assert Outcome.ABORTED in outcomes and Outcome.FINISHED in outcomes
