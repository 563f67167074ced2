"""The per-format readers of prompt datasets (`exfairs.datasets`): ShareGPT JSON, JSON lines,
CSV, Parquet and Hugging Face ``save_to_disk`` directories, each giving the rows as read
(`RawRows`); `exfairs.datasets.read_dataset` picks the reader and measures the lengths.

Split from `exfairs.datasets`, which keeps the dataset types, the reading entry point and the
mapping of rows to clients.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exfairs.errors import InputError

if TYPE_CHECKING:
    from exfairs.datasets import DatasetColumns

_log = logging.getLogger(__name__)

_HUMAN = ("human", "user")


@dataclass(frozen=True, slots=True)
class RawRows:
    """A dataset's rows as read, before lengths are measured: prompt texts, reply texts and raw
    output counts (None when the dataset has no such column), tenants, and each row's 1-based
    position (line or entry) in the file."""

    prompts: list[str]
    replies: list[str] | None
    outputs: list[Any] | None
    tenants: list[str] | None
    rows: list[int]


def json_lines(text: str, source: str) -> list[tuple[int, Any]]:
    """The parsed JSON value of each non-blank line, with its 1-based line number."""
    out: list[tuple[int, Any]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except (ValueError, RecursionError) as exc:
            raise InputError(f"not valid JSON: {exc}", field=f"line {n}", value=line[:80],
                             source=source) from None
    return out


def read_sharegpt(text: str, cols: DatasetColumns, source: str) -> RawRows:
    """ShareGPT conversations (a JSON list, one object, or JSON lines): each row the first
    human/user turn and the turn after it; conversations without one are skipped (logged)."""
    try:
        doc = json.loads(text)
        items = list(enumerate(doc, start=1)) if isinstance(doc, list) else [(1, doc)]
    except (ValueError, RecursionError):
        items = json_lines(text, source)  # ShareGPT as JSON lines
    prompts: list[str] = []
    replies: list[str] = []
    tenants: list[str] = []
    rows: list[int] = []
    skipped = 0
    for n, item in items:
        conv = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(conv, list):
            raise InputError("each entry must be an object with a 'conversations' list",
                             field=f"entry {n}", value=str(item)[:80], source=source)
        turns = [(t.get("from"), t.get("value")) for t in conv if isinstance(t, dict)]
        first = next((k for k, (who, v) in enumerate(turns)
                      if who in _HUMAN and isinstance(v, str) and v.strip()), None)
        if first is None:
            skipped += 1
            continue
        prompts.append(str(turns[first][1]))
        nxt = turns[first + 1][1] if first + 1 < len(turns) else None
        replies.append(nxt if isinstance(nxt, str) else "")
        if cols.tenant is not None:
            if cols.tenant not in item:
                raise InputError("tenant key missing", field=f"entry {n}.{cols.tenant}",
                                 value=None, source=source)
            tenants.append(str(item[cols.tenant]))
        rows.append(n)
    if skipped:
        _log.info("%s: %d conversations without a human turn skipped", source, skipped)
    return RawRows(prompts, replies, None, tenants if cols.tenant else None, rows)


def rows_from_records(records: Sequence[tuple[int, Mapping[str, Any]]], cols: DatasetColumns,
                      source: str) -> RawRows:
    """Rows from (row number, record) pairs whose keys are the columns `cols` names; the prompt
    must be non-empty text."""
    wanted = [c for c in (cols.text, cols.reply, cols.output_tokens, cols.tenant) if c]
    values: dict[str, list[Any]] = {c: [] for c in wanted}
    rows: list[int] = []
    for n, rec in records:
        if not isinstance(rec, Mapping):
            raise InputError("each line must be a JSON object", field=f"line {n}",
                             value=str(rec)[:80], source=source)
        for c in wanted:
            if c not in rec:
                raise InputError(f"column missing (has: {', '.join(sorted(map(str, rec)))})",
                                 field=f"row {n}.{c}", value=None, source=source)
            values[c].append(rec[c])
        rows.append(n)
    for k, v in enumerate(values[cols.text]):
        if not isinstance(v, str) or not v.strip():
            raise InputError("the prompt must be non-empty text",
                             field=f"row {rows[k]}.{cols.text}", value=v, source=source)
    replies = None
    if cols.reply:
        replies = ["" if v is None else str(v) for v in values[cols.reply]]
    return RawRows(list(values[cols.text]), replies,
                values[cols.output_tokens] if cols.output_tokens else None,
                [str(v) for v in values[cols.tenant]] if cols.tenant else None, rows)


def read_csv(text: str, cols: DatasetColumns, source: str) -> RawRows:
    """A CSV file with a header, its columns named by `cols`."""
    reader = csv.DictReader(io.StringIO(text))
    try:
        records = [(n, dict(r)) for n, r in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", field=f"row {reader.line_num}", value=None,
                         source=source) from None
    return rows_from_records(records, cols, source)


def _table_records(table: Any) -> list[tuple[int, Mapping[str, Any]]]:
    return list(enumerate(table.to_pylist(), start=1))


def read_parquet(p: Path, cols: DatasetColumns) -> RawRows:
    """A Parquet file, reading only the columns `cols` names (pyarrow)."""
    import pyarrow.parquet as pq

    names = [c for c in (cols.text, cols.reply, cols.output_tokens, cols.tenant) if c]
    try:
        schema = pq.read_schema(p)
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise InputError(f"not a readable Parquet file: {exc}", field="(file)", value=str(p),
                         source=str(p)) from None
    missing = [c for c in names if c not in schema.names]
    if missing:
        raise InputError(f"column missing (has: {', '.join(schema.names)})",
                         field=missing[0], value=None, source=str(p))
    try:
        table = pq.read_table(p, columns=names)
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", field="(file)", value=str(p),
                         source=str(p)) from None
    return rows_from_records(_table_records(table), cols, str(p))


def _hf_split_dir(p: Path, split: str | None) -> Path:
    # save_to_disk of a DatasetDict: dataset_dict.json names the splits, one folder each.
    dd = p / "dataset_dict.json"
    if not dd.is_file():
        if split is not None:
            raise InputError("a single saved Dataset has no splits", field="split", value=split,
                             source=str(p))
        return p
    try:
        splits = [str(x) for x in json.loads(dd.read_text(encoding="utf-8"))["splits"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable dataset_dict.json: {exc}", field="dataset", value=str(p)
                         ) from None
    name = split or ("train" if "train" in splits else (splits[0] if len(splits) == 1 else None))
    if name is None or name not in splits:
        raise InputError(f"name one of the splits {splits}", field="split", value=split,
                         source=str(p))
    return p / name


def read_hf(p: Path, cols: DatasetColumns, split: str | None) -> RawRows:
    """A ``datasets`` ``save_to_disk`` directory, read with pyarrow: state.json lists the
    split's Arrow IPC stream files (the layout `datasets.load_from_disk` reads)."""
    import pyarrow as pa

    d = _hf_split_dir(p, split)
    try:
        state = json.loads((d / "state.json").read_text(encoding="utf-8"))
        files = [str(f["filename"]) for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError("not a Hugging Face datasets directory written by save_to_disk (no "
                         f"readable state.json: {exc}); save it with "
                         "datasets.load_dataset(...).save_to_disk(DIR)", field="dataset",
                         value=str(p)) from None
    tables = []
    for name in files:
        f = d / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise InputError("a data file outside the dataset directory", field="dataset",
                             value=name, source=str(d / "state.json"))
        try:
            with pa.memory_map(str(f)) as src:
                tables.append(pa.ipc.open_stream(src).read_all())
        except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
            raise InputError(f"unreadable Arrow file: {exc}", field="dataset", value=str(f)
                             ) from None
    if not tables:
        raise InputError("the dataset directory lists no data files", field="dataset",
                         value=str(p))
    table = pa.concat_tables(tables)
    missing = [c for c in (cols.text, cols.reply, cols.output_tokens, cols.tenant)
               if c and c not in table.column_names]
    if missing:
        raise InputError(f"column missing (has: {', '.join(table.column_names)})",
                         field=missing[0], value=None, source=str(d))
    return rows_from_records(_table_records(table), cols, str(d))
