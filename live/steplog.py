"""The per-step log the scheduler plug-in keeps inside vLLM's engine core, and its reader.

For every call of the scheduler's ``schedule()`` (one engine step) the log holds the monotonic
time at entry (seconds, `time.monotonic` of the engine host), the time its
``update_from_output()`` was entered (the step's end as the scheduler sees it; NaN if the engine
stopped in between), the waiting and running counts after scheduling, the requests preempted by
it and, per scheduled request: its vLLM request id, the tokens scheduled, the tokens it had
computed before the step, its prompt length, and whether it samples a token in this step
(its computed tokens catch up with prompt + output so far, i.e. not a partial prefill chunk).

Writing must not slow the step, so `StepLogBuffer` appends plain numbers to `array.array`
columns (no objects per step) and writes them once, with numpy, when the run ends or the engine
shuts down (``<run>.steps.npz``, atomically). `read_steplog` returns typed frozen records.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exfairs.atomic import atomic_temp_path

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """A request that appeared in the log: vLLM id, and its workload id and client when it was
    part of the run (None for warm-ups and other traffic)."""

    vllm_id: str
    request_id: int | None
    client: str | None
    prompt_tokens: int
    #: Monotonic time the engine core took the request in (``add_request``, between steps);
    #: NaN when the log predates this field or the request was added before the run opened.
    added_mono: float = math.nan
    #: Sampler path of the request (`exfairs.calibration.costmodel.sampling_mode`): "greedy",
    #: "random" or "top-p"; "" when the log predates this field.
    sampling: str = ""


@dataclass(frozen=True, slots=True)
class ScheduledRequest:
    """One request in one step."""

    request: LoggedRequest
    tokens: int
    computed_before: int
    samples_token: bool


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One engine step (one ``schedule()`` call). `end_mono` is NaN when the step never reached
    ``update_from_output`` (engine stopped)."""

    index: int
    start_mono: float
    end_mono: float
    num_waiting: int
    num_running: int
    scheduled: tuple[ScheduledRequest, ...]
    preempted: tuple[LoggedRequest, ...]

    @property
    def total_tokens(self) -> int:
        """Tokens scheduled in the step."""
        return sum(s.tokens for s in self.scheduled)


@dataclass(frozen=True, slots=True)
class StepLog:
    """A run's step log: `steps` in order, `requests` every request that appeared."""

    run_id: str
    steps: tuple[StepRecord, ...]
    requests: tuple[LoggedRequest, ...]

    def __iter__(self) -> Iterator[StepRecord]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)


