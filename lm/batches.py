"""Training batches, reproducible from (seed, step) so a resumed run sees exactly the data it would have seen.
Each model family trains on one kind (lm.models.family chooses):

- `WindowSampler` draws random windows of `seq_len` tokens (a model with a fixed context);
- `StreamSampler` cuts the ids into `batch_size` contiguous streams and walks along them, so a recurrent model's
  state can be carried from one step to the next (truncated BPTT); with AWD's variable BPTT the window length is
  drawn per step around `seq_len`.
With several processes (DDP) each rank draws its own windows or walks its own streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


@dataclass
class Batch:
    x: torch.Tensor  # (B, T) input ids
    y: torch.Tensor  # (B, T) next-token targets
    seq_len: int
    reset_state: bool = False  # a new pass over the data begins: a carried state starts afresh
    starts: np.ndarray | None = None  # (B,) where each row's first input token is in the ids (distillation looks up)


class WindowSampler:
    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int, rank: int = 0) -> None:
        if len(ids) < seq_len + 2:
            raise ValueError(f"the training text has {len(ids)} tokens, fewer than one window of {seq_len + 1}")
        self.ids, self.batch_size, self.seq_len, self.seed, self.rank = ids, batch_size, seq_len, seed, rank

    def batch(self, step: int, micro: int = 0) -> Batch:
        T = self.seq_len
        starts = _rng(self.seed, step, micro, self.rank).integers(0, len(self.ids) - T - 1, size=self.batch_size,
                                                                    endpoint=True)
        chunk = np.stack([np.asarray(self.ids[s: s + T + 1], dtype=np.int64) for s in starts])
        chunk = torch.from_numpy(chunk)
        return Batch(chunk[:, :-1], chunk[:, 1:], T, starts=starts)

    def state_dict(self) -> dict:
        return {}  # nothing beyond (seed, step)

    def load_state_dict(self, state: dict) -> None:
        pass


class StreamSampler:
    MIN_LEN = 5
    MAX_EXTRA = 40  # AWD caps the drawn length at bptt + 40

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int, variable: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        streams = batch_size * world_size
        length = len(ids) // streams
        if length < 3:
            raise ValueError(f"the training text has {len(ids)} tokens, too few for {streams} streams")
        # (streams, length) view on the memmap; this rank's rows only
        data = np.asarray(ids[: streams * length]).reshape(streams, length)
        self.streams = data[rank * batch_size: (rank + 1) * batch_size]
        self.row_starts = (rank * batch_size + np.arange(batch_size)) * length  # each stream's place in the ids
        self.seq_len, self.seed, self.variable = seq_len, seed, variable
        self.position = 0
        self.epoch = 0

    def draw_len(self, step: int, micro: int = 0) -> int:
        if not self.variable:
            return self.seq_len
        rng = _rng(self.seed, step, micro)
        base = self.seq_len if rng.random() < 0.95 else self.seq_len / 2
        length = int(rng.normal(base, 5))
        return max(self.MIN_LEN, min(length, self.seq_len + self.MAX_EXTRA))

    def batch(self, step: int, micro: int = 0) -> Batch:
        seq_len = self.draw_len(step, micro)
        length = self.streams.shape[1]
        reset = False
        if self.position >= length - 1 - self.MIN_LEN:  # too little left: start the next pass
            self.position, self.epoch, reset = 0, self.epoch + 1, True
        n = min(seq_len, length - 1 - self.position)
        p = self.position
        x = torch.from_numpy(np.asarray(self.streams[:, p: p + n], dtype=np.int64))
        y = torch.from_numpy(np.asarray(self.streams[:, p + 1: p + 1 + n], dtype=np.int64))
        self.position += n
        return Batch(x, y, n, reset, starts=self.row_starts + p)

    def state_dict(self) -> dict:
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.epoch = int(state["position"]), int(state["epoch"])
