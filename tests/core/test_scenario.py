"""Scenario files: bundled scenarios load and draw; malformed files give precise InputErrors."""

from __future__ import annotations

import pickle
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _workload_factories import LinearLatency, make_client, make_scenario
from hypothesis import given
from hypothesis import strategies as st

from exfairs.calibration.capacity import estimate_capacity_rps
from exfairs.calibration.profile import load_profile
from exfairs.errors import ConfigError, InputError
from exfairs.scenario import (
    DEFAULT_CLASSES,
    EmpiricalLength,
    GammaArrivals,
    LognormalLength,
    MixtureLength,
    PoissonArrivals,
    SloTarget,
    TraceArrivals,
    bundled_scenarios,
    load_scenario,
    scale_for_seconds,
    scenario_from_toml,
)
from exfairs.workload import draw_workload

# The five scenarios of the original ExFairS study (issue 3): client -> (class, rate/min, e2e s).
STUDY = {
    "exfairs-1": [("short", 32, 17), ("short", 32, 19), ("long", 32, 20), ("long", 32, 24)],
    "exfairs-2": [("short", 32, 16), ("short", 32, 16), ("long", 32, 18), ("long", 32, 18)],
    "exfairs-3": [("short", 24, 17), ("short", 24, 18)] + [("long", 20, s) for s in
                                                           (19, 19, 21, 21)],
    "exfairs-4": [("mix", r, s) for r, s in zip([8] * 4 + [24] * 4,
                                                [14, 14, 15, 15, 17, 17, 19, 19], strict=True)],
    "exfairs-5": [("mix", r, s) for r, s in zip([8, 10, 11, 12, 13, 13, 14, 14, 15, 18],
                                                [13, 14, 14, 15, 16, 16, 17, 18, 18, 19],
                                                strict=True)],
}

MINIMAL = """
duration_s = 60
[[clients]]
name = "a"
rate_per_min = 30
"""


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


# -- bundled ----------------------------------------------------------------------------------


def test_bundled_list() -> None:
    names = bundled_scenarios()
    for n in ["default", "exfairs-1", "exfairs-2", "exfairs-3", "exfairs-4", "exfairs-5",
              "load-sweep", "azure-conv"]:
        assert n in names


@pytest.mark.parametrize("name", bundled_scenarios())
def test_every_bundled_scenario_loads_and_draws(name: str) -> None:
    prof = load_profile("a100-llama2-7b")
    cost = prof.cost_model()
    sc = load_scenario(name)
    assert sc.name == name and sc.description.strip()
    cap = estimate_capacity_rps(sc, cost, prof.engine)
    assert 0.5 < cap < 500  # sharegpt-mini's short prompts: ~230 requests/s
    for lf in sc.load_factors:
        w = draw_workload(sc, 0, cost, load_factor=lf, capacity_rps=cap,
                          max_model_len=prof.engine.max_model_len)
        assert w.requests
        assert {r.client for r in w.requests} == {c.name for c in sc.clients}
        assert all(r.prompt_tokens + r.output_tokens <= prof.engine.max_model_len
                   for r in w.requests)
        assert all(r.output_tokens <= 512 for r in w.requests)
    assert pickle.loads(pickle.dumps(sc)) == sc


def test_default_scenario_is_small() -> None:
    # The default sweep simulates it 63 times; keep a run at load 1.2 under ~600 requests.
    prof = load_profile("a100-llama2-7b")
    cost = prof.cost_model()
    sc = load_scenario("default")
    cap = estimate_capacity_rps(sc, cost, prof.engine)
    sizes = [len(draw_workload(sc, seed, cost, load_factor=1.2, capacity_rps=cap).requests)
             for seed in range(3)]
    assert max(sizes) <= 620
    assert len({c.prompt_class for c in sc.clients}) == 3


# Unloaded e2e latency (s) of each class's mean request on a100-llama2-7b as fitted 2026-11-25:
# the reference the study scenarios' SLO scales were converted with (stated in their files).
REFERENCE_E2E_S = {"short": 1.256102, "long": 1.509810, "mix": 1.374995}


