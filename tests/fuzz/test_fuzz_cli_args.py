"""Fuzz: bad arguments to all three CLIs (issue #16), each required to exit 2 with one line
naming the field and the value, no traceback and nothing written.

exfairs-live is checked up to the point an engine would start: its target is a port nothing
listens on, so a case that got past validation would fail there with exit 1, not 2.
exfairs-calibrate is checked before any model is built or profiled. Each case is one fault
applied to a valid command line (`test_base_command_lines_are_valid` runs the unmutated ones
where that needs no engine).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from fuzz_docs import CASES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exfairs.calibration.cli import main as calibrate_main
from exfairs.live.cli import main as live_main
from exfairs.sim.cli import main as sim_main

FUZZ = settings(max_examples=int(os.environ.get("EXFAIRS_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
RAW_STEPS = str(Path(__file__).parents[2] / "calibration" / "profiles" / "raw" /
                "cpu-tiny-llama.steps.json")
DEAD_URL = "http://127.0.0.1:9"

BAD_FLOATS = ["nan", "inf", "-inf", "-1", "-1e-9"]
# Timeouts may be infinite (wait forever); nothing else about them may be odd.
BAD_TIMEOUTS = ["0", "nan", "-inf", "-1", "-1e-9"]
# Places no output may go; {d} is the case's temporary folder.
BAD_OUT_PLACES = ["{d}/a_file", "{d}/a_file/sub", "/proc/exfairs-fuzz", "/sys/exfairs-fuzz",
                  "/dev/exfairs-fuzz"]
BAD_INPUT_FILES = ["/dev/zero", "/dev/null", "{d}/fifo", "{d}/a_dir", "{d}/missing.toml"]


def _setup(d: str) -> None:
    Path(d, "a_file").write_text("x")
    Path(d, "a_dir").mkdir()
    os.mkfifo(Path(d, "fifo"))
    Path(d, "summary_dir", "summary.csv").mkdir(parents=True)


def _run(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


def _assert_rejected(main: Callable[[list[str]], int], prog: str, argv: list[str],
                     field: str, d: str) -> None:
    code, err = _run(main, argv)
    assert code == 2, f"{argv}: exit {code}:\n{err}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error:")]
    assert len(lines) == 1, err
    assert re.search(r"field '.*?' = ", lines[0]), lines[0]
    assert field in lines[0], f"{field!r} not named: {lines[0]}"
    written = sorted(p for p in Path(d, "out").rglob("*")) if Path(d, "out").exists() else []
    assert written == [], written


# -- exfairs-live ------------------------------------------------------------------------------

LIVE_BASE = ["run", "default", "-e", "QUEUE_FCFS", "--vllm-url", DEAD_URL, "--no-warmup",
             "--duration", "30", "--out", "{d}/out"]
#: option -> (bad values, the field the message must name)
LIVE_FAULTS: dict[str, tuple[list[str], str]] = {
    "--temperature": (BAD_FLOATS, "temperature"),
    "--top-p": (["0", "1.5", "nan", "-1"], "top_p"),
    "--top-k": (["-2", "-100"], "top_k"),
    "--repetition-penalty": (["0", "-1", "nan"], "repetition_penalty"),
    "--connect-timeout": (BAD_TIMEOUTS, "connect_timeout"),
    "--read-timeout": (BAD_TIMEOUTS, "read_timeout"),
    "--drain-timeout": (BAD_TIMEOUTS, "drain_timeout"),
    "--request-timeout": (["0", "nan", "-1"], "request_timeout"),
    "--max-inflight": (["0", "-3"], "max_inflight"),
    "--omp-threads": (["0", "-1", "100000"], "--omp-threads"),
    "--load": (["0", *BAD_FLOATS, "1e400"], "load"),
    "--duration": (["0", *BAD_FLOATS], "duration"),
    "--seed": (["-1", str(2**64)], "seed"),
    "--vllm-url": (["ftp://x", "localhost:8000", ""], "url"),
    "--out": ([*BAD_OUT_PLACES, "{d}/summary_dir"], "--out"),
    "--profile": (["/dev/zero", "{d}/fifo", "{d}/missing.json", "no-such-profile"], "profile"),
    "--policy-param": (["ExFairS.alpha=2", "ExFairS.alpha=nan", "ExFairS.window_s=0",
                        "VTC.w_p=-1", "VTC.no_such=1", "NOPOLICY.x=1", "alpha"], ""),
    "scenario": (BAD_INPUT_FILES, "scenario"),
}


def _with(base: list[str], option: str, value: str) -> list[str]:
    argv = list(base)
    if option == "scenario":
        argv[1] = value
    elif option in argv:
        i = argv.index(option)
        argv[i:i + 2] = [f"{option}={value}"]  # '=': values like -1 are not options
    else:
        argv.append(f"{option}={value}")
    return argv


@FUZZ
@given(fault=st.sampled_from(sorted(LIVE_FAULTS)).flatmap(
    lambda o: st.tuples(st.just(o), st.sampled_from(LIVE_FAULTS[o][0]))),
    command=st.sampled_from(["run", "validate"]))
def test_live_cli_rejects_bad_arguments(fault: tuple[str, str], command: str) -> None:
    option, value = fault
    CASES[f"live/{option}"] += 1
    with tempfile.TemporaryDirectory() as d:
        _setup(d)
        argv = [a.format(d=d) for a in _with(LIVE_BASE, option, value)]
        argv[0] = command
        field = LIVE_FAULTS[option][1] or ("ExFairS" if "ExFairS" in value else
                                           "VTC" if "VTC" in value else "policy")
        _assert_rejected(live_main, "exfairs-live", argv, field, d)


# -- exfairs-calibrate -------------------------------------------------------------------------

CAL_FIT = ["fit", RAW_STEPS, "--out", "{d}/out/p.json"]
CAL_PROFILE = ["profile", "--backend", "torch", "--hidden-size", "64", "--num-layers", "1",
               "--num-heads", "2", "--num-kv-heads", "2", "--intermediate-size", "64",
               "--out", "{d}/out/steps.json"]
CAL_FAULTS: list[tuple[list[str], str, list[str], str]] = [
    (CAL_FIT, "measurements", BAD_INPUT_FILES, "measurements"),
    (CAL_FIT, "--out", [p + "/p.json" for p in BAD_OUT_PLACES] + ["{d}/a_dir"], "--out"),
    (CAL_FIT, "--test-share", ["0", "1", "nan", "-0.5", "2"], "--test-share"),
    (CAL_FIT, "--keep-measurements", ["-1"], "--keep-measurements"),
    (CAL_FIT, "--seed", ["-1", str(2**64)], "--seed"),
    (CAL_PROFILE, "--seed", ["-1", str(2**64)], "--seed"),
    (["public", "--out-dir", "{d}/out"], "--seed", ["-1", str(2**64)], "--seed"),
    (CAL_PROFILE, "--out", [p + "/s.json" for p in BAD_OUT_PLACES], "--out"),
    (CAL_PROFILE, "--profile-out", [p + "/p.json" for p in BAD_OUT_PLACES], "--profile-out"),
    *[(CAL_PROFILE, f"--{name}", ["0", "-1", str(10**12)], f"--{name}")
      for name in ("repeats", "decode-steps", "max-num-seqs", "max-num-batched-tokens",
                   "max-model-len", "block-size", "hidden-size", "num-layers", "num-heads")],
    (CAL_PROFILE, "--gpu-memory-utilization", ["0", "1.5", "nan", "-1"],
     "--gpu-memory-utilization"),
    (CAL_PROFILE, "--config", BAD_INPUT_FILES, "--config"),
    (CAL_PROFILE, "--prefill-sizes", [str(2**30), f"1,{2**40}"], "--prefill-sizes"),
    (["show", "x"], "profile", [*BAD_INPUT_FILES[:4], "{d}/missing.json", "no-such"],
     "profile"),
    (["public", "--out-dir", "{d}/out"], "--out-dir", BAD_OUT_PLACES, "--out-dir"),
    (["public", "--out-dir", "{d}/out"], "--data", ["{d}/missing", "{d}/a_file"], "--data"),
]


def _cal_argv(base: list[str], option: str, value: str) -> list[str]:
    if option == "measurements":
        return [base[0], value, *base[2:]]
    if option == "profile":
        return ["show", value]
    if option == "--config":  # replaces the explicit shape
        return ["profile", "--backend", "torch", "--config", value, *base[-2:]]
    return _with(base, option, value)


@FUZZ
@given(case=st.sampled_from(range(len(CAL_FAULTS))).flatmap(
    lambda i: st.tuples(st.just(i), st.sampled_from(CAL_FAULTS[i][2]))))
def test_calibrate_cli_rejects_bad_arguments(case: tuple[int, str]) -> None:
    i, value = case
    base, option, _, field = CAL_FAULTS[i]
    CASES[f"calibrate/{base[0]} {option}"] += 1
    with tempfile.TemporaryDirectory() as d:
        _setup(d)
        argv = [a.format(d=d) for a in _cal_argv(base, option, value)]
        _assert_rejected(calibrate_main, "exfairs-calibrate", argv, field, d)


# -- exfairs-sim: output places and engine-knob bounds -------------------------------------------

SIM_BASE = ["run", "default", "-e", "FCFS", "--load", "0.3", "--no-plots", "--out", "{d}/out"]
KNOBS = ["--max-num-seqs", "--max-num-batched-tokens", "--block-size", "--num-gpu-blocks",
         "--max-model-len", "--long-prefill-token-threshold"]


@FUZZ
@given(kind=st.sampled_from(["out", "knob", "scenario", "profile"]), data=st.data())
def test_sim_cli_rejects_bad_places_and_knobs(kind: str, data: st.DataObject) -> None:
    CASES[f"sim/{kind}"] += 1
    with tempfile.TemporaryDirectory() as d:
        _setup(d)
        if kind == "out":
            value = data.draw(st.sampled_from([*BAD_OUT_PLACES, "{d}/summary_dir"]))
            argv, field = _with(SIM_BASE, "--out", value), "--out"
        elif kind == "knob":
            knob = data.draw(st.sampled_from(KNOBS))
            huge = data.draw(st.integers(2**40 + 1, 10**30))
            argv, field = [*SIM_BASE, knob, str(huge)], knob[2:].replace("-", "_")
        elif kind == "scenario":
            argv, field = _with(SIM_BASE, "scenario", data.draw(
                st.sampled_from(BAD_INPUT_FILES))), "scenario"
        else:
            bad = data.draw(st.sampled_from(["/dev/zero", "{d}/fifo", "{d}/a_dir",
                                             "{d}/missing.json"]))
            argv, field = [*SIM_BASE, "--profile", bad], "profile"
        _assert_rejected(sim_main, "exfairs-sim", [a.format(d=d) for a in argv], field, d)


def test_base_command_lines_are_valid(tmp_path: Path) -> None:
    """The unmutated command lines get past validation: live fails only at the dead URL (exit 1),
    calibrate fit and sim run succeed."""
    d = str(tmp_path)
    code, err = _run(live_main, [a.format(d=d) for a in LIVE_BASE])
    assert code == 1 and "127.0.0.1:9" in err, err
    code, err = _run(calibrate_main, [a.format(d=d) for a in CAL_FIT])
    assert code == 0, err
    code, err = _run(sim_main, [a.format(d=d + "/sim") for a in SIM_BASE])
    assert code == 0, err
