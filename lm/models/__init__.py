"""Model families. Each takes tokens (B, T) and an optional state and returns a `ModelOutput`."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch.nn as nn

from lm import checks
from lm.checks import OptionError
from lm.models.gpt import GPT, GPTConfig
from lm.models.lstm import AWDLSTM, LSTMConfig
from lm.models.output import ModelOutput

MODEL_TYPES: dict[str, tuple[type, type[nn.Module]]] = {
    "lstm": (LSTMConfig, AWDLSTM),
    "gpt": (GPTConfig, GPT),
}

__all__ = ["MODEL_TYPES", "ModelOutput", "GPT", "GPTConfig", "AWDLSTM", "LSTMConfig", "build_model", "config_from_dict"]


def config_from_dict(model_type: str, values: dict[str, Any]):
    """The family's config dataclass from plain values; an unknown key or a wrong value raises OptionError naming
    the key."""
    if model_type not in MODEL_TYPES:
        raise OptionError("type", f"must be a model type: one of {', '.join(MODEL_TYPES)}; got {model_type!r}")
    config_cls = MODEL_TYPES[model_type][0]
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise OptionError(unknown[0], f"is an unknown {model_type} option; allowed: {', '.join(fields)}")
    missing = [name for name, f in fields.items() if f.default is dataclasses.MISSING and name not in values]
    if missing:
        raise OptionError(missing[0], f"is a missing {model_type} option (it has no default)")
    return config_cls(**{name: _checked(name, value, fields[name].type) for name, value in values.items()})


# dataclass annotations are strings under `from __future__ import annotations`
_CHECKS = {"bool": checks.boolean, "int": checks.integer, "float": checks.number, "str": checks.text}


def _checked(name: str, value: Any, annotation: Any) -> Any:
    kind = annotation if isinstance(annotation, str) else annotation.__name__
    return _CHECKS[kind](name, value) if kind in _CHECKS else value


def build_model(model_type: str, values: dict[str, Any]) -> nn.Module:
    config = config_from_dict(model_type, values)
    return MODEL_TYPES[model_type][1](config)
