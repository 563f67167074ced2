"""HTTP mode against a small local aiohttp server that can misbehave (5xx, refused connections,
read timeouts); the real-server test is in test_live_engine.py."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402
from live_fakes import make_workload  # noqa: E402

from exfairs.live.config import DriverConfig, HttpConfig  # noqa: E402
from exfairs.live.driver import LiveDriver  # noqa: E402
from exfairs.live.http import HttpBackend  # noqa: E402
from exfairs.policies import Mode, make_policy  # noqa: E402
from exfairs.records import Outcome  # noqa: E402

SECRET = "sk-test-DO-NOT-LEAK-1234"


class FakeServer:
    """An OpenAI-style /v1/completions streaming server; behaviour per request by prompt length:
    prompt length 13 → HTTP 500, 17 → stalls mid-stream, 19 → a JSON error event; otherwise
    streams `max_tokens` tokens, `per_chunk` at a time."""

    def __init__(self, *, per_chunk: int = 1, token_s: float = 0.001, usage: bool = True,
                 require_key: str | None = SECRET) -> None:
        self.per_chunk, self.token_s, self.usage, self.require_key = (per_chunk, token_s, usage,
                                                                      require_key)
        self.bodies: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.release: asyncio.Event | None = None

    async def completions(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        if self.require_key and auth != f"Bearer {self.require_key}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        body = await request.json()
        self.bodies.append(body)
        n_prompt = len(body["prompt"])
        if n_prompt == 13:
            return web.Response(status=500, text="internal error: out of cheese")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        sent = 0
        total = int(body["max_tokens"])
        while sent < total:
            await asyncio.sleep(self.token_s)
            if n_prompt == 17 and sent >= 1:
                assert self.release is not None
                await self.release.wait()  # stall until the test server stops
                return resp
            if n_prompt == 19:
                await resp.write(b'data: {"error": {"message": "boom", "code": 400}}\n\n')
                return resp
            k = min(self.per_chunk, total - sent)
            sent += k
            chunk: dict[str, Any] = {"choices": [{"index": 0, "text": "x" * k,
                                                  "finish_reason": None if sent < total
                                                  else "length"}]}
            if self.usage:
                chunk["usage"] = {"prompt_tokens": n_prompt, "completion_tokens": sent}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if self.usage:
            final = {"choices": [], "usage": {"prompt_tokens": n_prompt,
                                              "completion_tokens": sent}}
            await resp.write(f"data: {json.dumps(final)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "fake-model"}]})

    async def start(self) -> str:
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.release is not None:
            self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(server: FakeServer, wl: Any, mode: Mode = Mode.GATE, *, key: str | None = SECRET,
         read_timeout_s: float = 5.0, url: str | None = None) -> Any:
    async def go() -> Any:
        base = await server.start()
        backend = HttpBackend(HttpConfig(url=url or base + "/v1", api_key=key,
                                         read_timeout_s=read_timeout_s, connect_timeout_s=1.0),
                              max_num_seqs=4)
        try:
            await backend.start()
            assert backend.model == "fake-model"
            return await LiveDriver(wl, make_policy("VTC"), mode, backend,
                                    DriverConfig(drain_timeout_s=10)).run()
        finally:
            await backend.close()
            await server.stop()

    return asyncio.run(go())


def test_streams_tokens_and_sends_vllm_fields() -> None:
    server = FakeServer(per_chunk=3)
    out = _run(server, make_workload(6, output_tokens=7), Mode.PRIORITY)
    assert all(r.outcome is Outcome.FINISHED for r in out.records)
    assert all(r.generated_tokens == 7 for r in out.records)
    b = server.bodies[0]
    assert b["stream"] is True and b["ignore_eos"] is True and b["max_tokens"] == 7
    assert b["stream_options"]["include_usage"] is True
    assert isinstance(b["prompt"], list) and len(b["prompt"]) == 16
    assert b["model"] == "fake-model"


def test_priority_field_only_carries_nonzero_priorities() -> None:
    # VTC's first priorities are counters: client b's second request has a nonzero one.
    server = FakeServer()
    _run(server, make_workload(6, output_tokens=2, gap_s=0.05), Mode.PRIORITY)
    assert any("priority" in b for b in server.bodies)
    server = FakeServer()
    _run(server, make_workload(4, output_tokens=2), Mode.GATE)
    assert not any("priority" in b for b in server.bodies)


def test_without_usage_counts_chunks() -> None:
    out = _run(FakeServer(usage=False), make_workload(3, output_tokens=4))
    assert [r.generated_tokens for r in out.records] == [4, 4, 4]


def test_http_5xx_and_error_events_are_failed() -> None:
    wl = make_workload(4, output_tokens=3)
    wl = type(wl)(name=wl.name, seed=wl.seed, clients=wl.clients, duration_s=wl.duration_s,
                  requests=tuple(r if i not in (1, 2) else
                                 type(r)(**{**{f: getattr(r, f) for f in r.__slots__},
                                            "prompt_tokens": 13 if i == 1 else 19})
                                 for i, r in enumerate(wl.requests)))
    out = _run(FakeServer(), wl)
    by = {r.request_id: r for r in out.records}
    assert by[1].outcome is Outcome.FAILED and "HTTP 500" in (by[1].error or "")
    assert by[2].outcome is Outcome.FAILED and "boom" in (by[2].error or "")
    assert by[0].outcome is Outcome.FINISHED and by[3].outcome is Outcome.FINISHED


def test_read_timeout_is_timed_out() -> None:
    wl = make_workload(3, output_tokens=3)
    r1 = wl.requests[1]
    stalled = type(r1)(**{**{f: getattr(r1, f) for f in r1.__slots__}, "prompt_tokens": 17})
    wl = type(wl)(name=wl.name, seed=wl.seed, clients=wl.clients, duration_s=wl.duration_s,
                  requests=(wl.requests[0], stalled, wl.requests[2]))
    out = _run(FakeServer(), wl, read_timeout_s=0.3)
    by = {r.request_id: r for r in out.records}
    assert by[1].outcome is Outcome.TIMED_OUT
    assert by[1].generated_tokens == 1
    assert by[0].outcome is Outcome.FINISHED and by[2].outcome is Outcome.FINISHED


def test_refused_connections_are_failed() -> None:
    port = _free_port()

    async def go() -> Any:
        backend = HttpBackend(HttpConfig(url=f"http://127.0.0.1:{port}", model="m",
                                         connect_timeout_s=1.0))
        await backend.start()
        try:
            return await LiveDriver(make_workload(5), make_policy("FCFS"), Mode.GATE,
                                    backend).run()
        finally:
            await backend.close()

    out = asyncio.run(go())
    assert Counter(r.outcome for r in out.records) == {Outcome.FAILED: 5}
    assert all("Cannot connect" in (r.error or "") or "Connect" in (r.error or "")
               for r in out.records)


def test_wrong_key_fails_and_the_key_never_leaks(caplog: pytest.LogCaptureFixture,
                                                 tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    out = _run(FakeServer(require_key="other-key"), make_workload(2), key=SECRET)
    assert all(r.outcome is Outcome.FAILED and "401" in (r.error or "") for r in out.records)
    backend = HttpBackend(HttpConfig(url="http://127.0.0.1:1", api_key=SECRET))
    text = repr(out) + repr(backend.knobs()) + repr(HttpConfig(url="http://x", api_key=SECRET))
    text += caplog.text
    assert SECRET not in text


def test_config_rejects_bad_urls() -> None:
    from exfairs.errors import ConfigError

    with pytest.raises(ConfigError, match="vllm_url"):
        HttpConfig(url="localhost:8000")
    assert HttpConfig(url="http://h:1/v1/").base_url == "http://h:1"
