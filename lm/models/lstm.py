"""AWD-LSTM (Merity, Keskar and Socher 2017, "Regularizing and Optimizing LSTM Language Models").

Regularisation, all active only in training mode:
- embedding dropout: whole rows of the embedding matrix (every occurrence of a word) dropped together;
- locked (variational) dropout: one mask per sequence, shared across time, on the input, between layers and on
  the output;
- DropConnect ("weight drop") on each layer's hidden-to-hidden matrix, one mask per forward pass.
The decoder shares the embedding matrix (weight tying), so the last layer's width is the embedding width.
Returns the last layer's outputs before and after dropout for activation (AR) and temporal activation (TAR)
regularisation.

Weight drop is done by passing the dropped matrix to `torch.func.functional_call`, a public API, instead of
patching `nn.LSTM`'s private weight attributes (what broke the reference code on most torch releases).

Optional Mogrifier gating (Melis, Kocisky and Blunsom 2019, "Mogrifier LSTM"): before each step the input and
the previous hidden state scale each other for a few rounds, so the gates see interactions plain LSTMs miss. The
layer then runs as a loop of hand-written cells (nn.LSTM's fused kernel cannot take a modulated input).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from lm import checks
from lm.models.family import RecurrentFamily
from lm.models.output import ModelOutput

LSTMState = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: h (B, H), c (B, H)


@dataclass
class LSTMConfig:
    vocab_size: int
    emb_size: int = 400
    hidden_size: int = 1150
    n_layers: int = 3
    dropout: float = 0.4  # locked dropout on the last layer's output
    dropout_hidden: float = 0.3  # locked dropout between layers
    dropout_input: float = 0.65  # locked dropout on the embeddings
    dropout_embedding: float = 0.1  # whole word rows of the embedding matrix
    weight_drop: float = 0.5  # DropConnect on hidden-to-hidden weights
    tie_weights: bool = True
    mogrifier_rounds: int = 0  # Mogrifier: rounds of mutual gating of input and state before each step; 0 = off
    mogrifier_rank: int = 0  # Mogrifier matrices as a product of two rank-k factors; 0 = full rank

    def __post_init__(self) -> None:
        for name in ("vocab_size", "emb_size", "hidden_size", "n_layers"):
            checks.integer(name, getattr(self, name), minimum=1)
        for name in ("dropout", "dropout_hidden", "dropout_input", "dropout_embedding", "weight_drop"):
            checks.number(name, getattr(self, name), minimum=0, exclusive_maximum=1)
        for name in ("mogrifier_rounds", "mogrifier_rank"):
            checks.integer(name, getattr(self, name), minimum=0)


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """x (B, T, C): one dropout mask per sequence and channel, the same at every time step."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p) / (1 - p)
    return x * mask


def embedding_dropout(embedding: nn.Embedding, tokens: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    weight = embedding.weight
    if training and p > 0.0:
        mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p) / (1 - p)  # (V, 1): whole rows
        weight = weight * mask
    return F.embedding(tokens, weight)


class Mogrifier(nn.Module):
    """Rounds i = 1..r: x <- 2 sigmoid(Q_i h) * x for odd i, h <- 2 sigmoid(R_i x) * h for even i. At h = 0 the
    first round is the identity, so a fresh state starts as a plain LSTM."""

    def __init__(self, input_size: int, hidden_size: int, rounds: int, rank: int) -> None:
        super().__init__()

        def matrix(n_in: int, n_out: int) -> nn.Module:
            if rank:
                return nn.Sequential(nn.Linear(n_in, rank, bias=False), nn.Linear(rank, n_out, bias=False))
            return nn.Linear(n_in, n_out, bias=False)

        self.gates = nn.ModuleList(matrix(hidden_size, input_size) if i % 2 == 0 else matrix(input_size, hidden_size)
                                   for i in range(rounds))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, I), h (B, H) -> both modulated."""
        for i, gate in enumerate(self.gates):
            if i % 2 == 0:
                x = 2 * torch.sigmoid(gate(h)) * x
            else:
                h = 2 * torch.sigmoid(gate(x)) * h
        return x, h


def cpu_lstm_takes_bf16() -> bool:
    """Whether oneDNN can run nn.LSTM in bf16 on this CPU (AVX512-BF16 or AMX). Elsewhere (AVX2-only CPUs) CPU
    autocast still sends the fused LSTM to bf16, and oneDNN fails with "could not create a primitive descriptor"."""
    global _CPU_LSTM_BF16
    if _CPU_LSTM_BF16 is None:
        is_supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        _CPU_LSTM_BF16 = bool(is_supported()) if is_supported is not None else True
    return _CPU_LSTM_BF16


_CPU_LSTM_BF16: bool | None = None


def recurrence_in_fp32(x: torch.Tensor) -> bool:
    """Whether the fused LSTM must leave bf16 autocast: on a CPU that cannot run an LSTM in bf16, where the recurrence
    runs in fp32 (bf16 there would be emulated, 100x slower, if oneDNN took it at all)."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and not cpu_lstm_takes_bf16())


