"""What each export format can express, as whitelists: a model option or tokenizer kind not listed here is refused
with one line, so a feature added to the model later never exports silently wrong.

A whitelist entry is an option name and the values the format reproduces exactly (`ANY` where every value the
model accepts is fine, e.g. sizes). A new `GPTConfig` field is unknown to every exporter until someone maps it and
adds it here.
"""

from __future__ import annotations

from typing import Any


class ExportError(ValueError):
    """A model this format cannot express; the message is one line saying why and what would work."""


ANY = None  # every value the model family itself accepts

_GPT_CORE: dict[str, set | None] = {
    "vocab_size": ANY,
    "context_length": ANY,
    "n_layer": ANY,
    "n_head": ANY,
    "n_embd": ANY,
    "dropout": ANY,  # training only
    "bias": {True, False},  # absent biases are exported as zeros
    "positions": {"rotary", "learned"},  # rotary -> GPT-NeoX layout, learned -> GPT-2 layout
    "rope_base": ANY,
    "attn_dropout": ANY,  # training only
    "zero_init_proj": {True, False},  # how training starts, nothing the trained weights keep
    "qk_norm": {False},  # GPT-NeoX and GPT-2 have no normalised queries and keys
    "mlp": {"gelu"},  # ... and llama.cpp's GPT-NeoX and GPT-2 graphs a GELU MLP only
}

# transformers' GPT-NeoX and GPT-2 take their activation from the config: GELU or ReLU squared ("relu2")
_GPT_HF: dict[str, set | None] = {**_GPT_CORE, "mlp": {"gelu", "relu2"}}

# the ONNX graph runs each block's own MLP module, so every MLP traces exactly; its attention is spelled out
# without QK-norm
_GPT_ONNX: dict[str, set | None] = {**_GPT_CORE, "mlp": {"gelu", "relu2", "swiglu"}}

_LSTM_ONNX: dict[str, set | None] = {
    "vocab_size": ANY,
    "emb_size": ANY,
    "hidden_size": ANY,
    "n_layers": ANY,
    "dropout": ANY,  # the dropouts act in training only
    "dropout_hidden": ANY,
    "dropout_input": ANY,
    "dropout_embedding": ANY,
    "weight_drop": ANY,
    "tie_weights": {True, False},
    "mogrifier_rounds": {0},  # the ONNX graph runs the fused LSTM layers, which take no Mogrifier gating
    "mogrifier_rank": ANY,  # no gating matrices without rounds
}

# format -> model type -> option whitelist; a model type missing here has no native form in that format
MODEL_OPTIONS: dict[str, dict[str, dict[str, set | None]]] = {
    "hf": {"gpt": _GPT_HF},
    "gguf": {"gpt": _GPT_CORE},
    "onnx": {"gpt": _GPT_ONNX, "lstm": _LSTM_ONNX},
}

# format -> tokenizer kinds whose tokenization the target runtime reproduces from the exported files
TOKENIZER_KINDS: dict[str, tuple[str, ...]] = {
    "hf": ("char", "bpe"),  # tokenizer.json as it is, read by PreTrainedTokenizerFast
    "gguf": ("bpe",),  # llama.cpp reads byte-level BPE (vocabulary + merges) only
    "onnx": ("char", "word", "bpe"),  # the graph takes token ids; tokenizer.json travels beside it
}

_WHY_NOT = {
    ("hf", "lstm"): "an AWD-LSTM has no native transformers architecture; export it with --format onnx",
    ("gguf", "lstm"): "llama.cpp has no AWD-LSTM architecture; export it with --format onnx",
    ("hf", "word"): "the word tokenizer turns line breaks into <eos> outside tokenizer.json, which transformers "
                    "would not reproduce; export it with --format onnx",
    ("gguf", "word"): "llama.cpp reads byte-level BPE vocabularies only; export it with --format onnx",
    ("gguf", "char"): "llama.cpp reads byte-level BPE vocabularies only (train with tokenizer: bpe); "
                      "export this one with --format hf or onnx",
}


def _takes(fmt: str, model_type: str, name: str, value: Any) -> bool:
    allowed = MODEL_OPTIONS[fmt].get(model_type, {})
    return name in allowed and (allowed[name] is ANY or value in allowed[name])


def check_exportable(fmt: str, config: dict[str, Any]) -> None:
    """Raise ExportError unless `fmt` reproduces the model of this config.json (model options and tokenizer)."""
    model_type = config["model_type"]
    allowed = MODEL_OPTIONS[fmt].get(model_type)
    if allowed is None:
        raise ExportError(f"cannot export a {model_type} model to {fmt}: {_WHY_NOT[(fmt, model_type)]}")
    for name, value in config["model"].items():
        if name not in allowed:
            raise ExportError(
                f"cannot export to {fmt}: {model_type} option {name}={value!r} is not one the {fmt} exporter maps "
                f"(it knows {', '.join(allowed)})"
            )
        values = allowed[name]
        if values is not ANY and value not in values:
            shown = ", ".join(repr(v) for v in sorted(values, key=str))
            others = [other for other in MODEL_OPTIONS if other != fmt and _takes(other, model_type, name, value)]
            way_out = f"; export it with --format {' or '.join(others)}" if others else ""
            raise ExportError(f"cannot export to {fmt}: {model_type} option {name}={value!r} (supported: {shown})"
                              f"{way_out}")
    kind = config["tokenizer"]["kind"]
    if kind not in TOKENIZER_KINDS[fmt]:
        raise ExportError(f"cannot export a model with a {kind} tokenizer to {fmt}: {_WHY_NOT[(fmt, kind)]}")
