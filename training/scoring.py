"""Running a model over a whole token sequence to score every next-token prediction.

- LSTM: contiguous streams with the state carried from chunk to chunk, so every token sees all the text before it
  (one stream for `evaluate`; several, like AWD's validation batches, to validate quickly during training).
- GPT: windows of the context length. With a stride shorter than the context (`evaluate` uses half of it), each
  window scores only its last `stride` tokens, so every token after the first window has at least
  `context - stride` tokens of context.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from training.metrics import TokenStats


def gpt_windows(num_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first_scored) triples covering targets 1..num_tokens-1 exactly once.

    The window's inputs are ids[start:end], its targets ids[start+1:end+1]; targets before `first_scored`
    (relative to start) were scored by an earlier window.
    """
    if not 0 < stride <= context:
        raise ValueError(f"stride must be in 1..{context}, got {stride}")
    total = num_tokens - 1
    windows, scored = [], 0
    while scored < total:
        end = min(scored + (context if scored == 0 else stride), total)
        start = max(0, end - context)
        windows.append((start, end, scored - start))
        scored = end
    return windows


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


@torch.no_grad()
def score_gpt(model, ids: np.ndarray, stats: TokenStats, device, context: int | None = None,
              stride: int | None = None, batch_size: int = 32, max_windows: int | None = None, rank: int = 0,
              world_size: int = 1, autocast=None) -> TokenStats:
    context = context or model.context_length
    windows = gpt_windows(len(ids), context, stride or context)
    if max_windows is not None and len(windows) > max_windows:  # spread the sample over the whole text
        picks = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
        windows = [windows[i] for i in sorted(set(picks.tolist()))]
    windows = windows[rank::world_size]
    autocast = autocast or contextlib.nullcontext
    # windows of equal length batch together; only a text shorter than the context gives a short one
    groups: dict[int, list] = {}
    for w in windows:
        groups.setdefault(w[1] - w[0], []).append(w)
    for group in groups.values():
        for chunk in _batches(group, batch_size):
            x = torch.from_numpy(np.stack([np.asarray(ids[s:e], dtype=np.int64) for s, e, _ in chunk])).to(device)
            y = torch.from_numpy(np.stack([np.asarray(ids[s + 1: e + 1], dtype=np.int64) for s, e, _ in chunk]))
            with autocast():
                logits = model(x).logits
            y = y.to(device)
            firsts = torch.tensor([first for _, _, first in chunk], device=device)
            if int(firsts.max()) == 0:
                stats.update(logits, y)
            else:  # score each window from its first new target on
                keep = torch.arange(y.shape[1], device=device)[None, :] >= firsts[:, None]
                stats.update(logits[keep], y[keep])
    return stats


@torch.no_grad()
def score_lstm(model, ids: np.ndarray, stats: TokenStats, device, streams: int = 1, chunk: int = 256,
               max_chunks: int | None = None, rank: int = 0, world_size: int = 1, autocast=None) -> TokenStats:
    ids = np.asarray(ids)
    if world_size > 1:  # each rank takes a contiguous share of the text
        share = len(ids) // world_size
        ids = ids[rank * share: (rank + 1) * share + 1]
    length = (len(ids) - 1) // streams
    if length < 1:
        return stats
    inputs = torch.from_numpy(np.asarray(ids[: streams * length], dtype=np.int64).reshape(streams, length))
    targets = torch.from_numpy(np.asarray(ids[1: streams * length + 1], dtype=np.int64).reshape(streams, length))
    autocast = autocast or contextlib.nullcontext
    state = None
    for n, start in enumerate(range(0, length, chunk)):
        if max_chunks is not None and n >= max_chunks:
            break
        x = inputs[:, start: start + chunk].to(device)
        with autocast():
            out = model(x, state)
        state = out.state
        stats.update(out.logits, targets[:, start: start + chunk].to(device))
    return stats
