"""Engine knobs of the simulated vLLM-V1 engine, under vLLM's own names (docs/design.md §4)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from exfairs.calibration.profile import Profile
from exfairs.engine_knobs import (
    MAX_COUNT,
    EngineKnobs,
    SchedulingPolicy,
    check_count_knobs,
    check_knob_rules,
)
from exfairs.errors import ConfigError
from exfairs.preflight import machine_memory_bytes

__all__ = ["MAX_COUNT", "SEQ_SLOT_BYTES", "EngineConfig", "HookOrder", "PromptCredit",
           "SchedulingPolicy", "max_num_seqs_limit"]

PromptCredit = Literal["chunk", "first_token"]
HookOrder = Literal["step", "stream"]
_CREDITS = ("chunk", "first_token")
_ORDERS = ("step", "stream")

#: Bytes the vectorised engine keeps per `max_num_seqs` slot (sim/vecengine.py: nine int64
#: columns of running-request state, allocated up front).
SEQ_SLOT_BYTES = 9 * 8


def max_num_seqs_limit() -> int:
    """Largest `max_num_seqs` this machine can hold: the per-slot state of every slot in half
    of its memory (the rest is left to the workload, records and metrics)."""
    return min(MAX_COUNT, machine_memory_bytes() // 2 // SEQ_SLOT_BYTES)


@dataclass(frozen=True, slots=True)
class EngineConfig(EngineKnobs):
    """What the simulated engine is configured with: the knobs it shares with a live vLLM
    engine (`exfairs.engine_knobs.EngineKnobs`, its fields first) and the model's own, the last
    four below. Every knob means what it means in vLLM.

    * `max_num_seqs` — most requests running at once (vLLM's ``max_num_seqs``);
    * `max_num_batched_tokens` — token budget of one step (prefill chunks + one token per decode);
    * `block_size` — tokens per KV block; `num_gpu_blocks` — KV cache capacity in blocks;
    * `enable_chunked_prefill` — a prompt may be split across steps (on by default, as in V1);
      off, a waiting prompt that does not fit the step's remaining budget stops admission;
    * `long_prefill_token_threshold` — caps one request's prefill chunk per step (0 = off); as in
      vLLM 0.32 it only applies while more than one request is running or waiting;
    * `scheduling_policy` — ``"fcfs"`` (waiting queue in submission order; the most recently
      admitted request is preempted) or ``"priority"`` (waiting queue by (priority, arrival);
      victim = largest priority value, then latest arrival);
    * `max_model_len` — prompt + output tokens a request may have; longer requests fail;
    * `submit_latency_s` — seconds from a request's submission (its arrival in priority and
      engine modes, its release by the gate in gate mode) until the engine core can schedule it.
      vLLM's engine core reads its input only between steps (docs/design.md §11), so a request
      sent during a step joins at the following ``schedule()``; with a latency > 0 a gate
      release made at a step end misses the step that starts then and joins one step later, as
      measured live. Not a vLLM knob but a property of the machine's front end → engine-core
      path, so `from_profile` takes it from the profile where the profile records it
      (`EngineDefaults.submit_latency_s`: the CPU profiles fitted from live runs here) and uses 0
      (seen at the very next decision point, the behaviour before issue 12) where it does not —
      the GPU profiles, whose source data has no front end;
    * `prompt_credit` — when a gate or priority-mode policy (which lives in front of the engine)
      hears a request's prompt tokens in `on_service`: ``"first_token"`` (default) all at once
      with the first output token — and a preempted request's recomputed prompt + output with
      its next token — which is all a client of a real server can see and what the live driver
      does; ``"chunk"`` (the behaviour before issue 12) as each prefill chunk is computed, which
      only an in-engine policy could know. Engine mode always credits per chunk (the policy runs
      inside the engine, live too);
    * `reserve_full_prompt` — admit a waiting request only if its whole prompt (+ output so far)
      fits in the free KV blocks, though only the scheduled chunk is allocated: True (default) is
      vLLM 0.32's ``scheduler_reserve_full_isl=True`` (its default; `v1/core/kv_cache_manager.py`
      ``full_sequence_must_fit``). False = the first chunk must fit, the behaviour before
      issue 12 (and of vLLM versions without the rule). vLLM's watermark (default 0) is not
      modelled;
    * `hook_order` — the order of a gate-mode policy's hooks after a step that finishes a
      request: ``"stream"`` (default) request by request in the step's output order (vLLM's
      running list: the order its output handler wakes the streams), each request's tokens, its
      first token, its finish and — at once — the gate's releases into the slot it freed, as the
      live driver handles each stream as it ends (requests that arrived during the step are in
      the gate by then); ``"step"`` (the behaviour before issue 12) the whole step's
      `on_service` (per client), then its first tokens, then its finishes, and the gate releases
      at the next decision point. In priority mode ``"stream"`` submits a request that arrives
      during a step at its arrival — its priority fixed then, before the step's outputs, as
      the live driver does — and the engine takes it in at the next ``schedule()`` (after
      `submit_latency_s`); ``"step"`` submits it at the next decision point. In both modes
      ``"stream"`` tells the policy of a violation at its deadline (the driver wakes then),
      ``"step"`` at the decision point after it. Engine mode is not affected (the policy
      lives in the engine there).

    The last three defaults are what vLLM 0.32 and the live driver do (validated against 120 live
    runs: `benchmarks/results/validation/SUMMARY.md`, replay 119/120 runs at the issue-12
    target with them); pass the old values (TOML ``[engine]`` keys, ``exfairs-sim --prompt-credit
    chunk --no-reserve-full-prompt --hook-order step``) to reproduce results made before.
    """

    submit_latency_s: float = 0.0
    prompt_credit: PromptCredit = "first_token"
    reserve_full_prompt: bool = True
    hook_order: HookOrder = "stream"

    def __post_init__(self) -> None:
        # The shared checks around the model's own, in the order they always ran (the first
        # failing one is the error reported).
        check_count_knobs(self)
        seq_limit = max_num_seqs_limit()
        if self.max_num_seqs > seq_limit:
            raise ConfigError(
                f"must be ≤ {seq_limit}: the simulated engine keeps {SEQ_SLOT_BYTES} bytes per "
                f"slot, and this machine has {machine_memory_bytes() // 2**20} MiB",
                field="max_num_seqs", value=self.max_num_seqs)
        lat = self.submit_latency_s
        if (isinstance(lat, bool) or not isinstance(lat, (int, float)) or not math.isfinite(lat)
                or not 0.0 <= lat <= 60.0):
            raise ConfigError("must be a number of seconds in [0, 60]", field="submit_latency_s",
                              value=lat)
        if self.prompt_credit not in _CREDITS:
            raise ConfigError(f"must be one of {', '.join(_CREDITS)}", field="prompt_credit",
                              value=self.prompt_credit)
        if self.hook_order not in _ORDERS:
            raise ConfigError(f"must be one of {', '.join(_ORDERS)}", field="hook_order",
                              value=self.hook_order)
        if not isinstance(self.reserve_full_prompt, bool):
            raise ConfigError("must be true or false", field="reserve_full_prompt",
                              value=self.reserve_full_prompt)
        check_knob_rules(self)

    @classmethod
    def from_profile(cls, profile: Profile, **overrides: Any) -> EngineConfig:
        """The profile's engine knobs (`Profile.engine`: every shared knob, and its measured
        `submit_latency_s`, else 0), with `overrides` by knob name.

        An unknown knob name raises ConfigError naming it.
        """
        names = {f.name for f in fields(cls)}
        for key in overrides:
            if key not in names:
                raise ConfigError(f"unknown engine knob; known: {', '.join(sorted(names))}",
                                  field=key, value=overrides[key])
        e = profile.engine
        shared = {f.name: getattr(e, f.name) for f in fields(EngineKnobs)}
        base = cls(**shared, submit_latency_s=0.0 if e.submit_latency_s is None
                   else e.submit_latency_s)
        return replace(base, **overrides) if overrides else base
