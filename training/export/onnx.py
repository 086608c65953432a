"""`export --format onnx`: one graph per model that decodes incrementally, its state as inputs and outputs.

GPT inputs: `input_ids` (B, T) int64, `position_ids` (B, T) int64 (absolute positions: rotary angles or learned
rows), and per layer `past.{i}.key` / `past.{i}.value` (B, nh, P, hs) float32, P >= 0 (empty at the start).
Outputs: `logits` (B, T, V) and `present.{i}.key` / `present.{i}.value` (B, nh, P + T, hs). A query sees every
cached key and the new keys up to its own. Rotary keys carry their absolute rotation, so a runtime may drop the
front of a full cache and go on with later positions (what Scriptorium does); learned positions stop at the
context length and need the window re-encoded instead.

LSTM inputs: `input_ids` (B, T) and per layer `state.{i}.h` / `state.{i}.c` (B, H_i); outputs `logits` and
`state_out.{i}.h` / `state_out.{i}.c`.

The graph is traced from small step modules that reuse the model's own layers; only attention is spelled out,
because our rotary embedding uses complex numbers, which ONNX has no type for: here it is the same rotation of
channel pairs in real arithmetic.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import lm
from lm.checkpoint import LoadedModel
from lm.models.gpt import GPT
from lm.models.lstm import AWDLSTM
from lm.models.output import ModelOutput

MODEL_FILE = "model.onnx"
OPSET = 18


class GPTStep(nn.Module):
    """GPT forward over new tokens given the past keys and values of every layer, in ONNX-friendly operations."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model
        config = model.config
        self.n_head = config.n_head
        self.head_size = config.n_embd // config.n_head
        inv_freq = 1.0 / config.rope_base ** (torch.arange(0, self.head_size, 2).float() / self.head_size)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (hs/2,), as lm.models.gpt.rotary_table

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x (B, nh, T, hs): channel pairs (2i, 2i+1) rotated by angle i of each position; cos, sin (B, 1, T, hs/2)."""
        pairs = x.reshape(*x.shape[:-1], self.head_size // 2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor):
        model = self.model
        B, T = input_ids.shape
        x = model.wte(input_ids)  # (B, T, C)
        if model.wpe is not None:
            x = x + model.wpe(position_ids)
            cos = sin = None
        else:
            angles = position_ids.float()[:, None, :, None] * self.inv_freq  # (B, 1, T, hs/2)
            cos, sin = torch.cos(angles), torch.sin(angles)
        P = past[0].shape[2]
        # query i (cache index P + i) sees keys 0 .. P + i
        allowed = torch.arange(P + T, device=x.device)[None, :] <= (torch.arange(T, device=x.device) + P)[:, None]
        bias = torch.zeros(T, P + T, device=x.device).masked_fill(~allowed, float("-inf"))
        presents = []
        for layer, block in enumerate(model.blocks):
            h = block.ln_1(x)
            qkv = block.attn.qkv(h).view(B, T, 3, self.n_head, self.head_size).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (B, nh, T, hs)
            if cos is not None:
                q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            k = torch.cat([past[2 * layer], k], dim=2)  # (B, nh, P + T, hs)
            v = torch.cat([past[2 * layer + 1], v], dim=2)
            presents += [k, v]
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size) + bias  # (B, nh, T, P + T)
            y = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, -1)
            x = x + block.attn.proj(y)
            x = x + block.mlp(block.ln_2(x))
        logits = model.lm_head(model.ln_f(x))
        return (logits, *presents)


class LSTMStep(nn.Module):
    """AWD-LSTM forward over new tokens from a given (h, c) per layer (inference: no dropout)."""

    def __init__(self, model: AWDLSTM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *state: torch.Tensor):
        x = self.model.encoder(input_ids)  # (B, T, E)
        outputs = []
        for i, lstm in enumerate(self.model.layers):
            hx = (state[2 * i].unsqueeze(0), state[2 * i + 1].unsqueeze(0))  # (1, B, H_i)
            x, (h, c) = lstm(x, hx)
            outputs += [h.squeeze(0), c.squeeze(0)]
        return (self.model.decoder(x), *outputs)


def state_names(loaded: LoadedModel) -> tuple[list[str], list[str]]:
    """Names of the state inputs and of the matching outputs, in graph order."""
    if loaded.model_type == "gpt":
        n = loaded.model.config.n_layer
        ins = [f"past.{i}.{kind}" for i in range(n) for kind in ("key", "value")]
        outs = [f"present.{i}.{kind}" for i in range(n) for kind in ("key", "value")]
    else:
        n = loaded.model.config.n_layers
        ins = [f"state.{i}.{kind}" for i in range(n) for kind in ("h", "c")]
        outs = [f"state_out.{i}.{kind}" for i in range(n) for kind in ("h", "c")]
    return ins, outs


def empty_state(loaded: LoadedModel, batch: int) -> list[np.ndarray]:
    """The state inputs before the first token: an empty cache (GPT) or zeros (LSTM)."""
    model = loaded.model
    if loaded.model_type == "gpt":
        hs = model.config.n_embd // model.config.n_head
        shape = (batch, model.config.n_head, 0, hs)
        return [np.zeros(shape, dtype=np.float32) for _ in range(2 * model.config.n_layer)]
    return [np.zeros((batch, lstm.hidden_size), dtype=np.float32) for lstm in model.layers for _ in range(2)]


def write_onnx(loaded: LoadedModel, folder: Path, name: str) -> list[str]:
    """Trace the step module and write `model.onnx` (weights inside, what it is in its metadata) and
    `tokenizer.json` into `folder`."""
    import onnx  # an export dependency (requirements-export.txt), not a serving one

    model = loaded.model.eval()
    ins, outs = state_names(loaded)
    ids = torch.zeros(2, 3, dtype=torch.long)
    tokens_axes = {0: "batch", 1: "new_tokens"}
    if loaded.model_type == "gpt":
        step: nn.Module = GPTStep(model)
        hs = model.config.n_embd // model.config.n_head
        state = tuple(torch.zeros(2, model.config.n_head, 4, hs) for _ in ins)
        args = (ids, torch.arange(4, 7).expand(2, 3), *state)
        input_names = ["input_ids", "position_ids", *ins]
        axes = {"input_ids": tokens_axes, "position_ids": tokens_axes, **{n: {0: "batch", 2: "past"} for n in ins},
                **{n: {0: "batch", 2: "past_and_new"} for n in outs}}
    else:
        step = LSTMStep(model)
        state = tuple(torch.zeros(2, lstm.hidden_size) for lstm in model.layers for _ in range(2))
        args = (ids, *state)
        input_names = ["input_ids", *ins]
        axes = {"input_ids": tokens_axes, **{n: {0: "batch"} for n in ins + outs}}
    axes["logits"] = tokens_axes
    # The TorchScript exporter: it maps nn.LSTM onto ONNX's LSTM operator with a free sequence length, where the
    # torch.export route unrolls it over the traced length; for the GPT it is also ten times quicker here.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes are not the user's business
        torch.onnx.export(step.eval(), args, str(folder / MODEL_FILE), dynamo=False, input_names=input_names,
                          output_names=["logits", *outs], dynamic_axes=axes, opset_version=OPSET)
    model.eval()  # the exporter restores the step module's mode, and with it the model's
    graph = onnx.load(str(folder / MODEL_FILE))
    config = loaded.model.config
    metadata = {"producer": "scriptorium", "scriptorium_version": lm.__version__, "source_model": name,
                "model_type": loaded.model_type, "tokenizer_kind": loaded.tokenizer.kind}
    if loaded.model_type == "gpt":
        metadata.update(context_length=str(config.context_length), positions=config.positions)
    onnx.helper.set_model_props(graph, metadata)
    onnx.save(graph, str(folder / MODEL_FILE))
    (folder / "tokenizer.json").write_text(loaded.tokenizer.to_str(), encoding="utf-8")
    return [MODEL_FILE, "tokenizer.json"]


class OnnxState:
    """What an `OnnxModel` GPT carries between calls: the graph's cache arrays (rows, nh, P, hs), how many positions
    they hold and the absolute position of the next token. It takes part in the scheduler's batches (lm/scheduler.py,
    through `WindowedFamily`'s hooks) as a `KVCache` does, but the graph has no attention mask: the rows of one
    batch must hold as many positions, at the same positions (the sequences of one request, or requests one at a
    time, as the export check and bench/generation.py send them)."""

    def __init__(self, arrays: list[np.ndarray], length: int = 0, position: int = 0) -> None:
        self.arrays = arrays
        self.length = length
        self.position = position

    @property
    def rows(self) -> int:
        return self.arrays[0].shape[0]

    @property
    def lengths(self) -> list[int]:
        return [self.length] * self.rows

    def add_rows(self, source: OnnxState, copies: int = 1) -> None:
        """Append `copies` rows, each continuing `source`'s single row."""
        if self.rows and (source.length, source.position) != (self.length, self.position):
            raise ValueError("an ONNX graph has no attention mask: requests at different positions cannot share a "
                             "batch (send them one at a time)")
        added = [np.repeat(theirs[:1], copies, axis=0) for theirs in source.arrays]
        self.arrays = [np.concatenate([mine, new]) for mine, new in zip(self.arrays, added)] if self.rows else added
        self.length, self.position = source.length, source.position

    def keep_rows(self, keep: list[int]) -> None:
        self.arrays = [a[keep] for a in self.arrays]

    def replace_row(self, row: int, source: OnnxState) -> None:
        """Row `row` continues `source`'s single row instead (a learned-position window re-encoded)."""
        if self.rows != 1:
            raise ValueError("an ONNX graph has no attention mask: a batch of learned-position rows cannot slide")
        self.arrays, self.length, self.position = source.arrays, source.length, source.position


