"""Counting prompt tokens: a local tokenizer, or the labelled estimate used without one."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from exfairs.errors import InputError

#: Characters per token of the length estimate used when no tokenizer is given.
CHARS_PER_TOKEN = 4
#: The `length_source` label of estimated lengths.
ESTIMATE_LABEL = f"estimate: ceil(characters / {CHARS_PER_TOKEN})"


def estimate_tokens(text: str) -> int:
    """The token count assumed for `text` when no tokenizer is given: ceil(characters / 4),
    at least 1 (OpenAI's rule of thumb for English; code and other languages tokenise denser)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


class TokenCounter(Protocol):
    """Something that counts the tokens of texts (a loaded tokenizer)."""

    @property
    def label(self) -> str: ...

    def count(self, texts: Sequence[str]) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class _HfTokenizer:
    label: str
    encode: Callable[[str], Sequence[int]]

    def count(self, texts: Sequence[str]) -> list[int]:
        return [max(1, len(self.encode(t))) for t in texts]


def load_tokenizer(path: str | os.PathLike[str]) -> TokenCounter:
    """A local tokenizer directory (``tokenizer.json`` / ``tokenizer_config.json``, as a model
    directory has) loaded with transformers' AutoTokenizer, offline. Counts include the special
    tokens the tokenizer adds by default (vLLM's completions endpoint adds them too)."""
    p = Path(path)
    if not p.is_dir():
        raise InputError("must be a local tokenizer (or model) directory", field="tokenizer",
                         value=os.fspath(path))
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError("measuring lengths with a tokenizer needs transformers: pip install "
                         "transformers (the vllm and cpu extras bring it)", field="tokenizer",
                         value=os.fspath(path)) from None
    try:
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load a tokenizer: {' '.join(str(exc).split())[:300]}",
                         field="tokenizer", value=os.fspath(path)) from None
    return _HfTokenizer(label=f"tokenizer: {p.resolve()}", encode=tok.encode)
