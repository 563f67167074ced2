"""Typed records of the engine model: what a step schedules (`StepPlan`), what it produced
(`StepOutcome`), and what test observers see (`StepInfo`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exfairs.sim.queues import Seq


@dataclass(frozen=True, slots=True)
class Chunk:
    """One request's piece of a step: `tokens` new tokens on top of `computed` cached ones.
    `decode`: exactly one token on a caught-up cache after the first token (a decode sequence for
    the cost model and `Policy.on_service`; also the last 1-token piece of a recomputation)."""

    seq: Seq
    tokens: int
    computed: int
    decode: bool


@dataclass(frozen=True, slots=True)
class StepPlan:
    """The schedule of one engine step (vLLM ``SchedulerOutput``, reduced to what costs and
    accounting need). Built by `Scheduler.schedule`, which has already allocated its KV blocks,
    preempted and admitted.

    Invariants: ``decode_seqs``/``decode_ctx`` count every decode sequence of the step (context =
    cached tokens + the new one); ``prefill_tokens``/``prefill_attn`` = Σ n and Σ n·(c + n) over
    the non-decode chunks. With ``implicit_decode`` every decoding running request is scheduled
    one token and only the other pieces are listed in `chunks`; otherwise `chunks` lists every
    scheduled piece, in schedule order. ``stop`` says why admission stopped: "empty", "seqs",
    "budget", "kv", "chunk", "preempted" or "limit" (engine mode's admission limit held the
    head back, `exfairs.policies.admission_engine.EngineAdmission`).
    """

    step: int
    chunks: tuple[Chunk, ...]
    implicit_decode: bool
    decode_seqs: int
    decode_ctx: int
    prefill_tokens: int
    prefill_attn: int
    preempted: tuple[Seq, ...]
    admitted: tuple[Seq, ...]
    stop: str

    @property
    def busy(self) -> bool:
        """The step schedules at least one token."""
        return bool(self.chunks) or self.decode_seqs > 0

    @property
    def decode_only(self) -> bool:
        """Every scheduled request decodes, nothing was admitted or preempted."""
        return (self.implicit_decode and not self.chunks and not self.admitted
                and not self.preempted)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What one step, or a run of `n_steps` identical decode-only steps, produced.

    `ends_s`: the end time of every step. `service`: (client index, prefill tokens, decode
    tokens) per step, by client index (every step of a run serves the same). `first_tokens` and
    `finished`: in running-list order, at the last step's end. `order` (only when the scheduler
    records it, `Scheduler.record_order`, and the last step finished a request; else empty): the
    last step's pieces as (seq, prefill tokens, output tokens) in running-list order — vLLM's
    output order; a run's earlier steps are in `service` only.
    """

    ends_s: tuple[float, ...]
    service: tuple[tuple[int, int, int], ...]
    first_tokens: tuple[Seq, ...]
    finished: tuple[Seq, ...]
    order: tuple[tuple[Seq, int, int], ...] = ()

    @property
    def end_s(self) -> float:
        """End time of the last step."""
        return self.ends_s[-1]

    @property
    def n_steps(self) -> int:
        """Steps executed."""
        return len(self.ends_s)


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What one engine step (or a run of `n_steps` identical decode steps) did, for test
    observers. `scheduled` lists (request id, tokens, computed before) of the first step; in a run
    every later step schedules the same requests one token each. ``n_steps == 0``: the scheduler
    only preempted (every running request it reached lacked KV blocks); no time passed."""

    start_s: float
    end_s: float
    n_steps: int
    scheduled: tuple[tuple[int, int, int], ...]
    num_running: int
    blocks_in_use: int
    preempted: tuple[int, ...]
    admitted: tuple[int, ...]
    finished: tuple[int, ...]


StepObserver = Callable[[StepInfo], None]
