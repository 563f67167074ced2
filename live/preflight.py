"""Before sending load to an OpenAI-compatible server: find out what it accepts, and refuse an
experiment it cannot run.

`probe_server` asks the server, with a handful of tiny requests (1 output token each):

* ``GET /v1/models``: the model and, on vLLM, its ``max_model_len``;
* ``GET /server_info?config_format=json``: vLLM's configuration (``max_num_seqs``, the scheduling
  policy, the scheduler class) — only served when the server runs with ``VLLM_SERVER_DEV_MODE=1``;
  otherwise these stay unknown;
* one plain request on the generation endpoint: it must succeed (auth, endpoint, fields);
* when priority experiments are planned, the same request with ``priority: 1``: some vLLM
  versions answer HTTP 400 when priority scheduling is off. vLLM 0.32 accepts the field and
  silently ignores it under ``--scheduling-policy fcfs``, so acceptance alone proves nothing;
  only ``/server_info`` can confirm the policy.

`check_plan` turns the answers into a refusal (`PreflightError`, exit code 2, nothing sent yet)
or a list of warnings. The facts go into every result's engine knobs (`ServerFacts.knobs`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exfairs.errors import InputError
from exfairs.live.http import HttpBackend
from exfairs.policies.experiments import Experiment, Mode
from exfairs.records import Request, Workload

_EXCERPT = 200


class PreflightError(InputError):
    """The server cannot run a planned experiment (found before any load was sent)."""


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What the preflight learned; None = the server does not say.

    `accepts_priority` is whether a request with a nonzero ``priority`` was accepted (None: not
    probed); `priority_refusal` the server's answer when it was not. `scheduling_policy`,
    `max_num_seqs` and `scheduler_cls` come from vLLM's ``/server_info`` (dev mode only).
    """

    model: str
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    scheduling_policy: str | None = None
    scheduler_cls: str | None = None
    accepts_priority: bool | None = None
    priority_refusal: str | None = None

    def knobs(self) -> tuple[tuple[str, int | float | str | bool], ...]:
        """The facts as (name, value) pairs for result files ("unknown" where not exposed)."""
        def show(v: object) -> int | str | bool:
            return "unknown" if v is None else v  # type: ignore[return-value]

        return (("server_max_model_len", show(self.max_model_len)),
                ("server_max_num_seqs", show(self.max_num_seqs)),
                ("server_scheduling_policy", show(self.scheduling_policy)),
                ("server_accepts_priority", show(self.accepts_priority)))


def _find(doc: Any, key: str) -> Any:
    """The first value under `key` anywhere in a nested JSON document (depth first)."""
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        for v in doc.values():
            found = _find(v, key)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for v in doc:
            found = _find(v, key)
            if found is not None:
                return found
    return None


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _excerpt(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:_EXCERPT]
    msg = _find(doc, "message")
    if isinstance(msg, str):
        return msg[:_EXCERPT]
    detail = doc.get("detail") if isinstance(doc, dict) else None
    return str(detail if detail is not None else doc)[:_EXCERPT]


def _probe_body(backend: HttpBackend, priority: int) -> dict[str, Any]:
    probe = Request(request_id=-1, client="exfairs-preflight", arrival_s=0.0, prompt_tokens=4,
                    output_tokens=1)
    body = backend.body(probe, [11, 12, 13, 14], priority)
    body["stream"] = False
    body.pop("stream_options", None)  # vLLM refuses stream_options without stream
    return body


