"""`exfairs-calibrate profile --backend torch` on CPU with a tiny model shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exfairs.calibration.cli import main
from exfairs.calibration.measurements import load_measurements
from exfairs.calibration.profile import load_profile


@pytest.mark.slow
def test_torch_operator_profile_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out, prof = tmp_path / "steps.json", tmp_path / "prof.json"
    rc = main(["profile", "--backend", "torch", "--hidden-size", "64", "--num-layers", "2",
               "--num-heads", "4", "--num-kv-heads", "2", "--intermediate-size", "128",
               "--max-num-seqs", "8", "--max-num-batched-tokens", "512", "--max-model-len",
               "1024", "--repeats", "3", "--dtype", "float32", "--id", "cpu-torch-test",
               "--out", str(out), "--profile-out", str(prof)])
    assert rc == 0
    ms = load_measurements(out)
    labels = {s.label for s in ms.steps}
    assert labels == {"prefill", "decode", "mixed"}
    assert all(s.duration_ms > 0 for s in ms.steps)
    assert max(s.prefill_tokens for s in ms.steps) <= 512
    assert max(s.decode_seqs for s in ms.steps) <= 8
    p = load_profile(prof)
    assert p.id == "cpu-torch-test" and p.fit is not None
    assert p.metadata.engine == "torch-operators"
    # 1 GiB of float32 KV at 2 layers x 2 KV heads x 16 dims x 2 x 4 B = 512 B per token.
    assert p.engine.num_gpu_blocks == (1 << 30) // (16 * 512)
    # Bigger prefills cost more (the operators were really timed, not made up).
    steps = sorted((s.prefill_tokens, s.duration_ms) for s in ms.steps
                   if s.label == "prefill" and s.prefill_attn == s.prefill_tokens ** 2)
    assert steps[-1][1] > steps[0][1]


def test_torch_shape_from_config(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from exfairs.calibration.torch_profiler import shape_from_config
    from exfairs.errors import InputError

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"hidden_size": 4096, "num_hidden_layers": 32,
                               "num_attention_heads": 32, "num_key_value_heads": 8,
                               "intermediate_size": 14336, "vocab_size": 128256,
                               "torch_dtype": "bfloat16"}))
    s = shape_from_config(cfg)
    assert (s.head_dim, s.num_kv_heads, s.dtype) == (128, 8, "bfloat16")
    assert s.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    cfg.write_text(json.dumps({"hidden_size": 4096}))
    with pytest.raises(InputError) as ei:
        shape_from_config(cfg)
    assert ei.value.field == "num_attention_heads"
