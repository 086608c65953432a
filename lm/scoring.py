"""Running a model over a whole token sequence to score every next-token prediction, the two ways a family can
read it (lm.models.family chooses):

- in windows (a model with a fixed context): with a stride shorter than the window, each window scores only its last
  `stride` tokens, so every token after the first window has at least `window - stride` tokens of context;
- as contiguous streams with the state carried from chunk to chunk (a recurrent model), so every token sees all the
  text of its stream before it (one stream to evaluate; several, like AWD's validation batches, to validate quickly).

Each scored piece goes to `consume(logits (..., V), targets (...))`, e.g. `TokenStats.update`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

Consume = Callable[[torch.Tensor, torch.Tensor], None]


def windows(num_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first_scored) triples covering targets 1..num_tokens-1 exactly once.

    The window's inputs are ids[start:end], its targets ids[start+1:end+1]; targets before `first_scored`
    (relative to start) were scored by an earlier window.
    """
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in 1..{window}, got {stride}")
    total = num_tokens - 1
    triples, scored = [], 0
    while scored < total:
        end = min(scored + (window if scored == 0 else stride), total)
        start = max(0, end - window)
        triples.append((start, end, scored - start))
        scored = end
    return triples


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


@torch.no_grad()
def score_windows(model, ids: np.ndarray, consume: Consume, device, window: int, stride: int | None = None,
                  batch_size: int = 32, max_windows: int | None = None, rank: int = 0, world_size: int = 1,
                  autocast=None) -> None:
    """Score `ids` in windows of `window` tokens, `batch_size` windows per forward pass; with `max_windows`, a
    sample of that many spread over the whole text."""
    triples = windows(len(ids), window, stride or window)
    if max_windows is not None and len(triples) > max_windows:  # spread the sample over the whole text
        picks = np.linspace(0, len(triples) - 1, max_windows).round().astype(int)
        triples = [triples[i] for i in sorted(set(picks.tolist()))]
    triples = triples[rank::world_size]
    autocast = autocast or contextlib.nullcontext
    # windows of equal length batch together; only a text shorter than the window gives a short one
    groups: dict[int, list] = {}
    for w in triples:
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
                consume(logits, y)
            else:  # score each window from its first new target on
                keep = torch.arange(y.shape[1], device=device)[None, :] >= firsts[:, None]
                consume(logits[keep], y[keep])


@torch.no_grad()
def score_streams(model, ids: np.ndarray, consume: Consume, device, streams: int = 1, chunk: int = 256,
                  max_chunks: int | None = None, rank: int = 0, world_size: int = 1, autocast=None) -> None:
    """Score `ids` cut into `streams` contiguous streams read side by side, `chunk` tokens per forward pass, the
    model's state carried from one chunk to the next; with `max_chunks`, only the first ones."""
    ids = np.asarray(ids)
    if world_size > 1:  # each rank takes a contiguous share of the text
        share = len(ids) // world_size
        ids = ids[rank * share: (rank + 1) * share + 1]
    length = (len(ids) - 1) // streams
    if length < 1:
        return
    # views of the (memory-mapped) ids; each chunk is copied out as it is read, so a long text is never in memory
    inputs = ids[: streams * length].reshape(streams, length)
    targets = ids[1: streams * length + 1].reshape(streams, length)
    autocast = autocast or contextlib.nullcontext
    state = None
    for n, start in enumerate(range(0, length, chunk)):
        if max_chunks is not None and n >= max_chunks:
            break
        x = torch.from_numpy(np.asarray(inputs[:, start: start + chunk], dtype=np.int64)).to(device)
        with autocast():
            out = model(x, state)
        state = out.state
        y = torch.from_numpy(np.asarray(targets[:, start: start + chunk], dtype=np.int64))
        consume(out.logits, y.to(device))