async def probe_server(backend: HttpBackend, *, probe_priority: bool) -> ServerFacts:
    """Ask a started `backend`'s server what it accepts (see the module docstring). Raises
    `PreflightError` when even a plain one-token request is refused."""
    max_model_len = None
    status, text = await backend.fetch("GET", "/v1/models")
    if status == 200:
        data = (json.loads(text).get("data") or [{}]) if text.strip().startswith("{") else [{}]
        for entry in data:
            if entry.get("id") == backend.model:
                max_model_len = _int_or_none(entry.get("max_model_len"))
    max_num_seqs = policy = scheduler_cls = None
    status, text = await backend.fetch("GET", "/server_info?config_format=json")
    if status == 200:
        try:
            sched = _find(json.loads(text), "scheduler_config")
        except ValueError:
            sched = None
        if isinstance(sched, dict):
            max_num_seqs = _int_or_none(sched.get("max_num_seqs"))
            policy = sched.get("policy") if isinstance(sched.get("policy"), str) else None
            cls = sched.get("scheduler_cls")
            scheduler_cls = cls if isinstance(cls, str) else None
    path = backend.endpoint_path
    status, text = await backend.fetch("POST", path, _probe_body(backend, 0))
    if status != 200:
        raise PreflightError(
            f"the server refused a plain one-token request on {path}: HTTP {status}: "
            f"{_excerpt(text)}", field="--vllm-url", value=None)
    accepts = refusal = None
    if probe_priority:
        status, text = await backend.fetch("POST", path, _probe_body(backend, 1))
        accepts = status == 200
        refusal = None if accepts else f"HTTP {status}: {_excerpt(text)}"
    return ServerFacts(model=backend.model or "", max_model_len=max_model_len,
                       max_num_seqs=max_num_seqs, scheduling_policy=policy,
                       scheduler_cls=scheduler_cls, accepts_priority=accepts,
                       priority_refusal=refusal)


def check_plan(facts: ServerFacts, experiments: Sequence[Experiment], workload: Workload,
               *, engine_max_num_seqs: int) -> list[str]:
    """Refuse (PreflightError) what the server cannot run; return warnings for what cannot be
    verified. `engine_max_num_seqs` is the simulated engine's (the profile's) limit."""
    prio = [e.name for e in experiments if e.mode is Mode.PRIORITY]
    warnings: list[str] = []
    if prio and facts.accepts_priority is False:
        raise PreflightError(
            f"the server rejects request priorities ({facts.priority_refusal}); start it with "
            "--scheduling-policy priority, or run gate experiments (QUEUE_<POLICY>) instead",
            field="--experiment", value=",".join(prio))
    if prio and facts.scheduling_policy not in (None, "priority"):
        raise PreflightError(
            f"the server schedules by {facts.scheduling_policy!r} and ignores request "
            "priorities; start it with --scheduling-policy priority, or run gate experiments "
            "(QUEUE_<POLICY>) instead", field="--experiment", value=",".join(prio))
    if prio and facts.scheduling_policy is None:
        warnings.append(
            "the server accepted a priority but does not say whether it schedules by priority "
            "(vLLM ignores priorities under --scheduling-policy fcfs without an error): the "
            f"priority experiments ({', '.join(prio)}) are valid only if it was started with "
            "--scheduling-policy priority (start it with VLLM_SERVER_DEV_MODE=1 to let ExFairS "
            "check)")
    if facts.max_model_len is not None:
        too_long = [r for r in workload.requests
                    if r.prompt_tokens + r.output_tokens > facts.max_model_len]
        if too_long:
            worst = max(too_long, key=lambda r: r.prompt_tokens + r.output_tokens)
            raise PreflightError(
                f"{len(too_long)} of {len(workload.requests)} requests exceed the server's "
                f"max_model_len {facts.max_model_len} (longest: {worst.prompt_tokens} prompt + "
                f"{worst.output_tokens} output tokens); use a profile or --max-model-len that "
                "matches the server", field="max_model_len", value=facts.max_model_len)
    if facts.max_num_seqs is None:
        warnings.append(
            "the server does not expose max_num_seqs; the gate limit defaults to the profile's "
            f"{engine_max_num_seqs} (set --max-num-seqs or --max-concurrency to the server's)")
    elif facts.max_num_seqs != engine_max_num_seqs:
        warnings.append(
            f"the server's max_num_seqs is {facts.max_num_seqs}, the profile's "
            f"{engine_max_num_seqs}: the gate uses the server's; pass --max-num-seqs "
            f"{facts.max_num_seqs} so the simulated engine matches")
    return warnings
