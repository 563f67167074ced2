"""An OpenAI-compatible server (e.g. ``python -m vllm.entrypoints.openai.api_server``) by URL.

Requests go to ``/v1/completions`` as token-id prompts (exact prompt lengths) or, with the
``chat`` endpoint, to ``/v1/chat/completions`` as one user message of text: one common English
word per prompt token id, so the server's prompt length is close to, not exactly, the workload's
(the chat template adds a few tokens; the mean ratio server/workload is recorded in the result's
engine knobs as ``chat_prompt_token_ratio``). A request with a dataset prompt
(`Request.prompt_text`) is sent as that text on either endpoint (``prompt`` string, or the user
message); the ratio of the server's count to the workload's (tokenised or estimated) length is
then recorded as ``text_prompt_token_ratio``. Every request carries ``stream: true``,
``stream_options: {include_usage, continuous_usage_stats}``, vLLM's ``ignore_eos``, the tenant id
(the client name) as OpenAI's ``user`` field and as ``vllm_xargs: {"exfairs_client": ...}`` (vLLM
passes it to the scheduler as ``SamplingParams.extra_args``) and, in priority mode, vLLM's
``priority`` body field. Token counts come from the streamed usage where the server sends it
(exact even when one chunk holds several tokens), else one token per chunk, reconciled with the
final usage. aiohttp is imported only when the backend starts.

Failures: HTTP errors and refused connections → `BackendError` (FAILED records), connect or read
timeouts → `BackendTimeout` (TIMED_OUT). The API key is sent as a bearer token and appears in no
log, message or result.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from exfairs.live.backend import BackendError, BackendTimeout, LiveDependencyError, TokenChunk
from exfairs.live.config import HttpConfig, SamplingConfig
from exfairs.records import Request

_log = logging.getLogger(__name__)
_BODY_EXCERPT = 300
#: Chat prompts are these words, one per prompt token id (each is one token in the common BPE and
#: SentencePiece vocabularies when preceded by a space).
_WORDS = ("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be",
          "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but",
          "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her",
          "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no")
_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


def prompt_text(prompt_token_ids: Sequence[int]) -> str:
    """The chat endpoint's text stand-in for a token-id prompt: one word per id."""
    return " ".join(_WORDS[i % len(_WORDS)] for i in prompt_token_ids)


def import_aiohttp() -> Any:
    """Import aiohttp, or raise `LiveDependencyError` saying how to install it."""
    try:
        return importlib.import_module("aiohttp")
    except ImportError as exc:
        raise LiveDependencyError(
            f"HTTP mode needs aiohttp ({exc}); install the http extra: pip install 'exfairs[http]'"
        ) from exc


