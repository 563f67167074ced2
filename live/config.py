"""Configuration of the live backend: engine arguments, sampling, HTTP endpoint and the driver.

Engine fields carry vLLM's own `EngineArgs` names so a user can move a setting between
``vllm serve`` and ExFairS without translation. Every config is a frozen dataclass validated on
construction (`ConfigError` names the field and value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from exfairs.engine_knobs import VLLM_ARG_OF_KNOB, EngineKnobs, SchedulingPolicy
from exfairs.errors import ConfigError
from exfairs.live.plugin_protocol import SCHEDULER_CLS

__all__ = ["KNOB_OF_VLLM_ARG", "DriverConfig", "Endpoint", "HttpConfig", "SamplingConfig",
           "SchedulingPolicy", "VllmEngineConfig"]

Endpoint = Literal["completions", "chat"]


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError("must be an integer ≥ 1", field=name, value=value)


def _positive_float(name: str, value: object, *, allow_inf: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if ok and not allow_inf and not math.isfinite(float(value)):  # type: ignore[arg-type]
        ok = False
    if not ok:
        raise ConfigError("must be a positive number", field=name, value=value)


@dataclass(frozen=True, slots=True)
class VllmEngineConfig:
    """Arguments of the in-process vLLM engine, by vLLM's `EngineArgs` names.

    `None` leaves vLLM's default. `swap_space` (GiB) and `device` exist only in some vLLM versions;
    setting one that the installed version lacks is an error rather than being silently ignored.
    `scheduling_policy` must be ``"priority"`` for priority-mode experiments (with ``"fcfs"``
    vLLM silently ignores priorities); `exfairs.live.run` sets it per experiment.
    `enable_prefix_caching` is off by default because the simulator does not model it.
    `disable_log_stats` must stay False for the per-request engine metrics cross-check.
    `scheduler_cls` defaults to the ExFairS plug-in (step log in every run; needed by ENGINE_*
    experiments); None gives vLLM's own scheduler.
    """

    model: str
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    swap_space: float | None = None
    device: str | None = None
    dtype: str = "auto"
    quantization: str | None = None
    trust_remote_code: bool = False
    enable_chunked_prefill: bool = True
    disable_log_stats: bool = False
    scheduling_policy: SchedulingPolicy = "fcfs"
    load_format: str = "auto"
    skip_tokenizer_init: bool = False
    enforce_eager: bool = False
    enable_prefix_caching: bool = False
    num_gpu_blocks_override: int | None = None
    block_size: int | None = None
    seed: int = 0
    scheduler_cls: str | None = SCHEDULER_CLS

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("a model path or name is required", field="model", value=self.model)
        for name in ("tensor_parallel_size", "pipeline_parallel_size", "max_num_seqs"):
            _positive_int(name, getattr(self, name))
        for name in ("max_model_len", "max_num_batched_tokens", "num_gpu_blocks_override",
                     "block_size"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if not (0.0 < self.gpu_memory_utilization <= 1.0):
            raise ConfigError("must be in (0, 1]", field="gpu_memory_utilization",
                              value=self.gpu_memory_utilization)
        if self.swap_space is not None and not self.swap_space >= 0:
            raise ConfigError("must be ≥ 0 GiB", field="swap_space", value=self.swap_space)
        if self.scheduling_policy not in ("fcfs", "priority"):
            raise ConfigError("must be 'fcfs' or 'priority'", field="scheduling_policy",
                              value=self.scheduling_policy)

    @classmethod
    def from_knobs(cls, model: str, knobs: EngineKnobs, **vllm_args: Any) -> VllmEngineConfig:
        """Arguments that set every shared knob of `knobs` (e.g. the simulator's engine) that
        vLLM takes here (`KNOB_OF_VLLM_ARG`), with `vllm_args` (vLLM names) over them."""
        args: dict[str, Any] = {arg: getattr(knobs, knob) for knob, arg in _VLLM_ARGS}
        args.update(vllm_args)
        return cls(model=model, **args)

    def knobs(self) -> tuple[tuple[str, int | float | str | bool], ...]:
        """The set (non-None) arguments as (name, value) pairs, for result files."""
        out: list[tuple[str, int | float | str | bool]] = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out.append((f.name, v))
        return tuple(out)


#: The shared engine knobs (`exfairs.engine_knobs.EngineKnobs`) `VllmEngineConfig` sets, as
#: (knob, vLLM argument) pairs; ``long_prefill_token_threshold`` is not passed to vLLM (the
#: simulator's value applies there only).
_VLLM_ARGS: tuple[tuple[str, str], ...] = tuple(
    (knob, arg) for knob, arg in VLLM_ARG_OF_KNOB
    if arg in {f.name for f in fields(VllmEngineConfig)})
#: vLLM argument → shared knob name, for the arguments of `_VLLM_ARGS` a user sets (the live CLI
#: gives them to the simulator's engine, so sim and live resolve the workload alike);
#: ``scheduling_policy`` is not among them: each experiment's mode sets it.
KNOB_OF_VLLM_ARG: dict[str, str] = {arg: knob for knob, arg in _VLLM_ARGS
                                    if knob != "scheduling_policy"}


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """Sampling parameters sent with every request (vLLM `SamplingParams` names).

    Output lengths are fixed by the workload (``ignore_eos``, ``max_tokens`` = the request's
    `output_tokens`), so sampling only changes which tokens come out, not how many. ``top_k = -1``
    disables top-k (the 0.32 engine also accepts 0 for that).
    """

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = -1
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError("must be ≥ 0", field="temperature", value=self.temperature)
        if not (0.0 < self.top_p <= 1.0):
            raise ConfigError("must be in (0, 1]", field="top_p", value=self.top_p)
        if not isinstance(self.top_k, int) or self.top_k < -1:
            raise ConfigError("must be -1 (off) or ≥ 0", field="top_k", value=self.top_k)
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            raise ConfigError("must be > 0", field="repetition_penalty",
                              value=self.repetition_penalty)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """An OpenAI-compatible server (streaming ``/v1/completions``, or ``/v1/chat/completions``
    with `endpoint` ``"chat"``).

    `model` None asks the server (``GET /v1/models``, first entry). `api_key` is sent as a bearer
    token and never logged, printed or written to results (it is excluded from `repr`).
    `connect_timeout_s` bounds connection set-up, `read_timeout_s` the gap between two streamed
    chunks; exceeding either makes the request TIMED_OUT.
    """

    url: str
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    max_connections: int = 1024
    endpoint: Endpoint = "completions"

    def __post_init__(self) -> None:
        if not (self.url.startswith("http://") or self.url.startswith("https://")):
            raise ConfigError("must start with http:// or https://", field="vllm_url",
                              value=self.url)
        if self.endpoint not in ("completions", "chat"):
            raise ConfigError("must be 'completions' or 'chat'", field="endpoint",
                              value=self.endpoint)
        _positive_float("connect_timeout_s", self.connect_timeout_s)
        _positive_float("read_timeout_s", self.read_timeout_s)
        _positive_int("max_connections", self.max_connections)

    @property
    def base_url(self) -> str:
        """The URL without a trailing slash or ``/v1`` suffix."""
        url = self.url.rstrip("/")
        return url[:-3] if url.endswith("/v1") else url


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """How the client side drives a workload through a live backend.

    `max_inflight` is the gate's limit on requests inside the engine (None = the engine's
    `max_num_seqs`). `request_timeout_s` (from dispatch) makes the client give up on a request
    (TIMED_OUT, aborted in the engine). After the last arrival the run waits up to
    `drain_timeout_s` for in-flight requests, then aborts the rest (ABORTED). The SLO tracker is
    advanced every `advance_every_s`, and the policy state sampled every `sample_every_s`.
    `prompt_seed` keys the stream that draws prompt token ids (id range [`min_token_id`,
    `vocab_size`) avoids special tokens).
    """

    max_inflight: int | None = None
    request_timeout_s: float = math.inf
    drain_timeout_s: float = 600.0
    advance_every_s: float = 0.05
    sample_every_s: float = 1.0
    vocab_size: int = 4096
    min_token_id: int = 10

    def __post_init__(self) -> None:
        if self.max_inflight is not None:
            _positive_int("max_inflight", self.max_inflight)
        _positive_float("request_timeout_s", self.request_timeout_s, allow_inf=True)
        _positive_float("drain_timeout_s", self.drain_timeout_s, allow_inf=True)
        _positive_float("advance_every_s", self.advance_every_s)
        _positive_float("sample_every_s", self.sample_every_s)
        _positive_int("vocab_size", self.vocab_size)
        if not (0 <= self.min_token_id < self.vocab_size):
            raise ConfigError("must be in [0, vocab_size)", field="min_token_id",
                              value=self.min_token_id)
