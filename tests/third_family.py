"""A third model family, as small as one can be: a bigram table. It is what adding a family takes (a config, a model,
its `Family`), registered by the tests that show generic code (checkpoints, generation, training, cards) never needs
to know about it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from lm.models import MODEL_TYPES
from lm.models.family import RecurrentFamily
from lm.models.output import ModelOutput


@dataclass
class BigramConfig:
    vocab_size: int


class Bigram(nn.Module):
    """Next-token logits from the current token alone; it carries no state."""

    context_length = None

    def __init__(self, config: BigramConfig) -> None:
        super().__init__()
        self.config = config
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)
        self.width = config.vocab_size  # what a precision probe measures: the table's rows

    def num_parameters(self) -> int:
        return self.table.weight.numel()

    def training_flops_per_token(self, seq_len: int) -> float:
        return 0.0  # a table look-up: no matrix product to count

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> None:
        return None

    def forward(self, tokens: torch.Tensor, state: None = None) -> ModelOutput:
        return ModelOutput(logits=self.table(tokens))  # (B, T, V)


FAMILY = RecurrentFamily("bigram", "bigram table", BigramConfig, Bigram)


@pytest.fixture
def bigram_registered(monkeypatch):
    monkeypatch.setitem(MODEL_TYPES, FAMILY.name, FAMILY)
    return FAMILY
