import pytest
import torch

from lm import save_model_dir, train_tokenizer
from lm.models import build_model

CORPUS = (
    "First Speaker:\nWhat light through yonder window breaks? It is the east.\n"
    "Second Speaker:\nThe quality of mercy is not strained, it droppeth as the gentle rain.\n"
) * 20

TINY = {
    "gpt": {"context_length": 32, "n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.1},
    "lstm": {"emb_size": 24, "hidden_size": 40, "n_layers": 2},
}


@pytest.fixture(scope="session")
def corpus() -> str:
    return CORPUS


@pytest.fixture(scope="session")
def char_tokenizer():
    return train_tokenizer("char", CORPUS)


def tiny_model(model_type: str, vocab_size: int, **overrides):
    torch.manual_seed(0)
    return build_model(model_type, {"vocab_size": vocab_size, **TINY[model_type], **overrides})


@pytest.fixture(params=["gpt", "lstm"])
def model_dir(request, tmp_path, char_tokenizer):
    """A saved random-weight model directory of each family."""
    model = tiny_model(request.param, char_tokenizer.vocab_size)
    path = tmp_path / f"tiny-{request.param}"
    save_model_dir(path, model, char_tokenizer, metadata={"metrics": {"val_loss": 2.0}})
    return path


class FakeMeasure:
    """Stands in for timing: fixed FLOPs/s per precision, counting the calls."""

    def __init__(self, **flops: float) -> None:
        self.flops = {"fp32": 100.0, **flops}
        self.calls: list[tuple] = []

    def __call__(self, precisions, width, rows, device, autocast):
        self.calls.append((tuple(precisions), width, rows, autocast))
        return {p: self.flops[p] for p in precisions}
