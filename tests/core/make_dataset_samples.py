"""Regenerate the binary dataset samples in core/data/datasets from prompts-mini.jsonl.

    python tests/core/make_dataset_samples.py

The Parquet and Hugging Face samples hold exactly the rows of prompts-mini.jsonl (the tests check
it), so every format is tested on the same prompts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SAMPLES = Path(__file__).resolve().parents[2] / "core" / "data" / "datasets"


def main() -> None:
    rows = [json.loads(line) for line in
            (SAMPLES / "prompts-mini.jsonl").read_text(encoding="utf-8").splitlines() if line]
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, SAMPLES / "prompts-mini.parquet", compression="zstd")
    write_hf_dir(table, SAMPLES / "prompts-mini-hf")


def write_hf_dir(table: pa.Table, out: Path, split: str = "train") -> None:
    """`table` as `datasets.DatasetDict({split: ...}).save_to_disk(out)` lays it out: a
    dataset_dict.json naming the splits and per split an Arrow IPC stream file, state.json
    listing it and dataset_info.json with the features (written with pyarrow only)."""
    shutil.rmtree(out, ignore_errors=True)
    (out / split).mkdir(parents=True)
    (out / "dataset_dict.json").write_text(json.dumps({"splits": [split]}), encoding="utf-8")
    name = "data-00000-of-00001.arrow"
    with pa.OSFile(str(out / split / name), "wb") as sink, \
            pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    state = {"_data_files": [{"filename": name}], "_fingerprint": "exfairs-sample",
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
             "_output_all_columns": False, "_split": split}
    (out / split / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    features = {f.name: {"dtype": "string", "_type": "Value"} for f in table.schema}
    info = {"citation": "", "description": "", "features": features, "homepage": "",
            "license": ""}
    (out / split / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")

if __name__ == "__main__":
    main()
