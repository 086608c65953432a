import json

import pytest
import torch

import lm.checkpoint as checkpoint
from lm import CheckpointError, load, load_model_dir, save_model_dir, train_tokenizer
from lm.precision import MatmulProbe

from .conftest import FakeMeasure, tiny_model


def test_round_trip_keeps_weights_and_metadata(tmp_path, char_tokenizer):
    model = tiny_model("gpt", char_tokenizer.vocab_size).eval()
    save_model_dir(tmp_path / "m", model, char_tokenizer, metadata={"metrics": {"val_loss": 1.5}})
    loaded = load_model_dir(tmp_path / "m")
    assert loaded.config["metrics"] == {"val_loss": 1.5}
    assert loaded.config["model_type"] == "gpt" and loaded.tokenizer.kind == "char"
    tokens = torch.randint(0, char_tokenizer.vocab_size, (1, 10))
    assert torch.equal(loaded.model(tokens).logits, model(tokens).logits)
    assert loaded.model.lm_head.weight is loaded.model.wte.weight  # tying survives loading
    assert not list(tmp_path.glob(".*.tmp"))  # no staging leftovers


@pytest.mark.parametrize("dtype,torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("float32", torch.float32)])
def test_weights_can_be_stored_in_half_precision(tmp_path, char_tokenizer, dtype, torch_dtype):
    from safetensors.torch import load_file

    model = tiny_model("lstm", char_tokenizer.vocab_size).eval()
    save_model_dir(tmp_path / "m", model, char_tokenizer, dtype=dtype)
    stored = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert all(t.dtype == torch_dtype for t in stored.values())
    # a machine where half precision is emulated (slower than fp32) computes in fp32; which dtype a real machine
    # computes in is its probe's answer (tests/lm/test_precision.py)
    emulated = MatmulProbe(tmp_path / "probe.json", measure=FakeMeasure(bf16=1.0, fp16=1.0))
    loaded = load_model_dir(tmp_path / "m", probe=emulated).model
    assert next(loaded.parameters()).dtype == torch.float32
    tokens = torch.randint(0, char_tokenizer.vocab_size, (1, 10))
    assert torch.allclose(loaded(tokens).logits, model(tokens).logits, atol=0.05)


def test_resaving_keeps_foreign_files(tmp_path, char_tokenizer):
    model = tiny_model("gpt", char_tokenizer.vocab_size)
    path = tmp_path / "m"
    save_model_dir(path, model, char_tokenizer)
    (path / "card.md").write_text("my card")
    (path / "resume").mkdir()
    (path / "resume" / "state.json").write_text("{}")
    save_model_dir(path, model, char_tokenizer, metadata={"metrics": {"val_loss": 1.0}})
    assert (path / "card.md").read_text() == "my card"
    assert (path / "resume" / "state.json").read_text() == "{}"
    assert json.loads((path / "config.json").read_text())["metrics"] == {"val_loss": 1.0}


def test_a_crash_mid_save_leaves_the_previous_checkpoint_intact(tmp_path, char_tokenizer, monkeypatch):
    path = tmp_path / "m"
    first = tiny_model("gpt", char_tokenizer.vocab_size)
    save_model_dir(path, first, char_tokenizer, metadata={"metrics": {"val_loss": 3.0}})
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "replace_directory", crash)
    second = tiny_model("gpt", char_tokenizer.vocab_size, n_layer=3)
    with pytest.raises(KeyboardInterrupt):
        save_model_dir(path, second, char_tokenizer, metadata={"metrics": {"val_loss": 1.0}})
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert not list(tmp_path.glob(".*.tmp"))
    load_model_dir(path)


def _corrupt(path, case):
    if case == "missing config":
        (path / "config.json").unlink()
    elif case == "missing weights":
        (path / "model.safetensors").unlink()
    elif case == "missing tokenizer":
        (path / "tokenizer.json").unlink()
    elif case == "truncated weights":
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif case == "truncated config":
        text = (path / "config.json").read_text()
        (path / "config.json").write_text(text[: len(text) // 2])
    elif case == "garbage tokenizer":
        (path / "tokenizer.json").write_text('{"not": "a tokenizer"')
    elif case == "wrong vocab":
        train_tokenizer("char", "abc").save(path / "tokenizer.json")
    elif case == "shape mismatch":
        config = json.loads((path / "config.json").read_text())
        key = "n_embd" if config["model_type"] == "gpt" else "hidden_size"
        config["model"][key] *= 2
        (path / "config.json").write_text(json.dumps(config))
    elif case == "unknown model type":
        config = json.loads((path / "config.json").read_text())
        config["model_type"] = "rwkv"
        (path / "config.json").write_text(json.dumps(config))
    elif case == "unknown hyperparameter":
        config = json.loads((path / "config.json").read_text())
        config["model"]["heads"] = 3
        (path / "config.json").write_text(json.dumps(config))
    elif case == "not a model":
        (path / "config.json").write_text('{"hello": 1}')


CASES = {
    "missing config": ("config.json", "missing"),
    "missing weights": ("model.safetensors", "missing"),
    "missing tokenizer": ("tokenizer.json", "missing"),
    "truncated weights": ("model.safetensors", "truncated"),
    "truncated config": ("config.json", "truncated"),
    "garbage tokenizer": ("tokenizer.json", "cannot be read"),
    "wrong vocab": ("tokenizer.json", "does not match"),
    "shape mismatch": ("model.safetensors", "shape"),
    "unknown model type": ("config.json", "model_type"),
    "unknown hyperparameter": ("config.json", "unknown"),
    "not a model": ("config.json", "not a Scriptorium model"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_corruption_gives_a_one_line_error_naming_the_file(model_dir, case):
    _corrupt(model_dir, case)
    file, problem = CASES[case]
    with pytest.raises(CheckpointError) as info:
        load(model_dir)
    message = str(info.value)
    assert "\n" not in message
    assert file in message and problem in message


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a model directory"):
        load(tmp_path / "nowhere")


def test_save_rejects_bad_dtype_and_vocab_mismatch(tmp_path, char_tokenizer):
    model = tiny_model("gpt", char_tokenizer.vocab_size)
    with pytest.raises(ValueError, match="dtype"):
        save_model_dir(tmp_path / "m", model, char_tokenizer, dtype="int8")
    with pytest.raises(ValueError, match="vocab_size"):
        save_model_dir(tmp_path / "m", tiny_model("gpt", 7), char_tokenizer)