@pytest.mark.parametrize("name", sorted(STUDY))
def test_study_scenarios_keep_mix_rates_and_converted_slos(name: str) -> None:
    sc = load_scenario(name)
    study = STUDY[name]
    assert sc.rate_basis == "capacity" and sc.total_rate_per_min == 128
    assert sc.load_factors == (0.8, 1.0, 1.2)
    assert [(c.prompt_class, c.rate_per_min) for c in sc.clients] == [(k, r) for k, r, _ in study]
    for kind in {k for k, _, _ in study}:
        assert f"-> {REFERENCE_E2E_S[kind]:.3f} s" in sc.description
    # The documented conversion: scale × the reference unloaded e2e of the class's mean request
    # gives back the study's seconds (to the 4 significant digits written).
    for client, (kind, _, seconds) in zip(sc.clients, study, strict=True):
        prompt, output = DEFAULT_CLASSES[kind]
        assert client.prompt == prompt and client.output == output
        assert client.slo.e2e is not None and client.slo.e2e.scale is not None
        assert client.slo.e2e.scale * REFERENCE_E2E_S[kind] == pytest.approx(seconds, rel=1e-3)
        assert client.slo.ttft is None and client.slo.tpot is None
    # Within one class, the study's SLO order is the scales' order.
    for kind in {k for k, _, _ in study}:
        pairs = [(s, c.slo.e2e.scale) for c, (k, _, s) in zip(sc.clients, study, strict=True)
                 if k == kind and c.slo.e2e is not None]
        assert [p[1] for p in sorted(pairs)] == sorted(p[1] for p in pairs)


def test_conversion_reference_matches_the_shipped_profile() -> None:
    # If the default profile is refitted far from the reference, the study scenarios' scale
    # factors should be regenerated with scale_for_seconds (and REFERENCE_E2E_S updated).
    cost = load_profile("a100-llama2-7b").cost_model()
    for kind, ref in REFERENCE_E2E_S.items():
        prompt, output = DEFAULT_CLASSES[kind]
        assert scale_for_seconds(ref, prompt, output, cost) == pytest.approx(1.0, rel=0.2), kind


def test_study_class_shapes() -> None:
    short, out = DEFAULT_CLASSES["short"]
    long_, _ = DEFAULT_CLASSES["long"]
    assert isinstance(short, LognormalLength) and short.cap == 1792
    assert isinstance(long_, LognormalLength) and long_.cap + 256 <= 4096
    assert isinstance(out, LognormalLength) and out.cap == 256
    assert isinstance(DEFAULT_CLASSES["mix"][0], MixtureLength)


def test_trace_scenario_uses_trace_arrivals_and_lengths() -> None:
    sc = load_scenario("azure-conv")
    assert all(isinstance(c.arrival, TraceArrivals) for c in sc.clients)
    assert all(isinstance(c.prompt, EmpiricalLength) for c in sc.clients)
    w = draw_workload(sc, 0, LinearLatency(), capacity_rps=5.0)
    rates = {c.name: sum(r.client == c.name for r in w.requests) / sc.duration_s
             for c in sc.clients}
    # Replay is time-scaled so that the horizon holds exactly rate × duration arrivals.
    assert rates["heavy"] == pytest.approx(2.5, abs=1 / sc.duration_s)
    assert rates["interactive"] == pytest.approx(1.25, abs=1 / sc.duration_s)


# -- valid files ------------------------------------------------------------------------------


def test_minimal_file_defaults(tmp_path: Path) -> None:
    sc = load_scenario(_write(tmp_path, MINIMAL, "mini.toml"))
    assert sc.name == "mini" and sc.rate_basis == "absolute" and sc.warmup_s == 0
    c = sc.clients[0]
    assert c.prompt_class == "mix" and c.weight == 1.0 and isinstance(c.arrival, PoissonArrivals)
    assert (c.prompt, c.output) == DEFAULT_CLASSES["mix"]


def test_full_client_table(tmp_path: Path) -> None:
    sc = load_scenario(_write(tmp_path, """
        name = "full"
        duration_s = 100
        warmup_s = 5
        cooldown_s = 5
        [classes.short]
        prompt = {kind = "fixed", tokens = 77}
        [[clients]]
        name = "a"
        prompt_class = "short"
        rate_per_min = 12.5
        weight = 3
        arrival = {process = "gamma", burstiness = 2}
        output = {kind = "uniform", low = 5, high = 9}
        slo = {e2e = {scale = 3}, ttft = {seconds = 0.5}, tpot = {scale = 1.5}}
    """))
    c = sc.clients[0]
    assert c.prompt.mean_tokens() == 77 and c.output.mean_tokens() == 7
    assert c.arrival == GammaArrivals(2.0) and c.weight == 3.0
    assert c.slo.e2e == SloTarget(scale=3.0) and c.slo.ttft == SloTarget(seconds=0.5)
    assert sc.client_infos()[0].weight == 3.0 and sc.client_infos()[0].prompt_class == "short"
    assert sc.measure_window_s() == (5.0, 95.0)