def lstm_cell(x: torch.Tensor, h: torch.Tensor, cell: torch.Tensor, lstm: nn.LSTM,
              weight_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of `lstm`'s layer by hand: x (B, I), h and cell (B, H) -> new h and cell. Under bf16 autocast the
    products are bf16 and the state keeps its own dtype (float32 from init_state), so the cell's sum stays exact."""
    gates = torch.addmm(lstm.bias_ih_l0, x, lstm.weight_ih_l0.t())
    gates = torch.addmm(gates + lstm.bias_hh_l0, h, weight_hh.t())  # (B, 4H): i, f, g, o
    i, f, g, o = gates.chunk(4, dim=1)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


class AWDLSTM(nn.Module):
    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = nn.Embedding(c.vocab_size, c.emb_size)
        sizes = [c.emb_size] + [c.hidden_size] * (c.n_layers - 1) + [c.emb_size if c.tie_weights else c.hidden_size]
        self.layers = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(c.n_layers))
        self.mogrifiers = None
        if c.mogrifier_rounds:
            self.mogrifiers = nn.ModuleList(Mogrifier(sizes[i], sizes[i + 1], c.mogrifier_rounds, c.mogrifier_rank)
                                            for i in range(c.n_layers))
        self.decoder = nn.Linear(sizes[-1], c.vocab_size)
        if c.tie_weights:
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        # _cell_step and the Mogrifier's cells read float weight matrices; int8 LSTM layers (lm.quantize) are
        # run as modules instead
        self.flat_decode = True

    context_length = None  # an LSTM carries its state: no window

    @property
    def width(self) -> int:
        """The size of its typical matrix product's input, (B, H) @ (H, 4H), what precision probes measure."""
        return self.config.hidden_size

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def training_flops_per_token(self, seq_len: int) -> float:
        """FLOPs to train on one token: 6 per weight of every matrix product (forward 2, backward 4), i.e. each
        layer's four gates over its input and its hidden state, 4H x (input + H), the Mogrifier's matrices (each
        multiplies once per token) and the decoder. Element-wise gate arithmetic and dropout masks are not counted.
        `seq_len` does not matter for a recurrent model."""
        matmul_weights = sum(p.numel() for layer in self.layers for name, p in layer.named_parameters()
                             if name.startswith("weight_"))
        matmul_weights += sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        return 6.0 * matmul_weights

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> LSTMState:
        weight = self.encoder.weight
        return [
            (weight.new_zeros(batch_size, lstm.hidden_size, device=device),
             weight.new_zeros(batch_size, lstm.hidden_size, device=device))
            for lstm in self.layers
        ]

    def forward(self, tokens: torch.Tensor, state: LSTMState | None = None) -> ModelOutput:
        """tokens (B, T) -> logits (B, T, V), plus the state after the last token."""
        c = self.config
        B, T = tokens.shape
        if state is None:
            state = self.init_state(B, tokens.device)
        x = embedding_dropout(self.encoder, tokens, c.dropout_embedding, self.training)  # (B, T, E)
        x = locked_dropout(x, c.dropout_input, self.training)
        new_state: LSTMState = []
        for i, lstm in enumerate(self.layers):
            if self.mogrifiers is not None:
                x, layer_state = self._run_mogrified(i, x, state[i])
            elif T == 1 and self.flat_decode and not self.training:
                x, layer_state = self._cell_step(lstm, x, state[i])
            else:
                x, layer_state = self._run_layer(lstm, x, state[i])  # (B, T, H_i)
            new_state.append(layer_state)
            if i < len(self.layers) - 1:
                x = locked_dropout(x, c.dropout_hidden, self.training)
        hidden = x
        dropped = locked_dropout(hidden, c.dropout, self.training)
        logits = self.decoder(dropped)  # (B, T, V)
        return ModelOutput(logits=logits, state=new_state, hidden=hidden, dropped_hidden=dropped)

    def _dropped_weight_hh(self, lstm: nn.LSTM) -> torch.Tensor | None:
        """DropConnect's masked hidden-to-hidden matrix for this forward pass; None outside training."""
        if self.training and self.config.weight_drop > 0.0:
            return F.dropout(lstm.weight_hh_l0, p=self.config.weight_drop, training=True)
        return None

    def _run_layer(self, lstm: nn.LSTM, x: torch.Tensor, state):
        h, cell = state
        hx = (h.unsqueeze(0), cell.unsqueeze(0))  # (1, B, H)
        dropped = self._dropped_weight_hh(lstm)
        fp32 = recurrence_in_fp32(x)
        if fp32:
            x = x.float()
        with torch.autocast("cpu", enabled=False) if fp32 else contextlib.nullcontext():
            if dropped is not None:
                out, (h, cell) = functional_call(lstm, {"weight_hh_l0": dropped}, (x, hx), strict=False)
            else:
                out, (h, cell) = lstm(x, hx)
        return out, (h.squeeze(0), cell.squeeze(0))

    @staticmethod
    def _cell_step(lstm: nn.LSTM, x: torch.Tensor, state):
        """One time step by hand: at batch size 1, oneDNN's nn.LSTM path is several times slower than this."""
        h, cell = lstm_cell(x[:, 0], *state, lstm, lstm.weight_hh_l0)
        return h.unsqueeze(1), (h, cell)

    def _run_mogrified(self, i: int, x: torch.Tensor, state):
        """Layer i over x (B, T, I) one step at a time, input and state gated by the Mogrifier before each step
        (T = 1 is the decoding step)."""
        lstm, mogrifier = self.layers[i], self.mogrifiers[i]
        weight_hh = self._dropped_weight_hh(lstm)
        if weight_hh is None and self.flat_decode:
            weight_hh = lstm.weight_hh_l0
        h, cell = state
        outputs = []
        for t in range(x.shape[1]):
            x_t, h = mogrifier(x[:, t], h)
            if self.flat_decode:
                h, cell = lstm_cell(x_t, h, cell, lstm, weight_hh)
            else:  # int8 layers (lm.quantize) hold packed weights: one step of the module itself
                _, (h, cell) = lstm(x_t[:, None], (h[None], cell[None]))
                h, cell = h[0], cell[0]
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h, cell)  # (B, T, H)


