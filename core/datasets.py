"""Prompt datasets with text: reading them, measuring their lengths, mapping tenants to clients
(docs/design.md §6).

Supported sources, all local (nothing is downloaded):

- ``sharegpt``: ShareGPT-format JSON, a list of ``{"conversations": [{"from": "human", "value":
  ...}, {"from": "gpt", "value": ...}, ...]}`` (JSON lines of such objects too). A row's prompt is
  its first human/user turn, its reply the turn after it; conversations without a human turn are
  skipped (logged).
- ``jsonl`` and ``csv``: one prompt per line/row; the prompt text, the reply text, an output token
  count and a tenant are columns named by `DatasetColumns`.
- ``parquet``: a Parquet file with the same columns (read with pyarrow).
- ``hf``: a Hugging Face ``datasets`` directory written by ``save_to_disk`` (a Dataset or a
  DatasetDict, `split` picks one), read with pyarrow from the Arrow files it lists, so the
  ``datasets`` package is not needed.

Lengths are token counts: measured with a local tokenizer (`exfairs.token_count.load_tokenizer`,
transformers' AutoTokenizer with ``local_files_only``) when one is given, otherwise estimated as
``ceil(characters / 4)`` (`estimate_tokens`, the usual ~4 characters per English token). Which
of the two was used is the dataset's `length_source`, recorded with every result. Output lengths
come from a token-count column, else the reply text (measured the same way), else — when the
dataset has neither — from the scenario clients' output distributions.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from exfairs.dataset_formats import (
    json_lines,
    read_csv,
    read_hf,
    read_parquet,
    read_sharegpt,
    rows_from_records,
)
from exfairs.errors import ConfigError, InputError
from exfairs.paths import read_input_bytes
from exfairs.token_count import ESTIMATE_LABEL, TokenCounter, estimate_tokens

_log = logging.getLogger(__name__)

DatasetFormat = Literal["auto", "sharegpt", "jsonl", "csv", "parquet", "hf"]
DATASET_FORMATS: tuple[str, ...] = ("auto", "sharegpt", "jsonl", "csv", "parquet", "hf")

#: Largest dataset file read (bytes). The full ShareGPT V3 file is about 670 MB.
DATASET_LIMIT_BYTES = 2048 * 2**20
#: Rows beyond which reading is refused (a guard against a wrong file).
MAX_DATASET_ROWS = 10_000_000

_SAMPLES_DIR = ("data", "datasets")


@dataclass(frozen=True, slots=True)
class DatasetColumns:
    """Where a jsonl / csv / parquet / hf dataset keeps its fields (`reply`, `output_tokens` and
    `tenant` optional). ShareGPT files use `tenant` only (a top-level key of each conversation)."""

    text: str = "prompt"
    reply: str | None = None
    output_tokens: str | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text:
            raise ConfigError("must be a non-empty column name", field="text", value=self.text)
        for name in ("reply", "output_tokens", "tenant"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v):
                raise ConfigError("must be a non-empty column name", field=name, value=v)


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """Prompts with their token lengths, in file order.

    `prompt_tokens` (int64, ≥ 1) are the prompts' lengths; `output_tokens` the replies' (≥ 1), or
    None when the dataset has no reply and no output column; `tenants` each row's tenant (None
    without a tenant column); `length_source` says how lengths were measured (a tokenizer's path
    or `ESTIMATE_LABEL`); `rows` each row's 1-based position in the file.
    """

    source: str
    prompts: tuple[str, ...]
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray | None
    tenants: tuple[str, ...] | None
    length_source: str
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.prompts)


def bundled_datasets() -> list[str]:
    """Names of the small sample datasets shipped with the package (``exfairs/data/datasets``)."""
    root = resources.files("exfairs").joinpath(*_SAMPLES_DIR)
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".md"))


def _resolve(path: str | os.PathLike[str], base_dir: Path | None) -> Path:
    name = os.fspath(path)
    if name in bundled_datasets():
        with resources.as_file(resources.files("exfairs").joinpath(*_SAMPLES_DIR, name)) as p:
            return Path(p)
    p = Path(name)
    if base_dir is not None and not p.is_absolute():
        p = base_dir / p
    if not os.path.lexists(p):
        raise InputError("no such dataset file or directory, or bundled sample (bundled: "
                         f"{', '.join(bundled_datasets())})", field="dataset", value=name)
    return p


def _detect_format(p: Path) -> str:
    if p.is_dir():
        return "hf"
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".json":
        return "sharegpt"
    raise InputError("cannot tell the format from the name; give format = sharegpt, jsonl, csv, "
                     "parquet or hf", field="dataset", value=str(p))


def _text(p: Path) -> str:
    data = read_input_bytes(p, field="dataset", what="dataset file", limit=DATASET_LIMIT_BYTES)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc}", field="(file)", value=str(p),
                         source=str(p)) from None
    if not text.strip():
        raise InputError("empty dataset file", field="(file)", value=str(p), source=str(p))
    return text


def _counts(raw: list[Any], rows: list[int], col: str, source: str) -> np.ndarray:
    out = np.empty(len(raw), dtype=np.int64)
    for i, x in enumerate(raw):
        try:
            v = float(x) if not isinstance(x, bool) else math.nan
        except (TypeError, ValueError, OverflowError):
            v = math.nan
        if not math.isfinite(v) or v < 1 or not v.is_integer() or v > 1e9:
            raise InputError("must be a whole number of tokens in [1, 1e9]",
                             field=f"row {rows[i]}.{col}", value=x, source=source)
        out[i] = int(v)
    return out


def read_dataset(
    path: str | os.PathLike[str],
    *,
    fmt: DatasetFormat = "auto",
    columns: DatasetColumns | None = None,
    tokenizer: TokenCounter | None = None,
    split: str | None = None,
    limit: int | None = None,
    base_dir: Path | None = None,
) -> Dataset:
    """Read a dataset file or directory (or a bundled sample by name, see `bundled_datasets`).

    `fmt` ``"auto"`` goes by the name: a directory is ``hf``, ``.json`` ShareGPT, ``.jsonl`` /
    ``.ndjson`` JSON lines, ``.csv``, ``.parquet``. Lengths are measured with `tokenizer` when
    given, else estimated (`estimate_tokens`). `split` picks a split of a saved DatasetDict;
    `limit` keeps the first rows. Relative paths are taken from `base_dir`. Raises InputError
    naming the file, row and column for anything malformed or missing.
    """
    if fmt not in DATASET_FORMATS:
        raise InputError(f"must be one of {', '.join(DATASET_FORMATS)}", field="format",
                         value=fmt)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError("must be a positive integer", field="limit", value=limit)
    cols = columns or DatasetColumns()
    p = _resolve(path, base_dir)
    kind = _detect_format(p) if fmt == "auto" else fmt
    source = str(p)
    if kind == "hf":
        raw = read_hf(p, cols, split)
    elif kind == "parquet":
        raw = read_parquet(p, cols)
    elif kind == "sharegpt":
        raw = read_sharegpt(_text(p), cols, source)
    elif kind == "csv":
        raw = read_csv(_text(p), cols, source)
    else:
        raw = rows_from_records(json_lines(_text(p), source), cols, source)
    if not raw.prompts:
        raise InputError("the dataset has no prompts", field="(file)", value=source,
                         source=source)
    if len(raw.prompts) > MAX_DATASET_ROWS:
        raise InputError(f"more than {MAX_DATASET_ROWS} rows", field="(file)", value=source,
                         source=source)
    n = len(raw.prompts) if limit is None else min(limit, len(raw.prompts))
    prompts = raw.prompts[:n]
    count = tokenizer.count if tokenizer is not None else (
        lambda texts: [estimate_tokens(t) for t in texts])
    prompt_tokens = np.asarray(count(prompts), dtype=np.int64)
    output: np.ndarray | None = None
    if raw.outputs is not None:
        output = _counts(raw.outputs[:n], raw.rows[:n], cols.output_tokens or "", source)
    elif raw.replies is not None:
        replies = raw.replies[:n]
        empty = sum(1 for r in replies if not r.strip())
        if empty:
            _log.info("%s: %d rows with an empty reply get 1 output token", source, empty)
        output = np.asarray([c if r.strip() else 1 for c, r in zip(count(replies), replies,
                                                                   strict=True)], dtype=np.int64)
    label = tokenizer.label if tokenizer is not None else ESTIMATE_LABEL
    return Dataset(source=source, prompts=tuple(prompts), prompt_tokens=prompt_tokens,
                   output_tokens=output,
                   tenants=tuple(raw.tenants[:n]) if raw.tenants is not None else None,
                   length_source=label, rows=np.asarray(raw.rows[:n], dtype=np.int64))


def tenant_clients(tenants: Sequence[str], client_names: Sequence[str]) -> np.ndarray:
    """The client index of each row from its tenant: a tenant named like a client goes to that
    client; the other tenants, in order of first appearance, are dealt to the clients in order
    (the k-th such tenant to client k mod n), so the mapping is deterministic and every row of
    one tenant goes to one client."""
    if not client_names:
        raise InputError("needs at least one client", field="clients", value=[])
    index = {name: i for i, name in enumerate(client_names)}
    owner: dict[str, int] = {}
    unknown = 0
    out = np.empty(len(tenants), dtype=np.int64)
    for k, t in enumerate(tenants):
        if t not in owner:
            if t in index:
                owner[t] = index[t]
            else:
                owner[t] = unknown % len(client_names)
                unknown += 1
        out[k] = owner[t]
    return out


def client_pools(dataset: Dataset, client_names: Sequence[str]) -> tuple[np.ndarray, ...]:
    """The dataset rows each client draws from, in file order: by tenant (`tenant_clients`) when
    the dataset has a tenant column, else every row for every client. A client left without rows
    is an error (name the tenant column or the clients differently)."""
    n = len(dataset)
    if dataset.tenants is None:
        every = np.arange(n, dtype=np.int64)
        return tuple(every for _ in client_names)
    owner = tenant_clients(dataset.tenants, client_names)
    pools = tuple(np.flatnonzero(owner == i) for i in range(len(client_names)))
    for name, pool in zip(client_names, pools, strict=True):
        if pool.size == 0:
            raise InputError(f"no dataset row maps to this client ({len(set(dataset.tenants))} "
                             f"tenants for {len(client_names)} clients)", field="clients",
                             value=name, source=dataset.source)
    return pools


def draw_rows(pool: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` rows of `pool` for one client: the pool in a random order, repeated (each in a new
    order) when `n` exceeds it, so a client sends every prompt once before any twice."""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    rounds = -(-n // pool.shape[0])
    rows = np.concatenate([pool[rng.permutation(pool.shape[0])] for _ in range(rounds)])
    return np.asarray(rows[:n], dtype=np.int64)
