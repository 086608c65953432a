import json
import re
import shutil

from lm.paths import without_paths

from training.card import render_card, write_card

from .conftest import run_cli


def test_card_is_written_from_what_the_directory_records(trained_gpt, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(trained_gpt, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    evaluation = {"command": "python -m training evaluate m --data valid.txt", "data": "valid.txt", "loss": 1.25,
                  "tokens": 1000, "characters": 1000, "bits_per_char": 1.8034, "perplexity": 3.49,
                  "avg_top_token_prob": 0.5, "ece": 0.02}
    (model_dir / "evaluation.json").write_text(json.dumps(evaluation))
    card = (write_card(model_dir)).read_text()
    assert card.startswith("# ")
    assert f"{config['parameters']:,} parameters" in card
    assert without_paths(config["training"]["command"]) in card
    assert re.search(r"(?<![\w.:/])/(tmp|home|work|root|Users)/", card) is None  # no path of this machine
    assert "| bits per character | 1.8034 |" in card
    assert card.count("temperature=0.8") == 3  # three samples, each with its settings
    assert "## Known limits" in card


def test_card_without_an_evaluation_points_to_the_evaluate_command(trained_gpt):
    assert "python -m training evaluate" in render_card(trained_gpt)


def test_card_command_line(trained_gpt, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(trained_gpt, model_dir)
    result = run_cli("card", str(model_dir))
    assert result.returncode == 0, result.stderr
    assert (model_dir / "card.md").is_file()
    missing = run_cli("card", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1


def test_card_shows_the_ladder_and_the_dynamic_figure_apart(trained_gpt, tmp_path):
    from training.evaluation.ladder import build_ladder

    model_dir = tmp_path / "m"
    shutil.copytree(trained_gpt, model_dir)
    rungs = [{"name": "character 6-gram (Kneser-Ney)", "kind": "ngram", "bits_per_char": 2.2, "nats_per_char": 1.525,
              "detail": "order 6 chosen on the training text"},
             {"name": "unigram (characters)", "kind": "unigram_chars", "bits_per_char": 4.8, "nats_per_char": 3.327,
              "detail": "no context"}]
    evaluation = {"command": "python -m training evaluate m --data t.txt --split valid", "data": "t.txt", "loss": 1.4,
                  "tokens": 1000, "characters": 1000, "bits_per_char": 2.0198, "perplexity": 4.06,
                  "avg_top_token_prob": 0.5, "ece": 0.02,
                  "dynamic": {"method": "dynamic evaluation (Krause et al. 2017), sgd rule", "lr": 0.03, "decay": 0.0,
                              "segment": 64, "bits_per_char": 1.9477, "nats_per_char": 1.35},
                  "ladder": build_ladder({"rungs": rungs}, 1.4, dynamic_nats_per_char=1.35)}
    (model_dir / "evaluation.json").write_text(json.dumps(evaluation))
    card = render_card(model_dir)
    assert "### On the baseline ladder" in card
    assert "Beats the character 6-gram (Kneser-Ney) by 0.18 bits/char" in card
    assert "| **this model** | **2.0198** |" in card and "| character 6-gram (Kneser-Ney) | 2.2000 |" in card
    assert card.index("this model, dynamic evaluation") < card.index("| **this model** |")  # best first
    assert "**1.9477 bits/char**" in card and "| bits per character | 2.0198 |" in card
