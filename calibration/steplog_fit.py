"""Measured steps from the scheduler plug-in's step logs (`exfairs.live.steplog`): what
`exfairs-calibrate fit --from-runs` and the live-path profiler fit, and the one definition of a
logged step's duration that calibration and replay share.

A step's duration is its *period*: from the entry of its ``schedule()`` to the entry of the next
``schedule()``, when the engine stayed busy in between — some request of the step, or one that
was waiting, is scheduled in the next step. That is the time the simulator's clock advances per
step (the engine core's loop: schedule, execute, update_from_output, hand the outputs on, read
new input, schedule again). A step after which the engine may have idled (nothing carried over)
gets ``end_mono − start_mono`` plus the median gap between ``update_from_output`` and the next
``schedule()`` of busy steps (`step_periods`); such steps are not fitted (`steplog_records`).

Composition per step: a scheduled request whose cache already covers its prompt and that gets
one token is a decode sequence (context = computed + 1); anything else is a prefill chunk of
n tokens on c cached ones. Rows sampled = requests scheduled. Sampling mode = the batch's
(`costmodel.batch_mode`) of the modes the plug-in logged per request, or `default_sampling` for
logs that predate that field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exfairs.calibration.costmodel import SAMPLING_MODES, batch_mode
from exfairs.calibration.measurements import StepRecord, features_of
from exfairs.errors import InputError
from exfairs.live.steplog import StepLog, read_steplog


@dataclass(frozen=True, slots=True)
class StepPeriods:
    """Per step of a log: duration (ms) and whether it is a measured period (`busy`)."""

    duration_ms: tuple[float, ...]
    busy: tuple[bool, ...]
    gap_ms: float  # median update_from_output → next schedule() gap of busy steps


def step_periods(log: StepLog) -> StepPeriods:
    """Durations of every step of `log` (module docstring); NaN for a step that never ended."""
    steps = log.steps
    n = len(steps)
    busy = [False] * n
    gaps: list[float] = []
    for k in range(n - 1):
        s, t = steps[k], steps[k + 1]
        if math.isnan(s.end_mono):
            continue
        ids = {r.request.vllm_id for r in s.scheduled}
        carried = s.num_waiting > 0 or any(r.request.vllm_id in ids for r in t.scheduled)
        if carried and t.start_mono >= s.end_mono:
            busy[k] = True
            gaps.append(t.start_mono - s.end_mono)
    gap = float(np.median(gaps)) if gaps else 0.0
    out: list[float] = []
    for k, s in enumerate(steps):
        if busy[k]:
            out.append((steps[k + 1].start_mono - s.start_mono) * 1000.0)
        elif math.isnan(s.end_mono):
            out.append(math.nan)
        else:
            out.append((s.end_mono - s.start_mono + gap) * 1000.0)
    return StepPeriods(tuple(out), tuple(busy), gap * 1000.0)


def steplog_records(log: StepLog, *, default_sampling: str = "top-p", run: str | None = None,
                    label: str = "run") -> list[StepRecord]:
    """The busy steps of `log` as measured steps (features, period, rows, sampling mode)."""
    if default_sampling not in SAMPLING_MODES:
        raise InputError(f"must be one of {SAMPLING_MODES}", field="--sampling",
                         value=default_sampling)
    per = step_periods(log)
    name = run if run is not None else log.run_id
    out: list[StepRecord] = []
    for k, s in enumerate(log.steps):
        if not per.busy[k] or not s.scheduled or not per.duration_ms[k] > 0:
            continue
        chunks: list[tuple[int, int]] = []
        ctxs: list[int] = []
        modes: list[str] = []
        for r in s.scheduled:
            if r.tokens == 1 and r.computed_before >= r.request.prompt_tokens:
                ctxs.append(r.computed_before + 1)
            else:
                chunks.append((r.tokens, r.computed_before))
            modes.append(r.request.sampling or default_sampling)
        p, a, b, c = features_of(chunks, ctxs)
        out.append(StepRecord(p, a, b, c, round(per.duration_ms[k], 4), label, 0,
                              rows=len(s.scheduled), sampling=batch_mode(modes), run=name))
    return out


def find_steplogs(paths: Iterable[str | Path]) -> list[Path]:
    """Step-log files named by `paths`: a ``.steps.npz`` file, a folder holding them, or a live
    results folder (its ``steplogs/``). InputError naming a path that yields none."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            if not p.name.endswith(".steps.npz"):
                raise InputError("not a step log (expected a .steps.npz file)",
                                 field="--from-runs", value=str(p))
            found.append(p)
            continue
        if not p.is_dir():
            raise InputError("no such file or folder", field="--from-runs", value=str(p))
        logs = sorted(p.glob("*.steps.npz")) + sorted(p.glob("steplogs/*.steps.npz"))
        if not logs:
            raise InputError("no step logs (*.steps.npz) here or in its steplogs/",
                             field="--from-runs", value=str(p))
        found.extend(logs)
    return found


def records_from_runs(paths: Sequence[str | Path], *, default_sampling: str = "top-p"
                      ) -> list[StepRecord]:
    """Measured steps of every step log under `paths`, each log one run (its run id)."""
    out: list[StepRecord] = []
    for f in find_steplogs(paths):
        try:
            log = read_steplog(f)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"unreadable step log ({type(exc).__name__}: {exc})",
                             field="--from-runs", value=str(f)) from None
        out.extend(steplog_records(log, default_sampling=default_sampling,
                                   run=log.run_id or f.name))
    return out
