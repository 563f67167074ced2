"""Cache-key identities: content of scenarios, referenced traces, profiles and source."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from exfairs import identity
from exfairs.sim.sweep import Cell


def _clear() -> None:
    for f in (identity._bundled_scenario_identity, identity._bundled_profile_identity,
              identity.source_identity, identity._package_source):
        f.cache_clear()


def test_scenario_key_follows_file_and_trace_content(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-01-01 00:00:00,10,5\n")
    scen = tmp_path / "s.toml"
    scen.write_text('name = "s"\n[[clients]]\nname = "a"\n'
                    '[clients.arrivals]\nprocess = "trace"\ntrace = "t.csv"\n')
    cell = Cell(str(scen), "FCFS", 0, 1.0, "a100-llama2-7b")
    _clear()
    k0 = cell.key()
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-01-01 00:00:00,11,5\n")
    _clear()
    k1 = cell.key()
    scen.write_text(scen.read_text() + "# comment\n")
    _clear()
    k2 = cell.key()
    assert len({k0, k1, k2}) == 3
    _clear()
    assert cell.key() == k2  # stable


def test_bundled_scenario_and_profile_are_keyed_by_content() -> None:
    _clear()
    a = identity.scenario_identity("default")
    assert not a.startswith("name:") and a != identity.scenario_identity("azure-conv")
    p = identity.profile_identity("a100-llama2-7b")
    assert not p.startswith("name:")
    assert identity.scenario_identity("no-such-scenario") == "name:no-such-scenario"


def test_profile_file_content_changes_the_key(tmp_path: Path) -> None:
    prof = tmp_path / "p.json"
    prof.write_text("{}")
    cell = Cell("default", "FCFS", 0, 1.0, str(prof))
    _clear()
    k0 = cell.key()
    prof.write_text('{"x": 1}')
    _clear()
    assert cell.key() != k0


def test_source_identity_follows_package_files(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "idpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "mod.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "idpkg", raising=False)
    _clear()
    d0 = identity._package_source("idpkg")
    (pkg / "mod.py").write_text("Y = 2\n")
    _clear()
    d1 = identity._package_source("idpkg")
    (pkg / "new.py").write_text("")
    _clear()
    d2 = identity._package_source("idpkg")
    assert len({d0, d1, d2}) == 3
    _clear()
