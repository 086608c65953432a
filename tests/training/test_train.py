"""Short training runs of both model families, the NaN stop, fine-tuning, and the evaluate / generate / benchmark
commands on a trained model."""

from __future__ import annotations

import json
import math

import pytest

from tests.third_family import bigram_registered  # noqa: F401  (a fixture)
from tests.training.conftest import assert_servable, run_cli, tiny_config, write_config
from training.card import render_card
from training.cli import main
from training.config import config_from_dict
from training.evaluation.evaluate import evaluate_model
from training import resume
from training.trainer import RunOptions, Trainer, TrainingError, train

COMMANDS = ("train", "sweep", "evaluate", "benchmark", "prepare-data", "train-tokenizer", "generate", "card")


@pytest.mark.parametrize("command", ("",) + COMMANDS)
def test_help_of_every_command(command):
    result = run_cli(*([command] if command else []), "--help", timeout=60)
    assert result.returncode == 0 and "usage:" in result.stdout and result.stderr == ""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_short_run_beats_the_unigram_baseline(tmp_path, kind):
    extra = {"variable_bptt": True, "alpha": 1.0, "beta": 1.0, "grad_clip": 0.5} if kind == "lstm" else {}
    config = config_from_dict(tiny_config(kind, max_steps=60, eval_interval=20, **extra), f"{kind}.yaml")
    out = tmp_path / kind
    result = train(config, RunOptions(output=out, progress=False, command="pytest"))
    assert result.steps == 60 and result.stop_reason == "max_steps"
    assert result.best_val_loss < result.unigram_val_loss - 0.3

    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == kind
    metrics = saved["metrics"]
    assert abs(metrics["val_loss"] - result.best_val_loss) < 1e-9
    assert abs(metrics["val_perplexity"] - math.exp(metrics["val_loss"])) < 1e-6
    training = saved["training"]
    assert training["steps"] == 60 and training["finished"] and training["preset"] == f"test-{kind}"
    assert training["data"]["source"] == "synthetic" and "hardware" in training and training["command"] == "pytest"
    assert (out / "train_config.yaml").is_file() and (out / "training_curve.png").stat().st_size > 1000
    assert (out / "resume" / "state.safetensors").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "train_loss", "lr", "tokens_per_second", "elapsed"} <= set(rows[0])
    evals = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in evals] == [20, 40, 60] and all("val_perplexity" in r for r in evals)
    assert_servable(out, "ANNA:")  # as it is, straight from the trainer


@pytest.mark.slow
def test_ntasgd_and_plateau_run(tmp_path):
    config = config_from_dict(
        tiny_config("lstm", optimizer="ntasgd", lr=20.0, grad_clip=0.25, schedule="plateau", warmup_steps=0,
                    nonmono=1, max_steps=40, eval_interval=5, patience=6, variable_bptt=True), "ntasgd.yaml")
    trainer = Trainer(config, RunOptions(output=tmp_path / "awd", progress=False))
    result = trainer.run()
    assert math.isfinite(result.best_val_loss) and result.best_val_loss < result.unigram_val_loss
    assert trainer.ntasgd.active  # validation stalled at some point, so the averaging began
    tensors, meta = resume.load(tmp_path / "awd")
    assert meta["ntasgd_started_at"] == trainer.ntasgd.started_at and any(k.startswith("averaged.") for k in tensors)


@pytest.mark.slow
@pytest.mark.timeout(900)  # several subprocesses; slow when the machine is shared
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    path = write_config(tmp_path / "sgd.yaml", tiny_config("gpt", optimizer="sgd", lr=0.5, warmup_steps=0))
    out = tmp_path / "run"
    first = run_cli("train", "--config", str(path), "--output", str(out), "--max-steps", "10", "--quiet")
    assert first.returncode == 0, first.stderr
    weights = (out / "model.safetensors").read_bytes()
    second = run_cli("train", "--config", str(path), "--output", str(out), "--resume", "--max-steps", "30", "--quiet",
                     "--set", "training.lr=1e30", "--set", "training.grad_clip=0")
    assert second.returncode == 1
    assert "diverged" in second.stderr and second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    assert (out / "model.safetensors").read_bytes() == weights
    assert_servable(out)


def test_nan_check_in_process(tmp_path):
    config = config_from_dict(tiny_config("gpt", optimizer="sgd", lr=1e30, grad_clip=0.0, warmup_steps=0,
                                          max_steps=20, eval_interval=50), "nan.yaml")
    with pytest.raises(TrainingError, match="diverged.*no checkpoint was saved"):
        train(config, RunOptions(output=tmp_path / "nan", progress=False))


@pytest.mark.slow
def test_init_from_fine_tunes_keeping_the_tokenizer(tmp_path, trained_gpt):
    text = tmp_path / "new.txt"
    text.write_text("ANNA:\nThe cat sees the moon.\n\n" * 300)
    config = config_from_dict(tiny_config("gpt", max_steps=10, eval_interval=10), "ft.yaml")
    out = tmp_path / "ft"
    train(config, RunOptions(output=out, data=str(text), init_from=str(trained_gpt), progress=False))
    assert (out / "tokenizer.json").read_text() == (trained_gpt / "tokenizer.json").read_text()
    assert json.loads((out / "config.json").read_text())["training"]["init_from"] == str(trained_gpt)


