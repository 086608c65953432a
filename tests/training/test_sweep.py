"""`python -m training sweep`: the trials a grid and random ranges make, bad input refused before anything is written,
a small sweep end to end (table, CSV, plot, best, promote), resuming an interrupted sweep, and how trials are shared
between devices."""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from tests.training.conftest import assert_servable, write_config
from training import resume
from training.cli import main
from training.config import ConfigError, load_config
from training.sweep.manifest import RESULT_FILE, plan_sweep, read_manifest
from training.sweep.report import best_trial
from training.sweep.runner import launch_process, run_on_devices, run_sweep, sweep_devices
from training.sweep.space import parse_space
from training.trainer import Interrupted, RunOptions, Trainer

MODEL = {"type": "gpt", "context_length": 32, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0}
TRAINING = {"lr": 0.005, "warmup_steps": 5, "batch_size": 8, "seq_len": 32, "max_steps": 20, "eval_interval": 10,
            "eval_batches": 4, "log_interval": 5, "seed": 7, "precision": "fp32", "threads": 1}


@pytest.fixture
def sweep_files(tmp_path) -> tuple[Path, Path]:
    """A tiny GPT config and a small text for it (about 60 KB of words)."""
    words = "the quick brown fox jumps over a lazy dog while seven wise owls sing of rain".split()
    lines = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(10)) for i in range(1200)]
    text = tmp_path / "text.txt"
    text.write_text("\n".join(lines), encoding="utf-8")
    config = write_config(tmp_path / "tiny.yaml", {"name": "tiny", "data": {"split": [0.9, 0.1]}, "model": MODEL,
                                                   "training": TRAINING})
    return config, text


def _space(config: Path, grid=(), ranges=(), draws=None, seed=0):
    return parse_space(load_config(config), list(grid), list(ranges), draws, seed)


# ---------------------------------------------------------------- what the trials are
def test_grid_is_the_cartesian_product_in_order(sweep_files):
    space = _space(sweep_files[0], grid=["training.lr=1e-3,3e-3", "model.n_layer=1,2,3"])
    trials = space.trials()
    assert len(trials) == 6
    assert trials[0] == {"training.lr": "1e-3", "model.n_layer": "1"}
    assert trials[-1] == {"training.lr": "3e-3", "model.n_layer": "3"}
    assert len({tuple(t.items()) for t in trials}) == 6
    # values that hold commas stay whole, and reach the config as --set would give them
    betas = _space(sweep_files[0], grid=["training.betas=[0.9, 0.95],[0.9,0.99]"]).trials()
    assert [t["training.betas"] for t in betas] == ["[0.9, 0.95]", "[0.9,0.99]"]


def test_random_draws_are_seeded_within_their_ranges(sweep_files):
    ranges = ["training.lr=1e-4:1e-2:log", "model.dropout=0:0.3", "model.n_layer=1:4"]
    trials = _space(sweep_files[0], ranges=ranges, draws=40, seed=3).trials()
    assert len(trials) == 40
    assert trials == _space(sweep_files[0], ranges=ranges, draws=40, seed=3).trials()  # reproducible
    assert trials != _space(sweep_files[0], ranges=ranges, draws=40, seed=4).trials()
    lrs = [float(t["training.lr"]) for t in trials]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs)
    # log-uniform: about as many draws below the geometric middle (1e-3) as above it; a linear draw would put
    # nine in ten above it
    assert 10 <= sum(lr < 1e-3 for lr in lrs) <= 30
    assert all(0 <= float(t["model.dropout"]) <= 0.3 for t in trials)
    layers = [t["model.n_layer"] for t in trials]
    assert all(layer.isdigit() and 1 <= int(layer) <= 4 for layer in layers) and len(set(layers)) > 1


def test_grid_and_random_ranges_cross(sweep_files):
    trials = _space(sweep_files[0], grid=["model.n_layer=1,2"], ranges=["training.lr=1e-4:1e-2:log"], draws=3).trials()
    assert len(trials) == 6
    # the same draws at every grid point: the grid's values compare on equal terms
    assert [t["training.lr"] for t in trials[:3]] == [t["training.lr"] for t in trials[3:]]
    assert {t["model.n_layer"] for t in trials[:3]} == {"1"} and {t["model.n_layer"] for t in trials[3:]} == {"2"}


