"""The config a run writes (train_config.yaml) repeats the run, and data.tokenizer_path uses a tokenizer made by
`train-tokenizer` instead of learning one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm.tokenizers import Tokenizer
from tests.training.conftest import tiny_config, write_config
from training.cli import main
from training.config import load_config


def own_text(path: Path) -> Path:
    lines = [f"the {animal} number {n} sat on the {thing}, and said: {word}!"
             for n, (animal, thing, word) in enumerate(
                 zip(["cat", "dog", "owl", "fox"] * 150, ["mat", "log", "hill", "roof", "boat"] * 120,
                     ["hello", "good night", "why not", "yes"] * 150))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def first_losses(model_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["train_loss"] for row in rows if "train_loss" in row]


def test_the_config_as_run_names_the_data_and_overrides_and_repeats_the_run(tmp_path, capsys):
    text = own_text(tmp_path / "mine.txt")
    preset = write_config(tmp_path / "preset.yaml", tiny_config("gpt", max_steps=30, eval_interval=5))
    first = tmp_path / "first"
    assert main(["train", "--config", str(preset), "--data", str(text), "--max-steps", "10", "--output", str(first),
                 "--set", "training.lr=0.01", "--quiet"]) == 0

    as_run = load_config(first / "train_config.yaml")
    assert as_run.data.source == str(text)  # not the preset's "synthetic"
    assert as_run.training.max_steps == 10 and as_run.training.lr == 0.01 and as_run.training.precision == "fp32"
    assert "repeats the run" in (first / "train_config.yaml").read_text()

    again = tmp_path / "again"
    assert main(["train", "--config", str(first / "train_config.yaml"), "--output", str(again), "--quiet"]) == 0
    losses = first_losses(first)
    assert len(losses) >= 2 and first_losses(again) == losses
    assert json.loads((again / "config.json").read_text())["training"]["steps"] == 10
    capsys.readouterr()


def test_a_tokenizer_made_by_train_tokenizer_is_used_as_it_is(tmp_path, capsys):
    text = own_text(tmp_path / "mine.txt")
    made = tmp_path / "tokenizer.json"
    assert main(["train-tokenizer", "--data", str(text), "--kind", "bpe", "--vocab-size", "300",
                 "--output", str(made)]) == 0
    # the preset says char: the file decides the kind and the size
    preset = write_config(tmp_path / "preset.yaml", tiny_config("gpt", max_steps=4, eval_interval=2))
    out = tmp_path / "model"
    assert main(["train", "--config", str(preset), "--data", str(text), "--output", str(out), "--quiet",
                 "--set", f"data.tokenizer_path={made}"]) == 0

    given, used = Tokenizer.from_file(made), Tokenizer.from_file(out / "tokenizer.json")
    assert used.kind == "bpe" and used.hf.get_vocab() == given.hf.get_vocab()
    as_run = load_config(out / "train_config.yaml")
    assert (as_run.data.tokenizer, as_run.data.vocab_size) == ("bpe", given.vocab_size)
    assert as_run.data.tokenizer_path == str(made)
    capsys.readouterr()


@pytest.mark.parametrize("content, message", [
    (None, "data.tokenizer_path: no tokenizer file at"),
    ('{"not": "a tokenizer"}', "is not a tokenizer file"),
])
def test_a_bad_tokenizer_path_is_one_line(tmp_path, capsys, content, message):
    text = own_text(tmp_path / "mine.txt")
    path = tmp_path / "tokenizer.json"
    if content is not None:
        path.write_text(content)
    preset = write_config(tmp_path / "preset.yaml", tiny_config("gpt", max_steps=2))
    code = main(["train", "--config", str(preset), "--data", str(text), "--output", str(tmp_path / "out"),
                 "--quiet", "--set", f"data.tokenizer_path={path}"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err
