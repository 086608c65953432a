"""Scriptorium's core: tokenizers, model families, the model-directory format and the generation engine.

Torch-only: both the trainer (`training/`) and the web app (`app/`) build on it, and it imports neither.

The names below are imported on first use, so that `lm.options` and `lm.checks` (which the app's settings and request
schema read) can be imported without importing torch: gunicorn's master process reads the settings and must not.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"  # the project's version, as in pyproject.toml (exports record it)

_EXPORTS = {
    "Alternative": "lm.generation",
    "CheckpointError": "lm.checkpoint",
    "Choice": "lm.generation",
    "GenerationOptions": "lm.generation",
    "GenerationResult": "lm.generation",
    "GenerationStream": "lm.generation",
    "Generator": "lm.generation",
    "OptionError": "lm.checks",
    "Overloaded": "lm.scheduler",
    "SchedulerClosed": "lm.scheduler",
    "SchedulerLimits": "lm.scheduler",
    "TokenEvent": "lm.generation",
    "TokenScore": "lm.generation",
    "Tokenizer": "lm.tokenizers",
    "load": "lm.generation",
    "load_model_dir": "lm.checkpoint",
    "save_model_dir": "lm.checkpoint",
    "train_tokenizer": "lm.tokenizers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lm' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
