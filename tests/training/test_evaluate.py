"""`evaluate`: `--split all` (the train, validation and test figures in one table and one JSON), and results kept
per data set so that the model's own validation figures stay."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from tests.training.conftest import tiny_config
from training.card import render_card
from training.cli import main

TEXT = "".join(f"line {i}: the old king fears the river.\n" for i in range(120))


def _with_recorded_split(trained_gpt, tmp_path, fractions):
    """A copy of the tiny model whose training run is recorded as having cut its data by `fractions`."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained_gpt, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["training"]["config"]["data"]["split"] = fractions
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir


@pytest.mark.slow
def test_split_all_reports_the_three_parts_and_matches_single_splits(tmp_path, trained_gpt, capsys):
    model_dir = _with_recorded_split(trained_gpt, tmp_path, [0.6, 0.25, 0.15])
    data = tmp_path / "corpus.txt"
    data.write_text(TEXT)
    every, valid = tmp_path / "all.json", tmp_path / "valid.json"
    assert main(["evaluate", str(model_dir), "--data", str(data), "--split", "valid", "--output", str(valid),
                 "--samples", "1"]) == 0
    capsys.readouterr()
    args = ["evaluate", str(model_dir), "--data", str(data), "--split", "all", "--output", str(every),
            "--samples", "1", "--plots", str(tmp_path / "plots")]
    assert main(args) == 0
    table = capsys.readouterr().out
    result = json.loads(every.read_text())
    splits = result["splits"]
    assert list(splits) == ["train", "valid", "test"]
    n = len(TEXT)
    assert [splits[s]["characters"] for s in splits] == [int(n * 0.6), int(n * 0.85) - int(n * 0.6),
                                                         int(n * 1.0) - int(n * 0.85)]
    single = json.loads(valid.read_text())
    assert splits["valid"]["loss"] == pytest.approx(single["loss"], rel=1e-9)
    assert splits["valid"]["tokens"] == single["tokens"]
    assert splits["train"]["loss"] != splits["test"]["loss"]
    assert "train, valid and test splits" in result["data"]
    assert result["command"] == "python -m training " + shlex.join(args)
    header = next(line for line in table.splitlines() if line.split() == ["train", "valid", "test"])
    loss_row = next(line for line in table.splitlines() if line.split()[0] == "loss").split()
    assert header and [float(x) for x in loss_row[1:]] == [round(splits[s]["loss"], 4) for s in splits]
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"train", "valid", "test"}
    assert (tmp_path / "plots" / "test" / "calibration.png").is_file()


@pytest.mark.slow
def test_split_all_says_a_split_is_empty_instead_of_showing_zero(tmp_path, trained_gpt, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text(TEXT)
    output = tmp_path / "all.json"
    # the tiny model trained on an 80/20 split: no test part
    assert main(["evaluate", str(trained_gpt), "--data", str(data), "--split", "all", "--output", str(output),
                 "--samples", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    splits = json.loads(output.read_text())["splits"]
    assert splits["test"] == {"empty": True}
    assert splits["train"]["characters"] == int(len(TEXT) * 0.8) and splits["valid"]["characters"] > 0
    rows = [line.split() for line in table if line.startswith("  ") and line.split()[0] != "train"]
    assert rows and all(row[-1] == "empty" for row in rows)  # the test column, every row
    assert not any(row[-1] in ("0", "0.0000") for row in rows)
    # the model card shows the three columns, the empty one as empty
    model_dir = tmp_path / "model"
    shutil.copytree(trained_gpt, model_dir)
    shutil.copy(output, model_dir / "evaluation.json")
    card = render_card(model_dir)
    assert "| figure | train | valid | test |" in card
    train_loss, valid_loss = splits["train"]["loss"], splits["valid"]["loss"]
    assert f"| loss | {train_loss:.4f} nats/token | {valid_loss:.4f} nats/token | empty |" in card


@pytest.mark.slow
def test_evaluating_other_texts_keeps_the_models_own_validation_figures(tmp_path, capsys):
    """Results are kept per data set and split; the card and the app's model page keep the model's own validation
    figures whatever else it is evaluated on, and a different text with the same name never replaces them."""
    from app import create_app
    from training.config import config_from_dict
    from training.trainer import RunOptions, train

    own, same_name, other = tmp_path / "a" / "book.txt", tmp_path / "b" / "book.txt", tmp_path / "poems.txt"
    for path, text in ((own, TEXT), (same_name, TEXT.replace("king", "queen")), (other, "roses are red\n" * 80)):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    model_dir = tmp_path / "models" / "tiny"
    config = config_from_dict(tiny_config("gpt", max_steps=10, eval_interval=10), "tiny.yaml")
    train(config, RunOptions(output=model_dir, data=str(own), progress=False, command="test"))

    def evaluate(data: Path, *split: str) -> dict:
        assert main(["evaluate", str(model_dir), "--data", str(data), *split, "--samples", "1"]) == 0
        shown = capsys.readouterr()
        assert shown.err.startswith("read 1 file, ")  # what was read, on stderr
        written = Path(shown.out.strip().splitlines()[-1].removeprefix("written to "))
        return {"file": written.relative_to(model_dir).as_posix(), **json.loads(written.read_text())}

    mine = evaluate(own, "--split", "valid")
    assert mine["file"] == "evaluations/book-valid.json" and mine["own_validation"] is True
    poems = evaluate(other)
    assert poems["file"] == "evaluations/poems-whole.json" and poems["own_data"] is False
    twin = evaluate(same_name, "--split", "valid")
    assert twin["file"].startswith("evaluations/book-") and twin["file"] != "evaluations/book-valid.json"
    assert twin["own_validation"] is False
    int8 = evaluate(own, "--split", "valid", "--quantize", "int8", "--no-baselines")
    assert int8["file"] == "evaluations/book-int8-valid.json" and int8["own_validation"] is False
    assert json.loads((model_dir / "evaluations" / "book-valid.json").read_text())["loss"] == mine["loss"]
    assert not (model_dir / "evaluation.json").exists()

    card = render_card(model_dir)
    figures = card[card.index("## How good it is"): card.index("## Samples")]
    assert f"| loss | {mine['loss']:.4f} nats/token |" in figures and "` on book.txt (valid split" in figures
    assert str(tmp_path) not in card  # the card names files, not this machine's folders
    assert f"{poems['bits_per_char']:.4f} bits/char (`evaluations/poems-whole.json`)" in figures
    assert f"{twin['bits_per_char']:.4f} bits/char (`{twin['file']}`)" in figures
    assert f"{int8['bits_per_char']:.4f} bits/char (`evaluations/book-int8-valid.json`)" in figures

    (model_dir / "card.md").write_text(card)
    app = create_app({"TESTING": True, "MODEL_DIR": str(model_dir.parent)})
    page = app.test_client().get("/models/tiny").get_data(as_text=True)
    # the card, rendered as HTML, and the ladder: the model's own validation figures
    assert f"<td>loss</td>\n<td>{mine['loss']:.4f} nats/token</td>" in page
    assert f"<td><strong>{mine['bits_per_char']:.4f}</strong></td>" in page
