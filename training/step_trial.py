"""Whether bf16 autocast trains this model faster than fp32 on this CPU: a few timed training steps of each.

The matmul probe (lm.precision) times the model's widest product alone. A training step also casts weights and
activations, normalises, runs attention or the LSTM's cells and goes backward, and on a Xeon with AMX the two
disagree both ways (docs/benchmarks.md, training precision): the 2 x 512 AWD-LSTM trains 1.6x faster in bf16 where
its 512-wide product alone measured slower, and the 128-wide GPT trains at 0.77x where its product measured 1.7x.
So `precision: auto` on a CPU (training/hardware.py) asks this trial whenever the probe does not already show bf16
emulated (far slower): forward and backward of the model itself on random tokens of the run's window length, in
turns, the best of a few per precision (a second or two). The model's weights, gradients and the random number generator are left
as they were, so a run that measured decides exactly like one that read the answer from the cache
(`$SCRIPTORIUM_CACHE/step-trials.json`, per machine, thread count, torch version, model and shape).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lm.cache import cache_dir, read_measurements, record_measurements
from lm.precision import machine_key

CACHE_FILE = "step-trials.json"
# Timed steps read the run's batch of sequences (the LSTM's recurrent products have a row per sequence, and bf16's
# gain depends on it: at 4 rows the 2 x 512 LSTM measured 0.77x, at its 32 rows 1.6x, as it trains) but windows of
# at most this many tokens, so a trial takes a second or two; at 32 the three presets' ratios agreed with full
# training runs' (docs/benchmarks.md).
WINDOW = 32
ROUNDS = 3
STABLE = 1.25  # two measurements within this factor of each other are cached


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_loss(model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor,
                  dtype: torch.dtype | None) -> torch.Tensor:
    """The next-token loss of `model` on `tokens`, its forward under autocast to `dtype` (None: fp32)."""
    with torch.autocast(tokens.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logits = model(tokens).logits  # (rows, seq_len, vocab)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def timed_step(model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor,
               dtype: torch.dtype | None = None) -> float:
    """Seconds for one forward and backward of `model` on `tokens` (on their device), under autocast to `dtype`
    (None: fp32)."""
    synchronize(tokens.device)
    start = time.perf_counter()
    autocast_loss(model, tokens, targets, dtype).backward()
    synchronize(tokens.device)
    return time.perf_counter() - start


def best_step_times(model: torch.nn.Module, tokens: torch.Tensor,
                    dtypes: dict[str, torch.dtype | None]) -> dict[str, float]:
    """The fastest of ROUNDS training steps of `model` on `tokens` (rows, window + 1) under each autocast dtype of
    `dtypes` (name -> dtype, None: fp32), timed in turns so that a moment of load elsewhere slows every precision,
    not one. Weights, gradients, training mode and the random number generator are left as they were."""
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[tokens.device] if tokens.device.type == "cuda" else []):
            for dtype in dtypes.values():  # the first step of each builds its kernels: not timed
                timed_step(model, inputs, targets, dtype)
            best = {name: float("inf") for name in dtypes}
            for _ in range(ROUNDS):
                for name, dtype in dtypes.items():
                    best[name] = min(best[name], timed_step(model, inputs, targets, dtype))
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return best


def measure_step_speedup(model: torch.nn.Module, vocab_size: int, batch_size: int, seq_len: int) -> float:
    """bf16 autocast's training-step speed over fp32's for `model` (below 1: slower), measured now on a batch of
    `batch_size` windows of at most WINDOW tokens."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(vocab_size, (batch_size, min(seq_len, WINDOW) + 1), generator=generator)
    best = best_step_times(model, tokens, {"fp32": None, "bf16": torch.bfloat16})
    return best["fp32"] / best["bf16"]


class StepTrial:
    """The cached answer of `measure_step_speedup` for a model and window length on this machine."""

    def __init__(self, path: Path | None = None, measure=measure_step_speedup) -> None:
        self.path = Path(path) if path is not None else cache_dir() / CACHE_FILE
        self.measure = measure

    def speedup(self, model: torch.nn.Module, vocab_size: int, batch_size: int, seq_len: int) -> float:
        config = getattr(model, "config", None)
        config = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str) if dataclasses.is_dataclass(
            config) else repr(model)
        shape = f"{type(model).__name__} {hashlib.sha256(config.encode()).hexdigest()[:16]} {batch_size}x{min(seq_len, WINDOW)}"
        key = f"{machine_key(torch.device('cpu'))}|{shape}"
        stored = read_measurements(self.path).get(key)
        if isinstance(stored, (int, float)) and stored > 0:
            return float(stored)
        first = self.measure(model, vocab_size, batch_size, seq_len)
        second = self.measure(model, vocab_size, batch_size, seq_len)
        ratio = (first + second) / 2
        # two answers that disagree mean a busy machine: use this one, measure again next time
        if max(first, second) <= STABLE * min(first, second):
            record_measurements(self.path, {key: ratio})
        return ratio
