"""A sweep cell's cache key, component by component (issue 13 item 5).

For each input that can change a simulated result (scenario, referenced traces, dataset files,
profile, engine knobs, policy parameters, package version, result-computing source, a plug-in
policy's file) one test shows that changing it changes the key, next to a change that must not
(another file beside it, the same bytes at another path, the knobs' order).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sweep_helpers import write_tiny_scenario

from exfairs import identity
from exfairs.sim.sweep import Cell

PROFILE = "a100-llama2-7b"
_TRACE_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


_CACHED = (identity._bundled_scenario_identity, identity._bundled_profile_identity,
           identity.source_identity, identity._package_source, identity.dependency_identity)


def _clear() -> None:
    for f in _CACHED:
        f.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_caches(request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The source tree may be edited while the tests run (it is in development): the key's source
    # part is pinned except in the tests about it, which hash stand-in packages only.
    if "hashed_source" in request.fixturenames:
        monkeypatch.setattr(identity, "RESULT_PACKAGES", ())
    else:
        monkeypatch.setattr(identity, "source_identity", lambda policy=None: "pinned")
    _clear()
    yield
    _clear()


@pytest.fixture
def hashed_source() -> None:
    """Requested by the tests of the key's source part: the real source is not hashed (nothing in
    RESULT_PACKAGES), only what the test adds."""


def _key(cell: Cell) -> str:
    # Source and bundled inputs are read once per process; a test that edits files clears them
    # so the next key sees the edit.
    _clear()
    return cell.key()


def _trace_scenario(folder: Path) -> tuple[Path, Path]:
    trace = folder / "t.csv"
    trace.write_text(_TRACE_HEAD + "2023-01-01 00:00:00,10,5\n", encoding="utf-8")
    scen = folder / "s.toml"
    scen.write_text('name = "s"\n[[clients]]\nname = "a"\n'
                    '[clients.arrivals]\nprocess = "trace"\ntrace = "t.csv"\n', encoding="utf-8")
    return scen, trace


def test_scenario_content_and_not_its_path(tmp_path: Path) -> None:
    scen = write_tiny_scenario(tmp_path)
    cell = Cell(str(scen), "FCFS", 0, 1.0, PROFILE)
    k0 = _key(cell)
    # Unrelated: the same bytes elsewhere, another scenario beside it, rewriting identical bytes.
    other = tmp_path / "sub" / "tiny.toml"
    other.parent.mkdir()
    other.write_bytes(scen.read_bytes())
    (tmp_path / "neighbour.toml").write_text('name = "n"\n', encoding="utf-8")
    scen.write_bytes(scen.read_bytes())
    assert _key(Cell(str(other), "FCFS", 0, 1.0, PROFILE)) == k0
    assert _key(cell) == k0
    scen.write_text(scen.read_text(encoding="utf-8").replace("rate_per_min = 1",
                                                             "rate_per_min = 2", 1),
                    encoding="utf-8")
    assert _key(cell) != k0


def test_referenced_trace_content(tmp_path: Path) -> None:
    scen, trace = _trace_scenario(tmp_path)
    cell = Cell(str(scen), "FCFS", 0, 1.0, PROFILE)
    k0 = _key(cell)
    (tmp_path / "unreferenced.csv").write_text(_TRACE_HEAD + "2023-01-01 00:00:00,99,9\n",
                                               encoding="utf-8")
    assert _key(cell) == k0
    trace.write_text(_TRACE_HEAD + "2023-01-01 00:00:00,10,6\n", encoding="utf-8")
    assert _key(cell) != k0


def test_dataset_and_tokenizer_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "part-0.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}", encoding="utf-8")
    scen = tmp_path / "d.toml"
    scen.write_text('name = "d"\n[dataset]\npath = "data"\ntokenizer = "tok"\n',
                    encoding="utf-8")
    cell = Cell(str(scen), "FCFS", 0, 1.0, PROFILE)
    k0 = _key(cell)
    (tmp_path / "elsewhere.jsonl").write_text('{"text": "other"}\n', encoding="utf-8")
    assert _key(cell) == k0
    (data / "part-1.jsonl").write_text('{"text": "more"}\n', encoding="utf-8")
    k1 = _key(cell)
    (tok / "tokenizer.json").write_text('{"v": 2}', encoding="utf-8")
    k2 = _key(cell)
    assert len({k0, k1, k2}) == 3


def test_profile_content_and_not_its_path(tmp_path: Path) -> None:
    from importlib import resources

    bundled = resources.files("exfairs.calibration").joinpath("profiles", f"{PROFILE}.json")
    prof = tmp_path / "p.json"
    prof.write_bytes(bundled.read_bytes())
    cell = Cell("default", "FCFS", 0, 1.0, str(prof))
    k0 = _key(cell)
    copy = tmp_path / "sub" / "p.json"
    copy.parent.mkdir()
    copy.write_bytes(prof.read_bytes())
    (tmp_path / "q.json").write_text("{}", encoding="utf-8")
    assert _key(Cell("default", "FCFS", 0, 1.0, str(copy))) == k0
    assert _key(cell) == k0
    doc = json.loads(prof.read_text(encoding="utf-8"))
    doc["id"] = str(doc.get("id", "")) + "-edited"
    prof.write_text(json.dumps(doc), encoding="utf-8")
    assert _key(cell) != k0


def test_engine_knobs_and_policy_params_by_value_not_order() -> None:
    base = Cell("default", "FCFS", 0, 1.0, PROFILE,
                (("max_num_batched_tokens", 4096), ("max_num_seqs", 8)), (("a", 1), ("b", 2)))
    k0 = _key(base)
    reordered = Cell("default", "FCFS", 0, 1.0, PROFILE,
                     (("max_num_seqs", 8), ("max_num_batched_tokens", 4096)), (("b", 2), ("a", 1)))
    assert _key(reordered) == k0
    keys = {_key(Cell("default", "FCFS", 0, 1.0, PROFILE, engine, params)) for engine, params in (
        ((("max_num_batched_tokens", 4096), ("max_num_seqs", 9)), (("a", 1), ("b", 2))),
        ((("max_num_batched_tokens", 4096), ("max_num_seqs", 8), ("max_inflight", 4)),
         (("a", 1), ("b", 2))),
        ((("max_num_batched_tokens", 4096), ("max_num_seqs", 8)), (("a", 1), ("b", 3))),
    )}
    assert k0 not in keys and len(keys) == 3


def test_package_version(monkeypatch: pytest.MonkeyPatch) -> None:
    keyed_in = sys.modules[Cell.__module__]  # the module whose __version__ Cell.key reads
    cell = Cell("default", "FCFS", 0, 1.0, PROFILE)
    k0 = _key(cell)
    monkeypatch.setattr(keyed_in, "__version__", keyed_in.__version__ + ".post1")
    assert _key(cell) != k0


def _report_versions(monkeypatch: pytest.MonkeyPatch, **changed: str) -> None:
    """Make the installed distributions named in `changed` report another version."""
    real = identity.metadata.version

    def version(dist: str) -> str:
        return changed.get(dist, real(dist))

    monkeypatch.setattr(identity.metadata, "version", version)


@pytest.mark.parametrize("dist", ["numpy", "simpy"])
def test_result_library_version_and_not_an_unrelated_one(monkeypatch: pytest.MonkeyPatch,
                                                          dist: str) -> None:
    cell = Cell("default", "FCFS", 0, 1.0, PROFILE)
    k0 = _key(cell)
    # Unrelated: a library that only draws figures or shows progress.
    _report_versions(monkeypatch, matplotlib="0.0.1", tqdm="0.0.1")
    assert _key(cell) == k0
    _report_versions(monkeypatch, **{dist: "0.0.1"})
    assert _key(cell) != k0


def test_python_version(monkeypatch: pytest.MonkeyPatch) -> None:
    cell = Cell("default", "FCFS", 0, 1.0, PROFILE)
    k0 = _key(cell)
    monkeypatch.setattr(identity.platform, "python_version", lambda: "3.99.0")
    k1 = _key(cell)
    monkeypatch.setattr(identity.platform, "python_implementation", lambda: "PyPy")
    assert len({k0, k1, _key(cell)}) == 3


def test_dataset_readers_versions_only_where_they_read(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}", encoding="utf-8")
    cells = {}
    for name, table in (("jsonl", 'path = "d.jsonl"'), ("parquet", 'path = "d.parquet"'),
                        ("tokenized", 'path = "d.jsonl"\ntokenizer = "tok"')):
        scen = tmp_path / f"{name}.toml"
        scen.write_text(f'name = "{name}"\n[dataset]\n{table}\n', encoding="utf-8")
        cells[name] = Cell(str(scen), "FCFS", 0, 1.0, PROFILE)
    before = {name: _key(c) for name, c in cells.items()}
    _report_versions(monkeypatch, pyarrow="0.0.1")
    after_pyarrow = {name: _key(c) for name, c in cells.items()}
    assert after_pyarrow["jsonl"] == before["jsonl"]
    assert after_pyarrow["tokenized"] == before["tokenized"]
    assert after_pyarrow["parquet"] != before["parquet"]
    _report_versions(monkeypatch, tokenizers="0.0.1")
    after_tok = {name: _key(c) for name, c in cells.items()}
    assert after_tok["jsonl"] == before["jsonl"]
    assert after_tok["tokenized"] != before["tokenized"]


def _package(root: Path, name: str) -> Path:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n", encoding="utf-8")
    (pkg / "mod.py").write_text("Y = 1\n", encoding="utf-8")
    return pkg


def test_result_source_and_not_other_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          hashed_source: None) -> None:
    # Stand-ins for a result-computing package and one that is not (live/, studies/): the real
    # source tree is shared and must not be edited by a test.
    result_pkg = _package(tmp_path, "keyed_pkg")
    other_pkg = _package(tmp_path, "unkeyed_pkg")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("keyed_pkg", "unkeyed_pkg"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(identity, "RESULT_PACKAGES", ("keyed_pkg",))
    cell = Cell("default", "FCFS", 0, 1.0, PROFILE)
    k0 = _key(cell)
    (other_pkg / "mod.py").write_text("Y = 2\n", encoding="utf-8")
    (result_pkg / "__pycache__").mkdir()
    (result_pkg / "__pycache__" / "mod.cpython.pyc").write_bytes(b"\0")
    (result_pkg / ".hidden.py").write_text("Z = 1\n", encoding="utf-8")
    (result_pkg / "NOTES.md").write_text("notes\n", encoding="utf-8")
    assert _key(cell) == k0
    (result_pkg / "mod.py").write_text("Y = 2\n", encoding="utf-8")
    k1 = _key(cell)
    (result_pkg / "table.csv").write_text("a,b\n", encoding="utf-8")
    k2 = _key(cell)
    assert len({k0, k1, k2}) == 3


_PLUGIN = '''
from exfairs.policies.base import Policy


class ExternalPolicy(Policy):
    """Constant scores: only its file's bytes matter here."""

    def client_scores(self, now_s):
        import numpy as np
        return np.zeros(0)
