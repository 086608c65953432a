"""The GPT's key/value cache for generation: preallocated per-layer buffers for a batch of rows that may join and
leave at different times (continuous batching, lm/scheduler.py), sliding when a row runs past the context length."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for a batch of rows (sequences), in preallocated buffers
    (rows, nh, capacity, hs), so a decoding step writes one column instead of copying the cache.

    Rows are right-aligned: every row's newest position is in column `end - 1`, and row r holds its positions in
    columns [starts[r], end). Rows of one length (one prompt, or the sequences of one request) attend without a mask;
    rows that joined a batch at different times (continuous batching, lm/scheduler.py) have different starts and
    attend under a per-row mask (`step_mask`). `positions[r]` is the position of row r's next token (rotary positions
    count the ones that slid off the front). A forward pass calls `make_room`, each layer `store`, then `advance`.
    Rows come and go with `add_rows`, `keep_rows` and `replace_row`.
    """

    def __init__(self, n_layer: int, context_length: int, rows: int = 1) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer
        self.context_length = context_length
        self.capacity = 2 * context_length  # room to slide for a whole context before compacting
        # `end` starts (and compacts back to) one context in: any row, at most a context long, can join right-aligned
        self.end = context_length
        self.starts = [self.end] * rows
        self.positions = [0] * rows
        self.step_mask: torch.Tensor | None = None  # (rows, 1, 1, columns) for this step when the starts differ

    @property
    def rows(self) -> int:
        return len(self.starts)

    @property
    def length(self) -> int:
        """Positions held by the longest row (all of them, for rows of one length)."""
        return self.end - min(self.starts, default=self.end)

    @property
    def lengths(self) -> list[int]:
        return [self.end - start for start in self.starts]

    @property
    def offset(self) -> int:
        """Positions that slid off the front (rows of one length)."""
        return self.positions[0] - self.length

    @property
    def aligned(self) -> bool:
        """Whether every row holds as many positions, at the same positions (no mask, one rotation for all)."""
        return len(set(self.starts)) <= 1 and len(set(self.positions)) <= 1

    def drop_front(self, n: int) -> None:
        """Every row forgets its `n` oldest positions."""
        self.slide(self.length - n)

    def slide(self, keep: int) -> None:
        """Each row keeps at most its `keep` newest positions."""
        self.starts = [max(start, self.end - keep) for start in self.starts]

    def make_room(self, new: int) -> None:
        if self.end + new > self.capacity:
            self._compact(new)
        low = min(self.starts, default=self.end)
        if any(start != low for start in self.starts):
            columns = torch.arange(low, self.end + new, device=self._device())
            starts = torch.tensor(self.starts, device=columns.device)
            self.step_mask = (columns[None, :] >= starts[:, None]).view(self.rows, 1, 1, -1)
        else:
            self.step_mask = None

    def _compact(self, new: int) -> None:
        """Move every row's positions to the front (once per context of steps), so that `new` more fit."""
        low = min(self.starts, default=self.end)
        target = max(self.context_length, self.end - low)
        self.capacity = max(self.capacity, target + new)
        shift = self.end - target
        for buffers in (self.keys, self.values):
            for i, buf in enumerate(buffers):
                if buf is None:
                    continue
                moved = buf.new_zeros(buf.shape[0], buf.shape[1], self.capacity, buf.shape[3])
                moved[:, :, low - shift : target] = buf[:, :, low : self.end]
                buffers[i] = moved
        self.end = target
        self.starts = [start - shift for start in self.starts]

    def _device(self) -> torch.device:
        return self.keys[0].device if self.keys[0] is not None else torch.device("cpu")

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this pass's k, v (B, nh, T, hs) after every row's cached ones; returns the keys and values of
        columns [min(starts), end + T), every row's (with `step_mask` saying which columns are whose)."""
        if self.keys[layer] is None:
            B, nh, _, hs = k.shape
            # zeros, not empty: masked columns take part in the scores, and garbage could be NaN
            self.keys[layer] = k.new_zeros(B, nh, self.capacity, hs)
            self.values[layer] = v.new_zeros(B, nh, self.capacity, hs)
        keys, values = self.keys[layer], self.values[layer]
        if keys.shape[0] != k.shape[0]:
            keys, values = keys[: k.shape[0]], values[: k.shape[0]]
        end = self.end + k.shape[2]
        keys[:, :, self.end : end] = k
        values[:, :, self.end : end] = v
        low = min(self.starts)
        return keys[:, :, low:end], values[:, :, low:end]

    def advance(self, new: int) -> None:
        self.end += new
        self.positions = [position + new for position in self.positions]

    # --- rows joining and leaving a batch (lm/scheduler.py, through WindowedFamily's hooks) ------------------------

    def add_rows(self, source: KVCache, copies: int = 1) -> None:
        """Append `copies` rows, each continuing `source`'s single row (a prompt prefilled on its own)."""
        length = source.length
        if self.end + 1 > self.capacity:
            self._compact(1)
        rows = self.rows
        for layer, (src_k, src_v) in enumerate(zip(source.keys, source.values)):
            if src_k is None:
                continue
            self.keys[layer] = self._grown(self.keys[layer], src_k, rows + copies)
            self.values[layer] = self._grown(self.values[layer], src_v, rows + copies)
            window = slice(source.end - length, source.end)
            self.keys[layer][rows : rows + copies, :, self.end - length : self.end] = src_k[:1, :, window]
            self.values[layer][rows : rows + copies, :, self.end - length : self.end] = src_v[:1, :, window]
        self.starts += [self.end - length] * copies
        self.positions += [source.positions[0]] * copies

    def _grown(self, buf: torch.Tensor | None, like: torch.Tensor, rows: int) -> torch.Tensor:
        """`buf` with room for `rows` rows (doubling, so a growing batch reallocates rarely)."""
        if buf is not None and buf.shape[0] >= rows:
            return buf
        size = max(rows, 2 * (buf.shape[0] if buf is not None else 0))
        bigger = like.new_zeros(size, like.shape[1], self.capacity, like.shape[3])
        if buf is not None:
            bigger[: buf.shape[0]] = buf
        return bigger

    def keep_rows(self, keep: list[int]) -> None:
        """Keep the rows `keep` lists, in that order: row i becomes old row keep[i]. A row may only move into a row
        that is not kept (so the copies can be made in place, one per row that moves)."""
        low = min(self.starts, default=self.end)
        for new, old in enumerate(keep):
            if new == old:
                continue
            for buffers in (self.keys, self.values):
                for buf in buffers:
                    if buf is not None:
                        buf[new, :, low : self.end] = buf[old, :, low : self.end]
        self.starts = [self.starts[old] for old in keep]
        self.positions = [self.positions[old] for old in keep]

    def replace_row(self, row: int, source: KVCache) -> None:
        """Row `row` continues `source`'s single row instead (a window re-encoded for learned positions)."""
        length = source.length
        for buffers, src in ((self.keys, source.keys), (self.values, source.values)):
            for layer, buf in enumerate(buffers):
                if buf is not None and src[layer] is not None:
                    buf[row, :, self.end - length : self.end] = src[layer][0, :, source.end - length : source.end]
        self.starts[row] = self.end - length
        self.positions[row] = source.positions[0]
