"""What every model family returns from `forward`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, V)
    state: Any = None  # what to pass back in to continue the sequence (LSTM: (h, c) per layer; GPT: KV cache)
    hidden: torch.Tensor | None = None  # LSTM: last layer output before dropout (for TAR)
    dropped_hidden: torch.Tensor | None = None  # LSTM: last layer output after dropout (for AR)
