"""The engine model: vLLM V1's scheduler, step by step, on simulated time (DESIGN.md §4).

The model follows ``vllm/v1/core/sched/scheduler.py`` of vLLM 0.32 (the pinned live version,
``Scheduler.schedule``), without prefix caching, speculative decoding, LoRA or KV connectors:

* A request has ``num_tokens = prompt + generated`` tokens and ``computed`` of them in the KV cache.
  Each step first walks the running list in order: a request is scheduled for
  ``num_tokens − computed`` new tokens (one for a decoding request, the rest of its prefill
  otherwise), capped by `long_prefill_token_threshold` (only while more than one request is
  running or waiting) and by the step's remaining token budget. It needs
  ``ceil((computed + n) / block_size)`` KV blocks in all; when they are not free, the scheduler
  preempts (FCFS: the last of the running list, i.e. the most recently admitted; priority: the
  largest (priority, arrival); engine mode: the policy's `choose_victim`) until they are, or until
  the request itself is the victim. A victim's blocks are freed, ``computed`` drops to 0 (it will
  recompute prompt + generated tokens, as V1 does) and it goes back to the front of the waiting
  queue. A request that cannot get its blocks ends the running walk.
* Only when nothing was preempted in the step, waiting requests are admitted in queue order while
  the token budget is positive, fewer than `max_num_seqs` run, and the head's first chunk gets its
  blocks; a head that does not fit stops admission (it blocks the queue, as in vLLM).
* A request that catches up (``computed == num_tokens``) emits one token at the end of the step;
  its first token comes at the end of the step that completes its prefill, and it leaves the
  engine (freeing its blocks) when it has emitted `Request.output_tokens` tokens.
* Step duration: `CostModel.step_ms` of the batch. A request whose step is one token on top of a
  caught-up cache is a decode sequence with context ``prompt + generated``; anything else is a
  prefill chunk of n tokens on c cached ones (P += n, A += n·(c + n)). The same rule decides
  what `Policy.on_service` hears: the last 1-token piece of a recomputation after preemption is
  exactly such a decode step, so it is reported as a decode token, not a prefill token.

This module is the scalar reference model (one Python loop per step, used with
``step_by_step=True``); `exfairs.sim.vecengine.VectorEngineModel` makes the same decisions with
numpy arrays and adds the fast path: when a step is decode-only, schedules every running request,
preempts and admits nothing, and the waiting queue's verdict cannot change (it is empty, the
sequence limit is reached, or the queue's order is static and its head is blocked — blocks only
get scarcer while a batch decodes), the following steps repeat the same batch with every context
one token longer, and run as one block: up to the first finish, the first step whose new KV blocks
would not be free (closed form: the (F+1)-th block request of a batch whose members each need a
block every `block_size` steps), and the first step ending at or after the driver's `horizon_s`
(the next arrival, sample or deadline). Step durations use the same arithmetic as
`CostModel.step_ms`, and the clock is the same running sum, so both models produce bit-identical
token times.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from exfairs.calibration.costmodel import CostModel
from exfairs.policies.base import Policy
from exfairs.policies.queue import PolicyQueue
from exfairs.records import Request
from exfairs.sim.config import EngineConfig


class Seq:
    """A request's state inside the simulator (mutable; one per workload request)."""

    __slots__ = (
        "arrival_s", "blocks", "client", "computed", "dispatch_s", "error", "finish_s",
        "first_token_s", "gen", "last_emit", "out", "preemptions", "prio", "prompt", "req",
        "rid", "sched_n", "seg_start", "segs",
    )

    def __init__(self, req: Request, client: int) -> None:
        self.req = req
        self.rid = req.request_id
        self.client = client
        self.arrival_s = req.arrival_s
        self.prompt = req.prompt_tokens
        self.out = req.output_tokens
        self.gen = 0  # tokens emitted so far
        self.computed = 0  # tokens in the KV cache
        self.blocks = 0  # KV blocks held
        self.prio = 0  # engine priority (priority mode)
        self.sched_n = 0  # tokens scheduled in the step being planned
        self.preemptions = 0
        # Emission steps as closed [start, end) ranges of step indices, plus the open range
        # [seg_start, last_emit]: a running decode emits at every step, so a long decode is one
        # range however many tokens it has.
        self.segs: list[int] = []
        self.seg_start = -1
        self.last_emit = -2
        self.dispatch_s: float | None = None
        self.first_token_s: float | None = None
        self.finish_s: float | None = None
        self.error: str | None = None

    def emission_steps(self) -> list[tuple[int, int]]:
        """The step-index ranges [start, end) in which this request emitted tokens."""
        out = [(self.segs[i], self.segs[i + 1]) for i in range(0, len(self.segs), 2)]
        if self.last_emit >= 0:
            out.append((self.seg_start, self.last_emit + 1))
        return out