@pytest.mark.parametrize("args, message", [
    (["--grid", "training.lrr=1e-3,3e-3"], "training.lrr: unknown key"),
    (["--grid", "model.n_layers=1,2"], "model.n_layers: unknown gpt option"),
    (["--grid", "training.lr=fast,1e-3"], "training.lr: must be a number, got 'fast'"),
    (["--grid", "model.n_layer=1,2.5"], "model.n_layer: must be an integer"),
    (["--grid", "training.lr="], "no values given"),
    (["--grid", "training.lr=1e-3,1e-3"], "given twice"),
    (["--grid", "model.n_head=2,3"], "trial 1 (model.n_head=3): model.n_embd: must be divisible by n_head"),
    (["--grid", "training.max_time=10,20"], "set for every trial by the sweep's --trial-time"),
    (["--grid", "training.lr=1e-3,3e-3", "--random", "2", "--range", "training.lr=1e-4:1e-2"], "is swept twice"),
    (["--grid", "training.lr=1e-3,3e-3", "--set", "training.lr=1e-3"], "is also fixed for every trial"),
    (["--random", "2", "--range", "training.lr=1e-2:1e-4:log"], "expected finite LOW < HIGH"),
    (["--random", "2", "--range", "training.lr=0:1e-2:log"], "a log range needs LOW > 0"),
    (["--random", "2", "--range", "training.lr=1e-4"], "expected LOW:HIGH or LOW:HIGH:log"),
    (["--random", "2", "--range", "training.lr=1e-4:1e-2:cubic"], "the scale must be linear or log"),
    (["--random", "2", "--range", "model.n_layer=1:2.5"], "is an integer: give whole-number bounds"),
    (["--random", "2", "--range", "training.optimizer=1:2"], "is not a number; list its values with --grid"),
    (["--range", "training.lr=1e-4:1e-2"], "needs --random N"),
    (["--random", "2"], "needs at least one --range"),
    ([], "nothing to sweep"),
    (["--grid", "training.lr=1,2,3,4,5,6,7,8,9,10", "--grid", "training.seed=1,2,3,4,5,6,7,8,9,10",
      "--random", "11", "--range", "model.dropout=0:0.5"], "1,100 trials is more than 1,000"),
    (["--grid", "training.lr=1e-3,3e-3", "--trial-time", "5"], "--trial-time 5 s is too short"),
    (["--grid", "training.lr=1e-3,3e-3", "--trial-time", "5x"], "must be seconds (90) or a duration"),
    (["--grid", "training.lr=1e-3,3e-3", "--force"], "--force replaces a non-empty --promote folder"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(sweep_files, tmp_path, capsys, args, message):
    config, text = sweep_files
    out = tmp_path / "sweep"
    if "--trial-time" not in args:
        args = [*args, "--trial-time", "10"]
    code = main(["sweep", "--config", str(config), "--data", str(text), "--output", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


# ---------------------------------------------------------------- a sweep end to end
def _sweep_args(config: Path, text: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "--config", str(config), "--data", str(text), "--grid", "training.lr=1e-3,1e-2,1e30",
            "--set", "training.grad_clip=0", "--trial-time", "10m", "--output", str(out), "--quiet", "--device", "cpu",
            *extra]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a few trials; slow when the machine is shared
def test_a_sweep_end_to_end_with_resume_and_promote(sweep_files, tmp_path, capsys, monkeypatch):
    config, text = sweep_files
    out, promoted = tmp_path / "sweep", tmp_path / "best-model"
    assert main(_sweep_args(config, text, out, "--promote", str(promoted))) == 0
    printed = capsys.readouterr().out

    # every trial is a model directory with its validation figures; lr 1e30 diverges and is a failed trial
    plan = read_manifest(out)
    assert [t.name for t in plan.trials] == ["trial-000", "trial-001", "trial-002"]
    results = {t.name: json.loads((out / t.name / RESULT_FILE).read_text()) for t in plan.trials}
    assert results["trial-002"]["status"] == "failed" and "diverged" in results["trial-002"]["error"]
    for name in ("trial-000", "trial-001"):
        result, trial_dir = results[name], out / name
        evaluation = json.loads((trial_dir / result["evaluation"]).read_text())
        assert evaluation["split"] == "valid" and evaluation["own_validation"]
        nats = evaluation["loss"] * evaluation["tokens"] / evaluation["characters"]
        assert result["nats_per_char"] == pytest.approx(nats)
        assert result["bits_per_char"] == pytest.approx(evaluation["bits_per_char"])
        assert result["steps"] == 20 and result["stop_reason"] == "max_steps"
        recorded = json.loads((trial_dir / "config.json").read_text())["training"]
        assert recorded["config"]["training"]["lr"] == float(result["settings"]["training.lr"])
        assert "train --config" in recorded["command"] and "--set training.lr=" in recorded["command"]
    best = min(("trial-000", "trial-001"), key=lambda n: results[n]["nats_per_char"])

    # the table: Markdown and CSV, every trial, the best marked; printed at the end
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["trial"] for r in rows] == ["trial-000", "trial-001", "trial-002"]
    assert [r["training.lr"] for r in rows] == ["1e-3", "1e-2", "1e30"]
    assert [r["trial"] for r in rows if r["best"] == "True"] == [best] and rows[2]["val_nats_per_char"] == ""
    assert float(rows[0]["val_nats_per_char"]) == pytest.approx(results["trial-000"]["nats_per_char"])
    assert rows[2]["status"].startswith("failed: training diverged")
    table = (out / "results.md").read_text()
    assert f"| **best** | {best} |" in table and table.count("**best**") == 1 and f"| **best** | {best} |" in printed
    assert f"best: {best} (training.lr=" in printed
    assert (out / "validation_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "validation_curves.png").stat().st_size > 5000

    # promoted: the best trial's model, without its resume state, servable as it is
    assert json.loads((promoted / "config.json").read_text())["metrics"] == \
        json.loads((out / best / "config.json").read_text())["metrics"]
    assert not (promoted / "resume").exists() and not (promoted / RESULT_FILE).exists()
    assert_servable(promoted)

    # resuming with other arguments is refused, and so is a non-empty --promote folder without --force
    code = main(_sweep_args(config, text, out, "--resume", "--set", "training.batch_size=4"))
    err = capsys.readouterr().err
    assert code == 2 and "was started with other arguments" in err and err.count("\n") == 1
    assert main(_sweep_args(config, text, out, "--resume", "--promote", str(promoted))) == 2
    assert main(_sweep_args(config, text, out)) == 2  # not without --resume either
    assert "holds a sweep: continue it with --resume" in capsys.readouterr().err

    # an interrupted sweep: trial-000 finished, trial-001 stopped by Ctrl-C after its first step, trial-002 killed
    # before it saved anything
    finished = (out / "trial-000" / RESULT_FILE).read_text()
    for name in ("trial-001", "trial-002"):
        (out / name / RESULT_FILE).unlink()
    import shutil

    shutil.rmtree(out / "trial-001")
    trial_config = load_config(config, ["training.grad_clip=0", "training.lr=1e-2"])
    trainer = Trainer(trial_config, RunOptions(output=out / "trial-001", data=str(text), max_time=600, device="cpu",
                                               progress=False))
    trainer._interrupted = True  # as after Ctrl-C: the run saves its state after this step and stops
    with pytest.raises(Interrupted):
        trainer.run()
    assert resume.exists(out / "trial-001")
    shutil.rmtree(out / "trial-002")
    (out / "trial-002").mkdir()
    (out / "trial-002" / "metrics.jsonl").write_text('{"step": 5, "train_loss": 3.0}\n{"st')  # cut by the kill

    restored = []
    original_restore = Trainer._restore
    monkeypatch.setattr(Trainer, "_restore", lambda self: (restored.append(self.output.name), original_restore(self)))
    assert main(_sweep_args(config, text, out, "--resume", "--promote", str(promoted), "--force")) == 0
    assert (out / "trial-000" / RESULT_FILE).read_text() == finished  # skipped
    assert restored == ["trial-001"]  # resumed from its state; trial-002 started again
    again = json.loads((out / "trial-001" / RESULT_FILE).read_text())
    assert again["status"] == "finished" and again["steps"] == 20
    assert json.loads((out / "trial-002" / RESULT_FILE).read_text())["status"] == "failed"
    best = best_trial(plan, {t.name: json.loads((out / t.name / RESULT_FILE).read_text()) for t in plan.trials})
    assert json.loads((promoted / "config.json").read_text())["metrics"] == \
        json.loads((out / best.name / "config.json").read_text())["metrics"]


# ---------------------------------------------------------------- devices
def test_one_process_per_gpu_only_when_several_are_visible():
    assert sweep_devices("auto", 0) == ["auto"]
    assert sweep_devices("auto", 1) == ["auto"]
    assert sweep_devices("cuda", 1) == ["cuda"]
    assert sweep_devices("auto", 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert sweep_devices("cuda", 2) == ["cuda:0", "cuda:1"]
    assert sweep_devices("cpu", 4) == ["cpu"] and sweep_devices("mps", 2) == ["mps"]


class _FakeTrial:
    def __init__(self, name: str) -> None:
        self.name = name


def test_each_device_runs_one_trial_at_a_time_and_takes_the_next_when_free():
    trials = [_FakeTrial(f"t{i}") for i in range(7)]
    lengths = {"t0": 0.3, "t1": 0.02, "t2": 0.02, "t3": 0.02, "t4": 0.02, "t5": 0.02, "t6": 0.02}
    runs, lock, done = [], threading.Lock(), []

    def launch(trial, device):
        start = time.monotonic()
        time.sleep(lengths[trial.name])
        with lock:
            runs.append((device, trial.name, start, time.monotonic()))
        return {"trial": trial.name}

    run_on_devices(trials, ["cuda:0", "cuda:1"], launch, lambda trial, result: done.append(result["trial"]))
    assert sorted(name for _, name, _, _ in runs) == [t.name for t in trials] and sorted(done) == sorted(lengths)
    for device in ("cuda:0", "cuda:1"):
        spans = sorted((start, end) for d, _, start, end in runs if d == device)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
    # the long first trial holds one GPU; the other takes every short trial meanwhile
    holder = next(d for d, name, _, _ in runs if name == "t0")
    assert [name for d, name, _, _ in runs if d == holder] == ["t0"]


def test_an_error_stops_new_trials_and_is_raised():
    trials = [_FakeTrial(f"t{i}") for i in range(6)]
    started = []

    def launch(trial, device):
        started.append(trial.name)
        if trial.name == "t1":
            raise RuntimeError("t1 on cuda:1 ended with exit status 1")
        time.sleep(0.05)
        return {}

    with pytest.raises(RuntimeError, match="t1 on cuda:1"):
        run_on_devices(trials, ["cuda:0", "cuda:1"], launch, lambda trial, result: None)
    assert len(started) < len(trials)


@pytest.mark.slow
@pytest.mark.timeout(900)  # two processes that each import torch
def test_trials_in_processes_of_their_own(sweep_files, tmp_path):
    """The per-GPU path (a spawned process per trial) on two CPU 'devices'."""
    config, text = sweep_files
    plan = plan_sweep(str(config), [], ["training.lr=1e-3,1e-2"], [], None, 0, 600, data=str(text),
                      output=tmp_path / "sweep")
    plan.output.mkdir()
    from training.sweep.manifest import write_manifest

    write_manifest(plan)
    results = {}
    run_on_devices(plan.trials, ["cpu", "cpu"], partial(launch_process, plan),
                   lambda trial, result: results.update({trial.name: result}))
    assert sorted(results) == ["trial-000", "trial-001"]
    assert all(r["status"] == "finished" and math.isfinite(r["nats_per_char"]) for r in results.values())
    # the sweep then finds both finished and only writes the report
    assert run_sweep(plan, device="cpu", log=lambda line: None) == results
    assert (plan.output / "results.csv").is_file()
