"""Dataset prompts on live backends: sent as text over HTTP (both endpoints), refused before any
load by an in-process engine that has no tokenizer."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

pytest.importorskip("aiohttp")
from test_http_faults import FakeServer

from exfairs.errors import InputError
from exfairs.live.config import DriverConfig, HttpConfig, VllmEngineConfig
from exfairs.live.driver import LiveDriver
from exfairs.live.http import HttpBackend
from exfairs.live.inprocess import InProcessBackend
from exfairs.live.run import check_text_prompts
from exfairs.policies import Mode, make_policy
from exfairs.records import Outcome, Workload
from exfairs.sim.prepare import PreparedRun, prepare_run


def _prepared() -> PreparedRun:
    return prepare_run("sharegpt-mini", 0, profile="a100-llama2-7b")


def _head(workload: Workload, n: int) -> Workload:
    # The first n requests, 10 ms apart, so that a fake-server run takes well under a second.
    reqs = tuple(replace(r, request_id=i, arrival_s=0.01 * i)
                 for i, r in enumerate(workload.requests[:n]))
    return replace(workload, requests=reqs, duration_s=0.01 * n)


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_text_prompts_are_sent_as_text(endpoint: str) -> None:
    req = _prepared().workload.requests[0]
    assert req.prompt_text is not None
    body = HttpBackend(HttpConfig(url="http://127.0.0.1:1/v1", endpoint=endpoint),  # type: ignore[arg-type]
                       max_num_seqs=4).body(req, [1, 2, 3], 0)
    if endpoint == "completions":
        assert body["prompt"] == req.prompt_text
    else:
        assert body["messages"] == [{"role": "user", "content": req.prompt_text}]
    assert body["max_tokens"] == req.output_tokens and body["user"] == req.client


def test_a_fake_server_receives_the_dataset_text() -> None:
    prepared = _prepared()
    wl = _head(prepared.workload, 6)
    server = FakeServer(require_key=None)

    async def go() -> Any:
        base = await server.start()
        backend = HttpBackend(HttpConfig(url=base + "/v1", connect_timeout_s=1.0),
                              max_num_seqs=4)
        try:
            await backend.start()
            out = await LiveDriver(wl, make_policy("FCFS"), Mode.GATE, backend,
                                   DriverConfig(drain_timeout_s=10)).run()
            return out, dict(backend.knobs())
        finally:
            await backend.close()
            await server.stop()

    out, knobs = asyncio.run(go())
    assert all(r.outcome is Outcome.FINISHED for r in out.records)
    assert sorted(b["prompt"] for b in server.bodies) == sorted(
        str(r.prompt_text) for r in wl.requests)
    # The fake counts characters as tokens: about 4 per estimated token.
    assert 3.0 < float(knobs["text_prompt_token_ratio"]) < 4.5


def test_engine_without_tokenizer_refuses_text_before_load() -> None:
    prepared = _prepared()
    backend = InProcessBackend(VllmEngineConfig(model="m", skip_tokenizer_init=True))
    with pytest.raises(InputError, match="no tokenizer") as exc:
        check_text_prompts(prepared, backend)
    assert exc.value.field == "dataset"
    check_text_prompts(prepared, InProcessBackend(VllmEngineConfig(model="m")))
    plain = prepare_run("default", 0, profile="a100-llama2-7b", duration_s=60)
    check_text_prompts(plain, backend)  # token-id prompts: fine