def test_relative_trace_path_and_generic_columns(tmp_path: Path) -> None:
    (tmp_path / "tr.csv").write_text("t,in,out\n0,10,5\n1000,20,6\n2500,30,7\n",
                                     encoding="utf-8")
    sc = load_scenario(_write(tmp_path, """
        duration_s = 10
        [[clients]]
        name = "a"
        rate_per_min = 60
        arrival = {process = "trace", trace = "tr.csv", COLS, time_unit = "ms"}
        prompt = {kind = "empirical", trace = "tr.csv", column = "input", COLS}
    """.replace("COLS", 'timestamp = "t", input = "in", output = "out"')))
    c = sc.clients[0]
    assert isinstance(c.arrival, TraceArrivals) and c.arrival.offsets_s == (0.0, 1.0, 2.5)
    assert c.prompt.mean_tokens() == 20


# -- malformed files --------------------------------------------------------------------------


def _err(tmp_path: Path, text: str) -> InputError:
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_scenario(p)
    assert info.value.source == str(p), "the error must name the file"
    return info.value


CASES = [
    # (description, TOML, field path, value)
    ("nan scale", MINIMAL + "slo = {e2e = {scale = nan}}", "clients[0].slo.e2e.scale",
     "nan"),
    ("negative rate", MINIMAL.replace("30", "-3"), "clients[0].rate_per_min", -3),
    ("zero rate", MINIMAL.replace("30", "0"), "clients[0].rate_per_min", 0),
    ("huge rate", MINIMAL.replace("30", "1e12"), "clients[0].rate_per_min", 1e12),
    ("inf duration", MINIMAL.replace("60", "inf"), "duration_s", "inf"),
    ("string rate", MINIMAL.replace("30", '"fast"'), "clients[0].rate_per_min", "fast"),
    ("bool weight", MINIMAL + "weight = true", "clients[0].weight", True),
    ("unknown top key", "color = 1\n" + MINIMAL, "color", 1),
    ("unknown client key", MINIMAL + "rates = 3", "clients[0].rates", 3),
    ("unknown slo kind", MINIMAL + "slo = {latency = {seconds = 1}}", "clients[0].slo.latency",
     {"seconds": 1}),
    ("both seconds and scale", MINIMAL + "slo = {ttft = {seconds = 1, scale = 2}}",
     "clients[0].slo.ttft", {"seconds": 1.0, "scale": 2.0}),
    ("neither seconds nor scale", MINIMAL + "slo = {ttft = {}}", "clients[0].slo.ttft",
     {"seconds": None, "scale": None}),
    ("bad class", MINIMAL + 'prompt_class = "huge"', "clients[0].prompt_class", "huge"),
    ("bad process", MINIMAL + 'arrival = {process = "hawkes"}', "clients[0].arrival.process",
     "hawkes"),
    ("gamma without cv2", MINIMAL + 'arrival = {process = "gamma"}',
     "clients[0].arrival.cv2", None),
    ("negative cv2", MINIMAL + 'arrival = {process = "gamma", cv2 = -1}',
     "clients[0].arrival.cv2", -1.0),
    ("cv2 and shape", MINIMAL + 'arrival = {process = "gamma", cv2 = 2, shape = 0.5}',
     "clients[0].arrival.cv2", {"cv2": 2, "shape": 0.5}),
    ("zero shape", MINIMAL + 'arrival = {process = "gamma", shape = 0}',
     "clients[0].arrival.shape", 0.0),
    ("lognormal cap below min", MINIMAL + 'prompt = {kind = "lognormal", mean = 10, sigma = 1, '
     "cap = 5, min = 8}", "clients[0].prompt.cap", 5),
    ("fractional tokens", MINIMAL + 'output = {kind = "fixed", tokens = 2.5}',
     "clients[0].output.tokens", 2.5),
    ("uniform reversed", MINIMAL + 'output = {kind = "uniform", low = 9, high = 3}',
     "clients[0].output.high", 3),
    ("mixture weight", MINIMAL + 'prompt = {kind = "mixture", components = [{weight = -1, '
     'kind = "fixed", tokens = 3}]}', "clients[0].prompt.components[0].weight", -1.0),
    ("bad client name", MINIMAL.replace('"a"', '"a b"'), "clients[0].name", "a b"),
    ("warmup too long", "warmup_s = 40\ncooldown_s = 30\n" + MINIMAL, "warmup_s", 40.0),
    ("bad basis", 'rate_basis = "relative"\n' + MINIMAL, "rate_basis", "relative"),
    ("bad load factors", "load_factors = [1, 0]\n" + MINIMAL, "load_factors", 0.0),
    ("clients not an array", "duration_s = 5\nclients = 3", "clients", 3),
    ("unknown class table", MINIMAL + "[classes.tiny]\nprompt = {kind = 'fixed', tokens = 3}",
     "classes.tiny", {"prompt": {"kind": "fixed", "tokens": 3}}),
    ("missing trace", MINIMAL + 'arrival = {process = "trace", trace = "nope.csv"}',
     "clients[0].arrival.trace", "nope.csv"),
]


