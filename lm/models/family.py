"""What generic code asks of a model family: the hooks registered in `lm.models.MODEL_TYPES`.

The trainer, the evaluation, the model card, the config checks and the generation engine never ask which family
they hold; they call these hooks. Two ways of reading text cover the families so far:

- `WindowedFamily` (GPT): a fixed context. It trains on random windows, scores a long text in overlapping windows
  and generates past its context by sliding its cache (or re-encoding the last half-context).
- `RecurrentFamily` (AWD-LSTM): it carries its state instead. It trains on contiguous streams with the state carried
  from batch to batch (truncated BPTT), scores a long text as one stream, and has no context to slide past.

A new family is one file (config dataclass, model, and its `Family` instance, usually one of these two with any
hook of its own overridden) plus its line in `MODEL_TYPES`. Its model provides what every model does: `forward(tokens,
state) -> ModelOutput`, `init_state`, `context_length`, `num_parameters()`, `width` and
`training_flops_per_token(seq_len)`. Anything else generic code would do differently for it is a hook here, which
every family answers, never an `if` on the model type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from lm.batches import StreamSampler, WindowSampler
from lm.checks import OptionError
from lm.models.output import ModelOutput
from lm.scoring import Consume, score_streams, score_windows, windows

# A long text scored for evaluation: the faithful reading, and the batch size that keeps it quick.
EVALUATION_BATCH = 32
STREAM_CHUNK = 256  # tokens per forward pass when one stream is read (the state carries the rest)
READ_SEGMENT = 32  # tokens per segment when a recurrent model reads a text segment by segment (read_in_order)
PREDICT_STREAMS = 16  # streams a recurrent model reads side by side to predict every position (predict_all)
PREDICT_CHUNK = 128  # tokens per stream per forward pass there


@dataclass(frozen=True)
class Family(ABC):
    """One model family: its names, its classes and what differs between families."""

    name: str  # config.json's model_type, e.g. "gpt"
    title: str  # how a person calls it, e.g. "decoder-only transformer (GPT)"
    config_class: type
    model_class: type[nn.Module]
    # Trainer settings (`training.<name>`) that only this family reads; for every other family they must stay off.
    training_settings: tuple[str, ...] = ()
    # Optimizers made for this family; other families may not use them.
    optimizers: tuple[str, ...] = ()

    def build(self, config: Any) -> nn.Module:
        return self.model_class(config)

    # --- training -----------------------------------------------------------------------------------------------
    @abstractmethod
    def batches(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int, rank: int = 0,
                world_size: int = 1, variable_length: bool = False) -> WindowSampler | StreamSampler:
        """The sampler of training batches: `batch(step, micro)`, `state_dict()`, `load_state_dict()`."""

    def carry(self, state: Any) -> Any:
        """The model state the next training batch starts from, given the one this batch ended with; None starts
        the next batch afresh."""
        return None

    def loss_terms(self, output: ModelOutput, settings: Mapping[str, Any]) -> list[torch.Tensor]:
        """Regularisation terms added to the cross-entropy, from the trainer's settings (`training.*`)."""
        return []

    def check_training(self, settings: Mapping[str, Any], config: Any) -> None:
        """OptionError naming the `training.*` setting this family cannot train with, given its model config."""

    def state_tensors(self, state: Any) -> dict[str, torch.Tensor]:
        """The carried state as named tensors, for the resume folder."""
        return {}

    def state_from_tensors(self, tensors: Mapping[str, torch.Tensor], device: torch.device) -> Any:
        """The carried state back from `state_tensors` (None when there is none)."""
        return None

    # --- scoring ------------------------------------------------------------------------------------------------
    @abstractmethod
    def score_batches(self, model: nn.Module, ids: np.ndarray, consume: Consume, device: Any, seq_len: int,
                      batch_size: int, max_batches: int | None = None, rank: int = 0, world_size: int = 1,
                      autocast: Any = None) -> None:
        """A quick reading of `ids`, shaped like the training batches (the trainer's validation)."""

    @abstractmethod
    def score_text(self, model: nn.Module, ids: np.ndarray, consume: Consume, device: Any,
                   window: int | None = None, stride: int | None = None) -> None:
        """The faithful reading of a whole text (evaluation): every token with as much context as the family can
        give it. `window` and `stride` apply to families that read in windows."""

    @abstractmethod
    def default_segment(self, model: nn.Module) -> int:
        """Tokens per segment of `read_in_order` unless told otherwise."""

    @abstractmethod
    def read_in_order(self, model: nn.Module, ids: np.ndarray, device: Any,
                      segment: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Read `ids` one segment of `segment` new tokens at a time (None: `default_segment`), in order, with
        autograd on, yielding (logits (1, S, V), targets (1, S)) of each segment's new tokens. Each forward pass runs
        only when the next segment is asked for, so the caller may change the weights in between (dynamic
        evaluation) and no segment is read by weights changed after it."""

    @abstractmethod
    def predict_all(self, model: nn.Module, ids: np.ndarray, device: Any,
                    keep: Callable[[np.ndarray, torch.Tensor], None]) -> None:
        """Every next-token prediction over `ids` once, read as quickly as the family can with useful context
        (distillation's teacher): `keep(positions (n,), logits (n, V))`, position j predicting ids[j + 1]."""

    # --- generation ---------------------------------------------------------------------------------------------
    # The scheduler (lm/scheduler.py) keeps one state for a batch of rows, each row a sequence: a prompt is read on
    # its own (`model(ids, model.init_state(1))`), then joins the batch; every step feeds one token per row; rows
    # leave when their sequence ends. By default the state is tensors with the batch first (or None), nested in
    # lists and tuples, as the LSTM's (h, c) per layer.
    def prompt_window(self, model: nn.Module, ids: Sequence[int]) -> Sequence[int]:
        """The part of a prompt's token ids the model reads first."""
        return ids

    def join_rows(self, model: nn.Module, state: Any, row_state: Any, copies: int) -> Any:
        """The batch's `state` (from `model.init_state(0)` at first) with `copies` rows appended, each continuing
        `row_state`, the state of one row."""
        return _nested(lambda batch, row: torch.cat([batch, row.expand(copies, *row.shape[1:])]), state, row_state)

    def keep_rows(self, model: nn.Module, state: Any, keep: list[int]) -> Any:
        """The batch's `state` with only the rows `keep` lists, in that order (a row moves only into a row that is
        not kept)."""
        index = None
        def select(batch: torch.Tensor) -> torch.Tensor:
            nonlocal index
            index = torch.tensor(keep, device=batch.device) if index is None else index
            return batch.index_select(0, index)
        return _nested(select, state)

    def make_room(self, model: nn.Module, state: Any, histories: Sequence[Sequence[int]], device: Any) -> Any:
        """The state to feed one more token per row with, once row r has read `histories[r]` (its last token is the
        one about to be fed)."""
        return state

    # --- description --------------------------------------------------------------------------------------------
    def limitations(self, model_config: Mapping[str, Any]) -> list[str]:
        """What a model card says this family cannot do, given config.json's `model` section."""
        return []


class WindowedFamily(Family):
    """A model with a fixed context (`model.context_length`), whose state is a cache of at most that many
    positions (`state.length`) that can slide, unless `model.needs_reencode_to_slide`."""

    def batches(self, ids, batch_size, seq_len, seed, rank=0, world_size=1, variable_length=False):
        return WindowSampler(ids, batch_size, seq_len, seed, rank)

    def check_training(self, settings: Mapping[str, Any], config: Any) -> None:
        if settings["seq_len"] > config.context_length:
            raise OptionError(
                "seq_len", f"is {settings['seq_len']}, longer than the model's context_length {config.context_length}"
            )

    def score_batches(self, model, ids, consume, device, seq_len, batch_size, max_batches=None, rank=0,
                      world_size=1, autocast=None):
        max_windows = None if max_batches is None else max_batches * batch_size
        score_windows(model, ids, consume, device, window=seq_len, batch_size=batch_size, max_windows=max_windows,
                      rank=rank, world_size=world_size, autocast=autocast)

    def score_text(self, model, ids, consume, device, window=None, stride=None):
        window = window or model.context_length
        score_windows(model, ids, consume, device, window=window, stride=stride or max(1, window // 2),
                      batch_size=EVALUATION_BATCH)

    def default_segment(self, model):
        return max(1, model.context_length // 2)  # the stride of score_text

    def read_in_order(self, model, ids, device, segment=None):
        """Windows of the context that end at each segment, the stride being the segment, so every token after the
        first window has `context - segment` tokens of context."""
        segment = segment or self.default_segment(model)
        if segment > model.context_length:
            raise ValueError(f"a segment of {segment} tokens is longer than the context ({model.context_length})")
        for start, end, first in windows(len(ids), model.context_length, segment):
            x = torch.as_tensor(np.asarray(ids[start:end], dtype=np.int64), device=device)[None]
            y = torch.as_tensor(np.asarray(ids[start + 1: end + 1], dtype=np.int64), device=device)[None]
            yield model(x).logits[:, first:], y[:, first:]

    def predict_all(self, model, ids, device, keep):
        """score_text's batched, overlapping windows, which hand their scored tokens over in text order."""
        at = 0
        def consume(logits: torch.Tensor, _targets: torch.Tensor) -> None:
            nonlocal at
            logits = logits.reshape(-1, logits.shape[-1])
            keep(np.arange(at, at + len(logits)), logits)
            at += len(logits)
        self.score_text(model, ids, consume, device)

    def prompt_window(self, model, ids):
        return ids[-model.context_length:]

    def join_rows(self, model, state, row_state, copies):
        if state.rows == 0 and copies == 1:
            return row_state  # a batch of one: no copy
        state.add_rows(row_state, copies)
        return state

    def keep_rows(self, model, state, keep):
        state.keep_rows(keep)
        return state

    def make_room(self, model, state, histories, device):
        """A cache that can slide makes room itself, row by row; a row that cannot (learned positions) and is full
        is re-encoded from the last half-context of its history, so decoding goes on with as much context as fits."""
        if not model.needs_reencode_to_slide:
            return state
        for row, length in enumerate(state.lengths):
            if length >= model.context_length:
                keep = list(histories[row][-(model.context_length // 2): -1])
                fresh = model(torch.tensor([keep], device=device), model.init_state(1, device)).state
                state.replace_row(row, fresh)
        return state

    def limitations(self, model_config):
        return [f"It attends to the last {model_config['context_length']} tokens only; longer generations slide "
                "that window along."]


class RecurrentFamily(Family):
    """A model that carries its state (`model(tokens, state)` returns the state after the last token) and has no
    context length."""

    def batches(self, ids, batch_size, seq_len, seed, rank=0, world_size=1, variable_length=False):
        return StreamSampler(ids, batch_size, seq_len, seed, variable_length, rank, world_size)

    def carry(self, state):
        """Truncated backpropagation through time: keep the values, cut the graph."""
        return _detached(state)

    def score_batches(self, model, ids, consume, device, seq_len, batch_size, max_batches=None, rank=0,
                      world_size=1, autocast=None):
        score_streams(model, ids, consume, device, streams=batch_size, chunk=seq_len, max_chunks=max_batches,
                      rank=rank, world_size=world_size, autocast=autocast)

    def score_text(self, model, ids, consume, device, window=None, stride=None):
        score_streams(model, ids, consume, device, streams=1, chunk=STREAM_CHUNK)

    def default_segment(self, model):
        return READ_SEGMENT

    def read_in_order(self, model, ids, device, segment=None):
        """Consecutive segments with the state carried, detached, from one to the next."""
        segment = segment or self.default_segment(model)
        state = None
        for start in range(0, len(ids) - 1, segment):
            end = min(start + segment, len(ids) - 1)
            x = torch.as_tensor(np.asarray(ids[start:end], dtype=np.int64), device=device)[None]
            y = torch.as_tensor(np.asarray(ids[start + 1: end + 1], dtype=np.int64), device=device)[None]
            output = model(x, state)
            state = self.carry(output.state)
            yield output.logits, y

    def predict_all(self, model, ids, device, keep):
        """PREDICT_STREAMS streams read side by side (one stream would go token by token for minutes), each from an
        empty state, which costs a few dozen weak predictions per stream; the few positions left over after them are
        read in order."""
        length = (len(ids) - 1) // PREDICT_STREAMS
        offsets = np.arange(PREDICT_STREAMS)[:, None] * length  # (streams, 1): where each stream begins
        read = 0  # tokens of each stream read so far
        def consume(logits: torch.Tensor, _targets: torch.Tensor) -> None:  # logits (streams, n, V)
            nonlocal read
            n = logits.shape[1]
            keep((offsets + read + np.arange(n)[None, :]).reshape(-1), logits.reshape(-1, logits.shape[-1]))
            read += n
        score_streams(model, ids, consume, device, streams=PREDICT_STREAMS, chunk=PREDICT_CHUNK)
        at = PREDICT_STREAMS * length
        for logits, _ in self.read_in_order(model, ids[at:], device):
            keep(np.arange(at, at + logits.shape[1]), logits[0])
            at += logits.shape[1]


def _nested(change, state: Any, *others: Any) -> Any:
    """`change` applied to each tensor of `state` (with the tensors at the same place in `others`), keeping the
    nesting of lists and tuples; None stays None."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return change(state, *others)
    return type(state)(_nested(change, part, *(other[i] for other in others)) for i, part in enumerate(state))


def _detached(state: Any) -> Any:
    """The same nesting of lists and tuples, each tensor detached from its graph."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return type(state)(_detached(part) for part in state)
