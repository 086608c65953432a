"""Model families. Each takes tokens (B, T) and an optional state and returns a `ModelOutput`."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch.nn as nn

from lm.models.gpt import GPT, GPTConfig
from lm.models.lstm import AWDLSTM, LSTMConfig
from lm.models.output import ModelOutput

MODEL_TYPES: dict[str, tuple[type, type[nn.Module]]] = {
    "lstm": (LSTMConfig, AWDLSTM),
    "gpt": (GPTConfig, GPT),
}

__all__ = ["MODEL_TYPES", "ModelOutput", "GPT", "GPTConfig", "AWDLSTM", "LSTMConfig", "build_model", "config_from_dict"]


def config_from_dict(model_type: str, values: dict[str, Any]):
    """The family's config dataclass from plain values; unknown keys and wrong types raise ValueError."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    config_cls = MODEL_TYPES[model_type][0]
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {model_type} option(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    missing = [name for name, f in fields.items() if f.default is dataclasses.MISSING and name not in values]
    if missing:
        raise ValueError(f"missing {model_type} option(s) {', '.join(missing)}")
    coerced = {}
    for name, value in values.items():
        expected = fields[name].type
        coerced[name] = _coerce(model_type, name, value, expected)
    return config_cls(**coerced)


def _coerce(model_type: str, name: str, value: Any, expected: str) -> Any:
    # dataclass annotations are strings under `from __future__ import annotations`
    kind = expected if isinstance(expected, str) else expected.__name__
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{model_type} {name} must be true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{model_type} {name} must be an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{model_type} {name} must be a number, got {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{model_type} {name} must be a string, got {value!r}")
        return value
    return value


def build_model(model_type: str, values: dict[str, Any]) -> nn.Module:
    config = config_from_dict(model_type, values)
    return MODEL_TYPES[model_type][1](config)