class OnnxModel:
    """An exported graph run by onnxruntime behind the interface of our torch models (`model(tokens, state)`,
    `init_state`, `context_length`), so `lm.Generator` decodes with it unchanged: the same sampling code and
    figures for both runtimes. A rotary GPT's full cache slides (its front dropped), as `lm.models.gpt` does. The
    GPT's state is an `OnnxState`; the LSTM's a list of tensors (B, H_i), h and c per layer, as the scheduler
    batches an LSTM's state."""

    def __init__(self, path: str | Path, loaded: LoadedModel, threads: int | None = None) -> None:
        import onnxruntime  # a check and benchmark dependency (requirements-dev.txt)

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.is_gpt = loaded.model_type == "gpt"
        self.context_length = loaded.model.context_length
        self.needs_reencode_to_slide = self.is_gpt and loaded.model.config.positions == "learned"
        self.state_inputs, _ = state_names(loaded)
        self._empty_state = empty_state(loaded, 1)  # shapes only: this object keeps no torch weights
        self._parameters = loaded.model.num_parameters()

    def num_parameters(self) -> int:
        return self._parameters

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> OnnxState | list[torch.Tensor]:
        arrays = [np.zeros((batch_size, *a.shape[1:]), dtype=np.float32) for a in self._empty_state]
        return OnnxState(arrays) if self.is_gpt else [torch.from_numpy(a) for a in arrays]

    def __call__(self, tokens: torch.Tensor, state: OnnxState | list[torch.Tensor] | None = None) -> ModelOutput:
        ids = tokens.cpu().numpy().astype(np.int64)
        B, T = ids.shape
        state = self.init_state(B) if state is None else state
        feed = {"input_ids": ids}
        if not self.is_gpt:
            feed.update(zip(self.state_inputs, (t.numpy() for t in state)))
            logits, *arrays = self.session.run(None, feed)
            return ModelOutput(logits=torch.from_numpy(logits), state=[torch.from_numpy(a) for a in arrays])
        arrays = state.arrays
        overflow = state.length + T - self.context_length
        if overflow > 0:
            if self.needs_reencode_to_slide or T > self.context_length:
                raise ValueError(f"sequence of {state.length + T} tokens exceeds the context length "
                                 f"{self.context_length}")
            arrays = [a[:, :, overflow:] for a in arrays]
        feed["position_ids"] = np.broadcast_to(np.arange(state.position, state.position + T), (B, T)).copy()
        feed.update(zip(self.state_inputs, arrays))
        logits, *arrays = self.session.run(None, feed)
        return ModelOutput(logits=torch.from_numpy(logits), state=OnnxState(arrays, arrays[0].shape[2],
                                                                            state.position + T))