'''


def test_plugin_policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            hashed_source: None) -> None:
    from exfairs.policies import registry

    for mod in ("ext_policy_a", "ext_policy_b"):
        (tmp_path / f"{mod}.py").write_text(_PLUGIN, encoding="utf-8")
        monkeypatch.delitem(sys.modules, mod, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    import ext_policy_a
    import ext_policy_b

    plugins = (("EXT_A", ext_policy_a.ExternalPolicy), ("EXT_B", ext_policy_b.ExternalPolicy))
    monkeypatch.setattr(registry, "_plugins", lambda: plugins)
    cell, other = (Cell("default", name, 0, 1.0, PROFILE) for name in ("EXT_A", "EXT_B"))
    k0, o0 = _key(cell), _key(other)
    (tmp_path / "ext_policy_a.py").write_text(_PLUGIN + "\n# edited\n", encoding="utf-8")
    assert _key(cell) != k0
    assert _key(other) == o0  # a plug-in's file keys only its own cells


_LOADED = """
import json, sys
from pathlib import Path
from exfairs.sim.sweep import Cell, compute_cell
sys.argv[1:] and compute_cell(Cell(sys.argv[1], sys.argv[2], 0, 1.0, "a100-llama2-7b"))
print(json.dumps({n: getattr(m, "__file__", None) for n, m in sys.modules.items()
                  if n == "exfairs" or n.startswith("exfairs.")}))
"""


@pytest.mark.parametrize("experiment", ["FCFS", "QUEUE_VTC", "ENGINE_VTC"])
def test_source_identity_covers_every_module_a_cell_runs(tmp_path: Path, experiment: str) -> None:
    """Every exfairs module imported while a cell is computed lives in a package whose source is
    in the key: code outside them could change a result without changing any key."""
    scen = write_tiny_scenario(tmp_path)
    out = subprocess.run([sys.executable, "-c", _LOADED, str(scen), experiment],
                         capture_output=True, text=True, timeout=300, check=True)
    loaded: dict[str, str | None] = json.loads(out.stdout.strip().splitlines()[-1])
    import importlib

    roots = [Path(r).resolve() for p in identity.RESULT_PACKAGES
             for r in importlib.import_module(p).__path__]
    outside = sorted(name for name, f in loaded.items()
                     if f is not None and not any(Path(f).resolve().is_relative_to(r)
                                                  for r in roots))
    assert len(loaded) > 20  # the run did import the simulator
    assert outside == []


def test_policy_added_as_a_file_of_the_package(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               hashed_source: None) -> None:
    """A policy that joins exfairs.policies from a folder outside the hashed package folders (a
    second entry on the package's path, so that the shared source tree is not written) keys its
    cells by its file's bytes, whatever its module's name."""
    import exfairs.policies as package
    from exfairs.policies import registry

    src = tmp_path / "keyed_one_file.py"
    src.write_text(_PLUGIN.replace("class ExternalPolicy", "@register_policy('KEYED_ONE_FILE')\n"
                                   "class ExternalPolicy").replace(
        "from exfairs.policies.base import Policy",
        "from exfairs.policies.base import Policy\n"
        "from exfairs.policies.registry import register_policy"), encoding="utf-8")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "exfairs.policies.keyed_one_file", raising=False)
    monkeypatch.setattr(registry, "_BUILTIN", dict(registry._BUILTIN))
    registry._load_builtins.cache_clear()
    try:
        cell = Cell("default", "KEYED_ONE_FILE", 0, 1.0, PROFILE)
        k0 = _key(cell)
        src.write_text(src.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
        assert _key(cell) != k0
    finally:
        registry._load_builtins.cache_clear()
