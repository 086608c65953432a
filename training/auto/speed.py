"""How fast this device trains a candidate shape: a few timed training steps (training/step_trial.py's timed step),
in each precision worth trying here, cached per machine like the step trial (`$SCRIPTORIUM_CACHE/auto-speeds.json`).

The time spent measuring comes out of the run's budget, so a `SpeedMeter` has a limit: once it is spent, a shape
not yet measured is estimated from the last measured one by their training FLOPs per token (a larger shape usually
runs its products more efficiently, so the estimate errs toward a smaller model).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from lm.cache import cache_dir, read_measurements, record_measurements
from lm.models import build_model
from lm.precision import machine_key
from training.auto.rules import Candidate, Speed, parameters_and_flops
from training.hardware import EMULATED_FACTOR, bf16_speedup
from training.step_trial import best_step_times

CACHE_FILE = "auto-speeds.json"
WINDOW = 64  # tokens per timed row: long enough for attention to count, short enough for a second per shape
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def precisions_to_try(device: torch.device, width: int) -> list[str]:
    """fp32, and bf16 where this CPU multiplies in it natively (the matmul probe: an emulated bf16 is some 200x
    slower and not worth timing); on CUDA the autocast precision the trainer's `auto` would use."""
    if device.type == "cuda":
        return ["bf16" if torch.cuda.is_bf16_supported() else "fp16"]
    if device.type != "cpu":
        return ["fp32"]
    return ["fp32"] if bf16_speedup(device, width) < EMULATED_FACTOR else ["fp32", "bf16"]


def measure(candidate: Candidate, device: torch.device) -> tuple[float, str]:
    """(training tokens/s at the candidate's window length, the precision that gave it), timed now."""
    window = min(candidate.seq_len, WINDOW)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = build_model(candidate.family, {**candidate.options, "vocab_size": candidate.vocab_size}).to(device)
        tokens = torch.randint(candidate.vocab_size, (candidate.batch_size, window + 1), device=device)
    best = best_step_times(model, tokens, {p: _DTYPES[p] for p in precisions_to_try(device, model.width)})
    precision = min(best, key=best.get)
    per_token_at_window = model.training_flops_per_token(window)
    per_token = model.training_flops_per_token(candidate.seq_len)  # a GPT's attention grows with the window
    return candidate.batch_size * window / best[precision] * per_token_at_window / per_token, precision


class SpeedMeter:
    """The speed function `plan_run` calls: cached, measured while `limit_s` of measuring lasts, else estimated."""

    def __init__(self, device: torch.device, limit_s: float, path: Path | None = None, measure_with=measure) -> None:
        self.device, self.limit_s = device, limit_s
        self.path = Path(path) if path is not None else cache_dir() / CACHE_FILE
        self.measure_with = measure_with
        self.spent = 0.0
        self.reference: tuple[float, Speed] | None = None  # (FLOPs per token, speed) of the last measured shape

    def _key(self, candidate: Candidate) -> str:
        return f"{machine_key(self.device)}|{candidate.family} {candidate.options} vocab {candidate.vocab_size} " \
               f"batch {candidate.batch_size}x{candidate.seq_len}"

    def __call__(self, candidate: Candidate) -> Speed:
        _, flops = parameters_and_flops(candidate)
        stored = read_measurements(self.path).get(self._key(candidate))
        if isinstance(stored, list) and len(stored) == 2 and stored[0] > 0:
            speed = Speed(float(stored[0]), str(stored[1]), "cached")
        elif self.reference is None or self.spent < self.limit_s:
            started = time.perf_counter()
            tokens_per_second, precision = self.measure_with(candidate, self.device)
            self.spent += time.perf_counter() - started
            record_measurements(self.path, {self._key(candidate): [tokens_per_second, precision]})
            speed = Speed(tokens_per_second, precision, "measured")
        else:
            reference_flops, reference = self.reference
            return Speed(reference.tokens_per_second * reference_flops / flops, reference.precision,
                         "estimated from FLOPs")
        self.reference = (flops, speed)
        return speed
