"""Resuming: a run killed with SIGKILL and resumed ends where an uninterrupted run ends; Ctrl-C saves and exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.conftest import ROOT, run_cli, tiny_config, write_config


def _train_args(config: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(config), "--output", str(out), "--quiet", "--device", "cpu", *extra]


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "training", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_resume_state(out: Path, proc: subprocess.Popen, min_step: int, timeout: float = 600) -> int:
    state = out / "resume" / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.is_file():
            try:
                step = json.loads(state.read_text())["step"]
            except (json.JSONDecodeError, OSError, KeyError):
                step = 0
            if step >= min_step:
                return step
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no resume state appeared")


@pytest.mark.slow
@pytest.mark.timeout(900)  # several subprocesses; slow when the machine is shared
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    # LSTM with variable BPTT and dropout: the hardest case (carried state, data position, RNG for dropout)
    config = write_config(tmp_path / "lstm.yaml", tiny_config(
        "lstm", max_steps=60, eval_interval=10, variable_bptt=True, alpha=1.0, beta=1.0, grad_clip=0.5))

    straight = tmp_path / "straight"
    result = run_cli(*_train_args(config, straight))
    assert result.returncode == 0, result.stderr

    killed = tmp_path / "killed"
    proc = _start(_train_args(config, killed))
    saved_step = _wait_for_resume_state(killed, proc, min_step=10)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert 10 <= saved_step < 60

    resumed = run_cli(*_train_args(config, killed, "--resume"))
    assert resumed.returncode == 0, resumed.stderr

    a = json.loads((straight / "config.json").read_text())
    b = json.loads((killed / "config.json").read_text())
    assert b["training"]["steps"] == a["training"]["steps"] == 60
    assert abs(a["metrics"]["val_loss"] - b["metrics"]["val_loss"]) < 1e-4
    evals_a = [r["val_loss"] for r in map(json.loads, (straight / "metrics.jsonl").read_text().splitlines())
               if "val_loss" in r]
    evals_b = [r["val_loss"] for r in map(json.loads, (killed / "metrics.jsonl").read_text().splitlines())
               if "val_loss" in r]
    assert len(evals_a) == len(evals_b) == 6
    assert max(abs(x - y) for x, y in zip(evals_a, evals_b)) < 1e-4


@pytest.mark.slow
@pytest.mark.timeout(900)  # several subprocesses; slow when the machine is shared
def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    config = write_config(tmp_path / "gpt.yaml", tiny_config("gpt", max_steps=100000, eval_interval=10))
    out = tmp_path / "run"
    proc = _start(_train_args(config, out))
    _wait_for_resume_state(out, proc, min_step=10)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    state = json.loads((out / "resume" / "state.json").read_text())
    assert state["step"] >= 10
    assert (out / "config.json").is_file()  # the best model so far is there and loadable
    again = run_cli(*_train_args(config, out, "--resume", "--max-steps", str(state["step"] + 5)))
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == state["step"] + 5


def test_train_state_round_trips_through_json():
    from training.resume import TrainState

    state = TrainState(step=40, elapsed=12.5, tokens_seen=5120, best_val_loss=1.25, best_step=30,
                       val_history=[2.0, 1.25, 1.5], bad_evals=1, last_lr=3e-4)
    saved = json.loads(json.dumps({**state.to_json(), "sampler": {}}))  # state.json holds other parts too
    assert TrainState.from_json(saved) == state
    assert TrainState.from_json({**saved, "last_lr": None}, default_lr=1e-3).last_lr == 1e-3
    assert json.loads(json.dumps(TrainState().to_json()))["best_val_loss"] == float("inf")
