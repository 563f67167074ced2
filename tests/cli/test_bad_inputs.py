"""Every bad input of issue #16, for all three CLIs: exit 2, one line naming the field and the
value, no traceback, nothing written (run through each CLI's `main`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from exfairs.calibration.cli import main as calibrate_main
from exfairs.live.cli import main as live_main
from exfairs.sim.cli import main as sim_main
from exfairs.sim.config import max_num_seqs_limit

Main = Callable[[list[str]], int]
RAW_STEPS = Path(__file__).parents[2] / "calibration" / "profiles" / "raw"
# A port nothing listens on: a live run that got past validation fails there with exit 1.
DEAD_URL = ["--vllm-url", "http://127.0.0.1:9", "--no-warmup"]


@pytest.fixture()
def places(tmp_path: Path) -> dict[str, str]:
    """Bad output places: a file, a path under it, a summary.csv that is a directory."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "has_dir_summary" / "summary.csv").mkdir(parents=True)
    (tmp_path / "has_file_plots").mkdir()
    (tmp_path / "has_file_plots" / "plots").write_text("x")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    (tmp_path / "trace_zero.toml").write_text(
        'name = "t"\nduration_s = 6\n[[clients]]\nname = "r"\nprompt_class = "short"\n'
        'rate_per_min = 20\narrival = { process = "trace", trace = "/dev/zero" }\n')
    return {"file": str(tmp_path / "a_file"), "under_file": str(tmp_path / "a_file" / "sub"),
            "summary_dir": str(tmp_path / "has_dir_summary"),
            "plots_file": str(tmp_path / "has_file_plots"), "fifo": str(fifo),
            "out": str(tmp_path / "out"), "big": str(tmp_path / "big.toml"),
            "trace_zero": str(tmp_path / "trace_zero.toml")}


