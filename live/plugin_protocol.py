"""What the driver tells the vLLM scheduler plug-in, and how (docs/plugin.md has the whole story).

The plug-in (`exfairs.live.engine_plugin.ExfairsScheduler`) runs in vLLM's engine-core process, so
the driver cannot hand it Python objects. Everything travels inside requests, through vLLM's
`SamplingParams.extra_args` (in process) or the ``vllm_xargs`` body field (HTTP), which both
reach `vllm.v1.request.Request.sampling_params.extra_args` unchanged. ``vllm_xargs`` accepts only
flat values (str, int, float, lists of them), so every key is flat and prefixed ``exfairs_``:

* a run is opened by a *control request* (1 prompt token, 1 output token) carrying
  ``exfairs_control = "start"`` and ``exfairs_spec`` = a `RunSpec` as JSON: run id, mode, policy
  name and parameters, the workload's clients in order with their weights, where to write the
  step log and report, the policy-sample period, and modules to import for user policies;
* every request of the run carries ``exfairs_run`` (the run id) and its workload fields
  (`request_xargs`): id, client, arrival time, prompt and output lengths, SLOs, unloaded latency;
* the run is closed by a control request with ``exfairs_control = "end"``: the plug-in writes the
  step log and the run report (policy samples, errors) before the engine serves that request, so
  when its token comes back, the files are complete.

Requests without ``exfairs_run`` (warm-ups, other clients of the server) are served by vLLM's own
queue, in front of the run's requests; they appear in the step log without a workload id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exfairs.errors import InputError
from exfairs.records import SLO, Request

#: vLLM versions the plug-in was tested with; it refuses to start on any other (the scheduler
#: internals it relies on are not a public API).
SUPPORTED_VLLM_VERSIONS: tuple[str, ...] = ("0.32.0",)
#: Dotted path to give vLLM as ``scheduler_cls`` / ``--scheduler-cls``.
SCHEDULER_CLS = "exfairs.live.engine_plugin.ExfairsScheduler"
#: Environment variable that, when set in the server's environment, overrides the directory the
#: driver asks for (for a server on another machine, whose files the driver cannot reach).
OUT_DIR_ENV = "EXFAIRS_PLUGIN_DIR"

PREFIX = "exfairs_"
K_CONTROL = "exfairs_control"
K_SPEC = "exfairs_spec"
K_RUN = "exfairs_run"
K_ID = "exfairs_id"
K_CLIENT = "exfairs_client"
K_ARRIVAL = "exfairs_arrival_s"
K_PROMPT = "exfairs_prompt"
K_OUTPUT = "exfairs_output"
K_E2E = "exfairs_e2e_s"
K_TTFT = "exfairs_ttft_s"
K_TPOT = "exfairs_tpot_s"
K_UNLOADED = "exfairs_unloaded_s"

XArgs = dict[str, str | int | float]
MODES = ("gate", "priority", "engine")


class UnsupportedVllm(RuntimeError):
    """The installed vLLM is not a version the plug-in was tested with."""


def check_vllm_version(version: str) -> None:
    """Raise `UnsupportedVllm` naming the versions supported unless `version` is one of them."""
    base = version.split("+", 1)[0]
    if base not in SUPPORTED_VLLM_VERSIONS:
        raise UnsupportedVllm(
            f"the ExFairS scheduler plug-in supports vLLM {', '.join(SUPPORTED_VLLM_VERSIONS)} "
            f"only (it subclasses vLLM's internal Scheduler); found vLLM {version or 'unknown'}. "
            "Install a supported version, or run gate/priority experiments without the plug-in")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run as the plug-in sees it.

    `mode` is ``"engine"`` for ENGINE_* experiments (the plug-in builds `policy` with
    `policy_params` and lets it order the waiting queue and choose preemption victims), otherwise
    ``"gate"`` or ``"priority"`` (vLLM schedules as configured; the plug-in only logs). `clients`
    are (name, weight) in workload order, registered with the policy in that order as the
    simulator does. `out_dir` receives ``<run_id>.steps.npz`` and ``<run_id>.report.json``.
    `sample_every_s` is the policy-sample period on the run clock. `steplog` False keeps only
    step counts (for the overhead benchmark). `policy_modules` are imported before the policy is
    made, so that policies registered by `register_policy` in user modules exist in the engine.
    `admission` (engine mode; ``""``: none) is an `AdmissionConfig` spec
    (``hopeless=reject,limit=predictive``) the plug-in applies at ``schedule()``
    (`exfairs.policies.admission_engine.EngineAdmission`); ``limit=predictive`` needs
    `admission_model`: ``{"profile": <profile JSON without measurements>,
    "max_num_batched_tokens": int, "max_inflight": int}``, the cost model the limit predicts with.
    """

    run_id: str
    mode: str
    policy: str
    out_dir: str
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    clients: tuple[tuple[str, float], ...] = ()
    sample_every_s: float = 1.0
    steplog: bool = True
    policy_modules: tuple[str, ...] = ()
    admission: str = ""
    admission_model: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.run_id or any(c in self.run_id for c in "/\\\0"):
            raise InputError("must be a non-empty file-name-safe string", field="run_id",
                             value=self.run_id)
        if self.mode not in MODES:
            raise InputError(f"must be one of {', '.join(MODES)}", field="mode", value=self.mode)
        if not (math.isfinite(self.sample_every_s) and self.sample_every_s > 0):
            raise InputError("must be a finite number > 0", field="sample_every_s",
                             value=self.sample_every_s)

    def to_json(self) -> str:
        """The spec as one JSON string (the value of ``exfairs_spec``)."""
        return json.dumps({
            "run_id": self.run_id, "mode": self.mode, "policy": self.policy,
            "out_dir": self.out_dir, "policy_params": dict(self.policy_params),
            "clients": [[n, w] for n, w in self.clients], "sample_every_s": self.sample_every_s,
            "steplog": self.steplog, "policy_modules": list(self.policy_modules),
            "admission": self.admission,
            "admission_model": None if self.admission_model is None else dict(
                self.admission_model),
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        """Parse `to_json` output; InputError naming the field on malformed input."""
        try:
            d = json.loads(text)
            return cls(
                run_id=str(d["run_id"]), mode=str(d["mode"]), policy=str(d["policy"]),
                out_dir=str(d["out_dir"]), policy_params=dict(d.get("policy_params") or {}),
                clients=tuple((str(n), float(w)) for n, w in d.get("clients") or ()),
                sample_every_s=float(d.get("sample_every_s", 1.0)),
                steplog=bool(d.get("steplog", True)),
                policy_modules=tuple(str(m) for m in d.get("policy_modules") or ()),
                admission=str(d.get("admission") or ""),
                admission_model=(None if d.get("admission_model") is None
                                 else dict(d["admission_model"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"malformed run spec ({type(exc).__name__}: {exc})",
                             field=K_SPEC, value=text[:200]) from None

    def steplog_path(self, out_dir: str | None = None) -> str:
        """Where the step log of this run is written (in `out_dir`, default the spec's)."""
        return f"{(out_dir or self.out_dir).rstrip('/')}/{self.run_id}.steps.npz"

    def started_path(self, out_dir: str | None = None) -> str:
        """Written by the plug-in when it opens the run: JSON with the vLLM version and the
        error that kept the policy from starting, if any."""
        return f"{(out_dir or self.out_dir).rstrip('/')}/{self.run_id}.started.json"

    def report_path(self, out_dir: str | None = None) -> str:
        """Where the run report of this run is written."""
        return f"{(out_dir or self.out_dir).rstrip('/')}/{self.run_id}.report.json"


def control_xargs(kind: str, spec: RunSpec) -> XArgs:
    """Extra args of the control request that starts (``"start"``) or ends (``"end"``) a run."""
    if kind not in ("start", "end"):
        raise ValueError(f"control kind must be 'start' or 'end', not {kind!r}")
    out: XArgs = {K_CONTROL: kind, K_RUN: spec.run_id}
    if kind == "start":
        out[K_SPEC] = spec.to_json()
    return out


def request_xargs(request: Request, run_id: str) -> XArgs:
    """Extra args that tag `request` as part of run `run_id` and carry its workload fields."""
    out: XArgs = {
        K_RUN: run_id, K_ID: request.request_id, K_CLIENT: request.client,
        K_ARRIVAL: float(request.arrival_s), K_PROMPT: request.prompt_tokens,
        K_OUTPUT: request.output_tokens, K_UNLOADED: float(request.unloaded_e2e_s),
    }
    for key, value in ((K_E2E, request.slo.e2e_s), (K_TTFT, request.slo.ttft_s),
                       (K_TPOT, request.slo.tpot_s)):
        if value is not None:  # JSON has no infinity; absent means "no such SLO"
            out[key] = float(value)
    return out


def _opt(args: Mapping[str, Any], key: str) -> float | None:
    v = args.get(key)
    return None if v is None else float(v)


def parse_request(args: Mapping[str, Any] | None) -> tuple[str, Request] | None:
    """(run id, workload request) from a request's extra args; None when it is not tagged.

    Raises ValueError naming the key when a tagged request's fields are malformed."""
    if not args or K_RUN not in args or K_CONTROL in args:
        return None
    try:
        req = Request(
            request_id=int(args[K_ID]), client=str(args[K_CLIENT]),
            arrival_s=float(args[K_ARRIVAL]), prompt_tokens=int(args[K_PROMPT]),
            output_tokens=int(args[K_OUTPUT]),
            slo=SLO(e2e_s=_opt(args, K_E2E), ttft_s=_opt(args, K_TTFT),
                    tpot_s=_opt(args, K_TPOT)),
            unloaded_e2e_s=float(args.get(K_UNLOADED, 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed {PREFIX}* extra args ({type(exc).__name__}: {exc}): "
                         f"{dict(args)!r}"[:400]) from None
    return str(args[K_RUN]), req


def parse_control(args: Mapping[str, Any] | None) -> tuple[str, str, RunSpec | None] | None:
    """(kind, run id, spec or None) for a control request; None for any other request."""
    if not args or K_CONTROL not in args:
        return None
    kind = str(args[K_CONTROL])
    spec = RunSpec.from_json(str(args[K_SPEC])) if kind == "start" else None
    return kind, str(args.get(K_RUN, "")), spec
