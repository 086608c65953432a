"""A 2-process DistributedDataParallel run on CPU (gloo), launched the way users launch it: torchrun."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from lm import load
from tests.training.conftest import ROOT, tiny_config, write_config


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt", "lstm"])
@pytest.mark.timeout(900)  # several subprocesses; slow when the machine is shared
def test_two_process_gloo_run(tmp_path, kind):
    config = write_config(tmp_path / f"{kind}.yaml", tiny_config(kind, max_steps=12, eval_interval=6))
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "training", "train", "--config", str(config), "--output", str(out), "--device", "cpu", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=800,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads((out / "config.json").read_text())
    assert saved["training"]["world_size"] == 2 and saved["training"]["steps"] == 12
    assert math.isfinite(saved["metrics"]["val_loss"])
    # both ranks consumed their own batches: tokens seen count both
    assert saved["training"]["tokens_seen"] == 12 * 2 * 8 * 32
    assert result.stdout.count("steps (max_steps)") == 1  # only rank 0 reports (and writes)
    assert load(out).generate("A", max_new_tokens=3, seed=0).text is not None
