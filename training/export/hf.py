"""`export --format hf`: a folder that Hugging Face `transformers` loads natively (no `trust_remote_code`).

Rotary GPTs become `GPTNeoXForCausalLM` (use_parallel_residual=False, rotary_pct=1.0: the whole head rotates),
learned-position GPTs `GPT2LMHeadModel`, with the activation "gelu" (the exact one) or, for a ReLU-squared MLP,
"relu2": our `mlp` names are transformers' activation names. See `training.export.decoder` for why the weights map
one to one. The tokenizer travels as our own `tokenizer.json`, read by `PreTrainedTokenizerFast`.
Writing the folder needs no `transformers`; checking it does (`check_export`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from lm.checkpoint import LoadedModel
from lm.tokenizers import UNK
from training.card import SAMPLE_SETTINGS
from training.export.decoder import LAYER_NORM_EPS, DecoderTensors, decoder_tensors

WEIGHTS_FILE = "model.safetensors"


# BlockTensors field -> name in a transformers layer
_NEOX_BLOCK = {
    "ln_1_weight": "input_layernorm.weight", "ln_1_bias": "input_layernorm.bias",
    "qkv_weight": "attention.query_key_value.weight", "qkv_bias": "attention.query_key_value.bias",
    "proj_weight": "attention.dense.weight", "proj_bias": "attention.dense.bias",
    "ln_2_weight": "post_attention_layernorm.weight", "ln_2_bias": "post_attention_layernorm.bias",
    "fc_weight": "mlp.dense_h_to_4h.weight", "fc_bias": "mlp.dense_h_to_4h.bias",
    "mlp_proj_weight": "mlp.dense_4h_to_h.weight", "mlp_proj_bias": "mlp.dense_4h_to_h.bias",
}
_GPT2_BLOCK = {
    "ln_1_weight": "ln_1.weight", "ln_1_bias": "ln_1.bias",
    "qkv_weight": "attn.c_attn.weight", "qkv_bias": "attn.c_attn.bias",
    "proj_weight": "attn.c_proj.weight", "proj_bias": "attn.c_proj.bias",
    "ln_2_weight": "ln_2.weight", "ln_2_bias": "ln_2.bias",
    "fc_weight": "mlp.c_fc.weight", "fc_bias": "mlp.c_fc.bias",
    "mlp_proj_weight": "mlp.c_proj.weight", "mlp_proj_bias": "mlp.c_proj.bias",
}


def _neox_layout(field: str, tensor: torch.Tensor, n_head: int) -> torch.Tensor:
    """transformers' GPT-NeoX splits its fused qkv per head: rows (nh, 3, hs) where ours are (3, nh, hs)."""
    if not field.startswith("qkv_"):
        return tensor
    return tensor.reshape(3, n_head, -1, *tensor.shape[1:]).transpose(0, 1).reshape(tensor.shape)


def _gpt2_layout(tensor: torch.Tensor) -> torch.Tensor:
    """GPT-2 keeps its linear layers as Conv1D, weights stored (in, out): transposed from ours."""
    return tensor.t() if tensor.dim() == 2 else tensor


def _neox(t: DecoderTensors, cfg) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"gpt_neox.embed_in.weight": t.embedding}  # embed_out is tied to it (tie_word_embeddings)
    for i, b in enumerate(t.blocks):
        tensors.update({f"gpt_neox.layers.{i}.{name}": _neox_layout(field, getattr(b, field), cfg.n_head)
                        for field, name in _NEOX_BLOCK.items()})
    tensors["gpt_neox.final_layer_norm.weight"] = t.ln_f_weight
    tensors["gpt_neox.final_layer_norm.bias"] = t.ln_f_bias
    config = {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "intermediate_size": 4 * cfg.n_embd,
        "hidden_act": cfg.mlp,  # gelu or relu2 (support.py), ACT2FN names alike
        "max_position_embeddings": cfg.context_length,
        "rotary_pct": 1.0,
        "rotary_emb_base": cfg.rope_base,
        "use_parallel_residual": False,
        "attention_bias": True,
        "layer_norm_eps": LAYER_NORM_EPS,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
    }
    return tensors, config


def _gpt2(t: DecoderTensors, cfg) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"transformer.wte.weight": t.embedding, "transformer.wpe.weight": t.positions}
    for i, b in enumerate(t.blocks):
        tensors.update({f"transformer.h.{i}.{name}": _gpt2_layout(getattr(b, field))
                        for field, name in _GPT2_BLOCK.items()})
    tensors["transformer.ln_f.weight"] = t.ln_f_weight
    tensors["transformer.ln_f.bias"] = t.ln_f_bias
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": 4 * cfg.n_embd,
        "n_positions": cfg.context_length,
        "activation_function": cfg.mlp,
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
    }
    return tensors, config


def write_hf(loaded: LoadedModel, folder: Path) -> list[str]:
    """Write weights, config, generation config and tokenizer files into `folder`; returns the file names."""
    cfg = loaded.model.config
    tensors, config = (_neox if cfg.positions == "rotary" else _gpt2)(decoder_tensors(loaded.model), cfg)
    # our tokenizers have no begin/end-of-text token: generation runs to max_new_tokens, as in Scriptorium
    config.update({"bos_token_id": None, "eos_token_id": None, "pad_token_id": None, "torch_dtype": "float32"})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    _write_json(folder / "config.json", config)
    _write_json(folder / "generation_config.json", {
        "do_sample": True, **SAMPLE_SETTINGS, "max_new_tokens": 200,
        "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
    })
    (folder / "tokenizer.json").write_text(loaded.tokenizer.to_str(), encoding="utf-8")
    tokenizer_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": cfg.context_length,
        "clean_up_tokenization_spaces": False,
    }
    if loaded.tokenizer.unk_id is not None:
        tokenizer_config["unk_token"] = UNK
    _write_json(folder / "tokenizer_config.json", tokenizer_config)
    return [WEIGHTS_FILE, "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
