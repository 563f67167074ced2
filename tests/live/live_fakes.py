"""Test factories for the live driver: workloads and a fake engine backend (unit tests only;
everything marked `live` uses the real vLLM engine)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from exfairs.live.backend import BackendError, BackendTimeout, EngineDead, TokenChunk
from exfairs.records import SLO, ClientInfo, Request, Workload


def make_workload(
    n: int = 20,
    *,
    clients: Sequence[str] = ("a", "b"),
    gap_s: float = 0.01,
    prompt_tokens: int = 16,
    output_tokens: int = 4,
    slo: SLO | None = None,
    seed: int = 0,
    arrivals_s: Sequence[float] | None = None,
) -> Workload:
    """`n` requests, clients in turn, one every `gap_s` seconds (or at `arrivals_s`)."""
    times = list(arrivals_s) if arrivals_s is not None else [i * gap_s for i in range(n)]
    reqs = tuple(
        Request(request_id=i, client=clients[i % len(clients)], arrival_s=t,
                prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                slo=slo if slo is not None else SLO(e2e_s=10.0))
        for i, t in enumerate(times))
    return Workload(name="test", seed=seed, clients=tuple(ClientInfo(c) for c in clients),
                    requests=reqs, duration_s=(max(times) if times else 0.0) + gap_s)


@dataclass
class FakeEngine:
    """An asyncio stand-in for an engine: `max_num_seqs` slots, one token per `token_s` for each
    running request; waiting requests ordered FIFO or by (priority, submission) like vLLM.

    Fault injection: `fail` maps request id → exception raised after `fail_after_tokens` tokens;
    `die_after_tokens` kills the whole engine (EngineDead for everyone) after that many tokens.
    """

    max_num_seqs: int = 4
    token_s: float = 0.002
    #: Seconds more per token for each other running request (a batch that slows decoding).
    token_s_per_running: float = 0.0
    priority_scheduling: bool = False
    fail: dict[int, BackendError] = field(default_factory=dict)
    fail_after_tokens: int = 0
    hang: set[int] = field(default_factory=set)
    die_after_tokens: int | None = None
    submissions: list[tuple[int, int]] = field(default_factory=list)  # (request id, priority)
    started_order: list[int] = field(default_factory=list)
    max_running_seen: int = 0
    tokens_total: int = 0
    dead: bool = False
    _running: int = 0
    _cond: asyncio.Condition | None = None
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _waiting: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "fake"

    async def start(self) -> None:
        self._cond = asyncio.Condition()

    async def close(self) -> None:
        pass

    def knobs(self) -> tuple[tuple[str, int | float | str | bool], ...]:
        return (("backend", "fake"), ("max_num_seqs", self.max_num_seqs))

    async def _admit(self, key: tuple[int, int, int]) -> None:
        assert self._cond is not None
        async with self._cond:
            self._waiting.append(key)
            while True:
                if self.dead:
                    raise EngineDead("fake engine died")
                best = min(self._waiting) if self.priority_scheduling else \
                    min(self._waiting, key=lambda k: k[1])
                if best == key and self._running < self.max_num_seqs:
                    self._waiting.remove(key)
                    self._running += 1
                    self.max_running_seen = max(self.max_running_seen, self._running)
                    return
                await self._cond.wait()

    async def _release(self) -> None:
        assert self._cond is not None
        async with self._cond:
            self._running -= 1
            self._cond.notify_all()

    async def stream(self, request: Request, prompt_token_ids: Sequence[int], priority: int
                     ) -> AsyncIterator[TokenChunk]:
        assert len(prompt_token_ids) == request.prompt_tokens
        if self.dead:
            raise EngineDead("fake engine is dead")
        self.submissions.append((request.request_id, priority))
        key = (priority if self.priority_scheduling else 0, next(self._seq), request.request_id)
        await self._admit(key)
        self.started_order.append(request.request_id)
        try:
            if request.request_id in self.hang:
                await asyncio.sleep(3600)
            for i in range(request.output_tokens):
                await asyncio.sleep(self.token_s + self.token_s_per_running * (self._running - 1))
                if self.dead:
                    raise EngineDead("fake engine died")
                exc = self.fail.get(request.request_id)
                if exc is not None and i >= self.fail_after_tokens:
                    raise exc
                self.tokens_total += 1
                if self.die_after_tokens is not None and self.tokens_total >= self.die_after_tokens:
                    self.dead = True
                    assert self._cond is not None
                    async with self._cond:
                        self._cond.notify_all()
                    raise EngineDead("fake engine died")
                yield TokenChunk(new_tokens=1, finished=i == request.output_tokens - 1)
        finally:
            await self._release()


@dataclass
class ScriptedBackend:
    """Yields exactly the given chunks for every request (to test token accounting)."""

    chunks: list[TokenChunk]
    max_num_seqs: int | None = 8

    @property
    def name(self) -> str:
        return "scripted"

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def knobs(self) -> tuple[tuple[str, int | float | str | bool], ...]:
        return (("backend", "scripted"),)

    async def stream(self, request: Request, prompt_token_ids: Sequence[int], priority: int
                     ) -> AsyncIterator[TokenChunk]:
        for c in self.chunks:
            await asyncio.sleep(0)
            yield c


__all__ = ["BackendError", "BackendTimeout", "EngineDead", "FakeEngine", "ScriptedBackend",
           "make_workload"]
