"""A small decoder-only transformer (GPT), in the manner of nanoGPT.

Pre-LayerNorm blocks, causal scaled_dot_product_attention, GELU MLP, learned or rotary positions, tied input and
output embeddings. For generation, a KV cache makes each new token cost one position, and the cache slides when a
generation runs past the context length. Options from small-data speed runs (modded-nanogpt and others), all off
by default: QK-norm, a ReLU-squared or SwiGLU MLP, and zero-initialised output projections. Training on a CPU,
dropout masks come from lm.models.dropout (1.22x the step speed of torch's own for the shipped preset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lm import checks
from lm.checks import OptionError
from lm.models.dropout import dropout, keep_mask
from lm.models.family import WindowedFamily
from lm.models.kv_cache import KVCache
from lm.models.output import ModelOutput

POSITION_KINDS = ("rotary", "learned")
MLP_KINDS = ("gelu", "relu2", "swiglu")


@dataclass
class GPTConfig:
    vocab_size: int
    context_length: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.1
    attn_dropout: float | None = None  # on the attention weights; None: `dropout` (0 keeps CPU attention fused)
    bias: bool = False
    positions: str = "rotary"
    rope_base: float = 10000.0
    qk_norm: bool = False  # queries and keys RMS-normalised per head (learned gains) before attention
    mlp: str = "gelu"  # gelu | relu2 (ReLU squared) | swiglu (gated, 8/3 as wide: the same parameter count)
    zero_init_proj: bool = False  # attention and MLP output projections start at zero: each block starts as identity

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_embd"):
            checks.integer(name, getattr(self, name), minimum=1)
        if self.n_embd % self.n_head:
            raise OptionError("n_embd", f"must be divisible by n_head, got {self.n_embd} and {self.n_head}")
        checks.one_of("positions", self.positions, POSITION_KINDS)
        if self.positions == "rotary" and (self.n_embd // self.n_head) % 2:
            raise OptionError("n_head", "must leave an even head size (n_embd / n_head) for rotary positions")
        checks.number("dropout", self.dropout, minimum=0, exclusive_maximum=1)
        if self.attn_dropout is not None:
            checks.number("attn_dropout", self.attn_dropout, minimum=0, exclusive_maximum=1)
        checks.one_of("mlp", self.mlp, MLP_KINDS)


def rotary_table(length: int, head_size: int, base: float, device=None) -> torch.Tensor:
    """Unit complex numbers e^(i * position * frequency): (length, head_size / 2)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_size, 2, device=device).float() / head_size)
    angles = torch.arange(length, device=device).float()[:, None] * inv_freq[None, :]
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate each pair of channels of x (..., hs) by its position's angle; rope (complex, ..., hs/2) broadcasts."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (..., hs/2)
    rotated = torch.view_as_real(pairs * rope).flatten(-2)
    return rotated if rotated.dtype == x.dtype else rotated.to(x.dtype)


def causal_attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    """Causal attention of (B, nh, T, hs) queries, keys and values with dropout p on the attention weights, written
    out as torch's CPU kernel computes it with dropout (its unfused path, in float32 even under bf16 autocast), but
    with the mask from lm.models.dropout rather than one random number drawn per weight."""
    T, dtype = q.shape[-2], v.dtype
    with torch.autocast(q.device.type, enabled=False):
        q, k, v = q.float() * (1.0 / math.sqrt(q.shape[-1])), k.float(), v.float()
        future = torch.full((T, T), float("-inf"), device=q.device).triu(diagonal=1)  # added: its backward is free
        weights = torch.softmax(q @ k.transpose(-2, -1) + future, dim=-1)  # (B, nh, T, T)
        keep, kept = keep_mask(weights.shape, p, weights.device)
        # the dropped weights' 1 / kept scale is applied to the (smaller) output instead
        return (torch.where(keep, weights, 0.0) @ v * (1.0 / kept)).to(dtype)  # (B, nh, T, hs)


def mlp_activation(h: torch.Tensor, kind: str) -> torch.Tensor:
    """The MLP's nonlinearity on its first layer's output: (..., H) -> (..., H), or for swiglu (..., 2H) -> (..., H)."""
    if kind == "gelu":
        return F.gelu(h)
    if kind == "relu2":
        return F.relu(h).square()
    gate, up = h.chunk(2, dim=-1)
    return F.silu(gate) * up


