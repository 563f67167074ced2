"""Prompt datasets: every format loads from its shipped sample, tenants map to clients
deterministically, and a scenario's [dataset] drives identical requests for sim and live."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exfairs.calibration.capacity import estimate_capacity_rps
from exfairs.calibration.profile import load_profile
from exfairs.datasets import (
    DatasetColumns,
    bundled_datasets,
    client_pools,
    draw_rows,
    read_dataset,
    tenant_clients,
)
from exfairs.errors import InputError
from exfairs.rng import stream
from exfairs.scenario import load_scenario
from exfairs.token_count import ESTIMATE_LABEL, estimate_tokens
from exfairs.workload import draw_workload

SAMPLES = Path(__file__).resolve().parents[2] / "core" / "data" / "datasets"
JSONL = [json.loads(line) for line in
         (SAMPLES / "prompts-mini.jsonl").read_text(encoding="utf-8").splitlines() if line]
PROMPTS = tuple(r["prompt"] for r in JSONL)
REPLY = DatasetColumns(reply="completion", tenant="tenant")


def test_every_sample_is_bundled() -> None:
    assert set(bundled_datasets()) == {"sharegpt-mini.json", "prompts-mini.jsonl",
                                       "prompts-mini.csv", "prompts-mini.parquet",
                                       "prompts-mini-hf"}


@pytest.mark.parametrize(("name", "columns"), [
    ("sharegpt-mini.json", DatasetColumns(tenant="user")),
    ("prompts-mini.jsonl", REPLY),
    ("prompts-mini.parquet", REPLY),
    ("prompts-mini-hf", REPLY),
    ("prompts-mini.csv", DatasetColumns(output_tokens="output_tokens", tenant="tenant")),
])
def test_each_format_loads_the_same_prompts(name: str, columns: DatasetColumns) -> None:
    ds = read_dataset(name, columns=columns)
    assert ds.prompts == PROMPTS  # ShareGPT's entry without a human turn is skipped
    assert ds.tenants == tuple(r["tenant"] for r in JSONL)
    assert ds.length_source == ESTIMATE_LABEL
    assert list(ds.prompt_tokens) == [math.ceil(len(p) / 4) for p in PROMPTS]
    assert ds.output_tokens is not None and (ds.output_tokens >= 1).all()
    if name != "prompts-mini.csv":
        assert list(ds.output_tokens) == [estimate_tokens(r["completion"]) for r in JSONL]


def test_parquet_sample_is_the_jsonl_rows() -> None:
    assert pq.read_table(SAMPLES / "prompts-mini.parquet").to_pylist() == JSONL


def test_paths_relative_to_base_dir_and_limit(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "hello there"}\n{"text": "again"}\n',
                                      encoding="utf-8")
    ds = read_dataset("d.jsonl", columns=DatasetColumns(text="text"), base_dir=tmp_path, limit=1)
    assert ds.prompts == ("hello there",) and ds.output_tokens is None and ds.tenants is None


@pytest.mark.parametrize(("content", "suffix", "field"), [
    ('{"prompt": "a"}\n{"other": 1}\n', ".jsonl", "row 2.prompt"),
    ('{"prompt": "a"}\nnot json\n', ".jsonl", "line 2"),
    ('{"prompt": ""}\n', ".jsonl", "row 1.prompt"),
    ("prompt,n\nhi,x\n", ".csv", "row 1.output_tokens"),
    ('[{"no": 1}]', ".json", "entry 1"),
    ("", ".jsonl", "(file)"),
])
def test_malformed_rows_name_the_field(tmp_path: Path, content: str, suffix: str,
                                       field: str) -> None:
    p = tmp_path / f"bad{suffix}"
    p.write_text(content, encoding="utf-8")
    cols = DatasetColumns(output_tokens="output_tokens") if suffix == ".csv" else None
    if suffix == ".csv":
        p.write_text("prompt,output_tokens\nhi,x\n", encoding="utf-8")
    with pytest.raises(InputError) as exc:
        read_dataset(p, columns=cols)
    assert exc.value.field == field


def test_missing_files_columns_and_splits_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="bundled"):
        read_dataset(tmp_path / "nope.json")
    with pytest.raises(InputError) as exc:
        read_dataset("prompts-mini.parquet", columns=DatasetColumns(text="question"))
    assert exc.value.field == "question"
    with pytest.raises(InputError) as exc:
        read_dataset("prompts-mini-hf", split="test")
    assert exc.value.field == "split"
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(InputError, match="save_to_disk"):
        read_dataset(tmp_path / "empty-dir")


def test_hf_single_dataset_directory(tmp_path: Path) -> None:
    # save_to_disk of one Dataset: the split folder's layout at the top.
    from make_dataset_samples import write_hf_dir

    write_hf_dir(pa.Table.from_pylist(JSONL), tmp_path / "dd")
    ds = read_dataset(tmp_path / "dd" / "train", fmt="hf", columns=REPLY)
    assert ds.prompts == PROMPTS


def test_tenants_map_to_named_clients_then_in_order_of_appearance() -> None:
    owner = tenant_clients(["x", "bob", "y", "x", "alice", "z", "y"], ["alice", "bob"])
    # bob and alice by name; unknown x, y, z dealt to clients 0, 1, 0 by first appearance.
    assert list(owner) == [0, 1, 1, 0, 0, 0, 1]


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=1, max_size=40),
       st.lists(st.sampled_from(["a", "b", "c", "q"]), min_size=1, max_size=4, unique=True))
def test_tenant_mapping_is_a_function_of_the_tenant(tenants: list[str],
                                                   clients: list[str]) -> None:
    owner = tenant_clients(tenants, clients)
    assert owner.min() >= 0 and owner.max() < len(clients)
    seen: dict[str, int] = {}
    for t, o in zip(tenants, owner, strict=True):
        assert seen.setdefault(t, int(o)) == int(o)
        if t in clients:
            assert clients[int(o)] == t
    assert list(tenant_clients(tenants, clients)) == list(owner)


@given(st.integers(1, 30), st.integers(0, 100), st.integers(0, 2**32))
def test_draw_rows_uses_every_row_before_repeating(pool_size: int, n: int, seed: int) -> None:
    pool = np.arange(pool_size) * 3
    rows = draw_rows(pool, stream(seed, "t"), n)
    assert rows.shape == (n,)
    counts = np.bincount(rows // 3, minlength=pool_size)
    assert counts.max() - counts.min() <= 1 if n >= pool_size else counts.max() <= 1


def test_a_client_without_rows_is_an_error() -> None:
    ds = read_dataset("prompts-mini.jsonl", columns=REPLY)
    pools = client_pools(ds, ["alice", "bob", "carol", "dave"])
    assert [len(p) for p in pools] == [4, 4, 3, 1]
    with pytest.raises(InputError, match="no dataset row"):
        client_pools(ds, ["alice", "bob", "carol", "dave", "erin"])


# -- scenarios ------------------------------------------------------------------------------


def test_bundled_dataset_scenario_sends_the_dataset_rows() -> None:
    sc = load_scenario("sharegpt-mini")
    assert sc.dataset is not None
    ds = sc.dataset.dataset
    prof = load_profile("a100-llama2-7b")
    cost = prof.cost_model()
    cap = estimate_capacity_rps(sc, cost, prof.engine)
    w = draw_workload(sc, 3, cost, capacity_rps=cap)
    assert w == draw_workload(sc, 3, cost, capacity_rps=cap)
    by_text = {p: k for k, p in enumerate(ds.prompts)}
    pools = dict(zip([c.name for c in sc.clients],
                     client_pools(ds, [c.name for c in sc.clients]), strict=True))
    assert ds.output_tokens is not None
    for r in w.requests:
        assert r.prompt_text is not None
        k = by_text[r.prompt_text]
        assert k in pools[r.client]
        assert (r.prompt_tokens, r.output_tokens) == (ds.prompt_tokens[k], ds.output_tokens[k])
    # dave (unknown) goes to the first client; alice sends her own prompts and dave's.
    assert {ds.tenants[by_text[r.prompt_text]] for r in w.requests  # type: ignore[index]
            if r.client == "alice"} == {"alice", "dave"}


def _scenario(tmp_path: Path, dataset: str, clients: str = "a") -> Path:
    body = "\n".join(f'[[clients]]\nname = "{c}"\nrate_per_min = 30\n' for c in clients)
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(f"duration_s = 60\n[dataset]\n{dataset}\n{body}"),
                 encoding="utf-8")
    return p


def test_scenario_dataset_relative_path_and_client_outputs(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("q\nfirst prompt\nsecond prompt here\n", encoding="utf-8")
    sc = load_scenario(_scenario(tmp_path, 'path = "p.csv"\ntext = "q"'))
    assert sc.dataset is not None and sc.dataset.output == "client"
    w = draw_workload(sc, 0, load_profile("a100-llama2-7b").cost_model())
    assert {r.prompt_text for r in w.requests} == {"first prompt", "second prompt here"}
    # outputs drawn from the client's distribution (the mix class's), not the dataset
    assert len({r.output_tokens for r in w.requests}) > 2


@pytest.mark.parametrize(("dataset", "field"), [
    ('path = "prompts-mini.jsonl"\nbogus = 1', "dataset.bogus"),
    ('path = "prompts-mini.jsonl"\noutput = "dataset"', "dataset.output"),
    ('format = "csv"', "dataset.path"),
    ('path = "missing.jsonl"', "dataset.path"),
    ('path = "prompts-mini.jsonl"\nformat = "xml"', "dataset.format"),
    ('path = "prompts-mini.jsonl"\ntokenizer = "no-such-dir"', "dataset.tokenizer"),
    ('path = "prompts-mini.jsonl"\nlimit = 0', "dataset.limit"),
])
def test_bad_dataset_tables_name_the_key(tmp_path: Path, dataset: str, field: str) -> None:
    with pytest.raises(InputError) as exc:
        load_scenario(_scenario(tmp_path, dataset))
    assert exc.value.field == field
    assert exc.value.source is not None and exc.value.source.endswith("s.toml")


def test_tenant_without_rows_for_a_client_is_refused(tmp_path: Path) -> None:
    ds = 'path = "prompts-mini.jsonl"\nreply = "completion"\ntenant = "tenant"'
    with pytest.raises(InputError, match="no dataset row"):
        load_scenario(_scenario(tmp_path, ds, clients="abcde"))
