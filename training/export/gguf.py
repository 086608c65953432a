"""`export --format gguf`: one `.gguf` file for llama.cpp (and what builds on it: Ollama, LM Studio,
llama-cpp-python), written with the `gguf` package, plus an Ollama `Modelfile` beside it.

Rotary GPTs use llama.cpp's "gptneox" graph (sequential residuals, NeoX rotary over the whole head), learned-position
GPTs its "gpt2" graph; both take the weights in the layout of `training.export.decoder`, the fused qkv as all
queries, all keys, all values. Two things llama.cpp does its own way:

- GELU: both graphs compute the tanh approximation through a half-precision table, where our model uses the exact
  GELU, so logits differ slightly (the check records by how much; greedy continuations are compared token by token).
- End of text: llama.cpp always has one, and without one in the file it takes token 11 (a comma in our BPE), so a
  generation would stop at the first comma. The file gets one more token, `<|endoftext|>`, with zero embedding
  and output rows: its logit is always 0. Greedy decoding picks it only where every token of the model has a
  negative logit; sampling gives it probability 1 / (1 + sum of exp(logit)) per step, tiny for a trained model
  (the check records it), so a generation may rarely end early.

Weight types: f32; f16 (matrices in half precision, norms and biases f32); q8_0 (matrices in 8-bit blocks of 32
with a scale, llama.cpp's near-lossless quantization; a matrix whose rows are not a multiple of 32 stays f16).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lm.checkpoint import LoadedModel
from training.card import SAMPLE_SETTINGS
from training.export.decoder import LAYER_NORM_EPS, decoder_tensors

WEIGHT_TYPES = ("f32", "f16", "q8_0")
END_OF_TEXT = "<|endoftext|>"
MODELFILE = "Modelfile"


# BlockTensors field -> tensor name in a llama.cpp block (the same for its gptneox and gpt2 graphs)
_BLOCK = {
    "ln_1_weight": "attn_norm.weight", "ln_1_bias": "attn_norm.bias",
    "qkv_weight": "attn_qkv.weight", "qkv_bias": "attn_qkv.bias",
    "proj_weight": "attn_output.weight", "proj_bias": "attn_output.bias",
    "ln_2_weight": "ffn_norm.weight", "ln_2_bias": "ffn_norm.bias",
    "fc_weight": "ffn_up.weight", "fc_bias": "ffn_up.bias",
    "mlp_proj_weight": "ffn_down.weight", "mlp_proj_bias": "ffn_down.bias",
}


def gguf_file_name(name: str, weight_type: str) -> str:
    return f"{name}-{weight_type}.gguf"


def _merges(tokenizer_json: dict[str, Any]) -> list[str]:
    # tokenizers writes merges as [left, right] pairs (older files: "left right" strings)
    return [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in tokenizer_json["model"]["merges"]]


def _with_end_of_text_row(matrix: torch.Tensor) -> torch.Tensor:
    return torch.cat([matrix, torch.zeros(1, matrix.shape[1])])


def write_gguf(loaded: LoadedModel, folder: Path, name: str, weight_type: str) -> list[str]:
    """Write `<name>-<weight_type>.gguf` and a Modelfile into `folder`; returns the file names."""
    import gguf  # an export dependency (requirements-export.txt), not a serving one

    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"gguf weight type must be one of {', '.join(WEIGHT_TYPES)}, got {weight_type!r}")
    cfg = loaded.model.config
    rotary = cfg.positions == "rotary"
    file_name = gguf_file_name(name, weight_type)
    writer = gguf.GGUFWriter(str(folder / file_name), "gptneox" if rotary else "gpt2")
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[weight_type]

    writer.add_name(name)
    writer.add_file_type(file_type)
    writer.add_context_length(cfg.context_length)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(4 * cfg.n_embd)
    writer.add_head_count(cfg.n_head)
    writer.add_layer_norm_eps(LAYER_NORM_EPS)
    if rotary:
        writer.add_rope_dimension_count(cfg.n_embd // cfg.n_head)
        writer.add_rope_freq_base(cfg.rope_base)
        writer.add_parallel_residual(False)

    tokenizer = loaded.tokenizer
    vocab = [tokenizer.hf.id_to_token(i) for i in range(tokenizer.vocab_size)]
    end_of_text = len(vocab)
    writer.add_tokenizer_model("gpt2")  # byte-level BPE
    writer.add_tokenizer_pre("gpt-2")  # GPT-2's split regex, the one tokenizers' ByteLevel(use_regex=True) uses
    writer.add_token_list(vocab + [END_OF_TEXT])
    writer.add_token_types([gguf.TokenType.NORMAL] * len(vocab) + [gguf.TokenType.CONTROL])
    writer.add_token_merges(_merges(json.loads(tokenizer.to_str())))
    writer.add_bos_token_id(end_of_text)
    writer.add_eos_token_id(end_of_text)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)

    t = decoder_tensors(loaded.model)

    def add(tensor_name: str, tensor: torch.Tensor) -> None:
        data = tensor.numpy().astype(np.float32)
        if data.ndim == 1 or weight_type == "f32":
            writer.add_tensor(tensor_name, data)
        elif weight_type == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
            quantized = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(tensor_name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(tensor_name, data.astype(np.float16))

    embedding = _with_end_of_text_row(t.embedding)
    add("token_embd.weight", embedding)
    if t.positions is not None:
        add("position_embd.weight", t.positions)
    for i, b in enumerate(t.blocks):
        for field, name in _BLOCK.items():
            add(f"blk.{i}.{name}", getattr(b, field))
    add("output_norm.weight", t.ln_f_weight)
    add("output_norm.bias", t.ln_f_bias)
    if rotary:  # llama.cpp's gptneox graph needs its own output matrix; gpt2 reuses token_embd when there is none
        add("output.weight", embedding)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (folder / MODELFILE).write_text(modelfile(file_name, cfg.context_length), encoding="utf-8")
    return [file_name, MODELFILE]


def modelfile(gguf_name: str, context_length: int) -> str:
    """An Ollama Modelfile: plain continuation (no chat template), the card's sampling settings, our context."""
    lines = [
        f"FROM ./{gguf_name}",
        "# a base model continues text: the prompt goes in as it is",
        'TEMPLATE """{{ .Prompt }}"""',
        f"PARAMETER num_ctx {context_length}",
    ]
    lines += [f"PARAMETER {key} {value}" for key, value in SAMPLE_SETTINGS.items()]
    return "\n".join(lines) + "\n"
