"""Shared fixtures for the training tests: small configs, a trained tiny GPT (the isolated cache: tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(kind: str = "gpt", **training) -> dict:
    """A config that trains in a second or two on synthetic text."""
    if kind == "gpt":
        model = {"type": "gpt", "context_length": 32, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0}
    else:
        model = {"type": "lstm", "emb_size": 32, "hidden_size": 64, "n_layers": 2, "dropout": 0.1,
                 "dropout_hidden": 0.1, "dropout_input": 0.1, "dropout_embedding": 0.05, "weight_drop": 0.1}
    base = {"lr": 0.005 if kind == "gpt" else 0.02, "warmup_steps": 5, "batch_size": 8, "seq_len": 32, "max_steps": 30, "eval_interval": 10,
            "eval_batches": 4, "log_interval": 5, "seed": 7, "precision": "fp32"}
    base.update(training)
    return {
        "name": f"test-{kind}",
        "data": {"source": "synthetic", "synthetic_chars": 20000, "split": [0.8, 0.2], "tokenizer": "char"},
        "model": model,
        "training": base,
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_cli(*args: str, timeout: float = 600, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m training ...` in a subprocess, from the repository root (generous timeout: on a shared 2-core
    machine a few seconds of work can take minutes)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def assert_servable(model_dir: Path, prompt: str = "A", tokens: int = 5) -> None:
    """The model directory loads and generates as the app would: the tokens asked for, text that is their decoding,
    the same text again for the same seed."""
    from lm import load

    generator = load(model_dir)
    result = generator.generate(prompt, max_new_tokens=tokens, seed=0, stop_at_eos=False)
    assert len(result.tokens) == tokens and result.finish_reason == "length"
    assert result.text == generator.tokenizer.decode([event.id for event in result.tokens])
    assert generator.generate(prompt, max_new_tokens=tokens, seed=0, stop_at_eos=False).text == result.text


@pytest.fixture(scope="session")
def trained_gpt(tmp_path_factory, cache_dir) -> Path:
    """A tiny GPT model directory, trained once for the evaluate / generate / benchmark tests."""
    from training.config import config_from_dict
    from training.trainer import RunOptions, train

    out = tmp_path_factory.mktemp("models") / "tiny-gpt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCRIPTORIUM_CACHE", str(cache_dir))
        config = config_from_dict(tiny_config("gpt", max_steps=40, eval_interval=20), "tiny.yaml")
        train(config, RunOptions(output=out, progress=False, command="test"))
    return out


def _train_export_gpt(out: Path, cache_dir: Path, positions: str, bias: bool, mlp: str = "gelu") -> Path:
    import torch

    from training.config import config_from_dict
    from training.trainer import RunOptions, train

    config = tiny_config("gpt", max_steps=150, eval_interval=50, batch_size=16, seq_len=96, lr=0.01)
    config["data"].update(tokenizer="bpe", vocab_size=300, synthetic_chars=40000)
    config["model"].update(context_length=96, n_layer=2, n_head=2, n_embd=32, positions=positions, bias=bias,
                           mlp=mlp)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains no faster on two, and far slower on a busy machine
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SCRIPTORIUM_CACHE", str(cache_dir))
            train(config_from_dict(config, "tiny-export.yaml"), RunOptions(output=out, progress=False, command="test"))
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def rotary_bpe_gpt(tmp_path_factory, cache_dir) -> Path:
    """A tiny trained GPT as the exports see most: rotary positions, no biases, byte-level BPE, context 96 (room
    for a prompt and 50 greedy tokens). Trained, so its next-token distributions are peaked like a real model's."""
    return _train_export_gpt(tmp_path_factory.mktemp("models") / "rotary-gpt", cache_dir, "rotary", False)


@pytest.fixture(scope="session")
def learned_bpe_gpt(tmp_path_factory, cache_dir) -> Path:
    """The other GPT layout: learned positions and biases (GPT-2 in transformers and llama.cpp)."""
    return _train_export_gpt(tmp_path_factory.mktemp("models") / "learned-gpt", cache_dir, "learned", True)


@pytest.fixture(scope="session")
def relu2_bpe_gpt(tmp_path_factory, cache_dir) -> Path:
    """The rotary GPT with a ReLU-squared MLP (what --auto gives its GPTs; transformers' `relu2` activation)."""
    return _train_export_gpt(tmp_path_factory.mktemp("models") / "relu2-gpt", cache_dir, "rotary", False, "relu2")