def _affine(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight_t + bias, for 2-D x and a pre-transposed weight (the decode step's linear layers)."""
    return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)


def _residual_affine(residual: torch.Tensor, x: torch.Tensor, weight_t: torch.Tensor,
                     bias: torch.Tensor | None) -> torch.Tensor:
    """residual + x @ weight_t + bias in one `addmm` when there is no bias."""
    out = torch.addmm(residual, x, weight_t)
    return out if bias is None else out + bias


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_size = config.n_embd // config.n_head
        self.dropout = config.dropout
        self.attn_dropout = config.dropout if config.attn_dropout is None else config.attn_dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        # QK-norm's gains, queries' then keys' (1-D like other norm gains: no weight decay)
        self.qk_gain = nn.Parameter(torch.ones(2 * self.head_size)) if config.qk_norm else None

    def forward(self, x, rope, cache: KVCache | None, layer: int, past: int) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.head_size)
        qk, v = qkv[:, :, :2], qkv[:, :, 2]  # (B, T, 2, nh, hs), (B, T, nh, hs)
        if self.qk_gain is not None:  # unit-RMS heads: attention logits cannot grow without bound
            qk = F.rms_norm(qk, (self.head_size,)) * self.qk_gain.view(2, 1, self.head_size)
        if rope is not None:  # rotate queries and keys together by rope (T or B, T, 1, 1, hs/2)
            qk = apply_rotary(qk, rope[..., None, None, :])
        q, k = qk.unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.store(layer, k, v)  # (B, nh, past + T, hs)
        if past == 0:
            mask, causal = None, T > 1
        elif T == 1:  # one new query sees every cached key of its row (rows of different lengths: step_mask)
            mask, causal = cache.step_mask, False
        else:
            # query i (absolute past + i) may see keys 0 .. past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            causal = False
        if self.training and self.attn_dropout > 0 and causal and x.device.type == "cpu":
            y = causal_attention_with_dropout(q, k, v, self.attn_dropout)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.attn_dropout if self.training else 0.0
            )
        y = y.transpose(1, 2).reshape(B, T, C)
        return dropout(self.proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        # SwiGLU's first layer has two halves (gate, value): 8/3 the width (rounded up to 8) keeps the parameters
        width = 4 * config.n_embd if config.mlp != "swiglu" else -(-8 * config.n_embd // 24) * 8
        self.kind, self.dropout = config.mlp, config.dropout
        self.fc = nn.Linear(config.n_embd, (2 if self.kind == "swiglu" else 1) * width, bias=config.bias)
        self.proj = nn.Linear(width, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(self.proj(mlp_activation(self.fc(x), self.kind)), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, rope, cache: KVCache | None, layer: int, past: int) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache, layer, past)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.context_length, config.n_embd) if config.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one tensor for both ends
        self.apply(self._init_weights)
        self._rope: torch.Tensor | None = None  # rotary table, grown on demand (not a weight)
        self._decode_weights: list[tuple[torch.Tensor | None, ...]] | None = None  # see _decode_one
        # _decode_one reads float weight matrices; int8 linear layers (lm.quantize) go through the modules instead
        self.flat_decode = True
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") and config.zero_init_proj:
                nn.init.zeros_(p)
            elif name.endswith("proj.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def width(self) -> int:
        """The size of its typical matrix product's input, (B, C) @ (C, 4C), what precision probes measure."""
        return self.config.n_embd

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def training_flops_per_token(self, seq_len: int) -> float:
        """FLOPs to train on one token, PaLM's count (as nanoGPT's MFU): 6 per weight of every matrix product
        (forward 2, backward 4; the tied output head counts, embedding look-ups do not; SwiGLU's first layer counts
        with both its halves) plus attention's 12 * layers * width * seq_len (scores and weighted values over the
        whole window, forward and backward). Norms and activations (QK-norm, ReLU squared) are not counted."""
        matmul_weights = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        return 6.0 * matmul_weights + 12.0 * self.config.n_layer * self.config.n_embd * seq_len

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> KVCache:
        return KVCache(self.config.n_layer, self.config.context_length, rows=batch_size)

    def forward(self, tokens: torch.Tensor, state: KVCache | None = None) -> ModelOutput:
        """tokens (B, T) -> logits (B, T, V). With a cache, the tokens continue the cached sequences (one token per
        row when the rows differ in length; any number when they are aligned)."""
        B, T = tokens.shape
        past = 0 if state is None else state.length
        if past + T > self.config.context_length:
            if state is None or T > self.config.context_length:
                raise ValueError(f"sequence of {past + T} tokens exceeds the context length {self.context_length}")
            self._make_room(state, T)
            past = state.length
        decoding = T == 1 and state is not None and state.rows and not self.training and not torch.is_grad_enabled()
        if decoding and self.flat_decode:
            return ModelOutput(logits=self._decode_one(tokens[:, 0], state)[:, None], state=state)
        if state is not None and not state.aligned:
            if not decoding:
                raise ValueError("rows of different lengths continue one token at a time, in inference mode")
            # int8 layers (lm.quantize) decode a batch of rows here, each at its own position: (B, 1)
            positions = torch.tensor(state.positions, device=tokens.device)[:, None]
        else:
            start = 0 if state is None else state.positions[0]  # the first new token's position
            positions = torch.arange(start, start + T, device=tokens.device)  # (T,), the same for every row
        x = self.wte(tokens)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(positions)
        else:
            rope = self._rotary(int(positions.max()) + 1, tokens.device)[positions]  # (T, hs/2) or (B, 1, hs/2)
        x = dropout(x, self.config.dropout, self.training)
        if state is not None:
            state.make_room(T)
        for layer, block in enumerate(self.blocks):
            x = block(x, rope, state, layer, past)  # past: cached positions before these
        if state is not None:
            state.advance(T)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        return ModelOutput(logits=logits, state=state)

    def train(self, mode: bool = True) -> GPT:
        self._decode_weights = None  # rebuilt by the next decode step, after training or loading
        return super().train(mode)

    def _decode_one(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """tokens (B,) continuing the cached sequences -> logits (B, V), for inference without autograd.

        The blocks' computation for one position, written flat on (B, C) rows over a list of each layer's weights
        (matrices transposed once, so residual additions fold into `addmm`). At batch 1 a decode step is a few
        hundred tiny operations, each costing microseconds; module calls, submodule look-ups, views and transposes
        took a third of its time (bench/generation.py). Tests hold this path equal to the full forward.
        """
        if self._decode_weights is None:
            self._decode_weights = [
                (b.ln_1.weight, b.ln_1.bias, b.attn.qkv.weight.t(), b.attn.qkv.bias,
                 None if b.attn.qk_gain is None else b.attn.qk_gain.view(2, 1, -1), b.attn.proj.weight.t(),
                 b.attn.proj.bias, b.ln_2.weight, b.ln_2.bias, b.mlp.fc.weight.t(), b.mlp.fc.bias,
                 b.mlp.proj.weight.t(), b.mlp.proj.bias)
                for b in self.blocks
            ]
        B, C, nh, mlp = tokens.shape[0], self.config.n_embd, self.config.n_head, self.config.mlp
        hs = C // nh
        # each row's new position: one number when the rows are aligned, else a (B,) tensor (continuous batching)
        positions = cache.positions
        position = positions[0] if len(set(positions)) == 1 else torch.tensor(positions, device=tokens.device)
        x = F.embedding(tokens, self.wte.weight)  # (B, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe.weight[position]
        else:
            rope = self._rotary(max(positions) + 1, tokens.device)[position]  # (hs/2,) or (B, hs/2)
            if rope.dim() == 2:
                rope = rope[:, None, None]  # (B, 1, 1, hs/2): one rotation per row, for q and k of every head
        cache.make_room(1)
        for layer, (ln1_w, ln1_b, qkv_wt, qkv_b, qk_gain, attn_wt, attn_b, ln2_w, ln2_b, fc_wt, fc_b, mlp_wt,
                    mlp_b) in enumerate(self._decode_weights):
            qkv = _affine(F.layer_norm(x, (C,), ln1_w, ln1_b), qkv_wt, qkv_b)  # (B, 3C)
            qk = qkv[:, : 2 * C]
            if qk_gain is not None:
                qk = F.rms_norm(qk.view(B, 2, nh, hs), (hs,)) * qk_gain
            if rope is not None:  # q and k as complex pairs (B, 2, nh, hs/2), rotated together (in float32)
                pairs = qk.reshape(B, 2, nh, hs // 2, 2)
                qk = torch.view_as_real(torch.view_as_complex(pairs if pairs.dtype == torch.float32 else pairs.float())
                                        * rope).to(x.dtype)
            qk = qk.view(B, 2, nh, 1, hs)
            keys, values = cache.store(layer, qk[:, 1], qkv[:, 2 * C :].view(B, nh, 1, hs))  # (B, nh, L, hs)
            y = F.scaled_dot_product_attention(qk[:, 0], keys, values, attn_mask=cache.step_mask)  # (B, nh, 1, hs)
            x = _residual_affine(x, y.view(B, C), attn_wt, attn_b)
            h = mlp_activation(_affine(F.layer_norm(x, (C,), ln2_w, ln2_b), fc_wt, fc_b), mlp)  # (B, MLP width)
            x = _residual_affine(x, h, mlp_wt, mlp_b)
        cache.advance(1)
        return F.linear(F.layer_norm(x, (C,), self.ln_f.weight, self.ln_f.bias), self.wte.weight)

    def _rotary(self, length: int, device: torch.device) -> torch.Tensor:
        if self._rope is None or self._rope.shape[0] < length or self._rope.device != device:
            size = max(length, 2 * self.config.context_length, 0 if self._rope is None else 2 * self._rope.shape[0])
            # a plain tensor even when first needed under inference_mode, so training can use it too
            with torch.inference_mode(False), torch.no_grad():
                self._rope = rotary_table(size, self.config.n_embd // self.config.n_head, self.config.rope_base, device)
        return self._rope

    def _make_room(self, state: KVCache, new_tokens: int) -> None:
        """Slide the cache so `new_tokens` more fit in the context.

        Rotary keys carry their absolute rotation and attention only sees position differences, so dropping the
        oldest entries keeps every remaining key valid. Learned absolute positions would all shift, so the caller
        (the generation engine, through `WindowedFamily.make_room`) re-encodes a shorter window instead: see
        `needs_reencode_to_slide`.
        """
        if self.wpe is not None:
            raise ValueError("a cache with learned positions cannot slide; re-encode the last window instead")
        state.slide(self.config.context_length - new_tokens)

    @property
    def needs_reencode_to_slide(self) -> bool:
        return self.wpe is not None


FAMILY = WindowedFamily("gpt", "decoder-only transformer (GPT)", GPTConfig, GPT)