class HttpBackend:
    """Streams completions from a server; one aiohttp session for the whole run."""

    def __init__(self, config: HttpConfig, sampling: SamplingConfig | None = None,
                 *, max_num_seqs: int | None = None) -> None:
        self._config = config
        self._sampling = sampling or SamplingConfig()
        self._max_num_seqs = max_num_seqs
        self._session: Any = None
        self._aiohttp: Any = None
        self._model: str | None = config.model
        # Chat endpoint: server-counted vs requested prompt tokens, summed over requests.
        self._prompt_counted = 0
        self._prompt_requested = 0
        self._text_prompts = 0  # of them, dataset text prompts (lengths measured or estimated)
        self._extra_knobs: list[tuple[str, int | float | str | bool]] = []

    @property
    def name(self) -> str:
        return "http"

    @property
    def max_num_seqs(self) -> int | None:
        return self._max_num_seqs

    def set_max_num_seqs(self, value: int) -> None:
        """Use the server's own limit (found by the preflight) as the gate's default."""
        self._max_num_seqs = value

    def add_knobs(self, knobs: Sequence[tuple[str, int | float | str | bool]]) -> None:
        """Facts about the server (from the preflight) to record with every result."""
        self._extra_knobs.extend(knobs)

    @property
    def model(self) -> str | None:
        """The model name sent in requests (asked from the server when not configured)."""
        return self._model

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._config.api_key:
            headers["Authorization"] = f"Bearer {self._config.api_key}"
        return headers

    async def start(self) -> None:
        """Open the session and, when no model name is configured, ask the server for it."""
        if self._session is not None:
            return
        aiohttp = import_aiohttp()
        self._aiohttp = aiohttp
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._config.connect_timeout_s,
                                        sock_read=self._config.read_timeout_s)
        connector = aiohttp.TCPConnector(limit=self._config.max_connections)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector,
                                              headers=self._headers())
        if self._model is None:
            try:
                self._model = await self._discover_model()
            except BaseException:
                await self.close()
                raise

    async def _discover_model(self) -> str:
        url = f"{self._config.base_url}/v1/models"
        try:
            async with self._session.get(url) as resp:
                body = await resp.text()
                if resp.status != 200:
                    raise BackendError(f"GET /v1/models: HTTP {resp.status}: "
                                       f"{body[:_BODY_EXCERPT]}")
                data = json.loads(body).get("data") or []
        except (self._aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise BackendError(f"cannot list models at {url}: {type(exc).__name__}: {exc}"
                               ) from exc
        if not data or "id" not in data[0]:
            raise BackendError(f"the server at {url} lists no model; pass --served-model")
        return str(data[0]["id"])

    @property
    def endpoint_path(self) -> str:
        """The generation endpoint's path (``/v1/completions`` or ``/v1/chat/completions``)."""
        return _PATHS[self._config.endpoint]

    async def fetch(self, method: str, path: str, body: dict[str, Any] | None = None
                    ) -> tuple[int, str]:
        """One non-streaming request to `path` on the server (for the preflight): returns
        (HTTP status, body text); connection problems raise `BackendError`."""
        if self._session is None:
            raise BackendError("the HTTP backend was not started")
        url = f"{self._config.base_url}{path}"
        try:
            async with self._session.request(method, url, json=body) as resp:
                return int(resp.status), await resp.text()
        except (self._aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise BackendError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    def body(self, request: Request, prompt_token_ids: Sequence[int], priority: int
             ) -> dict[str, Any]:
        """The JSON body sent for `request` (streaming, the configured endpoint)."""
        s = self._sampling
        text = request.prompt_text
        if self._config.endpoint == "completions":
            prompt: dict[str, Any] = {"prompt": text if text is not None
                                      else list(prompt_token_ids)}
        else:
            content = text if text is not None else prompt_text(prompt_token_ids)
            prompt = {"messages": [{"role": "user", "content": content}]}
        body: dict[str, Any] = {
            "model": self._model,
            **prompt,
            "max_tokens": request.output_tokens,
            "user": request.client,
            "vllm_xargs": {"exfairs_client": request.client},
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "repetition_penalty": s.repetition_penalty,
        }
        # 0 is vLLM's default; omitting it keeps non-vLLM servers happy in gate mode.
        if priority != 0:
            body["priority"] = priority
        return body

    async def stream(
        self, request: Request, prompt_token_ids: Sequence[int], priority: int, *,
        extra_args: Mapping[str, str | int | float] | None = None,
    ) -> AsyncGenerator[TokenChunk, None]:
        if self._session is None:
            raise BackendError("the HTTP backend was not started")
        aiohttp = self._aiohttp
        url = f"{self._config.base_url}{self.endpoint_path}"
        body = self.body(request, prompt_token_ids, priority)
        if extra_args:  # the scheduler plug-in's fields (exfairs.live.plugin_protocol)
            body["vllm_xargs"] = {**body.get("vllm_xargs", {}), **extra_args}
        seen = 0
        try:
            async with self._session.post(url, json=body) as resp:
                if resp.status != 200:
                    text = await resp.text()
                    raise BackendError(f"HTTP {resp.status}: {text[:_BODY_EXCERPT]}")
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        break
                    obj = json.loads(payload)
                    if "error" in obj:
                        raise BackendError(f"server error: {str(obj['error'])[:_BODY_EXCERPT]}")
                    usage = obj.get("usage") or {}
                    total = usage.get("completion_tokens")
                    if total is not None and not obj.get("choices") and \
                            usage.get("prompt_tokens") is not None:
                        self._prompt_counted += int(usage["prompt_tokens"])
                        self._prompt_requested += request.prompt_tokens
                        self._text_prompts += request.prompt_text is not None
                    if obj.get("choices"):
                        new = int(total) - seen if total is not None else 1
                    elif total is not None:  # the final usage-only chunk: reconcile
                        new = int(total) - seen
                    else:
                        new = 0
                    if new > 0:
                        seen += new
                        yield TokenChunk(new_tokens=new)
                yield TokenChunk(new_tokens=0, finished=True)
        except BackendError:
            raise
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise BackendTimeout(f"timeout talking to {url}: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            raise BackendError(f"malformed stream from {url}: {exc}") from exc

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def knobs(self) -> tuple[tuple[str, int | float | str | bool], ...]:
        # The URL and model identify the server; the API key is deliberately absent.
        out: list[tuple[str, int | float | str | bool]] = [
            ("backend", self.name), ("url", self._config.base_url),
            ("model", self._model or ""), ("endpoint", self.endpoint_path),
        ]
        if self._prompt_requested and (self._config.endpoint == "chat" or self._text_prompts):
            # Server-counted over workload prompt tokens: how far the workload's lengths (word
            # stand-ins, or a dataset's estimated / tokenised text) are from the server's.
            key = "text_prompt_token_ratio" if self._text_prompts else "chat_prompt_token_ratio"
            out.append((key, round(self._prompt_counted / self._prompt_requested, 4)))
        if self._max_num_seqs is not None:
            out.append(("max_num_seqs", self._max_num_seqs))
        return tuple(out + self._extra_knobs)
