"""How fast this device trains a candidate shape, and how fast it validates it: a few whole training steps (forward,
backward, gradient clipping and an AdamW step, as the trainer runs them) and a few validation forwards, on batches
of the run's own rows and window, in each precision worth trying here; cached per machine like the step trial
(`$SCRIPTORIUM_CACHE/auto-speeds.json`).

The first version timed forward and backward alone on 64-token windows and scaled to the run's window by FLOPs:
optimistic twice over (docs/benchmarks.md, "Automatic configuration": the FLOPs scaling under-charges attention by
1.13x, the optimizer and the rest of a step cost another 1.16x), so --auto sized models for steps it never made.

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
from training.step_trial import autocast_loss, synchronize

CACHE_FILE = "auto-speeds.json"
METHOD = "whole-steps"  # in the cache key: speeds timed the first way (64-token forward and backward) are not reused
ROUNDS = 3  # timed steps per precision, after one untimed step that builds the kernels
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def precisions_to_try(device: torch.device, width: int) -> list[str]:
    """fp32, and bf16 where this CPU multiplies in it natively (the matmul probe: an emulated bf16 is some 200x
    slower and not worth timing); on CUDA the autocast precision the trainer's `auto` would use."""
    if device.type == "cuda":
        return ["bf16" if torch.cuda.is_bf16_supported() else "fp16"]
    if device.type != "cpu":
        return ["fp32"]
    return ["fp32"] if bf16_speedup(device, width) < EMULATED_FACTOR else ["fp32", "bf16"]


def _timing_model(candidate: Candidate) -> torch.nn.Module:
    """The candidate as the plan trains it: dropout on (its masks cost time) and, for a GPT, attention dropout off
    (rules.plan_run turns it off, which keeps CPU attention in its fused kernel)."""
    regularised = {"dropout": 0.1, "attn_dropout": 0.0} if candidate.family == "gpt" else {}
    return build_model(candidate.family, {**regularised, **candidate.options, "vocab_size": candidate.vocab_size})


def _whole_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor,
                dtype: torch.dtype | None) -> float:
    """Seconds for one training step as the trainer takes it: forward and backward under autocast to `dtype` (None:
    fp32), gradient clipping, the optimizer's step."""
    synchronize(tokens.device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    autocast_loss(model, tokens[:, :-1], tokens[:, 1:], dtype).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    synchronize(tokens.device)
    return time.perf_counter() - start


@torch.no_grad()
def _validation_forward(model: torch.nn.Module, tokens: torch.Tensor, dtype: torch.dtype | None) -> float:
    """Seconds for one validation batch: the forward pass and its loss, without gradients."""
    synchronize(tokens.device)
    start = time.perf_counter()
    autocast_loss(model, tokens[:, :-1], tokens[:, 1:], dtype)
    synchronize(tokens.device)
    return time.perf_counter() - start


def measure(candidate: Candidate, device: torch.device) -> tuple[float, str, float]:
    """(training tokens/s, the precision that gave it, validation tokens/s in that precision), timed now on a
    throwaway model of the candidate's shape with the run's rows and window."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = _timing_model(candidate).to(device)
        tokens = torch.randint(candidate.vocab_size, (candidate.batch_size, candidate.seq_len + 1), device=device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
        dtypes = {p: _DTYPES[p] for p in precisions_to_try(device, model.width)}
        model.train()
        for dtype in dtypes.values():  # the first step of each builds its kernels: not timed
            _whole_step(model, optimizer, tokens, dtype)
        best = {name: float("inf") for name in dtypes}
        for _ in range(ROUNDS):  # in turns, so that a moment of load elsewhere slows every precision, not one
            for name, dtype in dtypes.items():
                best[name] = min(best[name], _whole_step(model, optimizer, tokens, dtype))
        precision = min(best, key=best.get)
        model.eval()
        forward = min(_validation_forward(model, tokens, dtypes[precision]) for _ in range(ROUNDS + 1))
    tokens_per_step = candidate.batch_size * candidate.seq_len
    return tokens_per_step / best[precision], precision, tokens_per_step / forward


class SpeedMeter:
    """The speed function `plan_run` calls: cached, measured while `limit_s` of measuring lasts, else estimated."""

    def __init__(self, device: torch.device, limit_s: float, path: Path | None = None, measure_with=measure) -> None:
        self.device, self.limit_s = device, limit_s
        self.path = Path(path) if path is not None else cache_dir() / CACHE_FILE
        self.measure_with = measure_with
        self.spent = 0.0
        self.reference: tuple[float, Speed] | None = None  # (FLOPs per token, speed) of the last measured shape

    def _key(self, candidate: Candidate) -> str:
        return (f"{machine_key(self.device)}|{METHOD}|{candidate.family} {candidate.options} "
                f"vocab {candidate.vocab_size} batch {candidate.batch_size}x{candidate.seq_len}")

    def __call__(self, candidate: Candidate) -> Speed:
        _, flops = parameters_and_flops(candidate)
        stored = read_measurements(self.path).get(self._key(candidate))
        if isinstance(stored, list) and len(stored) == 3 and stored[0] > 0 and stored[2] > 0:
            speed = Speed(float(stored[0]), str(stored[1]), "cached", float(stored[2]))
        elif self.reference is None or self.spent < self.limit_s:
            started = time.perf_counter()
            tokens_per_second, precision, validation_tokens_per_second = self.measure_with(candidate, self.device)
            self.spent += time.perf_counter() - started
            record_measurements(self.path, {self._key(candidate): [tokens_per_second, precision,
                                                                   validation_tokens_per_second]})
            speed = Speed(tokens_per_second, precision, "measured", validation_tokens_per_second)
        else:
            reference_flops, reference = self.reference
            scale = reference_flops / flops
            return Speed(reference.tokens_per_second * scale, reference.precision, "estimated from FLOPs",
                         reference.validation_tokens_per_second * scale)
        self.reference = (flops, speed)
        return speed
