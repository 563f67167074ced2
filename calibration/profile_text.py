"""A profile as text for people (`exfairs-calibrate show`, and after `fit`/`profile`/`public`):
provenance, engine knobs, coefficients, held-out error, residuals and predicted step times.

Split from `exfairs.calibration.cli`, which prints it.
"""

from __future__ import annotations

from exfairs.calibration.profile import Profile


def format_profile(prof: Profile) -> str:
    """Human-readable summary: provenance, knobs, coefficients, error, predicted step times."""
    m, e, c = prof.metadata, prof.engine, prof.coefficients
    cm = prof.cost_model()
    lines = [
        f"profile {m.id}: {m.model} on {m.hardware}",
        f"  engine {m.engine} {m.engine_version}, dtype {m.dtype}, TP {m.tensor_parallel_size}, "
        f"date {m.date}",
        f"  source: {m.source}",
    ]
    if m.notes:
        lines.append(f"  notes: {m.notes}")
    lines += [
        f"  knobs: max_num_seqs {e.max_num_seqs}, max_num_batched_tokens "
        f"{e.max_num_batched_tokens}, block_size {e.block_size}, num_gpu_blocks "
        f"{e.num_gpu_blocks} (KV {e.kv_capacity_tokens} tokens), max_model_len {e.max_model_len}",
        "  coefficients (ms): " + ", ".join(
            f"{k}={getattr(c, k):.6g}" for k in ("fixed_ms", "decode_fixed_ms", "prefill_token_ms",
                                                  "prefill_attn_ms", "decode_seq_ms",
                                                  "decode_ctx_ms", "floor_ms")),
    ]
    if c.decode_knots:
        lines.append("  decode table (ms by batch size): " + ", ".join(
            f"B={k} {v:.3g}" for k, v in zip(c.decode_knots, c.decode_knot_ms, strict=True)))
    if c.mixed_fixed_ms is not None:
        lines.append(f"  mixed steps: mixed_fixed_ms={c.mixed_fixed_ms:.4g}, "
                     f"mixed_seq_ms={c.mixed_seq_ms:.4g}")
    if c.sample_row_ms:
        lines.append(f"  sampling (ms per row over {c.sampling_baseline}): " + ", ".join(
            f"{k} {v:.4g}" for k, v in c.sample_row_ms))
    if prof.fit is not None:
        f = prof.fit
        lines.append(f"  held-out error: median {f.median_ape:.2f}%, p90 {f.p90_ape:.2f}% "
                     f"({f.n_train} train / {f.n_test} test steps)")
        if f.method:
            lines.append(f"    {f.method}; mean bias {f.mean_bias_pct:+.2f}%")
    if prof.residuals is not None:
        r = prof.residuals
        q = dict(zip(r.probabilities, r.ratio_quantiles, strict=True))
        lines.append(f"  residuals (step / predicted, {r.n_steps} steps): p10 {q.get(0.1, 0):.3f}, "
                     f"p50 {q.get(0.5, 0):.3f}, p90 {q.get(0.9, 0):.3f}, mean "
                     f"{r.mean_ratio:.3f}, lag-1 autocorrelation {r.lag1_autocorr:.2f}")
    else:
        lines.append("  held-out error: not recorded")
    lines.append(f"  measurements embedded: {len(prof.measurements)}")
    sizes = [n for n in (128, 512, 1024, 2048, 4096) if n <= e.max_model_len]
    lines.append("  prefill (one prompt, unloaded TTFT): " + ", ".join(
        f"{n} tok {cm.unloaded_ttft_s(n) * 1000:.1f} ms" for n in sizes))
    for ctx in (c_ for c_ in (512, 2048) if c_ <= e.max_model_len):
        batches = [b for b in (1, 8, 32, 128) if b <= e.max_num_seqs]
        lines.append(f"  decode step at context {ctx}: " + ", ".join(
            f"B={b} {cm.step_ms(0, 0, b, b * ctx):.1f} ms" for b in batches))
    return "\n".join(lines)