class AWDLSTMFamily(RecurrentFamily):
    """The AWD-LSTM's hooks: a recurrent family with activation regularisation and its (h, c) state on disk."""

    def loss_terms(self, output: ModelOutput, settings) -> list[torch.Tensor]:
        terms = []
        if settings["alpha"]:  # AR: large activations after dropout
            terms.append(settings["alpha"] * output.dropped_hidden.float().pow(2).mean())
        if settings["beta"]:  # TAR: fast-changing hidden states
            terms.append(settings["beta"] * (output.hidden[:, 1:] - output.hidden[:, :-1]).float().pow(2).mean())
        return terms

    def state_tensors(self, state: LSTMState | None) -> dict[str, torch.Tensor]:
        tensors = {}
        for i, (h, c) in enumerate(state or []):
            tensors[f"lstm_state.{i}.h"], tensors[f"lstm_state.{i}.c"] = h.cpu(), c.cpu()
        return tensors

    def state_from_tensors(self, tensors, device) -> LSTMState | None:
        layers = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("lstm_state.")})
        return [(tensors[f"lstm_state.{i}.h"].to(device), tensors[f"lstm_state.{i}.c"].to(device))
                for i in layers] or None


FAMILY = AWDLSTMFamily(
    "lstm",
    "AWD-LSTM",
    LSTMConfig,
    AWDLSTM,
    training_settings=("variable_bptt", "alpha", "beta"),
    optimizers=("ntasgd",),  # AWD's non-monotonically triggered averaged SGD
)
