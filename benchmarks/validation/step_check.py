"""Live AsyncLLM step times vs the profile's cost model (diagnosis of the validation error).

Starts the CPU validation model in process (same knobs as profile cpu-llama-60m), then measures
the TTFT of lone prompts (128 / 512 / 1024 tokens) and the steady decode step of batches of
1 / 2 / 4 / 8 requests from client-side token times, next to what the profile predicts.

    HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind OMP_NUM_THREADS=1 \
        .venv-live/bin/python benchmarks/validation/step_check.py
"""

import asyncio
import json
import time
from pathlib import Path

import numpy as np

from exfairs.calibration.profile import load_profile
from exfairs.live.config import VllmEngineConfig
from exfairs.live.driver import prompt_token_ids
from exfairs.live.inprocess import InProcessBackend
from exfairs.live.tinymodel import make_tiny_model
from exfairs.records import Request

OUT = Path(__file__).parent.parent / "results" / "validation" / "step_check.json"


async def main() -> None:
    prof = load_profile("cpu-llama-60m")
    cm = prof.cost_model(1024)
    model = make_tiny_model(Path("/tmp/exfairs-models/validation"), "validation")
    be = InProcessBackend(VllmEngineConfig(
        model=str(model), load_format="dummy", skip_tokenizer_init=True, dtype="float32",
        enforce_eager=True, max_model_len=2048, max_num_seqs=8, max_num_batched_tokens=1024,
        block_size=128, num_gpu_blocks_override=682))
    await be.start()
    rid = [0]
    async def one(p, o, times):
        rid[0] += 1
        r = Request(rid[0], "x", 0.0, p, o)
        ts = []
        async for c in be.stream(r, prompt_token_ids(7, r, 4096), 0):
            ts.extend([time.monotonic()] * c.new_tokens)
        times.append(ts)
    async def batch(B, p, o):
        times = []
        t0 = time.monotonic()
        await asyncio.gather(*[one(p, o, times) for _ in range(B)])
        return t0, times
    # warm
    for B in (1, 2, 4, 8):
        await batch(B, 256, 8)
    out = {}
    for P in (128, 512, 1024):
        vals = []
        for _ in range(5):
            t0, ts = await batch(1, P, 2)
            vals.append(ts[0][0] - t0)
        out[f"ttft_P{P}"] = (float(np.median(vals)) * 1e3, cm.unloaded_ttft_s(P) * 1e3)
    for B in (1, 2, 4, 8):
        gaps = []
        for _ in range(3):
            t0, ts = await batch(B, 256, 48)
            # steady decode: tokens 8..40 of the batch (all prefills done)
            m = np.array([t[8:40] for t in ts])
            step = np.diff(m.max(axis=0))
            gaps.extend(step.tolist())
        ctx = B * (256 + 24)
        pred = cm.step_ms(0, 0, B, ctx)
        out[f"decode_B{B}"] = (float(np.median(gaps)) * 1e3, pred)
    await be.close()
    for k, (live, pred) in out.items():
        print(f"{k:14s} live {live:8.1f} ms  profile {pred:8.1f} ms  ratio {live/pred:5.2f}")
    OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
