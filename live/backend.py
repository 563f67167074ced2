"""What the live driver needs from an engine: stream one request's tokens, and nothing else.

Two implementations: `exfairs.live.inprocess.InProcessBackend` (vLLM's AsyncLLM in this process,
its engine core in a spawned child) and `exfairs.live.http.HttpBackend` (any OpenAI-compatible
server). A backend reports failures as exceptions of three kinds, which the driver maps to
record outcomes: `BackendTimeout` → TIMED_OUT, `EngineDead` → the run stops, any other
`BackendError` → FAILED.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from exfairs.records import Request


class BackendError(Exception):
    """A request failed in the engine or server (the request's outcome becomes FAILED)."""


class BackendTimeout(BackendError):
    """The client gave up waiting for the server (connect or read timeout): TIMED_OUT."""


class EngineDead(BackendError):
    """The engine is gone (process died, server unreachable for good): the run must stop."""


class LiveDependencyError(ImportError):
    """The live extra (vLLM, aiohttp) is not installed."""


@dataclass(frozen=True, slots=True)
class EngineTimes:
    """The engine's own per-request timestamps (`time.monotonic` seconds of the engine host,
    which on one Linux machine is the driver's clock too), where the backend exposes them."""

    queued_mono: float | None = None
    scheduled_mono: float | None = None
    first_token_mono: float | None = None
    last_token_mono: float | None = None
    preemptions: int = 0


@dataclass(frozen=True, slots=True)
class TokenChunk:
    """Tokens that arrived together: `new_tokens` (≥ 0) generated since the previous chunk.

    `finished` marks the last chunk of a request; `preemptions` is the engine's running count of
    this request's preemptions (0 when unknown); `engine` carries the engine's timestamps on the
    last chunk when available (in-process backend with stats on).
    """

    new_tokens: int
    finished: bool = False
    preemptions: int = 0
    engine: EngineTimes | None = None


class Backend(Protocol):
    """An engine the driver can submit requests to. Used from one asyncio event loop."""

    @property
    def name(self) -> str:
        """Short label for logs and result files ("vllm-inprocess", "http")."""
        ...

    @property
    def max_num_seqs(self) -> int | None:
        """The engine's concurrent-sequence limit when known (the gate's default limit)."""
        ...

    async def start(self) -> None:
        """Start or connect to the engine (idempotent)."""
        ...

    def stream(
        self, request: Request, prompt_token_ids: Sequence[int], priority: int, *,
        extra_args: Mapping[str, str | int | float] | None = None,
    ) -> AsyncGenerator[TokenChunk, None]:
        """Submit `request` with these prompt token ids and `priority` (lower runs first; ignored
        unless the engine schedules by priority) and yield its tokens as they come, with exactly
        ``request.output_tokens`` tokens in total when it completes. Cancelling the consumer
        aborts the request in the engine. `extra_args` go to vLLM's ``SamplingParams.extra_args``
        (HTTP: ``vllm_xargs``) for the scheduler plug-in; the driver passes the keyword only when
        it has some, so backends without a plug-in need not accept it."""
        ...

    async def close(self) -> None:
        """Release the engine or connections (idempotent)."""
        ...

    def knobs(self) -> tuple[tuple[str, int | float | str | bool], ...]:
        """Engine settings worth recording in result files (never secrets)."""
        ...