class StepLogBuffer:
    """Column buffers filled by the plug-in, one `begin_step` + `end_step` per step."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._req_meta: list[tuple[str, int, str, int]] = []  # vllm id, workload id, client, prompt
        self._added: dict[str, float] = {}  # vllm id -> monotonic time of add_request
        self._sampling: dict[str, str] = {}  # vllm id -> sampling mode
        self.t_start = array("d")
        self.t_end = array("d")
        self.n_waiting = array("q")
        self.n_running = array("q")
        self.sched_off = array("q", [0])
        self.pre_off = array("q", [0])
        self.s_req = array("q")
        self.s_tokens = array("q")
        self.s_computed = array("q")
        self.s_samples = array("b")
        self.p_req = array("q")

    def __len__(self) -> int:
        return len(self.t_start)

    def request_index(self, vllm_id: str, request_id: int | None, client: str | None,
                      prompt_tokens: int) -> int:
        """The log's index of a request, registering it on first sight."""
        i = self._index.get(vllm_id)
        if i is None:
            i = self._index[vllm_id] = len(self._req_meta)
            self._req_meta.append((vllm_id, -1 if request_id is None else request_id,
                                   client or "", prompt_tokens))
        return i

    def note_added(self, vllm_id: str, mono: float) -> None:
        """The engine core took request `vllm_id` in at monotonic time `mono`."""
        self._added.setdefault(vllm_id, mono)

    def note_sampling(self, vllm_id: str, mode: str) -> None:
        """Request `vllm_id` samples in `mode` (costmodel.sampling_mode)."""
        self._sampling.setdefault(vllm_id, mode)

    def add_step(self, start_mono: float, num_waiting: int, num_running: int) -> None:
        """Open a step (its scheduled requests and preemptions follow, then `end_step`)."""
        self.t_start.append(start_mono)
        self.t_end.append(math.nan)
        self.n_waiting.append(num_waiting)
        self.n_running.append(num_running)

    def add_scheduled(self, req_index: int, tokens: int, computed_before: int,
                      samples: bool) -> None:
        self.s_req.append(req_index)
        self.s_tokens.append(tokens)
        self.s_computed.append(computed_before)
        self.s_samples.append(1 if samples else 0)

    def add_preempted(self, req_index: int) -> None:
        self.p_req.append(req_index)

    def close_step(self) -> None:
        """Seal the current step's request lists (call right after its `add_*` calls)."""
        self.sched_off.append(len(self.s_req))
        self.pre_off.append(len(self.p_req))

    def end_step(self, end_mono: float) -> None:
        """Set the end time of the last step."""
        if len(self.t_end):
            self.t_end[-1] = end_mono

    def write(self, path: str | Path, run_id: str) -> Path:
        """Write the log as ``.npz`` atomically; returns the path."""
        dest = Path(path)
        meta = json.dumps({"format": FORMAT_VERSION, "run_id": run_id,
                           "requests": self._req_meta,
                           "added": self._added, "sampling": self._sampling})

        def col(a: array, dtype: str) -> np.ndarray:  # type: ignore[type-arg]
            return np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype=dtype)

        with atomic_temp_path(dest) as tmp, open(tmp, "wb") as f:
            np.savez(f, meta=np.array(meta), t_start=col(self.t_start, "f8"),
                     t_end=col(self.t_end, "f8"), n_waiting=col(self.n_waiting, "i8"),
                     n_running=col(self.n_running, "i8"), sched_off=col(self.sched_off, "i8"),
                     pre_off=col(self.pre_off, "i8"), s_req=col(self.s_req, "i8"),
                     s_tokens=col(self.s_tokens, "i8"), s_computed=col(self.s_computed, "i8"),
                     s_samples=col(self.s_samples, "i1"), p_req=col(self.p_req, "i8"))
        return dest


def read_steplog(path: str | Path) -> StepLog:
    """Read a step log written by the plug-in. ValueError if the file is not one."""
    with np.load(Path(path), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: not a step log of format {FORMAT_VERSION}")
        cols = {k: z[k] for k in z.files if k != "meta"}
    added = meta.get("added", {})
    sampling = meta.get("sampling", {})
    reqs = tuple(LoggedRequest(vllm_id=str(v), request_id=None if int(i) < 0 else int(i),
                               client=str(c) or None, prompt_tokens=int(p),
                               added_mono=float(added.get(str(v), math.nan)),
                               sampling=str(sampling.get(str(v), "")))
                 for v, i, c, p in meta["requests"])
    so, po = cols["sched_off"].tolist(), cols["pre_off"].tolist()
    s_req, s_tok = cols["s_req"].tolist(), cols["s_tokens"].tolist()
    s_comp, s_samp = cols["s_computed"].tolist(), cols["s_samples"].tolist()
    p_req = cols["p_req"].tolist()
    t0, t1 = cols["t_start"].tolist(), cols["t_end"].tolist()
    nw, nr = cols["n_waiting"].tolist(), cols["n_running"].tolist()
    steps = []
    for k in range(len(t0)):
        sched = tuple(ScheduledRequest(reqs[s_req[j]], s_tok[j], s_comp[j], bool(s_samp[j]))
                      for j in range(so[k], so[k + 1]))
        pre = tuple(reqs[p_req[j]] for j in range(po[k], po[k + 1]))
        steps.append(StepRecord(index=k, start_mono=t0[k], end_mono=t1[k], num_waiting=nw[k],
                                num_running=nr[k], scheduled=sched, preempted=pre))
    return StepLog(run_id=str(meta["run_id"]), steps=tuple(steps), requests=reqs)
