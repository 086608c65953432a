"""A 2-process DistributedDataParallel run on CPU (gloo), launched the way users launch it: torchrun."""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.training.conftest import ROOT, assert_servable, tiny_config, write_config
from training import distributed
from training.distributed import DistInfo
from training.trainer import Trainer

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def torchrun_train(config: Path, out: Path, *extra: str) -> list[str]:
    """`torchrun --standalone --nproc_per_node=2 -m training train ...` on CPU, as a user launches it."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training",
            "train", "--config", str(config), "--output", str(out), "--device", "cpu", "--quiet", *extra]


def run(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=800)
    # a worker's own message comes first, torchrun's summary last: show both
    assert result.returncode == 0, result.stderr[:3000] + "\n[...]\n" + result.stderr[-1500:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt", "lstm"])
@pytest.mark.timeout(900)  # several subprocesses; slow when the machine is shared
def test_two_process_gloo_run(tmp_path, kind):
    config = write_config(tmp_path / f"{kind}.yaml", tiny_config(kind, max_steps=12, eval_interval=6))
    out = tmp_path / "ddp"
    result = run(torchrun_train(config, out))
    assert "terminate called" not in result.stderr
    saved = json.loads((out / "config.json").read_text())
    assert saved["training"]["world_size"] == 2 and saved["training"]["steps"] == 12
    assert math.isfinite(saved["metrics"]["val_loss"])
    # both ranks consumed their own batches: tokens seen count both
    assert saved["training"]["tokens_seen"] == 12 * 2 * 8 * 32
    assert result.stdout.count("steps (max_steps)") == 1  # only rank 0 reports (and writes)
    assert_servable(out)


class _CyclicWrapper:
    """Stands in for DistributedDataParallel, which reference cycles keep alive past its last name."""

    def __init__(self, model):
        self.module, self.me = model, self


@pytest.mark.parametrize("together", [True, False])
def test_the_ddp_wrapper_is_gone_before_the_process_group(monkeypatch, together):
    gc.collect()
    model = object()
    trainer = SimpleNamespace(dist=DistInfo(rank=1, world_size=2), model=model, train_model=_CyclicWrapper(model))
    wrapper = weakref.ref(trainer.train_model)
    seen = []

    def teardown(info, wait_for_others=True):
        seen.append((wrapper() is None, wait_for_others))

    monkeypatch.setattr(distributed, "teardown", teardown)
    Trainer._leave_process_group(trainer, together=together)
    assert seen == [(True, together)] and trainer.train_model is model


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ctrl_c_under_torchrun_saves_the_state_and_resumes(tmp_path):
    # no validation before the interrupt (eval_interval is large): a resume state can only come from the Ctrl-C
    config = write_config(tmp_path / "gpt.yaml", tiny_config("gpt", max_steps=100000, eval_interval=100000))
    out = tmp_path / "ddp"
    proc = subprocess.Popen(torchrun_train(config, out), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 600
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):  # 10 steps logged
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run ended or stalled before it could be interrupted: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: torchrun gets it and passes it on to the workers
    _, stderr = proc.communicate(timeout=600)

    state = json.loads((out / "resume" / "state.json").read_text())
    assert state["step"] >= 10
    assert stderr.count("continue with --resume") == 1, stderr[-3000:]  # rank 0 says it, once
    assert "Connection closed by peer" not in stderr and "terminate called" not in stderr

    run(torchrun_train(config, out, "--resume", "--max-steps", str(state["step"] + 4)))
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == state["step"] + 4


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through Linux's /proc")
def test_a_killed_torchrun_run_resumes_as_if_never_stopped(tmp_path):
    # the LSTM with dropout carries per-process state: each rank's generators and hidden state must come back
    config = write_config(tmp_path / "lstm.yaml", tiny_config("lstm", max_steps=40, eval_interval=10))
    run(torchrun_train(config, tmp_path / "straight"))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(torchrun_train(config, killed), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    state = killed / "resume" / "state.json"
    deadline = time.monotonic() + 600
    while not (state.is_file() and json.loads(state.read_text() or "{}").get("step", 0) >= 10):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run ended or stalled before it could be killed")
        time.sleep(0.02)
    # a crash takes everything down at once: torchrun and its workers (each in a session of its own)
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in [proc.pid, *map(int, workers)]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert 10 <= json.loads(state.read_text())["step"] < 40

    run(torchrun_train(config, killed, "--resume"))

    def validations(out):
        rows = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        return [row["val_loss"] for row in rows if "val_loss" in row]

    assert len(validations(tmp_path / "straight")) == len(validations(killed)) == 4
    assert validations(killed) == pytest.approx(validations(tmp_path / "straight"), abs=1e-6)