class WaitingQueue(Protocol):
    """The engine's waiting queue. `static`: its order changes only when requests are added."""

    static: bool

    def __len__(self) -> int: ...
    def peek(self, now_s: float) -> Seq: ...
    def pop(self, now_s: float) -> Seq: ...
    def push(self, seq: Seq, now_s: float) -> None: ...
    def prepend(self, seq: Seq, now_s: float) -> None: ...


class FcfsWaiting:
    """vLLM's FCFS queue: submission order; preempted requests go back to the front."""

    static = True

    def __init__(self) -> None:
        self._q: deque[Seq] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def peek(self, now_s: float) -> Seq:
        return self._q[0]

    def pop(self, now_s: float) -> Seq:
        return self._q.popleft()

    def push(self, seq: Seq, now_s: float) -> None:
        self._q.append(seq)

    def prepend(self, seq: Seq, now_s: float) -> None:
        self._q.appendleft(seq)


class PriorityWaiting:
    """vLLM's priority queue: (priority, arrival, request id), lowest first; a preempted request
    keeps its key and so its place."""

    static = True

    def __init__(self) -> None:
        self._h: list[tuple[int, float, int, Seq]] = []

    def __len__(self) -> int:
        return len(self._h)

    def peek(self, now_s: float) -> Seq:
        return self._h[0][3]

    def pop(self, now_s: float) -> Seq:
        return heapq.heappop(self._h)[3]

    def push(self, seq: Seq, now_s: float) -> None:
        heapq.heappush(self._h, (seq.prio, seq.arrival_s, seq.rid, seq))

    prepend = push


class PolicyWaiting:
    """Engine mode: the waiting queue is a `PolicyQueue`, re-ranked whenever it is consulted;
    `pop` tells the policy (`on_dispatch`)."""

    static = False

    def __init__(self, policy: Policy, seqs: dict[int, Seq]) -> None:
        self._q = PolicyQueue(policy)
        self._seqs = seqs

    def __len__(self) -> int:
        return len(self._q)

    def peek(self, now_s: float) -> Seq:
        r = self._q.peek(now_s)
        assert r is not None
        return self._seqs[r.request_id]

    def pop(self, now_s: float) -> Seq:
        r = self._q.pop(now_s)
        assert r is not None
        return self._seqs[r.request_id]

    def push(self, seq: Seq, now_s: float) -> None:
        self._q.push(seq.req, now_s)

    prepend = push


VictimChooser = Callable[[Sequence[Seq], float], int]  # running list, now → index of the victim


def fcfs_victim(running: Sequence[Seq], now_s: float) -> int:
    """vLLM FCFS: the last of the running list (the most recently admitted)."""
    return len(running) - 1


def priority_victim(running: Sequence[Seq], now_s: float) -> int:
    """vLLM priority: the largest (priority, arrival); request id breaks exact ties."""
    best = 0
    key = (running[0].prio, running[0].arrival_s, running[0].rid)
    for i in range(1, len(running)):
        s = running[i]
        k = (s.prio, s.arrival_s, s.rid)
        if k > key:
            best, key = i, k
    return best


def policy_victim(policy: Policy) -> VictimChooser:
    """Engine mode: `policy.choose_victim` over the running requests."""

    def choose(running: Sequence[Seq], now_s: float) -> int:
        victim = policy.choose_victim([s.req for s in running], now_s)
        for i, s in enumerate(running):
            if s.rid == victim.request_id:
                return i
        raise ValueError(f"{type(policy).__name__}.choose_victim returned request "
                         f"{victim.request_id}, which is not running")

    return choose


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What one engine step (or a skipped run of `n_steps` identical decode steps) did, for test
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