def _check(main: Main, argv: list[str], capsys: pytest.CaptureFixture[str], prog: str,
           field: str, value: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{prog}: error:")]
    assert len(lines) == 1, err
    assert f"field '{field}'" in lines[0] and value in lines[0], lines[0]
    return lines[0]


SIM_CASES = [
    # (argv with {placeholders}, field, value shown)
    (["run", "default", "--max-num-batched-tokens", "1000000000000", "--max-num-seqs",
      "1000000000"], "engine.max_num_seqs", "1000000000"),
    (["run", "default", "--max-model-len", str(10**20)], "engine.max_model_len", str(10**20)),
    (["run", "default", "--out", "{file}"], "--out", "{file}"),
    (["run", "default", "--out", "{under_file}"], "--out", "{under_file}"),
    (["run", "default", "--out", "/proc/exfairs-test"], "--out", "/proc/exfairs-test"),
    (["run", "default", "--out", "/sys/exfairs-test"], "--out", "/sys/exfairs-test"),
    (["run", "default", "--out", "{summary_dir}"], "--out", "summary.csv"),
    (["run", "default", "--out", "{plots_file}"], "--out", "plots"),
    (["sweep", "--scenario", "default", "--seeds", "0", "--loads", "1", "-e", "FCFS",
      "--out", "{file}"], "--out", "{file}"),
    (["run", "default", "-e", "ExFairS", "--policy-param", "ExFairS.alpha=2"],
     "ExFairS.alpha", "2"),
    (["run", "default", "-e", "ExFairS", "--policy-param", "ExFairS.alpha=nan"],
     "ExFairS.alpha", "nan"),
    (["run", "default", "-e", "ExFairS", "--policy-param", "ExFairS.window_s=0"],
     "ExFairS.window_s", "0"),
    (["run", "default", "-e", "VTC", "--policy-param", "VTC.w_p=-1"], "VTC.w_p", "-1"),
    (["run", "default", "-e", "VTC", "--policy-param", "VTC.no_such=1"], "VTC.no_such", "1"),
    (["run", "/dev/zero"], "scenario", "/dev/zero"),
    (["run", "{fifo}"], "scenario", "{fifo}"),
    (["run", "{big}"], "scenario", "{big}"),
    (["sweep", "/dev/zero"], "sweep", "/dev/zero"),
    (["run", "{trace_zero}"], "clients[0].arrival.trace", "/dev/zero"),
    (["run", "default", "--profile", "/dev/zero"], "profile", "/dev/zero"),
]


@pytest.mark.parametrize(("argv", "field", "value"), SIM_CASES)
def test_sim_cli_bad_inputs(argv: list[str], field: str, value: str, places: dict[str, str],
                            capsys: pytest.CaptureFixture[str]) -> None:
    Path(places["big"]).write_bytes(b"# " + b"x" * (64 * 2**20) + b"\n")
    args = [a.format(**places) for a in argv]
    if "--out" not in args:
        args += ["--out", places["out"]]
    _check(sim_main, [*args, "--no-plots"] if "plots" not in value else args, capsys,
           "exfairs-sim", field, value.format(**places))
    assert not os.path.exists(places["out"])


def test_max_num_seqs_message_states_the_limit(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    line = _check(sim_main, ["run", "default", "--max-num-seqs", str(max_num_seqs_limit() + 1),
                             "--out", str(tmp_path / "o")], capsys, "exfairs-sim",
                  "engine.max_num_seqs", str(max_num_seqs_limit() + 1))
    assert f"≤ {max_num_seqs_limit()}" in line


def test_too_many_clients_for_memory(tmp_path: Path) -> None:
    """10,000 clients (the scenario maximum) under a 2 GiB address-space limit: the capacity
    grids alone (230 kB a client) exceed it, and the run is refused before anything is drawn."""
    lines = ['name = "crowd"', "duration_s = 60", 'rate_basis = "absolute"']
    for i in range(10_000):
        lines += ["[[clients]]", f'name = "c{i}"', "rate_per_min = 0.01",
                  "slo = { e2e = { scale = 10 } }"]
    scen = tmp_path / "crowd.toml"
    scen.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, resource.RLIM_INFINITY))

    proc = subprocess.run(
        [sys.executable, "-c", "from exfairs.sim.cli import main; raise SystemExit(main())",
         "run", str(scen), "-e", "FCFS", "--no-plots", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False, preexec_fn=limit)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "field 'clients' = 10000" in proc.stderr and "over the limit of 1.6 GiB" in \
        proc.stderr, proc.stderr
    assert not out.exists()


LIVE_CASES = [
    (["run", "default", "-e", "QUEUE_FCFS", *DEAD_URL, "--out", "{file}"], "--out", "{file}"),
    (["run", "default", "-e", "QUEUE_FCFS", *DEAD_URL, "--out", "{summary_dir}"], "--out",
     "summary.csv"),
    (["run", "default", "-e", "QUEUE_FCFS", *DEAD_URL, "--out", "/proc/x"], "--out", "/proc/x"),
    (["run", "default", "-e", "QUEUE_ExFairS", *DEAD_URL, "--policy-param", "ExFairS.alpha=2"],
     "ExFairS.alpha", "2"),
    (["run", "/dev/zero", *DEAD_URL], "scenario", "/dev/zero"),
    (["validate", "default", "-e", "QUEUE_FCFS", *DEAD_URL, "--report", "{summary_dir}"],
     "--report", "{summary_dir}"),
]


@pytest.mark.parametrize(("argv", "field", "value"), LIVE_CASES)
def test_live_cli_bad_inputs(argv: list[str], field: str, value: str, places: dict[str, str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.format(**places) for a in argv]
    if "--out" not in args:
        args += ["--out", places["out"]]
    _check(live_main, args, capsys, "exfairs-live", field, value.format(**places))
    assert not os.path.exists(places["out"])


CALIBRATE_CASES = [
    (["fit", "/dev/zero", "--out", "{out}.json"], "measurements", "/dev/zero"),
    (["fit", str(RAW_STEPS / "cpu-tiny-llama.steps.json"), "--out", "{summary_dir}"], "--out",
     "{summary_dir}"),
    (["fit", str(RAW_STEPS / "cpu-tiny-llama.steps.json"), "--out", "/proc/p.json"], "--out",
     "/proc/p.json"),
    (["fit", str(RAW_STEPS / "cpu-tiny-llama.steps.json"), "--out", "{out}.json",
      "--test-share", "nan"], "--test-share", "nan"),
    (["show", "/dev/zero"], "profile", "/dev/zero"),
    (["profile", "--backend", "torch", "--hidden-size", "64", "--num-layers", "1",
      "--num-heads", "2", "--num-kv-heads", "2", "--intermediate-size", "64", "--repeats", "0",
      "--out", "{out}.json"], "--repeats", "0"),
    (["profile", "--backend", "vllm", "--model", "tiny", "--model-dir", "{under_file}",
      "--out", "{out}.json"], "--model-dir", "{under_file}"),
    (["profile", "--backend", "vllm", "--model", "tiny", "--out", "{file}/x.json"], "--out",
     "{file}/x.json"),
    (["public", "--out-dir", "{file}"], "--out-dir", "{file}"),
]


@pytest.mark.parametrize(("argv", "field", "value"), CALIBRATE_CASES)
def test_calibrate_cli_bad_inputs(argv: list[str], field: str, value: str,
                                  places: dict[str, str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.format(**places) for a in argv]
    _check(calibrate_main, args, capsys, "exfairs-calibrate", field, value.format(**places))
    assert not os.path.exists(places["out"] + ".json")


def test_unwritable_directory_is_refused(tmp_path: Path) -> None:
    """A folder the user cannot write in. Permission bits do not stop root, so as root a forked
    child drops to 'nobody' first (no exec: the stdlib under /root stays loaded) and checks the
    output place there; the probe write fails and the check says so, creating nothing."""
    from exfairs.errors import InputError
    from exfairs.paths import check_output_dir

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    tmp_path.chmod(0o755)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the message through the pipe, never return to pytest
        code = 1
        try:
            if os.geteuid() == 0:
                import pwd

                nobody = pwd.getpwnam("nobody")
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            check_output_dir(locked / "out", field="--out")
            os.write(write_fd, b"accepted")
        except InputError as exc:
            os.write(write_fd, str(exc).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as f:
        message = f.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, message
    assert "field '--out'" in message and "cannot write in" in message, message
    assert list(locked.iterdir()) == []
