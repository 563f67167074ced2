"""Synthetic step measurements for the calibration tests (imported by them)."""

from __future__ import annotations

import numpy as np

from exfairs.calibration.costmodel import CostCoefficients, CostModel
from exfairs.calibration.measurements import features_of
from exfairs.calibration.profile import Measurement
from exfairs.rng import stream

TRUE = CostCoefficients(fixed_ms=5.0, decode_fixed_ms=3.0, prefill_token_ms=0.06,
                        prefill_attn_ms=6e-6, decode_seq_ms=0.05, decode_ctx_ms=2.5e-4)


def synthetic_steps(coeffs: CostCoefficients, *, noise: float, seed: int,
                    repeats: int = 1) -> list[Measurement]:
    """A grid of prefill, decode and mixed steps with multiplicative lognormal noise."""
    cm = CostModel(coeffs)
    rng = stream(seed, "test", "synthetic")
    shapes: list[tuple[list[tuple[int, int]], list[int]]] = []
    for n in (16, 64, 256, 512, 1024, 2048, 4096):
        for c in (0, 512, 2048):
            shapes.append(([(n, c)], []))
    for b in (1, 2, 8, 32, 64, 128, 256):
        for ctx in (128, 1024, 3072):
            shapes.append(([], [ctx] * b))
    for b, n in ((4, 256), (16, 512), (64, 1024), (128, 2048), (8, 64)):
        shapes.append(([(n, 0)], [1024] * b))
    out = []
    for chunks, ctxs in shapes:
        p, a, b, c = features_of(chunks, ctxs)
        t = cm.step_ms(p, a, b, c)
        for _ in range(repeats):
            out.append(Measurement(p, a, b, c, t * float(np.exp(rng.normal(0.0, noise)))))
    return out
