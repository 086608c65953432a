import json
import shutil

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
    assert config["training"]["command"] in card
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
