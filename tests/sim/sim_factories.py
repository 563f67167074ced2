"""Test factories for the simulator: profiles with chosen step costs, engine configs and
hand-built workloads (no dependency on the workload module)."""

from __future__ import annotations

from collections.abc import Sequence

from exfairs.calibration.costmodel import CostCoefficients
from exfairs.calibration.profile import EngineDefaults, Profile, ProfileMetadata
from exfairs.records import SLO, ClientInfo, Request, Workload
from exfairs.sim.config import EngineConfig


def profile(
    *,
    fixed_ms: float = 10.0,
    decode_fixed_ms: float = 0.0,
    prefill_token_ms: float = 0.0,
    prefill_attn_ms: float = 0.0,
    decode_seq_ms: float = 0.0,
    decode_ctx_ms: float = 0.0,
    floor_ms: float = 0.0,
    num_gpu_blocks: int = 1000,
    block_size: int = 16,
    max_num_seqs: int = 8,
    max_num_batched_tokens: int = 512,
    max_model_len: int = 2048,
) -> Profile:
    """A profile with the given cost coefficients (default: every step costs 10 ms)."""
    return Profile(
        metadata=ProfileMetadata(id="test", hardware="test", model="test"),
        engine=EngineDefaults(num_gpu_blocks=num_gpu_blocks, block_size=block_size,
                              max_num_seqs=max_num_seqs,
                              max_num_batched_tokens=max_num_batched_tokens,
                              max_model_len=max_model_len),
        coefficients=CostCoefficients(
            fixed_ms=fixed_ms, decode_fixed_ms=decode_fixed_ms,
            prefill_token_ms=prefill_token_ms, prefill_attn_ms=prefill_attn_ms,
            decode_seq_ms=decode_seq_ms, decode_ctx_ms=decode_ctx_ms, floor_ms=floor_ms),
    )


def engine(**kw: object) -> EngineConfig:
    """An EngineConfig with small defaults, overridden by `kw`."""
    base: dict[str, object] = dict(max_num_seqs=8, max_num_batched_tokens=512, block_size=16,
                                   num_gpu_blocks=1000, max_model_len=2048)
    base.update(kw)
    return EngineConfig(**base)  # type: ignore[arg-type]


def workload(
    specs: Sequence[tuple[str, float, int, int]],
    *,
    clients: Sequence[str] | None = None,
    slo: SLO | None = None,
) -> Workload:
    """A workload from (client, arrival_s, prompt_tokens, output_tokens) tuples; ids follow the
    (arrival, position) order."""
    order = sorted(range(len(specs)), key=lambda i: (specs[i][1], i))
    reqs = tuple(
        Request(request_id=k, client=specs[i][0], arrival_s=specs[i][1],
                prompt_tokens=specs[i][2], output_tokens=specs[i][3], slo=slo or SLO())
        for k, i in enumerate(order))
    names = list(clients) if clients is not None else sorted({s[0] for s in specs})
    duration = max((s[1] for s in specs), default=0.0) + 1.0
    return Workload(name="test", seed=0, clients=tuple(ClientInfo(n) for n in names),
                    requests=reqs, duration_s=duration)
