"""make_tiny_model: deterministic, idempotent, loadable offline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from exfairs.errors import InputError
from exfairs.live.tinymodel import make_tiny_model


def _digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_validation_kind_is_config_only_and_idempotent(tmp_path: Path) -> None:
    d = make_tiny_model(tmp_path / "v", "validation")
    cfg = json.loads((d / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
            cfg["num_key_value_heads"], cfg["head_dim"], cfg["intermediate_size"],
            cfg["vocab_size"]) == (768, 6, 12, 4, 64, 2048, 4096)
    assert not list(d.glob("*.safetensors"))
    before = {p: p.stat().st_mtime_ns for p in d.iterdir()}
    assert make_tiny_model(d, "validation") == d
    assert {p: p.stat().st_mtime_ns for p in d.iterdir()} == before


def test_refuses_foreign_directory_and_bad_kind(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "precious.txt").write_text("keep")
    with pytest.raises(InputError, match="refusing"):
        make_tiny_model(tmp_path / "x", "validation")
    assert (tmp_path / "x" / "precious.txt").exists()
    with pytest.raises(InputError) as ei:
        make_tiny_model(tmp_path / "y", "huge")  # type: ignore[arg-type]
    assert ei.value.field == "kind"


@pytest.mark.live
def test_tiny_kind_deterministic_with_tokenizer(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    a = make_tiny_model(tmp_path / "a", "tiny")
    b = make_tiny_model(tmp_path / "b", "tiny")
    assert _digest(a) == _digest(b)
    tok = tokenizers.Tokenizer.from_file(str(a / "tokenizer.json"))
    ids = tok.encode("hello world").ids
    assert ids and max(ids) < json.loads((a / "config.json").read_text())["vocab_size"]
    assert "chat_template" in json.loads((a / "tokenizer_config.json").read_text())


@pytest.mark.live
@pytest.mark.slow
def test_vllm_loads_both_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("vllm")
    env = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from vllm import LLM, SamplingParams

    tiny = make_tiny_model(tmp_path / "tiny", "tiny")
    llm = LLM(model=str(tiny), dtype="float32", enforce_eager=True, max_model_len=512,
              max_num_seqs=4)
    out = llm.generate(["hello world"], SamplingParams(max_tokens=4, ignore_eos=True))
    assert len(out[0].outputs[0].token_ids) == 4
    del llm
    val = make_tiny_model(tmp_path / "val", "validation")
    llm = LLM(model=str(val), dtype="float32", enforce_eager=True, load_format="dummy",
              skip_tokenizer_init=True, max_model_len=512, max_num_seqs=4)
    out = llm.generate([{"prompt_token_ids": list(range(3, 40))}],
                       SamplingParams(max_tokens=4, ignore_eos=True, detokenize=False))
    assert len(out[0].outputs[0].token_ids) == 4
