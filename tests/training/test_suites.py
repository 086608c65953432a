"""`benchmark --benchmark-config SUITE`: suites validated with one-line errors naming the bad field, and a suite run
across two models giving one table whose figures are what the models do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lm import load, save_model_dir, train_tokenizer
from lm.models import build_model
from training.cli import EXIT_USAGE, main
from training.config import ConfigError
from training.data.synthetic import synthetic_text
from training.evaluation.suites import MEASURES, BenchmarkSuite

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"name": "tiny", "cases": [{"prompt": "ANNA:\n", "expected": "The"}, {"prompt": "B", "keywords": ["the"]}]}


def _suite_file(tmp_path: Path, raw) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _with(**changes) -> dict:
    return {**GOOD, **changes}


@pytest.mark.parametrize("raw, message", [
    (_with(measure=["speed"]), "measure: unknown field; allowed: name, description, measures, case_sensitive, "
                               "sampling, cases"),
    ({"cases": GOOD["cases"]}, "name: missing (required)"),
    (_with(cases=[]), "cases: List should have at least 1 item after validation, not 0"),
    (_with(cases=[{"prompt": "A", "keywords": ["x"]}, {"prompt": "B"}]),
     "cases[1]: give expected (a completion) or keywords (a list), or both"),
    (_with(cases=[{"prompt": "A", "keywords": ["x", ""]}]), "cases[0].keywords[1]: String should have at least 1"),
    (_with(cases=[{"prompt": "A", "expected": "x", "expect": "y"}]),
     "cases[0].expect: unknown field; allowed: name, prompt, expected, keywords"),
    (_with(cases=[{"expected": "x"}]), "cases[0].prompt: missing (required)"),
    (_with(cases=[{"prompt": 3, "expected": "x"}]), "cases[0].prompt: Input should be a valid string"),
    (_with(measures=["exact_match", "bleu"]), "measures[1]: Input should be 'exact_match', 'prefix_match', "),
    (_with(measures=["keyword_hits"], cases=[{"prompt": "A", "expected": "x"}]),
     "measures: keyword_hits needs a case with keywords; none has any"),
    (_with(measures=["prefix_match"], cases=[{"prompt": "A", "keywords": ["x"]}]),
     "measures: prefix_match needs a case with expected (a completion); none has one"),
    (_with(sampling={"temperature": -1}), "sampling.temperature: must be 0 or in [0.001, 100], got -1"),
    (_with(sampling={"top_p": 0}), "sampling.top_p: must be in (0, 1], got 0"),
    (_with(sampling={"num_samples": 0}), "sampling.num_samples: Input should be greater than or equal to 1"),
    (_with(sampling={"max_new_tokens": 0}), "sampling.max_new_tokens: Input should be greater than or equal to 1"),
    (_with(cases=[{"name": "a", "prompt": "A", "expected": "x"}, {"name": "a", "prompt": "B", "expected": "y"}]),
     "cases: names must differ; 'a' is used twice"),
    ("name: [unclosed\n", "invalid YAML (line 2)"),
    ("- just\n- a list\n", "expected a mapping with name, cases"),
])
def test_a_bad_suite_is_refused_naming_the_field(tmp_path, capsys, raw, message):
    path = _suite_file(tmp_path, raw)
    with pytest.raises(ConfigError) as error:
        BenchmarkSuite.from_yaml(path)
    assert str(error.value).startswith(f"{path}: {message}")
    assert "\n" not in str(error.value)
    # the command line: that line, exit status 2, before any model is read
    assert main(["benchmark", str(tmp_path / "no-such-model"), "--benchmark-config", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {message}") and err.count("\n") == 1


def test_a_missing_suite_file_is_one_line(tmp_path, capsys):
    assert main(["benchmark", "m", "--benchmark-config", str(tmp_path / "nope.yaml")]) == EXIT_USAGE
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope.yaml'}: no such file\n"


def test_the_shipped_suite_is_valid_and_runs_every_measure():
    suite = BenchmarkSuite.from_yaml(ROOT / "configs" / "benchmarks" / "shakespeare.yaml")
    assert suite.chosen_measures() == list(MEASURES)
    assert all(case.expected or case.keywords for case in suite.cases)


def test_without_measures_a_suite_runs_those_its_cases_allow():
    only_keywords = BenchmarkSuite.from_dict({"name": "k", "cases": [{"prompt": "A", "keywords": ["b"]}]})
    assert only_keywords.chosen_measures() == ["keyword_hits", "repetition", "speed"]
    assert BenchmarkSuite.from_dict(GOOD).chosen_measures() == list(MEASURES)


@pytest.fixture
def random_lstm(tmp_path) -> Path:
    """An untrained LSTM with its own char vocabulary: a second, different model for the table."""
    tokenizer = train_tokenizer("char", synthetic_text(4000))
    torch.manual_seed(0)
    model = build_model("lstm", {"vocab_size": tokenizer.vocab_size, "emb_size": 16, "hidden_size": 24,
                                 "n_layers": 1})
    return save_model_dir(tmp_path / "random-lstm", model, tokenizer, metadata={"metrics": {"val_loss": 3.0}})


def _expected_logprob_by_hand(model_dir: Path, prompt: str, expected: str) -> float:
    """log P(expected | prompt) from one forward pass of the model over the whole text (char tokenizer)."""
    generator = load(model_dir)
    ids = generator.tokenizer.encode(prompt + expected)
    with torch.no_grad():
        logits = generator.model(torch.tensor([ids])).logits[0]  # either family: one pass, from an empty state
    log_probs = logits.float().log_softmax(-1)
    start = len(generator.tokenizer.encode(prompt))
    return sum(float(log_probs[i - 1, ids[i]]) for i in range(start, len(ids)))


@pytest.mark.slow
def test_a_suite_across_two_models_gives_one_table(tmp_path, trained_gpt, random_lstm, capsys):
    gpt = load(trained_gpt)
    known = gpt.generate("ANNA:\n", max_new_tokens=12, temperature=0.0, stop_at_eos=False).text
    suite = {
        "name": "tiny",
        "sampling": {"num_samples": 3, "max_new_tokens": 16, "temperature": 0.9, "seed": 5},
        "cases": [
            {"name": "own-words", "prompt": "ANNA:\n", "expected": known[:8]},  # the GPT's own greedy text
            {"name": "half-right", "prompt": "ANNA:\n", "expected": known[:4] + "\u00a7\u00a7"},
            {"name": "speech", "prompt": "BORIS:\n", "keywords": ["the", "zzz"]},
        ],
    }
    path = _suite_file(tmp_path, suite)
    output = tmp_path / "suite.json"
    args = ["benchmark", str(trained_gpt), str(random_lstm), "--benchmark-config", str(path), "--output", str(output)]
    assert main(args) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0] == f"| measure | {trained_gpt.name} | random-lstm |" and table[1] == "| --- | ---: | ---: |"
    labels = [line.split(" | ")[0].removeprefix("| ") for line in table[2:]]
    assert labels == ["type", "parameters", "exact match (greedy)", "prefix match (greedy)",
                      "expected completion, nats/char", "keyword hit rate (sampled)", "repetition (sampled, 4-grams)",
                      "distinct-2 (sampled)", "tokens/s at batch 1", "own-words: prefix match", "own-words: nats/char",
                      "half-right: prefix match", "half-right: nats/char", "speech: keyword hits"]
    assert all(len(line.split(" | ")) == 3 for line in table)  # a cell for each model on every row

    result = json.loads(output.read_text())
    assert [m["model"] for m in result["models"]] == [trained_gpt.name, "random-lstm"]
    gpt_figures, lstm_figures = result["models"]
    own, half, speech = gpt_figures["cases"]
    assert own["exact_match"] == 1.0 and own["prefix_match"] == 1.0
    assert half["exact_match"] == 0.0 and half["prefix_match"] == pytest.approx(4 / 6)
    assert gpt_figures["summary"]["exact_match"] == pytest.approx(0.5)
    assert gpt_figures["summary"]["prefix_match"] == pytest.approx((1 + 4 / 6) / 2)
    assert "| exact match (greedy) | **0.500** | 0.000 |" in table
    # the log-probability of the expected completion is the models' own, whatever their family
    for model_dir, figures in ((trained_gpt, gpt_figures), (random_lstm, lstm_figures)):
        case = figures["cases"][0]
        assert case["expected_logprob"] == pytest.approx(_expected_logprob_by_hand(model_dir, "ANNA:\n", known[:8]),
                                                         abs=1e-4)
        assert case["expected_nats_per_char"] == pytest.approx(-case["expected_logprob"] / 8)
    assert own["expected_nats_per_char"] < lstm_figures["cases"][0]["expected_nats_per_char"]
    # keyword hits: the share of keywords in each saved sample, averaged ("zzz" never occurs)
    samples = speech["samples"]
    assert len(samples) == 3
    assert speech["keyword_hits"] == pytest.approx(sum(("the" in s.lower()) / 2 for s in samples) / 3)
    assert speech["keyword_hits"] <= 0.5
    assert 0 <= gpt_figures["summary"]["repetition_rate"] <= 1 and gpt_figures["summary"]["tokens_per_second"] > 0

    # seeded: a second run gives the same figures (speed apart)
    assert main(args) == 0
    capsys.readouterr()
    again = json.loads(output.read_text())
    for first, second in zip(result["models"], again["models"]):
        assert first["cases"] == second["cases"]
        assert {k: v for k, v in first["summary"].items() if k not in ("tokens_per_second", "speed")} == \
            {k: v for k, v in second["summary"].items() if k not in ("tokens_per_second", "speed")}


def test_the_table_bolds_the_best_of_a_row_but_not_a_tie():
    from training.evaluation.suites import _cells

    assert _cells([0.5, 0.25, None], min) == ["0.500", "**0.250**", "-"]
    assert _cells([0.5, 0.25], max) == ["**0.500**", "0.250"]
    assert _cells([(1 / 3 + 2 / 3 + 1 / 3) / 3, (2 / 3 + 1 / 3 + 1 / 3) / 3], max) == ["0.444", "0.444"]  # a tie
    assert _cells([1234.5, 99.0], max) == ["**1,234**", "99.000"]
