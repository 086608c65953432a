"""Our GPT's weights in the layout that GPT-NeoX and GPT-2 style runtimes share, for the hf and gguf exporters.

Both targets compute what `lm.models.gpt` computes (pre-LayerNorm blocks, sequential residuals, exact GELU MLP of
width 4C, tied output embedding) and both always carry biases, so absent ones become zeros. One difference needs
more than renaming: our rotary embedding rotates pairs of *adjacent* channels (2i, 2i+1) of each head, while
GPT-NeoX (transformers and llama.cpp alike) rotates channel i with channel i + hs/2. Reordering the query and key
rows of each head by `half_split_order` turns one convention into the other: attention scores are dot products of
a query with a key, unchanged when both are permuted alike, and the values (hence the outputs) keep their order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lm.models.gpt import GPT

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which lm.models.gpt uses


@dataclass
class BlockTensors:
    ln_1_weight: torch.Tensor  # (C,)
    ln_1_bias: torch.Tensor  # (C,)
    qkv_weight: torch.Tensor  # (3C, C): all queries, all keys, all values, each (nh, hs)
    qkv_bias: torch.Tensor  # (3C,)
    proj_weight: torch.Tensor  # (C, C)
    proj_bias: torch.Tensor  # (C,)
    ln_2_weight: torch.Tensor
    ln_2_bias: torch.Tensor
    fc_weight: torch.Tensor  # (4C, C)
    fc_bias: torch.Tensor  # (4C,)
    mlp_proj_weight: torch.Tensor  # (C, 4C)
    mlp_proj_bias: torch.Tensor  # (C,)


@dataclass
class DecoderTensors:
    embedding: torch.Tensor  # (V, C), also the output projection
    positions: torch.Tensor | None  # (context, C) learned positions, or None for rotary
    blocks: list[BlockTensors]
    ln_f_weight: torch.Tensor
    ln_f_bias: torch.Tensor
    rotary_half_split: bool  # query/key rows already in GPT-NeoX's rotary order


def half_split_order(head_size: int) -> torch.Tensor:
    """Channel order within a head that maps adjacent rotary pairs onto GPT-NeoX's halves:
    new channel j < hs/2 is old 2j, new channel hs/2 + j is old 2j + 1."""
    return torch.cat([torch.arange(0, head_size, 2), torch.arange(1, head_size, 2)])


def _to_half_split(qkv: torch.Tensor, n_head: int) -> torch.Tensor:
    """Permute the query and key rows (first dim) of a (3C, ...) qkv tensor head by head; values stay."""
    three_c = qkv.shape[0]
    head_size = three_c // 3 // n_head
    order = half_split_order(head_size)
    per_head = qkv.reshape(3, n_head, head_size, *qkv.shape[1:])
    permuted = torch.cat([per_head[:2, :, order], per_head[2:]], dim=0)
    return permuted.reshape(qkv.shape)


def _bias_or_zeros(bias: torch.Tensor | None, size: int) -> torch.Tensor:
    return torch.zeros(size) if bias is None else bias.detach().float().clone()


def decoder_tensors(model: GPT) -> DecoderTensors:
    """float32 copies of the model's weights; rotary models get their query/key rows in half-split order."""
    config = model.config
    C = config.n_embd
    rotary = config.positions == "rotary"
    blocks = []
    for block in model.blocks:
        qkv_weight = block.attn.qkv.weight.detach().float().clone()
        qkv_bias = _bias_or_zeros(block.attn.qkv.bias, 3 * C)
        if rotary:
            qkv_weight = _to_half_split(qkv_weight, config.n_head)
            qkv_bias = _to_half_split(qkv_bias, config.n_head)
        blocks.append(BlockTensors(
            ln_1_weight=block.ln_1.weight.detach().float().clone(),
            ln_1_bias=_bias_or_zeros(block.ln_1.bias, C),
            qkv_weight=qkv_weight,
            qkv_bias=qkv_bias,
            proj_weight=block.attn.proj.weight.detach().float().clone(),
            proj_bias=_bias_or_zeros(block.attn.proj.bias, C),
            ln_2_weight=block.ln_2.weight.detach().float().clone(),
            ln_2_bias=_bias_or_zeros(block.ln_2.bias, C),
            fc_weight=block.mlp.fc.weight.detach().float().clone(),
            fc_bias=_bias_or_zeros(block.mlp.fc.bias, 4 * C),
            mlp_proj_weight=block.mlp.proj.weight.detach().float().clone(),
            mlp_proj_bias=_bias_or_zeros(block.mlp.proj.bias, C),
        ))
    return DecoderTensors(
        embedding=model.wte.weight.detach().float().clone(),
        positions=None if model.wpe is None else model.wpe.weight.detach().float().clone(),
        blocks=blocks,
        ln_f_weight=model.ln_f.weight.detach().float().clone(),
        ln_f_bias=_bias_or_zeros(model.ln_f.bias, C),
        rotary_half_split=rotary,
    )
