"""The public-data profiles: re-derived from the bundled data, checked against Vidur's figures."""

from __future__ import annotations

import pytest

from exfairs.calibration.profile import load_profile
from exfairs.calibration.public_data import (
    VIDUR_CHECK_DECODE_MS,
    VIDUR_CHECK_PREFILL_MS,
    build_splitwise_profile,
    build_vidur_profile,
    bundled_data_dir,
    load_vidur,
)

DATA = bundled_data_dir()
needs_data = pytest.mark.skipif(not (DATA / "vidur").is_dir(),
                                reason=f"public calibration data not found at {DATA}")


@needs_data
def test_vidur_composition_reproduces_the_readme_figures() -> None:
    # Checks our reading of the data (operators, layers, attention) before any fitting.
    t = load_vidur(DATA)
    pre = {n: kv_ms for n, kv, kv_ms in t.prefill_attn if kv == 0}
    for n, want in VIDUR_CHECK_PREFILL_MS.items():
        assert t.step_ms([(n, 0, pre[n])], None) == pytest.approx(want, rel=0.01)
    dec = {(b, kv): ms for b, kv, ms in t.decode_attn}
    for (b, ctx), want in VIDUR_CHECK_DECODE_MS.items():
        assert t.step_ms([], (b, ctx, dec[(b, ctx)])) == pytest.approx(want, rel=0.01)


def test_default_profile_reproduces_vidur_figures_within_10pct() -> None:
    prof = load_profile("a100-llama2-7b")
    cm = prof.cost_model()
    for n, want in VIDUR_CHECK_PREFILL_MS.items():
        assert cm.unloaded_ttft_s(n) * 1000 == pytest.approx(want, rel=0.10), n
    for (b, ctx), want in VIDUR_CHECK_DECODE_MS.items():
        assert cm.step_ms(0, 0, b, b * ctx) == pytest.approx(want, rel=0.10), (b, ctx)
    assert prof.fit is not None and prof.fit.median_ape <= 5.0
    assert prof.engine.num_gpu_blocks == 7168 and prof.engine.block_size == 16


@needs_data
@pytest.mark.parametrize("which", ["a100-llama2-7b", "a100-llama2-70b-tp4", "h100-llama2-70b-tp4"])
def test_bundled_profile_is_rederived_from_the_data(which: str) -> None:
    built = (build_vidur_profile(DATA) if which == "a100-llama2-7b"
             else build_splitwise_profile(DATA, which[:4]))
    bundled = load_profile(which)
    assert built.id == bundled.id
    assert built.fit == bundled.fit
    for name in ("fixed_ms", "decode_fixed_ms", "prefill_token_ms", "prefill_attn_ms",
                 "decode_seq_ms", "decode_ctx_ms", "floor_ms"):
        assert getattr(built.coefficients, name) == pytest.approx(
            getattr(bundled.coefficients, name), rel=1e-9, abs=1e-12), name
    assert built.engine == bundled.engine
    assert len(built.measurements) == len(bundled.measurements)


def test_70b_profiles_are_plausible() -> None:
    a100, h100 = load_profile("a100-llama2-70b-tp4"), load_profile("h100-llama2-70b-tp4")
    for p in (a100, h100):
        assert p.metadata.tensor_parallel_size == 4 and "Splitwise" in p.metadata.source
    # H100 is faster than A100 on both phases (Splitwise's measurements say so).
    assert h100.cost_model().unloaded_ttft_s(2048) < a100.cost_model().unloaded_ttft_s(2048)
    assert h100.cost_model().step_ms(0, 0, 16, 16 * 1024) < a100.cost_model().step_ms(
        0, 0, 16, 16 * 1024)
