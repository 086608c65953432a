"""training.api: the examples of docs/python-api.md run as written (a tiny model and a small text in place of the
paths of their first block), and give what the command line gives."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from training.cli import main

ROOT = Path(__file__).resolve().parents[2]
TEXT = "".join(f"ANNA:\nThe old king fears the river {i}.\n\nBORIS:\nA dog likes the moon!\n\n" for i in range(80))


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8"), re.S)


@pytest.mark.slow
def test_the_documented_examples_run(tmp_path, trained_gpt, monkeypatch, capsys):
    first, *rest = _examples()
    assert "from training.api import" in first and len(rest) >= 4
    namespace: dict = {}
    exec(compile(first, "python-api.md", "exec"), namespace)
    corpus = tmp_path / "book.txt"
    corpus.write_text(TEXT)
    model, other = tmp_path / "models" / "gpt", tmp_path / "models" / "other"
    shutil.copytree(trained_gpt, model)
    shutil.copytree(trained_gpt, other)
    namespace.update(CORPUS=str(corpus), PREPARED=str(tmp_path / "prepared"), MODEL=str(model), OTHER=str(other),
                     SUITE=str(ROOT / "configs" / "benchmarks" / "shakespeare.yaml"))
    monkeypatch.chdir(tmp_path)  # RESULTS is a relative path
    for i, block in enumerate(rest, 2):
        exec(compile(block, f"python-api.md, example {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert (tmp_path / "prepared" / "valid.txt").is_file()
    assert (model / "evaluations" / "prepared-valid.json").is_file()  # where `evaluate` writes it
    assert json.loads((tmp_path / namespace["RESULTS"]).read_text())["suite"] == "shakespeare"
    assert "| measure | gpt | other |" in out and "| measure | gpt |" in out
    assert "<suite>: cases[0]: give expected (a completion) or keywords (a list), or both" in out


@pytest.mark.slow
def test_evaluate_model_is_what_the_command_computes(tmp_path, trained_gpt, capsys):
    """The same call through the API and the command line: the same figures and continuations, in the same file."""
    from training.api import evaluate_model

    data, prompts = tmp_path / "book.txt", tmp_path / "prompts.txt"
    data.write_text(TEXT)
    prompts.write_text("ANNA:\\nThe\nBORIS:\n")
    model = tmp_path / "model"
    shutil.copytree(trained_gpt, model)
    result = evaluate_model(model, data, split="valid", prompts=prompts, num_samples=2, temperature=0.7,
                            max_new_tokens=12, seed=3, samples=1, baselines=False)
    saved = json.loads((model / "evaluations" / "book-valid.json").read_text())
    assert saved == result
    assert main(["evaluate", str(model), "--data", str(data), "--split", "valid", "--custom-prompts", str(prompts),
                 "--num-samples", "2", "--temperature", "0.7", "--max-new-tokens", "12", "--seed", "3",
                 "--samples", "1", "--no-baselines"]) == 0
    capsys.readouterr()
    command = json.loads((model / "evaluations" / "book-valid.json").read_text())
    assert command.pop("command").startswith("python -m training evaluate")
    assert command == result


def test_evaluate_model_refuses_what_is_not_a_list_of_prompts(trained_gpt):
    from training.api import PromptFileError, evaluate_model

    with pytest.raises(ValueError, match="prompts: give a non-empty list of strings"):
        evaluate_model(trained_gpt, prompts=[], save=False)
    with pytest.raises(PromptFileError, match="no such file"):
        evaluate_model(trained_gpt, prompts="no-such-prompts.txt", save=False)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_model(trained_gpt, save=False)
