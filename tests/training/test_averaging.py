"""Weight averaging (EMA and SWA): the maths against a hand computation, the trainer's use of it, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from training.averaging import WeightAverage
from training.config import TrainingConfig, config_from_dict
from training.trainer import Interrupted, RunOptions, Trainer, train
from tests.training.conftest import tiny_config


def _one_weight(value: float) -> torch.nn.Module:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def _set(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)


def test_ema_follows_the_hand_computation():
    model = _one_weight(1.0)
    average = WeightAverage(model, TrainingConfig(averaging="ema", ema_decay=0.9))
    assert not average.active
    values = [1.0, 3.0, -2.0, 5.0]
    expected = None
    for step, value in enumerate(values, start=1):
        _set(model, value)
        average.update(step)
        expected = value if expected is None else 0.9 * expected + 0.1 * value  # the first update copies
        assert average.eval_model().weight.item() == pytest.approx(expected, abs=1e-6)
    assert average.active and average.started_at == 1
    assert expected == pytest.approx(0.9 * (0.9 * (0.9 * 1.0 + 0.1 * 3.0) + 0.1 * -2.0) + 0.1 * 5.0)
    assert model.weight.item() == 5.0  # the trained weights are left alone


def test_swa_is_the_plain_mean_from_its_start():
    model = _one_weight(0.0)
    average = WeightAverage(model, TrainingConfig(averaging="swa", swa_start=0.5))
    assert not average.due(0.4) and average.due(0.5)
    _set(model, 7.0)
    average.update(1)  # before the start: nothing is averaged
    assert not average.active
    average.start(2)
    for step, value in enumerate([2.0, 4.0, 9.0], start=2):
        _set(model, value)
        average.update(step)
    assert average.eval_model().weight.item() == pytest.approx(5.0)
    assert not average.due(0.9)  # started once


def test_state_round_trip_continues_the_same_average():
    model = _one_weight(1.0)
    cfg = TrainingConfig(averaging="ema", ema_decay=0.5)
    average = WeightAverage(model, cfg)
    for step, value in enumerate([1.0, 2.0], start=1):
        _set(model, value)
        average.update(step)
    tensors, meta = average.state()
    restored = WeightAverage(model, cfg)
    restored.load_state(tensors, json.loads(json.dumps(meta)))  # the JSON state as the resume file holds it
    for copy in (average, restored):
        _set(model, 4.0)
        copy.update(3)
    assert restored.eval_model().weight.item() == average.eval_model().weight.item() == pytest.approx(2.75)
    assert restored.started_at == 1
    empty = WeightAverage(model, cfg)
    empty.load_state({}, {"started_at": None})
    assert not empty.active


def test_averaging_settings_are_checked():
    from training.config import ConfigError

    for training, message in [({"averaging": "ema", "ema_decay": 1.0}, "ema_decay"),
                              ({"averaging": "swa", "swa_start": 1.5}, "swa_start"),
                              ({"averaging": "mean"}, "averaging"),
                              ({"averaging": "ema", "optimizer": "ntasgd"}, "ntasgd averages")]:
        raw = tiny_config("lstm", **training)
        with pytest.raises(ConfigError, match=message):
            config_from_dict(raw, "x.yaml")


@pytest.mark.slow
def test_training_validates_the_average_and_keeps_the_better(tmp_path):
    config = config_from_dict(tiny_config("gpt", max_steps=30, eval_interval=10, averaging="ema",
                                          ema_decay=0.8), "tiny.yaml")
    out = tmp_path / "run"
    result = train(config, RunOptions(output=out, progress=False))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_loss" in r]
    assert len(evals) == 3 and all("val_loss_averaged" in r for r in evals)
    best = min(min(r["val_loss"], r["val_loss_averaged"]) for r in evals)
    assert result.best_val_loss == pytest.approx(best)
    assert json.loads((out / "config.json").read_text())["metrics"]["val_loss"] == pytest.approx(best)


def _interrupted_at(config, out, step: int) -> None:
    """Run until `step`, then act as if Ctrl-C came: the trainer saves its resume state there and stops."""
    trainer = Trainer(config, RunOptions(output=out, progress=False))
    train_step = trainer._train_step

    def step_then_maybe_stop():
        result = train_step()
        if trainer.state.step + 1 == step:
            trainer._interrupted = True
        return result

    trainer._train_step = step_then_maybe_stop
    with pytest.raises(Interrupted):
        trainer.run()


@pytest.mark.slow
@pytest.mark.parametrize("training", [{"averaging": "ema", "ema_decay": 0.9},
                                      {"averaging": "swa", "swa_start": 0.2},
                                      {"optimizer": "muon", "lr": 0.01, "weight_decay": 0.1}])
def test_resume_with_averaging_or_muon_matches_an_uninterrupted_run(tmp_path, training):
    raw = tiny_config("gpt", max_steps=40, eval_interval=10, **training)
    raw["model"]["dropout"] = 0.1  # random masks: the generators must be restored too

    def config():
        return config_from_dict(json.loads(json.dumps(raw)), "tiny.yaml")

    straight = tmp_path / "straight"
    train(config(), RunOptions(output=straight, progress=False))
    stopped = tmp_path / "stopped"
    _interrupted_at(config(), stopped, step=15)  # between validations, with the average under way
    assert json.loads((stopped / "resume" / "state.json").read_text())["step"] == 15
    train(config(), RunOptions(output=stopped, resume=True, progress=False))

    def evaluations(out):
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [(r["val_loss"], r.get("val_loss_averaged")) for r in rows if "val_loss" in r]

    a, b = evaluations(straight), evaluations(stopped)
    assert len(a) == len(b) == 4
    for (loss_a, avg_a), (loss_b, avg_b) in zip(a, b):
        assert loss_a == pytest.approx(loss_b, abs=1e-5)
        assert (avg_a is None) == (avg_b is None) and (avg_a is None or avg_a == pytest.approx(avg_b, abs=1e-5))
    if "averaging" in training:
        assert a[-1][1] is not None
