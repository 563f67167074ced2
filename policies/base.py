"""The policy interface (docs/design.md §2).

A policy is told what happens (hooks) and asked for a ranking of clients (`client_scores`). The
engines own the mechanics — queues, admission, KV blocks, preemption — and consult the policy only
for order:

* gate mode: a `PolicyQueue` in front of the engine releases the best-ranked client's next request
  whenever the engine has a free slot;
* priority mode: `submission_priority` is computed once, when the request is submitted, and the
  engine orders its waiting queue by it (lower runs first, as in vLLM);
* engine mode: the engine's waiting queue *is* a `PolicyQueue`, re-ranked at every step, and
  `choose_victim` picks whom to preempt.

Clients are registered up front with `add_client` (in the workload's client order, which fixes their
indices). Scores are numpy vectors indexed by client; a decision asks only for the clients it
compares (`scores_of`), so that with policies that override it its cost does not grow with idle
registered clients.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from exfairs.errors import ConfigError
from exfairs.records import Request

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Policy(ABC):
    """Base class of all scheduling policies.

    Contract for drivers (simulator, gate, engine plug-in):
    * call `add_client` for every client before its first request;
    * call `on_arrival` once per request when it arrives (before it can be ranked);
    * call `on_dispatch` when a request is taken from a policy-ordered queue (`PolicyQueue.pop`
      does this itself), and again when the engine re-admits it after a preemption;
    * call `on_service` as tokens are served (prompt tokens as prefill is computed, one decode token
      per generated token), with the time of service;
    * call `on_violation` at most once per request, the moment it is known to miss an SLO (deadline
      passed while queued or running, failure, time-out, abort, or at finish when it finished late:
      then just before `on_finish`); `exfairs.slo.SloTracker` does this bookkeeping for drivers;
    * call `on_finish` once for every request that produced all its tokens;
    * call `on_preempt` when the engine evicts a running request (its prefill will be recomputed);
    * call `on_drop` once for every request that leaves the system without finishing (failed,
      timed out, aborted), whether it was queued or running, after its `on_violation`; a driver
      that removes a queued request from a `PolicyQueue` calls it too (the queue does not).
    A request is *resolved* by its `on_violation` or by an `on_finish` with ``slo_met=True``.
    Times are seconds on the run clock and never decrease between calls.
    """

    #: Registry name, set by `register_policy`.
    name: ClassVar[str] = ""
    #: True when requests of one client should be ordered "can still meet its deadline" first.
    deadline_aware: ClassVar[bool] = False
    #: `submission_priority` = round(score × this): scores in [-1, 1] need a large scale to survive
    #: vLLM's integer priorities, token counters do not.
    priority_scale: ClassVar[float] = 1.0

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        self._weights: FloatArray = np.zeros(0)

    # -- clients -----------------------------------------------------------------------------
    def add_client(self, name: str, weight: float = 1.0) -> int:
        """Register a client (idempotent for the same weight) and return its index."""
        if not (weight > 0 and np.isfinite(weight)):
            raise ConfigError("client weight must be a positive finite number", field="weight",
                              value=weight)
        if name in self._index:
            return self._index[name]
        idx = len(self._names)
        self._index[name] = idx
        self._names.append(name)
        self._weights = np.append(self._weights, float(weight))
        self._grow(idx + 1)
        return idx

    def add_clients(self, clients: Sequence[tuple[str, float]]) -> list[int]:
        """Register ``(name, weight)`` pairs in order, as `add_client` one by one would, and
        return their indices. Per-client state grows once (`_grow`), so registering n clients
        costs O(n), not O(n²). A subclass that overrides `add_client` but not this method gets
        its `add_client` called for each pair."""
        if (type(self).add_client is not Policy.add_client
                and type(self).add_clients is Policy.add_clients):
            return [self.add_client(name, weight) for name, weight in clients]
        out: list[int] = []
        new_weights: list[float] = []
        for name, weight in clients:
            if not (weight > 0 and math.isfinite(weight)):
                raise ConfigError("client weight must be a positive finite number",
                                  field="weight", value=weight)
            idx = self._index.get(name)
            if idx is None:
                idx = len(self._names)
                self._index[name] = idx
                self._names.append(name)
                new_weights.append(float(weight))
            out.append(idx)
        if new_weights:
            self._weights = np.concatenate([self._weights, np.asarray(new_weights)])
            self._grow(len(self._names))
        return out

    def _grow(self, n_clients: int) -> None:  # noqa: B027 (optional override)
        """Extend per-client state arrays to `n_clients` entries (subclasses override)."""

    def client_index(self, name: str) -> int:
        """Index of a registered client; KeyError naming the client otherwise."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"client {name!r} was not registered with add_client()") from None

    @property
    def client_names(self) -> Sequence[str]:
        """Registered client names, in index order."""
        return tuple(self._names)

    @property
    def n_clients(self) -> int:
        """Number of registered clients."""
        return len(self._names)

    @property
    def weights(self) -> FloatArray:
        """Per-client weights, by index (read-only view)."""
        view = self._weights.view()
        view.flags.writeable = False
        return view

    # -- hooks (default: nothing to account) ---------------------------------------------------
    def on_arrival(self, request: Request, now_s: float) -> None:  # noqa: B027 (optional hook)
        """`request` arrived at the client side at `now_s`."""

    def on_dispatch(self, request: Request, now_s: float) -> None:  # noqa: B027 (optional hook)
        """`request` was taken from a policy-ordered queue (released by the gate, admitted by the
        engine in engine mode, or submitted in priority mode), or re-admitted by the engine after
        a preemption (the simulator reports that in every mode; then it was charged already)."""

    def on_service(  # noqa: B027 (optional hook)
        self, client: str, prefill_tokens: int, decode_tokens: int, now_s: float
    ) -> None:
        """`client` was served `prefill_tokens` prompt tokens and `decode_tokens` output tokens,
        completing at `now_s`. Recomputed prefill after a preemption is reported again."""

    def on_service_run(self, decode_tokens: Sequence[tuple[str, int]],
                       ends_s: Sequence[float]) -> None:
        """A run of ``len(ends_s)`` identical decode-only engine steps ended (the simulator's fast
        path): at each step end ``ends_s[j]``, every ``(client, tokens)`` pair was served `tokens`
        decode tokens. Default: `on_service` for every step, then client, in that order — exactly
        the calls the step-by-step path makes. Override only with the same result (the
        conformance suite checks it), e.g. one call where accounting is additive and time-free."""
        if type(self).on_service is Policy.on_service:
            return  # nothing to account
        on_service = self.on_service
        for t in ends_s:
            for client, d in decode_tokens:
                on_service(client, 0, d, t)

    def on_finish(self, request: Request, now_s: float, slo_met: bool) -> None:  # noqa: B027 (optional hook)
        """`request` produced its last token at `now_s`; `slo_met` says whether every SLO held."""

    def on_preempt(self, request: Request, now_s: float) -> None:  # noqa: B027 (optional hook)
        """`request` was evicted by the engine at `now_s` and will recompute its prefill."""

    def on_violation(self, request: Request, now_s: float) -> None:  # noqa: B027 (optional hook)
        """`request` became an SLO violation at `now_s`: its deadline passed while it was queued or
        running, it failed, timed out or was aborted, or it finished having missed an SLO (then this
        comes just before `on_finish(..., slo_met=False)`). Called at most once per request."""

    def on_drop(self, request: Request, now_s: float) -> None:  # noqa: B027 (optional hook)
        """`request` left the system at `now_s` without finishing (failed, timed out, aborted),
        from a queue or from the engine. Comes after its `on_violation`. Policies that track
        which requests are waiting or in flight forget it here."""

    def next_wakeup(self, now_s: float) -> float:
        """The next time after `now_s` at which this policy's ranking changes by time alone (a
        window slides, a deadline turns a request late), or ``math.inf`` (default: never). A
        driver asked at a decision point guarantees a decision point at the first engine step
        end at or after it; the simulator's fast path cuts decode runs there."""
        return math.inf

    # -- ranking -------------------------------------------------------------------------------
    @abstractmethod
    def client_scores(self, now_s: float) -> FloatArray:
        """Per-client scores at `now_s`, indexed by client; **lower goes first**.

        Only backlogged clients are compared; ties go to the client whose next request arrived
        first, then to the lower request id. Must not change state.
        """

    def scores_of(self, indices: IntArray, now_s: float) -> FloatArray:
        """``client_scores(now_s)[indices]``, bit for bit (`indices`: distinct client indices,
        any order; the result is aligned with it). Drivers ask through this for the clients a
        decision compares (backlogged, running), so a policy that overrides it with an
        O(len(indices)) computation makes decisions cost nothing per idle registered client.
        Must not change state (beyond lazy bookkeeping `client_scores` may do too)."""
        scores = np.asarray(self.client_scores(now_s), dtype=np.float64)
        if scores.shape != (self.n_clients,):
            raise ValueError(f"{type(self).__name__}.client_scores returned shape "
                             f"{scores.shape}, expected ({self.n_clients},)")
        return scores[indices]

    def submission_priority(self, request: Request, now_s: float) -> int:
        """vLLM-style integer priority for priority mode (lower runs first), fixed at submission."""
        c = self.client_index(request.client)
        score = float(self.scores_of(np.array([c], dtype=np.int64), now_s)[0])
        return round(score * self.priority_scale)

    def choose_victim(self, running: Sequence[Request], now_s: float) -> Request:
        """Engine mode: which running request to preempt when KV blocks run out.

        Default: a request of the worst-ranked client, the latest-arriving of those (the mirror
        image of the admission order).
        """
        if not running:
            raise ValueError("choose_victim needs at least one running request")
        index = self.client_index
        clients = sorted({index(r.client) for r in running})
        scores = dict(zip(clients, self.scores_of(np.asarray(clients, dtype=np.int64),
                                                   now_s).tolist(), strict=True))
        return max(
            running,
            key=lambda r: (scores[index(r.client)], r.arrival_s, r.request_id),
        )

    # -- introspection for plots and logs ---------------------------------------------------------
    def state_snapshot(self, now_s: float) -> dict[str, list[float]]:
        """Per-client policy state worth plotting over time (e.g. VTC counters, ExFairS scores),
        as name → values by client index. Default: the scores."""
        return {"score": [float(x) for x in self.client_scores(now_s)]}

    def state_snapshot_of(self, indices: Sequence[int], now_s: float) -> dict[str, list[float]]:
        """`state_snapshot(now_s)` restricted to client `indices` (ascending), each list aligned
        with `indices` (sparse policy samples). Default: slices the full snapshot; override
        with an O(len(indices)) computation giving the same values."""
        if type(self).state_snapshot is Policy.state_snapshot:
            return {"score": self.scores_of(np.asarray(indices, dtype=np.int64), now_s).tolist()}
        return {k: [v[c] for c in indices] for k, v in self.state_snapshot(now_s).items()}