class Plan:
    """The schedule of the next step (built by `EngineModel.plan`)."""

    __slots__ = ("admitted", "busy", "general", "preempted", "sched", "stop")

    def __init__(self) -> None:
        self.busy = False  # the step schedules at least one token
        self.general = False  # vector model: the budget cut the running walk short, or preempted
        self.sched: list[Seq] = []  # in schedule order; tokens in Seq.sched_n (scalar model)
        self.preempted: list[Seq] = []
        self.admitted: list[Seq] = []
        # Why admission stopped: "empty", "seqs", "budget", "kv", "chunk" or "preempted".
        self.stop = "empty"


class Outcome:
    """What `EngineModel.execute` produced; the driver turns it into hooks."""

    __slots__ = ("before", "end_s", "finished", "first_tokens", "n_steps", "service")

    def __init__(self, end_s: float, n_steps: int) -> None:
        # An earlier step executed in the same event, whose end was a decision point at which
        # nothing could happen (vector model); the driver delivers it first.
        self.before: Outcome | None = None
        self.end_s = end_s
        self.n_steps = n_steps
        self.service: dict[int, list[int]] = {}  # client index → [prefill, decode] tokens
        self.first_tokens: list[Seq] = []
        self.finished: list[Seq] = []


class EngineModel:
    """Scheduler state (running list, waiting queue, KV blocks) and step execution."""

    def __init__(self, config: EngineConfig, cost: CostModel, waiting: WaitingQueue,
                 victim: VictimChooser, observer: StepObserver | None = None) -> None:
        self.cfg = config
        self.cost = cost
        self.waiting = waiting
        self.victim = victim
        self.observer = observer
        self.running: list[Seq] = []
        self.free_blocks = config.num_gpu_blocks
        self.step_end_s: list[float] = []  # end time of every step, by step index
        self._bs = config.block_size

    @property
    def steps(self) -> int:
        """Engine steps executed so far (skipped decode steps included)."""
        return len(self.step_end_s)

    def idle(self) -> bool:
        """Nothing running and nothing waiting."""
        return not self.running and len(self.waiting) == 0

    # -- scheduling ------------------------------------------------------------------------------
    def plan(self, now_s: float) -> Plan:
        """Schedule the next step at `now_s` (vLLM ``Scheduler.schedule``): allocates its KV blocks,
        performs its preemptions and admissions. Preempted requests are back in `waiting`."""
        cfg = self.cfg
        bs = self._bs
        running = self.running
        waiting = self.waiting
        plan = Plan()
        sched = plan.sched
        budget = cfg.max_num_batched_tokens
        threshold = cfg.long_prefill_token_threshold
        if len(running) + len(waiting) <= 1:
            threshold = 0  # vLLM 0.32: nobody to starve
        i = 0
        while i < len(running) and budget > 0:
            s = running[i]
            n = s.prompt + s.gen - s.computed
            if 0 < threshold < n:
                n = threshold
            if n > budget:
                n = budget
            need = (s.computed + n + bs - 1) // bs - s.blocks
            scheduled = True
            while need > self.free_blocks:
                v = self.victim(running, now_s)
                victim = running.pop(v)
                if v < i:
                    i -= 1
                if victim.sched_n:
                    budget += victim.sched_n
                    victim.sched_n = 0
                    sched.remove(victim)
                self._preempt(victim, now_s)
                plan.preempted.append(victim)
                if victim is s:
                    scheduled = False
                    break
            if not scheduled:
                break
            self.free_blocks -= need
            s.blocks += need
            s.sched_n = n
            sched.append(s)
            budget -= n
            i += 1
        if plan.preempted:
            plan.stop = "preempted"
            plan.busy = bool(sched)
            return plan
        max_seqs = cfg.max_num_seqs
        while True:
            if len(waiting) == 0:
                plan.stop = "empty"
                break
            if budget <= 0:
                plan.stop = "budget"
                break
            if len(running) >= max_seqs:
                plan.stop = "seqs"
                break
            s = waiting.peek(now_s)
            n = s.prompt + s.gen - s.computed
            if 0 < threshold < n:
                n = threshold
            if n > budget:
                if not cfg.enable_chunked_prefill:
                    plan.stop = "chunk"
                    break
                n = budget
            need = (s.computed + n + bs - 1) // bs - s.blocks
            if need > self.free_blocks:
                plan.stop = "kv"
                break
            waiting.pop(now_s)
            running.append(s)
            self.free_blocks -= need
            s.blocks += need
            s.sched_n = n
            sched.append(s)
            plan.admitted.append(s)
            budget -= n
        plan.busy = bool(sched)
        return plan

    def _preempt(self, s: Seq, now_s: float) -> None:
        self.free_blocks += s.blocks
        s.blocks = 0
        s.computed = 0
        s.preemptions += 1
        self.waiting.prepend(s, now_s)

    def report_idle_plan(self, plan: Plan, now_s: float) -> None:
        """Tell the observer about a plan that scheduled nothing but preempted (vLLM then runs an
        empty step and schedules again at once): a `StepInfo` with ``n_steps == 0``."""
        if self.observer is not None and plan.preempted:
            self.observer(StepInfo(now_s, now_s, 0, (), len(self.running),
                                   self.cfg.num_gpu_blocks - self.free_blocks,
                                   tuple(s.rid for s in plan.preempted), (), ()))

    # -- execution -------------------------------------------------------------------------------
    def execute(self, plan: Plan, now_s: float, horizon_s: float, fast: bool) -> Outcome:
        """Run the planned step starting at `now_s`; returns its end time and what it emitted.

        The scalar model always runs one step (it is the reference); `VectorEngineModel`
        overrides this to also run the identical decode steps after it, up to `horizon_s`."""
        return self._apply_step(plan, now_s)

    def _apply_step(self, plan: Plan, now_s: float) -> Outcome:
        p_tok = 0
        p_attn = 0
        d_seqs = 0
        d_ctx = 0
        for s in plan.sched:
            n = s.sched_n
            c = s.computed
            if n == 1 and s.gen >= 1 and c == s.prompt + s.gen - 1:
                d_seqs += 1
                d_ctx += c + 1
            else:
                p_tok += n
                p_attn += n * (c + n)
        end = now_s + self.cost.step_ms(p_tok, p_attn, d_seqs, d_ctx) / 1000.0
        k = len(self.step_end_s)
        self.step_end_s.append(end)
        out = Outcome(end, 1)
        service = out.service
        finished = out.finished
        scheduled = (tuple((s.rid, s.sched_n, s.computed) for s in plan.sched)
                     if self.observer else ())
        for s in plan.sched:
            n = s.sched_n
            s.sched_n = 0
            decode = n == 1 and s.gen >= 1 and s.computed == s.prompt + s.gen - 1
            s.computed += n
            acc = service.get(s.client)
            if acc is None:
                acc = service[s.client] = [0, 0]
            if not decode:
                acc[0] += n
            if s.computed == s.prompt + s.gen:
                s.gen += 1
                acc[1] += 1
                if s.last_emit != k - 1:
                    if s.last_emit >= 0:
                        s.segs.append(s.seg_start)
                        s.segs.append(s.last_emit + 1)
                    s.seg_start = k
                s.last_emit = k
                if s.gen == 1:
                    out.first_tokens.append(s)
                if s.gen >= s.out:
                    finished.append(s)
        if self.observer is not None:
            blocks_in_use = self.cfg.num_gpu_blocks - self.free_blocks
            num_running = len(self.running)
        if finished:
            self._remove_finished(finished)
        if self.observer is not None:
            self.observer(StepInfo(now_s, end, 1, scheduled, num_running, blocks_in_use,
                                   tuple(s.rid for s in plan.preempted),
                                   tuple(s.rid for s in plan.admitted),
                                   tuple(s.rid for s in finished)))
        return out

    def _remove_finished(self, finished: list[Seq]) -> None:
        for s in finished:
            self.free_blocks += s.blocks
            s.blocks = 0
        self.running = [s for s in self.running if s.gen < s.out]
