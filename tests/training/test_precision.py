"""`training.precision: auto` decided by measurement, the warning for a forced slow bf16, model FLOPs per token
and utilisation in the training record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lm.models import build_model
from lm.precision import MatmulProbe
from tests.training.conftest import tiny_config
from training import hardware
from training.config import config_from_dict, load_config
from training.hardware import resolve_precision
from training.step_trial import StepTrial, measure_step_speedup
from training.trainer import RunOptions, train

ROOT = Path(__file__).resolve().parents[2]
CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda", 0), torch.device("mps")


def probe_with(tmp_path: Path, bf16_speedup: float) -> MatmulProbe:
    def measure(precisions, width, rows, device, autocast):
        return {p: 1e11 * (bf16_speedup if p == "bf16" else 1.0) for p in precisions}

    return MatmulProbe(tmp_path / f"probe-{bf16_speedup}.json", measure=measure)


def test_auto_picks_bf16_on_a_cpu_that_multiplies_faster_in_it(tmp_path):
    choice = resolve_precision("auto", CPU, 192, probe_with(tmp_path, 3.1))
    assert choice.precision == "bf16" and not choice.grad_scaler and choice.warning is None
    assert "3.1x" in choice.reason and choice.speedup == pytest.approx(3.1)


def test_auto_stays_fp32_where_bf16_is_emulated(tmp_path):
    choice = resolve_precision("auto", CPU, 192, probe_with(tmp_path, 1 / 200))
    assert choice.precision == "fp32" and choice.warning is None


def test_utilisation_of_an_emulated_bf16_is_measured_against_fp32s_peak(tmp_path):
    # emulated bf16 multiplies 200x slower: its own "peak" would put a step's utilisation far above 100%
    assert hardware.peak_flops(CPU, "bf16", probe_with(tmp_path, 1 / 200)) == pytest.approx(1e11)
    assert hardware.peak_flops(CPU, "bf16", probe_with(tmp_path, 3.0)) == pytest.approx(3e11)
    assert hardware.peak_flops(CPU, "fp32", probe_with(tmp_path, 3.0)) == pytest.approx(1e11)


def test_cuda_uses_bf16_where_supported_else_fp16_with_a_scaler():
    assert resolve_precision("auto", CUDA, 192, cuda_bf16=True).precision == "bf16"
    fp16 = resolve_precision("auto", CUDA, 192, cuda_bf16=False)
    assert fp16.precision == "fp16" and fp16.grad_scaler


def test_mps_trains_in_fp32():
    assert resolve_precision("auto", MPS, 192).precision == "fp32"
    with pytest.raises(ValueError, match="mps"):
        resolve_precision("bf16", MPS, 192)


def test_forced_precisions_are_kept_and_a_slow_bf16_is_warned_about(tmp_path):
    assert resolve_precision("fp32", CPU, 192, probe_with(tmp_path, 3.0)).precision == "fp32"
    slow = resolve_precision("bf16", CPU, 192, probe_with(tmp_path, 1 / 14.2))
    assert slow.precision == "bf16"
    assert slow.warning.startswith("warning: training.precision bf16 is 14.2x slower than fp32")
    assert "auto" in slow.warning and "\n" not in slow.warning
    assert resolve_precision("bf16", CPU, 192, probe_with(tmp_path, 2.0)).warning is None
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", CPU, 192, probe_with(tmp_path, 2.0))
    with pytest.raises(ValueError, match="must be auto, fp32, bf16 or fp16"):
        resolve_precision("fp8", CPU, 192)


def test_every_preset_uses_auto_or_says_why_not():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        config = load_config(path)
        if config.training.precision != "auto":
            line = next(line for line in path.read_text().splitlines() if line.strip().startswith("precision:"))
            assert "#" in line, f"{path.name}: precision {config.training.precision} without a reason"


def test_flops_per_token_of_a_tiny_gpt_by_hand():
    model = build_model("gpt", {"vocab_size": 10, "context_length": 4, "n_layer": 1, "n_head": 2, "n_embd": 8})
    # per layer qkv 3*8*8 + proj 8*8 + fc 4*8*8 + mlp proj 8*4*8 = 768 weights; the tied head 10*8 = 80
    # 6 per weight, plus attention 12 * layers * width * seq_len = 12 * 1 * 8 * 4
    assert model.training_flops_per_token(4) == 6 * (768 + 80) + 12 * 1 * 8 * 4


def test_flops_per_token_of_a_tiny_lstm_by_hand():
    model = build_model("lstm", {"vocab_size": 10, "emb_size": 8, "hidden_size": 12, "n_layers": 2})
    # layer 0: 8 -> 12, gates 4*12 x (8 + 12); layer 1: 12 -> 8 (tied to the embedding), 4*8 x (12 + 8)
    # decoder 10 x 8
    assert model.training_flops_per_token(50) == 6 * (48 * 20 + 32 * 20 + 80)


@pytest.mark.parametrize("options,per_layer", [
    ({"mlp": "relu2"}, 768),  # the same matrices as GELU
    ({"qk_norm": True}, 768),  # the norm's gains are element-wise
    # SwiGLU: hidden width ceil(8 * 8 / 24 / 8) * 8 = 24; fc 8 -> 2 * 24 (gate and value), proj 24 -> 8
    ({"mlp": "swiglu"}, 3 * 8 * 8 + 8 * 8 + 8 * 48 + 24 * 8),
])
def test_flops_per_token_of_the_gpt_options_by_hand(options, per_layer):
    model = build_model("gpt", {"vocab_size": 10, "context_length": 4, "n_layer": 1, "n_head": 2, "n_embd": 8,
                                **options})
    assert model.training_flops_per_token(4) == 6 * (per_layer + 80) + 12 * 1 * 8 * 4


@pytest.mark.parametrize("options,mogrifier", [
    # full rank, 3 rounds per layer (Q: hidden -> input, R: input -> hidden, Q): layer 0 is 8 <-> 12 and
    # layer 1 is 12 <-> 8, so every matrix has 96 weights
    ({"mogrifier_rounds": 3}, 2 * 3 * 96),
    # rank 2, 2 rounds: each matrix is two factors, (12 x 2 + 2 x 8) = 40 weights
    ({"mogrifier_rounds": 2, "mogrifier_rank": 2}, 2 * 2 * 40),
])
def test_flops_per_token_of_a_mogrifier_lstm_by_hand(options, mogrifier):
    model = build_model("lstm", {"vocab_size": 10, "emb_size": 8, "hidden_size": 12, "n_layers": 2, **options})
    # each Mogrifier matrix multiplies once per token, like the gates
    assert model.training_flops_per_token(50) == 6 * (48 * 20 + 32 * 20 + 80 + mogrifier)


@pytest.mark.slow
def test_the_record_says_what_ran_and_utilisation_is_logged(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hardware, "default_probe", lambda: probe_with(tmp_path, 1 / 20))
    config = config_from_dict(tiny_config("gpt", precision="bf16", max_steps=10, eval_interval=10, log_interval=5),
                              "tiny.yaml")
    out = tmp_path / "run"
    train(config, RunOptions(output=out, progress=False, command="pytest"))
    assert "warning: training.precision bf16 is 20.0x slower than fp32" in capsys.readouterr().err

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < row["mfu"] < 1 for row in rows if row.get("tokens_per_second"))
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["precision"]["used"] == "bf16" and training["precision"]["requested"] == "bf16"
    assert training["threads"] == torch.get_num_threads() and training["device"] == "cpu"
    saved = (out / "train_config.yaml").read_text()
    assert saved.startswith("# As run on cpu") and yaml.safe_load(saved)["training"]["threads"] >= 1
    assert load_config(out / "train_config.yaml").training.precision == "bf16"


@pytest.mark.slow
def test_auto_resolves_in_the_trainer(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "default_probe", lambda: probe_with(tmp_path, 1 / 20))
    config = config_from_dict(tiny_config("lstm", precision="auto", max_steps=5, eval_interval=5), "tiny.yaml")
    out = tmp_path / "auto"
    train(config, RunOptions(output=out, progress=False))
    record = json.loads((out / "config.json").read_text())["training"]["precision"]
    assert record == {"requested": "auto", "used": "fp32", "reason": record["reason"]}
    assert "auto -> fp32" in record["reason"] and yaml.safe_load((out / "train_config.yaml").read_text())[
        "training"]["precision"] == "fp32"


def test_auto_on_a_cpu_follows_the_models_own_training_steps(tmp_path):
    # the product alone says bf16 is 1.7x faster, the model's steps say 0.7x: fp32 (gpt-small on AMX)
    choice = resolve_precision("auto", CPU, 128, probe_with(tmp_path, 1.7), step_trial=lambda: 0.7)
    assert choice.precision == "fp32" and "training step of this model" in choice.reason and "0.70x" in choice.reason
    # the product alone says slower, the steps 1.6x faster: bf16 (the 2 x 512 LSTM on AMX)
    choice = resolve_precision("auto", CPU, 512, probe_with(tmp_path, 0.42), step_trial=lambda: 1.6)
    assert choice.precision == "bf16" and choice.speedup == pytest.approx(1.6)


def test_an_emulated_bf16_needs_no_step_trial(tmp_path):
    def trial():
        raise AssertionError("the trial ran although the product showed bf16 emulated")

    assert resolve_precision("auto", CPU, 192, probe_with(tmp_path, 1 / 200), step_trial=trial).precision == "fp32"


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_a_step_trial_leaves_the_model_and_the_random_state_as_they_were(kind):
    options = ({"context_length": 16, "n_layer": 1, "n_head": 2, "n_embd": 16} if kind == "gpt" else
               {"emb_size": 16, "hidden_size": 24, "n_layers": 2})
    model = build_model(kind, {"vocab_size": 20, **options}).eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rng = torch.get_rng_state()
    ratio = measure_step_speedup(model, 20, batch_size=3, seq_len=8)
    assert ratio > 0 and ratio != float("inf")
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not model.training
    assert torch.equal(torch.get_rng_state(), rng)


def test_step_trials_are_cached_only_when_two_measurements_agree(tmp_path):
    model = build_model("gpt", {"vocab_size": 20, "context_length": 16, "n_layer": 1, "n_head": 2, "n_embd": 16})
    answers = iter([1.5, 1.4, 0.5, 1.5, 1.45, 1.5])
    calls = []

    def measure(*args):
        calls.append(args)
        return next(answers)

    trial = StepTrial(tmp_path / "trials.json", measure=measure)
    assert trial.speedup(model, 20, 4, 64) == pytest.approx(1.45)
    assert trial.speedup(model, 20, 4, 64) == pytest.approx(1.45) and len(calls) == 2  # from the cache
    assert trial.speedup(model, 20, 8, 64) == pytest.approx(1.0) and len(calls) == 4  # 0.5 and 1.5 disagree
    assert trial.speedup(model, 20, 8, 64) == pytest.approx(1.475) and len(calls) == 6  # measured again
