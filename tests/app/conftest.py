"""Fixtures for the web app: tiny random-weight models (built once per session) and an app/client over them.

The shipped models are trained elsewhere and may be absent; these tests only need something the core can load,
so they make a char tokenizer from a few lines and two very small models, one of each family.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

lm = pytest.importorskip("lm")
from app import create_app  # noqa: E402
from app.registry import EXTENSION as MODELS  # noqa: E402
from lm.checkpoint import save_model_dir  # noqa: E402
from lm.models import build_model  # noqa: E402
from lm.tokenizers import train_tokenizer  # noqa: E402

TEXT = """ROMEO: But soft, what light through yonder window breaks?
JULIET: O Romeo, Romeo, wherefore art thou Romeo?
<img src=x onerror=alert(1)> & "quotes" 'too'
The quick brown fox jumps over the lazy dog. 0123456789 !?;:-_()[]{}/\\|@#$%^*+=~`
"""

GPT_CONFIG = {"context_length": 32, "n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0}
LSTM_CONFIG = {
    "emb_size": 16,
    "hidden_size": 24,
    "n_layers": 1,
    "dropout": 0.0,
    "dropout_hidden": 0.0,
    "dropout_input": 0.0,
    "dropout_embedding": 0.0,
    "weight_drop": 0.0,
}

# Small limits keep every generation in these tests to a few milliseconds.
TEST_CONFIG = {"TESTING": True, "MAX_NEW_TOKENS": 40, "GENERATION_TIMEOUT": 10.0, "QUEUE_TIMEOUT": 0.2}


def build_models(root: Path) -> Path:
    """tiny-gpt (the better "val_bits_per_char", so the default) and tiny-lstm, with a card and a curve."""
    import torch

    torch.manual_seed(0)
    tokenizer = train_tokenizer("char", TEXT)
    vocab = {"vocab_size": tokenizer.vocab_size}
    gpt = save_model_dir(
        root / "tiny-gpt",
        build_model("gpt", {**vocab, **GPT_CONFIG}),
        tokenizer,
        metadata={"metrics": {"val_loss": 1.5, "val_bits_per_char": 2.1}},
    )
    save_model_dir(
        root / "tiny-lstm",
        build_model("lstm", {**vocab, **LSTM_CONFIG}),
        tokenizer,
        metadata={"metrics": {"val_loss": 1.7, "val_bits_per_char": 2.4}, "training": {"steps": 10}},
    )
    (gpt / "card.md").write_text("# tiny-gpt\n\nA <b>test</b> model & nothing more.\n", encoding="utf-8")
    # A 1x1 PNG is enough to check the route serves the file as an image.
    (gpt / "training_curve.png").write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c6360000002000154a24f6b0000000049454e44ae426082"
        )
    )
    return root


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def make_models_dir(models_dir: Path, tmp_path: Path):
    """A private copy of the tiny models to add broken directories to."""

    def make(*broken: str) -> Path:
        root = tmp_path / "models"
        shutil.copytree(models_dir, root)
        for name in broken:
            (root / name).mkdir()
            (root / name / "config.json").write_text("{not json", encoding="utf-8")
        return root

    return make


@pytest.fixture
def app(models_dir: Path, monkeypatch: pytest.MonkeyPatch):
    for name in (
        "MODEL_DIR",
        "DEFAULT_MODEL",
        "MAX_NEW_TOKENS",
        "MAX_PROMPT_CHARS",
        "GENERATION_TIMEOUT",
        "MAX_CONCURRENT_GENERATIONS",
        "MAX_BATCH_SIZE",
        "MAX_QUEUED_REQUESTS",
        "QUEUE_TIMEOUT",
        "PORT",
        "HOST",
        "QUANTIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    app = create_app({**TEST_CONFIG, "MODEL_DIR": str(models_dir)})
    yield app
    app.extensions[MODELS].close()  # the models' scheduler threads end with the test


@pytest.fixture
def client(app):
    return app.test_client()


BROWSER_TESTS = "tests/app/test_app_browser.py"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line, at the very end, when the browser tests were skipped, and why (the skip reasons above are easy to
    miss among the others)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if r.nodeid.startswith(BROWSER_TESTS)]
    if not skipped:
        return
    longrepr = skipped[0].longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    terminalreporter.write_line(f"browser tests skipped ({len(skipped)} of {BROWSER_TESTS}): {reason}", yellow=True,
                                bold=True)
