"""Dynamic evaluation: scored before learned from, equal to the static figure when it does not learn."""

import json
import shutil

import numpy as np
import pytest
import torch

from lm.models import build_model, family_of
from lm.tokenizers import train_tokenizer
from training.cli import main
from training.evaluation.dynamic_eval import DynamicOptions, dynamic_score
from training.evaluation.metrics import TokenStats

TEXT = ("KING:\nWhat says the river to the moon tonight?\nQUEEN:\nIt says the tide will turn before the dawn.\n" * 5)
SMALL = {
    "gpt": {"context_length": 24, "n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.1},
    "lstm": {"emb_size": 16, "hidden_size": 24, "n_layers": 2, "dropout": 0.2, "weight_drop": 0.3},
}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("char", TEXT)


@pytest.fixture(params=["gpt", "lstm"])
def model(request, tokenizer):
    torch.manual_seed(0)
    return build_model(request.param, {"vocab_size": tokenizer.vocab_size, **SMALL[request.param]}).eval()


def static(model, ids) -> TokenStats:
    stats = TokenStats(detailed=True)
    family_of(model).score_text(model, ids, stats.update, "cpu")
    return stats


def dynamic(model, ids, **options) -> TokenStats:
    return dynamic_score(model, ids, TokenStats(detailed=True), "cpu", DynamicOptions(**options),
                         train_ids=ids if options.get("rule") == "rms" else None)


def per_token(stats: TokenStats) -> np.ndarray:
    return np.concatenate(stats.nll_samples)


@pytest.mark.parametrize("rule", ["sgd", "rms"])
def test_with_learning_rate_zero_dynamic_equals_static(model, tokenizer, rule, monkeypatch):
    monkeypatch.setattr("training.evaluation.dynamic_eval.RMS_BATCHES", 2)  # the rms rule's gradient statistics: enough here
    ids = tokenizer.encode_corpus(TEXT)
    expected = static(model, ids)
    got = dynamic(model, ids, lr=0.0, rule=rule)
    assert got.count == expected.count == len(ids) - 1
    assert got.loss == pytest.approx(expected.loss, rel=1e-6)


def test_the_first_segment_is_scored_before_any_step_and_later_ones_after(model, tokenizer):
    ids = tokenizer.encode_corpus(TEXT)
    first_static = per_token(static(model, ids))
    adapted = dynamic(model, ids, lr=0.5)
    first = adapted.nll_samples[0]
    assert np.allclose(first, first_static[: len(first)], atol=1e-5)
    assert adapted.loss < static(model, ids).loss - 0.05  # it did learn from the text it read
    assert not np.allclose(per_token(adapted)[len(first):], first_static[len(first):], atol=1e-3)


def test_no_token_is_scored_by_weights_that_learned_from_it(model, tokenizer):
    """Two texts equal up to token m (in the middle of a segment), different after it: every target before m is
    scored the same, so nothing at or after m reached the weights (or the state) before it was scored."""
    ids = tokenizer.encode_corpus(TEXT)
    other = ids.copy()
    m = 24 + 24 // 2 // 2 if model.context_length else 3 * 32 + 7
    other[m:] = ids[::-1][: len(ids) - m]
    a, b = per_token(dynamic(model, ids, lr=0.5)), per_token(dynamic(model, other, lr=0.5))
    assert np.allclose(a[: m - 1], b[: m - 1], atol=1e-6)  # targets 1..m-1
    assert not np.allclose(a[m:], b[m:], atol=1e-3)


def test_the_model_given_is_left_as_it_was(model, tokenizer):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dynamic(model, tokenizer.encode_corpus(TEXT), lr=0.5, decay=0.01)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_decay_pulls_back_toward_the_trained_weights(model, tokenizer):
    ids = tokenizer.encode_corpus(TEXT)
    free, pulled = dynamic(model, ids, lr=0.1), dynamic(model, ids, lr=0.1, decay=0.5)
    assert free.loss != pulled.loss


@pytest.mark.parametrize("options, message", [
    ({"lr": -1.0}, "learning rate must be >= 0"),
    ({"decay": 1.0}, "decay must be in [0, 1)"),
    ({"rule": "adam"}, "rule must be one of sgd, rms"),
    ({"segment": 0}, "segment must be >= 1"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        DynamicOptions(**options)


def test_a_diverging_learning_rate_is_an_error_not_a_figure(tokenizer):
    from training.evaluation.dynamic_eval import dynamic_figures

    gpt = build_model("gpt", {"vocab_size": tokenizer.vocab_size, **SMALL["gpt"]})
    with pytest.raises(ValueError, match="diverged at lr 1e\\+30"):
        dynamic_figures(gpt, tokenizer.encode_corpus(TEXT), len(TEXT), "cpu", DynamicOptions(lr=1e30))


def test_a_gpt_segment_longer_than_its_context_is_refused(tokenizer):
    gpt = build_model("gpt", {"vocab_size": tokenizer.vocab_size, **SMALL["gpt"]})
    with pytest.raises(ValueError, match="longer than the context"):
        dynamic(gpt, tokenizer.encode_corpus(TEXT), segment=25)


@pytest.mark.parametrize("args, status", [
    (["--dynamic", "--dynamic-decay", "1.5"], 2),
    (["--dynamic", "--dynamic-lr", "-1"], 2),
    (["--dynamic", "--dynamic-segment", "0"], 2),
    (["--dynamic", "--dynamic-segment", "100000"], 1),
    (["--dynamic", "--split", "all"], 2),
])
def test_evaluate_dynamic_errors_are_one_line(trained_gpt, tmp_path, capsys, args, status):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    assert main(["evaluate", str(trained_gpt), "--data", str(text), "--output", str(tmp_path / "r.json"),
                 "--samples", "1", "--no-baselines", *args]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


@pytest.mark.slow
def test_evaluate_reports_dynamic_and_the_ladder_apart_from_the_static_figures(trained_gpt, tmp_path, capsys):
    model_dir = tmp_path / "m"
    shutil.copytree(trained_gpt, model_dir)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"ANNA:\nThe {w} sees the river {i % 7}.\n" for i, w in
                              enumerate(["cat", "king", "moon", "friend"] * 150)))
    common = ["evaluate", str(model_dir), "--data", str(corpus), "--split", "valid", "--samples", "1"]
    assert main([*common, "--output", str(tmp_path / "static.json")]) == 0
    assert main([*common, "--output", str(tmp_path / "dynamic.json"), "--dynamic", "--dynamic-lr", "0.01"]) == 0
    table = capsys.readouterr().out
    plain, both = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("static", "dynamic"))
    for key in ("loss", "bits_per_char", "tokens", "characters"):
        assert both[key] == pytest.approx(plain[key], rel=1e-9), key  # the static figures stay the static ones
    assert both["dynamic"]["rule"] == "sgd" and both["dynamic"]["lr"] == 0.01
    assert both["dynamic"]["tokens"] == both["tokens"] and both["dynamic"]["loss"] != both["loss"]
    assert "dynamic.bits_per_char" in table and "baseline ladder" in table
    names = [r["name"] for r in both["ladder"]["rungs"]]
    assert {"this model", "this model, dynamic evaluation", "xz -9", "bzip2 -9"} <= set(names)
    assert "this model, dynamic evaluation" not in [r["name"] for r in plain["ladder"]["rungs"]]
    assert (model_dir / "baselines.json").is_file() and both["ladder"]["cached"]  # the second run reused it
    whole = tmp_path / "whole.json"
    assert main(["evaluate", str(model_dir), "--data", str(corpus), "--samples", "1", "--output", str(whole)]) == 0
    assert "ladder" not in json.loads(whole.read_text())  # the whole text holds the baselines' training text
