"""A scenario's ``[dataset]`` table: which prompt dataset its clients send (docs/design.md §6).

::

    [dataset]
    path = "sharegpt-mini.json"   # a bundled sample (exfairs-sim list) or a file / directory,
                                  # relative to the scenario file
    format = "auto"               # sharegpt | jsonl | csv | parquet | hf (auto: by the name)
    text = "prompt"               # prompt text column (not for sharegpt)
    reply = "completion"          # optional: reply text column, its length is the output length
    output_tokens = "out_len"     # optional: output token count column
    tenant = "tenant"             # optional: column (sharegpt: top-level key) of the tenant id
    tokenizer = "/models/llama"   # optional: local tokenizer directory; else ceil(chars / 4)
    output = "dataset"            # "dataset" (default when the dataset has replies or an output
                                  # column) or "client": the clients' output distributions
    split = "train"               # optional: split of a saved DatasetDict
    limit = 1000                  # optional: the first rows only

With a dataset, every request of a client is one dataset row (its text is sent to live servers,
its lengths serve the simulator): the client's arrival process and rate are unchanged, its prompt
lengths (and output lengths, unless ``output = "client"``) are those of its rows. Rows map to
clients by tenant (`exfairs.datasets.tenant_clients`), or every client draws from every row.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from exfairs.datasets import (
    DATASET_FORMATS,
    Dataset,
    DatasetColumns,
    DatasetFormat,
    read_dataset,
)
from exfairs.errors import ConfigError, InputError
from exfairs.token_count import load_tokenizer

OutputSource = Literal["dataset", "client"]

_KEYS = ("path", "format", "text", "reply", "output_tokens", "tenant", "tokenizer", "output",
         "split", "limit")


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A scenario's dataset: where it is and how to read it, plus the rows read when the
    scenario was loaded (`data`, left out of comparisons: the spec's fields identify it).

    `output` says where output lengths come from: ``"dataset"`` (its output column or replies) or
    ``"client"`` (each client's output distribution).
    """

    path: str
    format: DatasetFormat = "auto"
    columns: DatasetColumns = field(default_factory=DatasetColumns)
    tokenizer: str | None = None
    output: OutputSource = "dataset"
    split: str | None = None
    limit: int | None = None
    data: Dataset | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError("must be a non-empty path", field="path", value=self.path)
        if self.format not in DATASET_FORMATS:
            raise ConfigError(f"must be one of {', '.join(DATASET_FORMATS)}", field="format",
                              value=self.format)
        if self.output not in ("dataset", "client"):
            raise ConfigError("must be 'dataset' or 'client'", field="output", value=self.output)

    @property
    def dataset(self) -> Dataset:
        """The loaded rows (a spec built by `load_dataset_spec` always has them)."""
        if self.data is None:
            raise InputError("the dataset was not loaded", field="dataset", value=self.path)
        return self.data

    @property
    def length_source(self) -> str:
        """How the prompt (and reply) lengths were measured, for results."""
        return self.dataset.length_source


def load_dataset_spec(spec: DatasetSpec, *, base_dir: Path | None = None) -> DatasetSpec:
    """`spec` with its rows read (and measured with its tokenizer, when it names one)."""
    tokenizer_path = spec.tokenizer
    if (tokenizer_path is not None and base_dir is not None
            and not Path(tokenizer_path).is_absolute()):
        tokenizer_path = os.fspath(base_dir / tokenizer_path)
    tok = load_tokenizer(tokenizer_path) if tokenizer_path is not None else None
    data = read_dataset(spec.path, fmt=spec.format, columns=spec.columns, tokenizer=tok,
                        split=spec.split, limit=spec.limit, base_dir=base_dir)
    if spec.output == "dataset" and data.output_tokens is None:
        raise InputError("the dataset has no replies and no output column: name one (reply, "
                         "output_tokens) or set output = \"client\"", field="dataset.output",
                         value=spec.output, source=data.source)
    return replace(spec, data=data)


def with_tokenizer(spec: DatasetSpec, tokenizer: str) -> DatasetSpec:
    """`spec` re-read with lengths measured by the tokenizer directory `tokenizer` (e.g. the
    served model's, given on the command line)."""
    # The rows' resolved location: a relative path was relative to the scenario file.
    loaded = load_dataset_spec(replace(spec, path=spec.dataset.source,
                                       tokenizer=os.fspath(Path(tokenizer).resolve()),
                                       data=None))
    return replace(loaded, path=spec.path)


def dataset_spec_from_dict(doc: Mapping[str, Any], *, source: str,
                           base_dir: Path | None = None) -> DatasetSpec:
    """Validate a ``[dataset]`` table (see the module docstring) and read its dataset.
    InputError names `source`, ``dataset.<key>`` and the value."""
    def err(key: str, message: str, value: Any) -> InputError:
        return InputError(message, field=f"dataset.{key}", value=value, source=source)

    if not isinstance(doc, Mapping):
        raise err("(table)", "must be a table", doc)
    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        raise err(unknown[0], f"unknown key (expected one of {', '.join(_KEYS)})",
                  doc[unknown[0]])
    strings: dict[str, str | None] = {}
    for key in ("path", "format", "text", "reply", "output_tokens", "tenant", "tokenizer",
                "output", "split"):
        v = doc.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            raise err(key, "must be a non-empty string", v)
        strings[key] = v
    if strings["path"] is None:
        raise err("path", "required: a dataset file, directory or bundled sample", None)
    limit = doc.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise err("limit", "must be a positive integer", limit)
    fmt = strings["format"] or "auto"
    if fmt not in DATASET_FORMATS:
        raise err("format", f"must be one of {', '.join(DATASET_FORMATS)}", fmt)
    has_output = strings["reply"] is not None or strings["output_tokens"] is not None or (
        fmt == "sharegpt" or (fmt == "auto" and str(strings["path"]).endswith(".json")))
    output = strings["output"] or ("dataset" if has_output else "client")
    if output not in ("dataset", "client"):
        raise err("output", "must be 'dataset' or 'client'", output)
    try:
        columns = DatasetColumns(text=strings["text"] or "prompt", reply=strings["reply"],
                                 output_tokens=strings["output_tokens"],
                                 tenant=strings["tenant"])
        spec = DatasetSpec(path=str(strings["path"]), format=fmt,  # type: ignore[arg-type]
                           columns=columns, tokenizer=strings["tokenizer"],
                           output=output,  # type: ignore[arg-type]
                           split=strings["split"], limit=limit)
        return load_dataset_spec(spec, base_dir=base_dir)
    except InputError as exc:
        where = f" ({exc.source}: field {exc.field!r} = {exc.value!r})" if exc.source else ""
        own = (exc.field or "").removeprefix("dataset.")
        key = own if own in _KEYS else "path"
        value = exc.value if own in _KEYS else strings["path"]
        raise err(key, exc.detail + where, value) from None


def dataset_knobs(spec: DatasetSpec | None) -> tuple[tuple[str, str], ...]:
    """What a result records about a scenario's dataset (nothing without one): its path and how
    its lengths were measured (``prompt_lengths``: a tokenizer, or the labelled estimate)."""
    if spec is None:
        return ()
    return (("dataset", spec.path), ("prompt_lengths", spec.length_source))
