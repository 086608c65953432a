"""Dropout whose mask is cut from random bits, for the GPT's CPU training.

On a CPU, torch draws a dropout mask (`bernoulli_`) one random number per element: in the shipped GPT's training
step that was a fifth of the time (docs/benchmarks.md, "Dropout from random bits"). Here each element's keep/drop
decision is one 16-bit slice of 64-bit random words, compared with a threshold: the same distribution (the keep
probability rounded to 1/65536), from the same seeded generator, at several times the speed. On other devices
(CUDA draws its masks in bulk already) `dropout` is `F.dropout`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LEVELS = 1 << 16  # each decision is a 16-bit integer, uniform on [-32768, 32767]


def keep_mask(shape: torch.Size | tuple[int, ...], p: float,
              device: torch.device | None = None) -> tuple[torch.Tensor, float]:
    """A boolean mask of `shape`, each element kept with probability 1 - p (rounded to 1/65536), and that
    probability."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    count = math.prod(shape)
    kept_levels = max(1, round((1 - p) * _LEVELS))  # at least 1/65536: the kept are scaled by 1 / that
    if kept_levels == _LEVELS:  # p under 1/131072: keep all (the threshold below would not fit in 16 bits)
        return torch.ones(shape, dtype=torch.bool, device=device), 1.0
    words = torch.empty(-(-count // 4), dtype=torch.int64, device=device)
    words.random_(-(1 << 63), None)  # every bit of every word uniform
    halves = words.view(torch.int16)[:count]
    return (halves < kept_levels - _LEVELS // 2).view(shape), kept_levels / _LEVELS


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)`, with the mask from `keep_mask` on a CPU."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    mask, kept = keep_mask(x.shape, p, x.device)
    return x * (mask.to(x.dtype) * (1 / kept))
