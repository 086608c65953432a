"""Ensembles: the mixture maths, agreement with `evaluate`, and the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lm.checkpoint import EVALUATION_FILE, EVALUATIONS_DIR, load_model_dir, save_model_dir
from lm.models import build_model
from lm.tokenizers import train_tokenizer
from training.cli import main
from training.evaluation.ensemble import evaluate_ensemble, mixture_log_probs
from training.evaluation.evaluate import evaluate_model

TEXT = "BORIS:\nThe old king fears the river. My friend calls the garden!\n\n" * 30


def test_mixture_is_the_weighted_mean_of_the_probabilities():
    log_probs = torch.tensor([[0.5, 0.2], [0.1, 0.4]], dtype=torch.float64).log()
    assert torch.allclose(mixture_log_probs(log_probs).exp(), torch.tensor([0.3, 0.3], dtype=torch.float64))
    weighted = mixture_log_probs(log_probs, [3.0, 1.0]).exp()
    assert torch.allclose(weighted, torch.tensor([0.4, 0.25], dtype=torch.float64))
    assert torch.allclose(mixture_log_probs(log_probs, [0.0, 2.0]), log_probs[1])
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0], [1.0, math.nan]):
        with pytest.raises(ValueError, match="ensemble weights"):
            mixture_log_probs(log_probs, bad)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "eval.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture
def lstm_like(tmp_path, trained_gpt):
    """A random-weight LSTM sharing the trained GPT's tokenizer."""
    tokenizer = load_model_dir(trained_gpt).tokenizer
    torch.manual_seed(3)
    model = build_model("lstm", {"vocab_size": tokenizer.vocab_size, "emb_size": 16, "hidden_size": 24,
                                 "n_layers": 1, "mogrifier_rounds": 2})
    path = tmp_path / "lstm"
    save_model_dir(path, model, tokenizer, metadata={})
    return path


@pytest.mark.slow
def test_a_model_with_itself_scores_as_evaluate_does(trained_gpt, text_file):
    result = evaluate_ensemble([str(trained_gpt), str(trained_gpt)], str(text_file))
    alone = evaluate_model(str(trained_gpt), str(text_file), samples=1, sample_tokens=4)
    assert result["tokens"] == alone["tokens"] and result["characters"] == alone["characters"]
    for figures in (*result["models"], result["ensemble"]):
        assert figures["loss"] == pytest.approx(alone["loss"], abs=1e-9)
        assert figures["bits_per_char"] == pytest.approx(alone["bits_per_char"], abs=1e-9)


@pytest.mark.slow
def test_a_gpt_and_an_lstm_mix_token_by_token(trained_gpt, lstm_like, text_file):
    result = evaluate_ensemble([str(trained_gpt), str(lstm_like)], str(text_file), weights=[2.0, 1.0])
    gpt, lstm = (m["loss"] for m in result["models"])
    assert gpt < lstm  # trained against random weights
    # log of a mean >= mean of the logs: the mixture is never worse than the weighted mean of the losses
    assert result["ensemble"]["loss"] <= (2 * gpt + lstm) / 3 + 1e-9
    assert result["ensemble"]["loss"] > gpt - 0.5  # and no free lunch from a random model
    assert result["weights"] == [2.0, 1.0]


@pytest.mark.slow
def test_command_line_ensemble_and_its_errors(tmp_path, trained_gpt, lstm_like, text_file, capsys):
    out = tmp_path / "ensemble.json"
    assert main(["evaluate", str(trained_gpt), "--data", str(text_file), "--ensemble", str(lstm_like),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ensemble (mean probability)" in printed and "nats/char" in printed
    saved = json.loads(out.read_text())
    assert len(saved["models"]) == 2 and saved["command"].startswith("python -m training evaluate")
    # an ensemble's figures never replace the model's own
    written = [trained_gpt / EVALUATION_FILE, *(trained_gpt / EVALUATIONS_DIR).glob("*.json")]
    assert not any(path.exists() and '"ensemble"' in path.read_text() for path in written)

    assert main(["evaluate", str(trained_gpt), "--data", str(text_file), "--ensemble", str(lstm_like),
                 "--ensemble-weights", "1"]) == 2
    assert "expected 2 weights" in capsys.readouterr().err
    for flags, named in ((["--split", "all"], "--split all"), (["--quantize", "int8"], "--quantize"),
                         (["--dynamic"], "--dynamic")):
        assert main(["evaluate", str(trained_gpt), "--data", str(text_file), "--ensemble", str(lstm_like),
                     *flags]) == 2
        err = capsys.readouterr().err
        assert f"drop {named}" in err and len(err.strip().splitlines()) == 1

    other = tmp_path / "other"
    tokenizer = train_tokenizer("char", "abcdefghij" * 3)
    save_model_dir(other, build_model("gpt", {"vocab_size": tokenizer.vocab_size, "n_layer": 1, "n_embd": 8,
                                              "n_head": 2}), tokenizer, metadata={})
    assert main(["evaluate", str(trained_gpt), "--data", str(text_file), "--ensemble", str(other)]) == 1
    err = capsys.readouterr().err
    assert "tokenizer differs" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
