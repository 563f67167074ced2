"""The driver's side of the scheduler plug-in: open a run in the engine, close it, read back what
the plug-in wrote (step log, policy samples, errors). Protocol: `exfairs.live.plugin_protocol`.

Works with any backend: the control requests are ordinary 1-token requests, so a server started
without the plug-in simply serves them; the run then has no report, which `PluginOutcome` says
(fatal for engine-mode runs, whose policy never ran, a note for the others).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from exfairs.live.backend import Backend, BackendError
from exfairs.live.engine_run import RunReport, read_report
from exfairs.live.plugin_protocol import SCHEDULER_CLS, RunSpec, control_xargs
from exfairs.records import Request

_log = logging.getLogger(__name__)

Scalar = int | float | str | bool

class PluginError(BackendError):
    """The plug-in refused the run (its policy could not be made inside the engine)."""


_CONTROL_REQUEST = Request(request_id=-1, client="exfairs-control", arrival_s=0.0,
                           prompt_tokens=1, output_tokens=1)


@dataclass(frozen=True, slots=True)
class PluginOutcome:
    """What came back from the plug-in for one run. `report` is None when it could not be read
    (`note` says why); `error` is the run's failure, if any (policy error in the engine, or an
    engine-mode run without a plug-in)."""

    spec: RunSpec
    report: RunReport | None
    note: str | None

    @property
    def error(self) -> str | None:
        if self.report is not None and self.report.error is not None:
            return self.report.error
        if self.report is None and self.spec.mode == "engine":
            return (f"no report from the ExFairS scheduler plug-in ({self.note}); engine-mode "
                    f"runs need an engine started with scheduler_cls={SCHEDULER_CLS}")
        return None

    def knobs(self) -> tuple[tuple[str, Scalar], ...]:
        """Result-file entries: where the step log and report are, step counts."""
        out: list[tuple[str, Scalar]] = [("plugin_run_id", self.spec.run_id)]
        if self.report is None:
            out.append(("steplog", f"unavailable: {self.note}"))
            return tuple(out)
        r = self.report
        out += [("steplog_path", r.steplog_path or "off"),
                ("plugin_report_path", self.spec.report_path()),
                ("engine_steps", r.steps), ("engine_busy_s", round(r.busy_s, 6)),
                ("engine_preemptions", r.preemptions)]
        return tuple(out)


def new_run_spec(label: str, mode: str, policy: str, out_dir: str | Path, *,
                 policy_params: dict[str, object] | None = None,
                 clients: tuple[tuple[str, float], ...] = (), sample_every_s: float = 1.0,
                 steplog: bool = True, policy_modules: tuple[str, ...] = (),
                 admission: str = "", admission_model: dict[str, object] | None = None,
                 ) -> RunSpec:
    """A spec with a fresh run id ``<label>__<8 hex>`` (file-name safe); `admission` and
    `admission_model` as in `RunSpec` (engine-mode admission)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return RunSpec(run_id=f"{safe}__{uuid.uuid4().hex[:8]}", mode=mode, policy=policy,
                   out_dir=str(Path(out_dir).resolve()), policy_params=dict(policy_params or {}),
                   clients=clients, sample_every_s=sample_every_s, steplog=steplog,
                   policy_modules=policy_modules, admission=admission,
                   admission_model=admission_model)


async def _control(backend: Backend, kind: str, spec: RunSpec) -> None:
    async for _ in backend.stream(_CONTROL_REQUEST, [10], 0,
                                  extra_args=control_xargs(kind, spec)):
        pass


async def open_run(backend: Backend, spec: RunSpec) -> None:
    """Tell the plug-in a run starts (returns once the engine served the control request).

    Raises `PluginError` when the plug-in could not start the run's policy (unknown policy or
    module inside the engine); logs a warning when an engine-mode run finds no sign of the
    plug-in (a server started without it, or on another machine)."""
    await _control(backend, "start", spec)
    path = Path(spec.started_path())
    try:
        started = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        if spec.mode == "engine":
            _log.warning("run %s: no sign of the ExFairS scheduler plug-in (%s missing): an "
                         "engine-mode run needs an engine started with scheduler_cls=%s; the "
                         "result will be marked failed unless the report turns up",
                         spec.run_id, path, SCHEDULER_CLS)
        return
    if started.get("error"):
        raise PluginError(str(started["error"]))


async def close_run(backend: Backend, spec: RunSpec) -> PluginOutcome:
    """Tell the plug-in the run ended and read what it wrote. Never raises for a missing or
    unreachable report: a run whose engine died still has the report flushed at shutdown."""
    note = None
    try:
        await _control(backend, "end", spec)
    except BackendError as exc:  # engine dead or server gone: the shutdown flush may remain
        note = f"end of run not acknowledged: {exc}"
    path = Path(spec.report_path())
    report = None
    try:
        report = read_report(path)
    except FileNotFoundError:
        note = note or (f"no report at {path} (server without the plug-in, or on another "
                        f"machine: see EXFAIRS_PLUGIN_DIR in docs/plugin.md)")
    except (OSError, ValueError, KeyError) as exc:
        note = f"unreadable report {path}: {type(exc).__name__}: {exc}"
    if note:
        _log.warning("run %s: %s", spec.run_id, note)
    return PluginOutcome(spec=spec, report=report, note=note)
