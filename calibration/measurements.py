"""Raw step measurements: what `exfairs-calibrate profile` writes and `exfairs-calibrate fit` reads.

Schema (version 2; version 1 files, without "rows", "sampling" and "run", still load)::

    {
      "schema": "exfairs.measurements", "schema_version": 2,
      "metadata": {ProfileMetadata fields},       # hardware, model, engine, dtype, TP, date
      "engine": {EngineDefaults fields},          # knobs the steps were measured with
      "wall_time_s": float,                       # wall time of the profiling run
      "steps": [{"prefill_tokens", "prefill_attn", "decode_seqs", "decode_ctx", "duration_ms",
                 "label", "repeat", "rows", "sampling", "run"}, ...]
    }

One entry per measured engine step; `label` names the probe that produced it (``prefill``,
``decode``, ``mixed``, ...), `repeat` its repetition index, `rows` the rows the step sampled
(0: unknown), `sampling` the batch's sampling mode ("": unknown) and `run` the run (step log)
it came from; steps of one run are in step order. Warm-up steps are never written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from exfairs.atomic import atomic_writer
from exfairs.calibration.profile import EngineDefaults, Measurement, ProfileMetadata
from exfairs.calibration.profile_json import _section
from exfairs.errors import InputError

SCHEMA = "exfairs.measurements"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One measured step: its composition (cost-model features), duration and provenance."""

    prefill_tokens: int
    prefill_attn: float
    decode_seqs: int
    decode_ctx: int
    duration_ms: float
    label: str = ""
    repeat: int = 0
    rows: int = 0
    sampling: str = ""
    run: str = ""

    def measurement(self) -> Measurement:
        """The step as the fitter sees it."""
        return Measurement(self.prefill_tokens, self.prefill_attn, self.decode_seqs,
                           self.decode_ctx, self.duration_ms, self.rows, self.sampling)


@dataclass(frozen=True, slots=True)
class MeasurementSet:
    """A profiling run's output: provenance, engine knobs and the measured steps."""

    metadata: ProfileMetadata
    engine: EngineDefaults
    steps: tuple[StepRecord, ...]
    wall_time_s: float = 0.0

    def measurements(self) -> list[Measurement]:
        return [s.measurement() for s in self.steps]

    def runs(self) -> dict[str, list[StepRecord]]:
        """Steps grouped by `run`, in first-seen order (one group "" for files without runs)."""
        out: dict[str, list[StepRecord]] = {}
        for s in self.steps:
            out.setdefault(s.run, []).append(s)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "metadata": asdict(self.metadata),
            "engine": self.engine.to_json(),
            "wall_time_s": self.wall_time_s,
            "steps": [asdict(s) for s in self.steps],
        }


def measurement_set_from_json(doc: Any, source: str = "<measurements>") -> MeasurementSet:
    """Validate a parsed measurements document; InputError names the bad field."""
    if not isinstance(doc, dict):
        raise InputError("a measurements file must be a JSON object", field="(top level)",
                         value=type(doc).__name__, source=source)
    if doc.get("schema") != SCHEMA:
        raise InputError(f"not an ExFairS measurements file (expected {SCHEMA!r})",
                         field="schema", value=doc.get("schema"), source=source)
    if doc.get("schema_version") not in READABLE_VERSIONS:
        raise InputError("unsupported schema version (this ExFairS reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))})",
                         field="schema_version", value=doc.get("schema_version"), source=source)
    meta = _section(doc, "metadata", ProfileMetadata, source)
    engine = _section(doc, "engine", EngineDefaults, source)
    wall = doc.get("wall_time_s", 0.0)
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or wall < 0:
        raise InputError("must be a number ≥ 0", field="wall_time_s", value=wall, source=source)
    raw = doc.get("steps")
    if not isinstance(raw, list):
        raise InputError("must be a list", field="steps", value=type(raw).__name__, source=source)
    steps: list[StepRecord] = []
    for i, s in enumerate(raw):
        rec: StepRecord = _section({f"steps[{i}]": s}, f"steps[{i}]", StepRecord, source)
        if rec.duration_ms <= 0 or min(rec.prefill_tokens, rec.prefill_attn, rec.decode_seqs,
                                       rec.decode_ctx) < 0:
            raise InputError("durations must be > 0 and features ≥ 0", field=f"steps[{i}]",
                             value=s, source=source)
        steps.append(rec)
    return MeasurementSet(meta, engine, tuple(steps), float(wall))


def load_measurements(path: str | os.PathLike[str]) -> MeasurementSet:
    """Read a measurements file written by `save_measurements`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such measurements file", field="measurements",
                         value=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", field="measurements", value=source) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", field="(file)", value=source,
                         source=source) from None
    return measurement_set_from_json(doc, source)


def write_json_atomic(doc: Any, path: str | os.PathLike[str]) -> None:
    """Write `doc` as JSON atomically (temp file in the same folder, then rename)."""
    with atomic_writer(path) as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")


def save_measurements(ms: MeasurementSet, path: str | os.PathLike[str]) -> None:
    """Write a measurements file atomically."""
    write_json_atomic(ms.to_json(), path)


def features_of(prefill_chunks: Sequence[tuple[int, int]],
                decode_contexts: Sequence[int]) -> tuple[int, float, int, int]:
    """Cost-model features (P, A, B, C) of a step that computes `prefill_chunks` — (n new tokens,
    c tokens already cached) pairs — and decodes sequences whose contexts are `decode_contexts`
    (tokens attended to, the new one included)."""
    p = sum(n for n, _ in prefill_chunks)
    a = float(sum(n * (c + n) for n, c in prefill_chunks))
    return p, a, len(decode_contexts), int(sum(decode_contexts))
