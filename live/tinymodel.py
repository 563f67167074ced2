"""Offline, deterministic model directories that vLLM can load (docs/design.md §9).

Two kinds:

- ``"tiny"``: a random-weight Llama (hidden 128, 2 layers, 4 heads, 2 KV heads, vocab 4096) saved
  with transformers, plus a tokenizer trained in memory with `tokenizers` (``tokenizer.json``) and a
  one-line chat template. Serves text prompts and chat endpoints; its step costs are overhead-bound.
- ``"validation"``: a config-only Llama (hidden 768, 6 layers, 12 heads, 4 KV heads, head_dim 64,
  intermediate 2048, vocab 4096; about 60M parameters). Load it with ``load_format="dummy"``,
  ``skip_tokenizer_init=True`` and token-id prompts; its step costs scale with the batch like a real
  model's, so it is the one to calibrate and validate against.

Nothing is downloaded. Building needs the ``live`` extra (torch, transformers, tokenizers) only for
the ``"tiny"`` kind; the ``"validation"`` kind is plain JSON.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from exfairs.errors import InputError
from exfairs.rng import stream

log = logging.getLogger(__name__)

ModelKind = Literal["tiny", "validation"]

VOCAB_SIZE = 4096
_SEED = 20261125
# Written last: its presence marks a directory as complete (a crash mid-build leaves no marker).
_MARKER = ".exfairs-tinymodel.json"
_FORMAT_VERSION = 1

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def _llama_config(kind: ModelKind) -> dict[str, Any]:
    if kind == "tiny":
        hidden, layers, heads, kv_heads, inter = 128, 2, 4, 2, 256
    else:
        hidden, layers, heads, kv_heads, inter = 768, 6, 12, 4, 2048
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden // heads,
        "intermediate_size": inter,
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "torch_dtype": "float32",
    }


def _is_complete(dest: Path, kind: ModelKind) -> bool:
    marker = dest / _MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(info, dict):
        return False
    return bool(info.get("kind") == kind and info.get("format_version") == _FORMAT_VERSION)


def _corpus_lines(n_lines: int = 3000) -> list[str]:
    """Generated pseudo-English text for the tokenizer trainer (deterministic)."""
    rng = stream(_SEED, "tinymodel", "corpus")
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
    weights = np.linspace(2.0, 0.2, letters.size)
    weights /= weights.sum()
    words = ["".join(rng.choice(letters, size=int(rng.integers(1, 9)), p=weights))
             for _ in range(2000)]
    lines = []
    for _ in range(n_lines):
        idx = rng.integers(0, len(words), size=int(rng.integers(4, 16)))
        lines.append(" ".join(words[i] for i in idx) + ".")
    return lines


def _write_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(), trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "model_max_length": 4096,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1), encoding="utf-8")
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=1), encoding="utf-8")


def _write_tiny(out: Path, cfg: dict[str, Any]) -> None:
    try:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(
            "building the 'tiny' model needs torch, transformers and tokenizers "
            "(install the live extra: pip install 'exfairs[live]')",
            field="kind", value="tiny") from exc
    # The tokenizer is written first: its actual vocab size decides the embedding size.
    _write_tokenizer(out)
    n_vocab = len(json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
                  ["model"]["vocab"])
    cfg = {**cfg, "vocab_size": max(n_vocab, cfg["vocab_size"])}
    conf_args = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type",
                                                            "torch_dtype")}
    # fork_rng: seed the init without disturbing the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        # Any: transformers' constructors are untyped, which strict mypy rejects when it is
        # installed (and cannot see when it is not).
        model_cls: Any = LlamaForCausalLM
        model = model_cls(LlamaConfig(**conf_args))
    model.save_pretrained(str(out), safe_serialization=True)
    # Make config.json exactly ours (save_pretrained writes its own, with library defaults added).
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    saved.update({"architectures": cfg["architectures"], "vocab_size": cfg["vocab_size"]})
    (out / "config.json").write_text(json.dumps(saved, indent=1, sort_keys=True), encoding="utf-8")
    gen = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=1), encoding="utf-8")


def make_tiny_model(dest: Path, kind: ModelKind = "tiny") -> Path:
    """Write (or reuse) a model directory at `dest` that vLLM can load offline; return `dest`.

    ``kind="tiny"``: weights + ``tokenizer.json`` + chat template; load with ``dtype="float32"``,
    ``enforce_eager=True``. ``kind="validation"``: ``config.json`` only; load with
    ``load_format="dummy"`` and ``skip_tokenizer_init=True`` and send token-id prompts
    (ids in ``[3, 4096)``). Deterministic: the same kind always gives the same files. An existing
    complete directory of the same kind is reused; an incomplete one is rebuilt.
    """
    if kind not in ("tiny", "validation"):
        raise InputError("must be 'tiny' or 'validation'", field="kind", value=kind)
    dest = Path(dest)
    if _is_complete(dest, kind):
        return dest
    # Only a directory this function made (it carries the marker) is ever replaced.
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir())
                                                and not (dest / _MARKER).exists())):
        raise InputError("exists and is not a model directory made by make_tiny_model; "
                         "refusing to overwrite it", field="dest", value=str(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        cfg = _llama_config(kind)
        if kind == "tiny":
            _write_tiny(tmp, cfg)
        else:
            (tmp / "config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True),
                                             encoding="utf-8")
        (tmp / _MARKER).write_text(
            json.dumps({"kind": kind, "format_version": _FORMAT_VERSION}), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s model directory at %s", kind, dest)
    return dest
