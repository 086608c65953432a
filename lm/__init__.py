"""Scriptorium's core: tokenizers, model families, the model-directory format and the generation engine.

Torch-only: both the trainer (`training/`) and the web app (`app/`) build on it, and it imports neither.
"""

from lm.checkpoint import CheckpointError, load_model_dir, save_model_dir
from lm.generation import (
    Alternative,
    Choice,
    GenerationOptions,
    GenerationResult,
    GenerationStream,
    Generator,
    TokenEvent,
    load,
)
from lm.tokenizers import Tokenizer, train_tokenizer

__all__ = [
    "Alternative",
    "CheckpointError",
    "Choice",
    "GenerationOptions",
    "GenerationResult",
    "GenerationStream",
    "Generator",
    "TokenEvent",
    "Tokenizer",
    "load",
    "load_model_dir",
    "save_model_dir",
    "train_tokenizer",
]