@pytest.mark.parametrize(("label", "text", "field", "value"), CASES, ids=[c[0] for c in CASES])
def test_malformed_files_name_file_field_and_value(tmp_path: Path, label: str, text: str,
                                                   field: str, value: object) -> None:
    err = _err(tmp_path, text)
    assert err.field == field, str(err)
    if value == "nan":
        assert err.value != err.value  # NaN
    elif value == "inf":
        assert err.value == float("inf")
    else:
        assert err.value == value, str(err)
    # The one-line message names all three.
    assert str(tmp_path) in str(err) and field in str(err)


def test_duplicate_client_names(tmp_path: Path) -> None:
    err = _err(tmp_path, MINIMAL + MINIMAL.split("\n", 2)[2])
    assert err.field == "clients[1].name" and err.value == "a"


def test_missing_required_fields(tmp_path: Path) -> None:
    assert _err(tmp_path, MINIMAL.replace("duration_s = 60", "")).field == "duration_s"
    assert _err(tmp_path, "duration_s = 5\n").field == "clients"
    assert _err(tmp_path, MINIMAL.replace('name = "a"', "")).field == "clients[0].name"


def test_bad_toml_empty_and_bad_encoding(tmp_path: Path) -> None:
    err = _err(tmp_path, "duration_s = = 3")
    assert "not valid TOML" in str(err)
    err = _err(tmp_path, "  \n")
    assert "empty" in str(err)
    p = tmp_path / "latin.toml"
    p.write_bytes('description = "caf\xe9"\n'.encode("latin-1") + MINIMAL.encode())
    with pytest.raises(InputError, match="UTF-8") as info:
        load_scenario(p)
    assert info.value.source == str(p)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_scenario(bom).clients[0].name == "a"


def test_missing_file_and_unknown_bundled_name(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_scenario(tmp_path / "none.toml")
    assert info.value.field == "scenario"
    with pytest.raises(InputError, match=r"bundled: .*default"):
        load_scenario("no-such-scenario")


def test_trace_errors_name_both_files(tmp_path: Path) -> None:
    (tmp_path / "tr.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,x,1\n",
                                     encoding="utf-8")
    err = _err(tmp_path, MINIMAL + 'arrival = {process = "trace", trace = "tr.csv"}')
    assert err.field == "clients[0].arrival.trace"
    assert "row 1.ContextTokens" in str(err) and "tr.csv" in str(err)


def test_dataclass_validation_without_files() -> None:
    with pytest.raises(ConfigError):
        make_client(rate_per_min=float("nan"))
    with pytest.raises(ConfigError):
        make_scenario((make_client("x"), make_client("x")))
    with pytest.raises(ConfigError):
        SloTarget()


@given(st.text(max_size=40))
def test_arbitrary_text_never_crashes_the_loader(text: str) -> None:
    try:
        scenario_from_toml(text, source="fuzz")
    except InputError as exc:
        assert exc.source == "fuzz"
        assert re.search(r"\S", str(exc))


# -- gamma: cv2, shape, and the deprecated burstiness (issue #14) -------------------------------


def test_gamma_cv2_shape_and_old_burstiness_agree(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    def gamma(arrival: str) -> Any:
        p = _write(tmp_path, 'duration_s = 60\n[[clients]]\nname = "a"\nrate_per_min = 6\n'
                   f"arrival = {arrival}\n")
        return load_scenario(p).clients[0].arrival

    new = gamma('{process = "gamma", cv2 = 4}')
    assert new.cv2 == 4.0
    assert gamma('{process = "gamma", shape = 0.25}') == new  # vllm bench serve's burstiness
    with caplog.at_level("WARNING", logger="exfairs.scenario"):
        old = gamma('{process = "gamma", burstiness = 4}')
    assert old == new
    assert any("cv2 = 4" in r.getMessage() and "deprecated" in r.getMessage()
               for r in caplog.records)
