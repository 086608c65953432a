"""Model families. Each takes tokens (B, T) and an optional state and returns a `ModelOutput`; each registers its
hooks (a `Family`, lm/models/family.py) here, which is all that generic code knows of it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from lm import checks
from lm.checks import OptionError
from lm.models import gpt, lstm
from lm.models.family import Family
from lm.models.gpt import GPT, GPTConfig
from lm.models.lstm import AWDLSTM, LSTMConfig
from lm.models.output import ModelOutput

MODEL_TYPES: dict[str, Family] = {family.name: family for family in (lstm.FAMILY, gpt.FAMILY)}

__all__ = [
    "MODEL_TYPES",
    "AWDLSTM",
    "Family",
    "GPT",
    "GPTConfig",
    "LSTMConfig",
    "ModelOutput",
    "build_model",
    "check_training",
    "config_from_dict",
    "family_named",
    "family_of",
]


def family_named(model_type: str) -> Family:
    """The registered family called `model_type`; OptionError("type") for any other name."""
    if model_type not in MODEL_TYPES:
        raise OptionError("type", f"must be a model type: one of {', '.join(MODEL_TYPES)}; got {model_type!r}")
    return MODEL_TYPES[model_type]


def family_of(model: nn.Module) -> Family:
    for registered in MODEL_TYPES.values():
        if isinstance(model, registered.model_class):
            return registered
    raise ValueError(f"not a Scriptorium model: {type(model).__name__}")


def config_from_dict(model_type: str, values: dict[str, Any]):
    """The family's config dataclass from plain values; an unknown key or a wrong value raises OptionError naming
    the key."""
    config_cls = family_named(model_type).config_class
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
    return family_named(model_type).build(config_from_dict(model_type, values))


def check_training(model_type: str, settings: Mapping[str, Any], config: Any) -> None:
    """OptionError naming the trainer setting (`training.<name>`) that a `model_type` model cannot train with: a
    setting or an optimizer made for other families only, or what the family's own check refuses."""
    chosen = family_named(model_type)
    for other in MODEL_TYPES.values():
        for name in other.training_settings:
            if settings.get(name) and name not in chosen.training_settings:
                raise OptionError(name, f"applies to the {other.title} only")
        optimizer = settings.get("optimizer")
        if optimizer in other.optimizers and optimizer not in chosen.optimizers:
            raise OptionError("optimizer", f"{optimizer} is made for the {other.title}; choose another for {chosen.title}")
    chosen.check_training(settings, config)
