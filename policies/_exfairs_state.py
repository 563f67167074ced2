"""ExFairS's bookkeeping (`exfairs.policies.exfairs_policy.ExFairS`): the decayed per-client
sums, the sorted keys of each client's waiting requests and the few-clients score path.

A private module (the name starts with "_"), so the policy registry does not import it as a
policy file; `ExFairSState` is the policy's base class, not a policy of its own (it registers
nothing). The attributes it works on are set by `ExFairS.__init__`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import numpy as np

from exfairs.errors import ConfigError
from exfairs.policies.base import FloatArray, IntArray, Policy
from exfairs.policies.vtc import VTC
from exfairs.records import Request

# Stored sums are scaled by 2^((t − t0)/window_s) so that an update touches one entry; they are
# rescaled (and t0 moved) before the scale can overflow.
_RESCALE_HALF_LIVES = 64.0
# Up to this many clients, scores are computed in Python floats (`ExFairS._scores_few`).
_FEW_CLIENTS = 8


def _flag(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ConfigError("must be true or false", field=field, value=value)


class ExFairSState(Policy):
    """The state ExFairS keeps and the operations on it (see the policy's module docstring)."""

    alpha: float
    window_s: float
    horizon_s: float
    order: str
    _vtc: VTC
    _pending: dict[int, tuple[int, float]]
    _late_at: list[list[float]]
    _waiting: dict[int, tuple[int, float]]
    _keys: list[list[float]]
    _head_key: FloatArray
    _t0: float
    _violations: FloatArray
    _resolved: FloatArray
    _service: FloatArray

    def credit_tokens(self) -> float:
        raise NotImplementedError  # ExFairS.credit_tokens

    def _grow(self, n_clients: int) -> None:
        extra = n_clients - self._service.shape[0]
        if extra > 0:
            self._violations = np.concatenate([self._violations, np.zeros(extra)])
            self._resolved = np.concatenate([self._resolved, np.zeros(extra)])
            self._service = np.concatenate([self._service, np.zeros(extra)])
            self._late_at.extend([] for _ in range(extra))
            self._keys.extend([] for _ in range(extra))
            self._head_key = np.concatenate([self._head_key, np.full(extra, math.inf)])

    def _scores_few(self, now_s: float, clients: list[int] | None = None) -> FloatArray:
        """`client_scores` (of `clients`, default all) for a few clients in Python floats: the
        same IEEE operations in the same order as the vectorised formula (so the same bits),
        without a dozen numpy calls on arrays of a few elements per decision."""
        head = self._head_key
        which = range(head.shape[0]) if clients is None else clients
        for c in which:
            if head[c] < now_s:  # `_advance` for this client
                keys = self._keys[c]
                i = bisect.bisect_left(keys, now_s)
                head[c] = keys[i] if i < len(keys) else math.inf
        k = self.horizon_s
        a1 = 1.0 - self.alpha
        ab = self.alpha * self.credit_tokens()
        out = []
        counter, violations, resolved = self._vtc._counter, self._violations, self._resolved
        rows: Iterable[tuple[float, float, float, float]]
        if clients is None:
            rows = zip(head.tolist(), counter.tolist(), violations.tolist(), resolved.tolist(),
                       strict=True)
        else:
            rows = ((float(head[c]), float(counter[c]), float(violations[c]),
                     float(resolved[c])) for c in clients)
        for hk, cnt, viol, res in rows:
            u = hk - now_s
            if u > k:
                u = k
            v = viol / res if res > 0 else 0.0
            out.append(a1 * cnt + ab * (u / k - v))
        return np.array(out, dtype=np.float64)

    def _key(self, request: Request) -> float:
        if self.order == "deadline":
            return request.deadline_s - request.unloaded_e2e_s  # inf without an e2e SLO
        return request.arrival_s

    def _oldest_arrival(self) -> FloatArray:
        return np.asarray([keys[0] if keys else math.inf for keys in self._keys])

    def _wait(self, request: Request, now_s: float) -> None:
        if request.request_id in self._waiting:
            return
        c = self.client_index(request.client)
        key = self._key(request)
        self._waiting[request.request_id] = (c, key)
        bisect.insort(self._keys[c], key)
        if now_s <= key < self._head_key[c]:
            self._head_key[c] = key

    def _unwait(self, rid: int) -> None:
        entry = self._waiting.pop(rid, None)
        if entry is not None:
            c, key = entry
            keys = self._keys[c]
            del keys[bisect.bisect_left(keys, key)]
            if key == self._head_key[c]:
                i = bisect.bisect_left(keys, key)
                self._head_key[c] = keys[i] if i < len(keys) else math.inf

    def _advance(self, now_s: float, indices: IntArray | None = None) -> None:
        """Move each client's (of `indices`, default all) head key past the requests that
        turned hopeless by `now_s`. Lazy: a client left behind is advanced when next asked."""
        if indices is None:
            stale = np.flatnonzero(self._head_key < now_s)
        else:
            stale = indices[self._head_key[indices] < now_s]
        for c in stale:
            keys = self._keys[c]
            i = bisect.bisect_left(keys, now_s)
            self._head_key[c] = keys[i] if i < len(keys) else math.inf

    def _resolve(self, rid: int) -> None:
        entry = self._pending.pop(rid, None)
        if entry is not None:
            times = self._late_at[entry[0]]
            del times[bisect.bisect_left(times, entry[1])]

    def _scale(self, now_s: float) -> float:
        """The weight, in stored units, of an event at `now_s` (rescales the sums when needed)."""
        half_lives = (now_s - self._t0) / self.window_s
        if half_lives > _RESCALE_HALF_LIVES:
            shrink = math.pow(2.0, -half_lives)
            self._violations *= shrink
            self._resolved *= shrink
            self._service *= shrink
            self._t0 = now_s
            half_lives = 0.0
        return math.pow(2.0, half_lives)
