"""The engine knobs the simulator and a live vLLM engine share, under vLLM's own names.

`EngineKnobs` is the one type for them: the simulator's `exfairs.sim.config.EngineConfig` is
these knobs plus its model-only ones, a profile's ``engine`` section
(`exfairs.calibration.profile.EngineDefaults`) is these knobs plus the measured submission
latency, and the live engine's arguments (`exfairs.live.config.VllmEngineConfig`) are built from
and read back into them (`VLLM_ARG_OF_KNOB` names the vLLM argument of each). Validation lives
here once; it refuses what vLLM refuses at start-up.

Imports neither `exfairs.sim` nor `exfairs.live` (core is below both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exfairs.errors import ConfigError

SchedulingPolicy = Literal["fcfs", "priority"]
SCHEDULING_POLICIES: tuple[SchedulingPolicy, ...] = ("fcfs", "priority")

#: Largest token or block count a knob may take: the engines do int64 arithmetic on products of
#: counts (blocks × block size, a batch's token sum), which stays exact below 2**62.
MAX_COUNT = 2**40

#: The count knobs (each an integer in [1, MAX_COUNT]), in field order.
COUNT_KNOBS = ("max_num_seqs", "max_num_batched_tokens", "block_size", "num_gpu_blocks",
               "max_model_len")

#: vLLM `EngineArgs` name of each knob, in field order: all are vLLM's own names except the KV
#: cache size, which vLLM measures unless ``num_gpu_blocks_override`` fixes it.
VLLM_ARG_OF_KNOB: tuple[tuple[str, str], ...] = (
    ("max_num_seqs", "max_num_seqs"),
    ("max_num_batched_tokens", "max_num_batched_tokens"),
    ("block_size", "block_size"),
    ("num_gpu_blocks", "num_gpu_blocks_override"),
    ("max_model_len", "max_model_len"),
    ("enable_chunked_prefill", "enable_chunked_prefill"),
    ("long_prefill_token_threshold", "long_prefill_token_threshold"),
    ("scheduling_policy", "scheduling_policy"),
)


@dataclass(frozen=True, slots=True)
class EngineKnobs:
    """Engine knobs with vLLM's meaning (vLLM V1 scheduler, 0.32):

    * `max_num_seqs` — most requests running at once;
    * `max_num_batched_tokens` — token budget of one step (prefill chunks + one token per decode);
    * `block_size` — tokens per KV block; `num_gpu_blocks` — KV cache capacity in blocks;
    * `max_model_len` — prompt + output tokens a request may have;
    * `enable_chunked_prefill` — a prompt may be split across steps (on by default, as in V1);
    * `long_prefill_token_threshold` — caps one request's prefill chunk per step (0 = off);
    * `scheduling_policy` — ``"fcfs"`` or ``"priority"`` (the waiting queue's order).

    Raises ConfigError naming the knob for a value vLLM would refuse (or the engines could not
    compute with exactly, `MAX_COUNT`).
    """

    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    num_gpu_blocks: int
    max_model_len: int
    enable_chunked_prefill: bool = True
    long_prefill_token_threshold: int = 0
    scheduling_policy: SchedulingPolicy = "fcfs"

    def __post_init__(self) -> None:
        check_count_knobs(self)
        check_knob_rules(self)

    @property
    def kv_capacity_tokens(self) -> int:
        """KV cache capacity in tokens."""
        return self.num_gpu_blocks * self.block_size


def check_count_knobs(k: EngineKnobs) -> None:
    """The counts' checks of `EngineKnobs` (each in [1, MAX_COUNT], the threshold in [0,
    MAX_COUNT], the KV capacity ≤ MAX_COUNT tokens); with `check_knob_rules`, callable from a
    subclass's ``__post_init__`` (a slotted dataclass's methods cannot use zero-argument
    ``super()``), which may check its own fields in between."""
    for name in COUNT_KNOBS:
        v = getattr(k, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError("must be an integer ≥ 1", field=name, value=v)
        if v > MAX_COUNT:
            raise ConfigError(f"must be ≤ {MAX_COUNT} (2**40)", field=name, value=v)
    t = k.long_prefill_token_threshold
    if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t <= MAX_COUNT:
        raise ConfigError(f"must be an integer in [0, {MAX_COUNT}] (0 = off)",
                          field="long_prefill_token_threshold", value=t)
    if k.num_gpu_blocks * k.block_size > MAX_COUNT:
        raise ConfigError(f"KV capacity num_gpu_blocks × block_size = "
                          f"{k.num_gpu_blocks * k.block_size} tokens must be ≤ "
                          f"{MAX_COUNT} (2**40)", field="num_gpu_blocks", value=k.num_gpu_blocks)


def check_knob_rules(k: EngineKnobs) -> None:
    """The rest of `EngineKnobs`' checks: the flags' types and the combinations vLLM refuses."""
    if not isinstance(k.enable_chunked_prefill, bool):
        raise ConfigError("must be true or false", field="enable_chunked_prefill",
                          value=k.enable_chunked_prefill)
    if k.scheduling_policy not in SCHEDULING_POLICIES:
        raise ConfigError(f"must be one of {', '.join(SCHEDULING_POLICIES)}",
                          field="scheduling_policy", value=k.scheduling_policy)
    # vLLM refuses these combinations at start-up (SchedulerConfig validation).
    if k.max_num_batched_tokens < k.max_num_seqs:
        raise ConfigError(
            f"must be ≥ max_num_seqs ({k.max_num_seqs}) so every running request can "
            "decode in one step", field="max_num_batched_tokens", value=k.max_num_batched_tokens)
    if not k.enable_chunked_prefill and k.max_num_batched_tokens < k.max_model_len:
        raise ConfigError(
            f"without chunked prefill it must be ≥ max_model_len ({k.max_model_len}), or "
            "long prompts could never be scheduled", field="max_num_batched_tokens",
            value=k.max_num_batched_tokens)

