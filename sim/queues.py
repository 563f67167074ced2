"""The engine's waiting queues and preemption-victim rules, one per scheduling mode.

* `FcfsWaiting` / `fcfs_victim` — vLLM ``scheduling_policy="fcfs"``: submission order, preempted
  requests back at the front; the victim is the last of the running list (most recently admitted);
* `PriorityWaiting` / `priority_victim` — vLLM ``"priority"``: (priority, arrival, request id),
  lowest first; the victim is the largest (priority, arrival);
* `PolicyWaiting` / `policy_victim` — engine mode: a `PolicyQueue` re-ranked whenever it is
  consulted, and the policy's `choose_victim`.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from exfairs.policies.admission_engine import EngineAdmission
from exfairs.policies.base import Policy
from exfairs.policies.queue import PolicyQueue
from exfairs.records import Request


class Seq:
    """A request's state inside the engine model (mutable; one per workload request).

    While the request decodes (`dec` is True) its `computed` and `gen` are valid at step index
    `base_k` and both grow by one per step after it (the scheduler keeps them lazily).
    """

    __slots__ = (
        "arrival_s", "base_k", "blocks", "client", "computed", "dec", "dispatch_s", "error",
        "finish_k", "finish_s", "first_token_s", "gen", "last_emit", "out", "pos", "preemptions",
        "prio", "prompt", "req", "rid", "seg_start", "segs",
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
        self.blocks = 0  # KV blocks held (kept exact for requests that are not decoding)
        self.prio = 0  # engine priority (priority mode)
        self.preemptions = 0
        self.pos = 0  # admission sequence number: the running list is in `pos` order
        self.dec = False
        self.base_k = 0
        self.finish_k = -1
        # Emission steps as closed [start, end) ranges of step indices, plus the open range
        # [seg_start, last_emit]: a decode emits at every step, so it is one range however long.
        self.segs: list[int] = []
        self.seg_start = -1
        self.last_emit = -2
        self.dispatch_s: float | None = None
        self.first_token_s: float | None = None
        self.finish_s: float | None = None
        self.error: str | None = None

    def emit_range(self, start: int, end: int) -> None:
        """Record emissions at steps ``start .. end − 1`` (``end > start``)."""
        if self.last_emit != start - 1:
            if self.last_emit >= 0:
                self.segs.append(self.seg_start)
                self.segs.append(self.last_emit + 1)
            self.seg_start = start
        self.last_emit = end - 1

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
    `pop` tells the policy (`on_dispatch`).

    With `admission` (`EngineAdmission`: the admission options ``hopeless=reject`` and
    ``limit=predictive`` inside the engine) `refuse_hopeless` takes out the requests to reject
    at a decision point, and `admissible` is the scheduler's check before it admits the head;
    the requests it refuses go to `refuse` (request, time)."""

    static = False

    def __init__(self, policy: Policy, seqs: Mapping[int, Seq], *,
                 hopeless_last: bool = False, admission: EngineAdmission | None = None,
                 refuse: Callable[[Request, float], None] | None = None) -> None:
        self._q = PolicyQueue(policy, hopeless_last=hopeless_last)
        self._seqs = seqs
        # (now, client) of the last peek: the scheduler pops right after peeking, with no hook
        # in between, so the ranking cannot have changed and one decision serves both.
        self._peeked: tuple[float, int] | None = None
        self.admission = admission
        self._refuse = refuse
        self._verdict = "admit"  # `admissible`'s verdict on the head the next `pop` takes

    def next_hopeless_s(self) -> float:
        """When the next queued, savable request turns hopeless (`PolicyQueue.next_hopeless_s`)."""
        return self._q.next_hopeless_s()

    def refuse_hopeless(self, now_s: float) -> None:
        """A decision point: refuse the requests `EngineAdmission.refuse_hopeless` takes out."""
        adm = self.admission
        if adm is None or self._refuse is None:
            return
        self._peeked = None
        for r in adm.refuse_hopeless(self._q, now_s):
            self._refuse(r, now_s)

    def admissible(self, now_s: float) -> bool:
        """May the scheduler admit the head now (`EngineAdmission.head`)? Late heads refused on
        the way leave the queue; False stops admission for this step."""
        adm = self.admission
        if adm is None:
            return True
        self._peeked = None
        # Refusals reach the policy before the next head is chosen (EngineAdmission.head), so
        # the head judged is the one `peek` and `pop` take.
        verdict, _ = adm.head(self._q, now_s, self._refuse)
        self._verdict = verdict
        return verdict != "wait"

    def __len__(self) -> int:
        return len(self._q)

    def peek(self, now_s: float) -> Seq:
        c = self._q.select(now_s)
        assert c >= 0
        self._peeked = (now_s, c)
        return self._seqs[self._q.head(c).request_id]

    def pop(self, now_s: float) -> Seq:
        peeked = self._peeked
        self._peeked = None
        if peeked is not None and peeked[0] == now_s:
            r: Request | None = self._q.pop_client(peeked[1], now_s)
        else:
            r = self._q.pop(now_s)
        assert r is not None
        if self.admission is not None:
            self.admission.admitted(r, now_s, self._verdict)
            self._verdict = "admit"
        return self._seqs[r.request_id]

    def push(self, seq: Seq, now_s: float) -> None:
        self._peeked = None
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
