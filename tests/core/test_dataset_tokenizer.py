"""Dataset lengths measured with a local tokenizer (the tiny model's, built offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # imports transformers (~10 s)
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from exfairs.datasets import DatasetColumns, read_dataset  # noqa: E402
from exfairs.errors import InputError  # noqa: E402
from exfairs.live.tinymodel import _write_tokenizer  # noqa: E402
from exfairs.scenario import load_scenario  # noqa: E402
from exfairs.sim.prepare import prepare_run  # noqa: E402
from exfairs.token_count import load_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    _write_tokenizer(out)
    return out


def test_lengths_are_the_tokenizers_counts(tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    ds = read_dataset("prompts-mini.jsonl", columns=DatasetColumns(reply="completion"),
                      tokenizer=load_tokenizer(tokenizer_dir))
    assert list(ds.prompt_tokens) == [len(tok.encode(p)) for p in ds.prompts]
    assert ds.length_source.startswith("tokenizer: ") and str(tokenizer_dir.name) in \
        ds.length_source


def test_tokenizer_option_remeasures_a_scenario(tokenizer_dir: Path) -> None:
    est = prepare_run("sharegpt-mini", 0, profile="a100-llama2-7b")
    tok = prepare_run("sharegpt-mini", 0, profile="a100-llama2-7b", tokenizer=str(tokenizer_dir))
    assert tok.scenario.dataset is not None
    assert tok.scenario.dataset.length_source.startswith("tokenizer: ")
    texts = [r.prompt_text for r in est.workload.requests]
    assert texts == [r.prompt_text for r in tok.workload.requests]  # same rows, new lengths
    assert [r.prompt_tokens for r in est.workload.requests] != \
        [r.prompt_tokens for r in tok.workload.requests]
    with pytest.raises(InputError) as exc:
        prepare_run("default", 0, profile="a100-llama2-7b", tokenizer=str(tokenizer_dir))
    assert exc.value.field == "--tokenizer"


def test_bad_tokenizer_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load_tokenizer(tmp_path)
    assert exc.value.field == "tokenizer"
    scen = tmp_path / "s.toml"
    scen.write_text('duration_s = 60\n[dataset]\npath = "prompts-mini.jsonl"\n'
                    f'tokenizer = "{tmp_path}"\n[[clients]]\nname = "a"\nrate_per_min = 6\n',
                    encoding="utf-8")
    with pytest.raises(InputError) as exc:
        load_scenario(scen)
    assert exc.value.field == "dataset.tokenizer"