@pytest.mark.slow
def test_evaluate_figures_are_consistent(tmp_path, trained_gpt, capsys):
    text = tmp_path / "eval.txt"
    text.write_text("BORIS:\nThe old king fears the river. My friend calls the garden!\n\n" * 40)
    results = tmp_path / "results.json"
    code = main(["evaluate", str(trained_gpt), "--data", str(text), "--output", str(results),
                 "--plots", str(tmp_path / "plots"), "--samples", "2"])
    assert code == 0
    r = json.loads(results.read_text())
    assert abs(r["perplexity"] - math.exp(r["loss"])) < 1e-6 * r["perplexity"]
    assert abs(r["bits_per_char"] - r["loss"] * r["tokens"] / (r["characters"] * math.log(2))) < 1e-9
    assert r["characters"] == len(text.read_text()) and r["tokens"] == r["characters"] - 1  # char model, whole file
    for key in ("loss_std", "avg_top_token_prob", "avg_entropy", "low_confidence_ratio", "ece"):
        assert 0 <= r[key] < 10
    assert {"distinct_1", "distinct_2", "repetition_rate"} <= set(r["generation"])
    assert {p.name for p in (tmp_path / "plots").iterdir()} >= {"calibration.png", "loss_histogram.png"}
    assert "bits_per_char" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_split_uses_the_training_split(tmp_path, trained_gpt):
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i}\n" for i in range(500)))
    whole = tmp_path / "whole.json"
    valid = tmp_path / "valid.json"
    assert main(["evaluate", str(trained_gpt), "--data", str(text), "--output", str(whole), "--samples", "1"]) == 0
    assert main(["evaluate", str(trained_gpt), "--data", str(text), "--split", "valid", "--output", str(valid),
                 "--samples", "1"]) == 0
    n = len(text.read_text())
    assert json.loads(whole.read_text())["characters"] == n
    assert json.loads(valid.read_text())["characters"] == int(n * 1.0) - int(n * 0.8)  # the tiny config's 80/20


@pytest.mark.slow
def test_generate_streams_and_benchmark_compares(tmp_path, trained_gpt, capsys):
    assert main(["generate", str(trained_gpt), "--prompt", "ANNA:", "--max-new-tokens", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("ANNA:")
    output = tmp_path / "comparison.json"
    assert main(["benchmark", str(trained_gpt), str(trained_gpt), "--new-tokens", "8", "--output", str(output)]) == 0
    models = json.loads(output.read_text())["models"]
    assert len(models) == 2 and models[0]["consistency"]["same_seed_identical"]
    assert set(models[0]["speed"]) == {"batch_1", "batch_4", "batch_8"}
    assert {"completion", "repetition"} <= set(models[0])


def test_bad_model_dir_is_one_line(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_train_tokenizer_command(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello there, general kenobi.\n" * 20)
    out = tmp_path / "tok.json"
    assert main(["train-tokenizer", "--data", str(text), "--kind", "word", "--output", str(out)]) == 0
    from lm.tokenizers import Tokenizer

    tok = Tokenizer.from_file(out)
    assert tok.kind == "word" and tok.decode(tok.encode("hello there.")) == "hello there."


def test_missing_optional_tracker_is_only_a_note(tmp_path, capsys):
    config = config_from_dict(tiny_config("gpt", max_steps=4, eval_interval=4, loggers=["wandb"]), "t.yaml")
    try:
        import wandb  # noqa: F401

        pytest.skip("wandb is installed here")
    except ImportError:
        pass
    train(config, RunOptions(output=tmp_path / "run", progress=False))
    assert "wandb, which is not installed" in capsys.readouterr().err
    assert (tmp_path / "run" / "config.json").is_file()


def test_generation_options_are_checked_on_the_command_line(tmp_path, capsys):
    assert main(["generate", str(tmp_path), "--top-p", "2"]) == 2  # refused before any model is read
    err = capsys.readouterr().err
    assert "--top-p: must be in (0, 1]" in err and err.count("\n") == 1


def test_a_third_family_trains_evaluates_and_gets_a_card_from_its_registration_alone(tmp_path, bigram_registered):
    raw = tiny_config("gpt", max_steps=20, eval_interval=10, lr=0.3, warmup_steps=0)
    raw["model"] = {"type": bigram_registered.name}
    out = tmp_path / "bigram"
    result = train(config_from_dict(raw, "bigram.yaml"), RunOptions(output=out, progress=False))
    assert result.steps == 20 and result.best_val_loss < result.unigram_val_loss  # it learned which letter follows
    text = tmp_path / "eval.txt"
    text.write_text("The cat sees the moon.\n" * 20)
    figures = evaluate_model(str(out), str(text), samples=1, sample_tokens=5)
    assert figures["tokens"] == len(text.read_text()) - 1
    assert "bigram table" in render_card(out)
