"""Muon for the hidden matrices, AdamW for the rest: the grouping, stepping together, the state round trip."""

from __future__ import annotations

import copy

import pytest
import torch

from lm.models import build_model
from training.config import TrainingConfig
from training.optim import MuonWithAdamW, build_optimizer, muon_groups

GPT = {"vocab_size": 40, "context_length": 16, "n_layer": 2, "n_head": 2, "n_embd": 16, "qk_norm": True,
       "dropout": 0.0}
LSTM = {"vocab_size": 40, "emb_size": 12, "hidden_size": 20, "n_layers": 2, "mogrifier_rounds": 2}


def _names(model, params) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_gpt_hidden_matrices_go_to_muon_embeddings_norms_and_head_to_adamw():
    model = build_model("gpt", GPT)
    hidden, others = muon_groups(model)
    assert _names(model, hidden) == {f"blocks.{i}.{m}" for i in range(2)
                                     for m in ("attn.qkv.weight", "attn.proj.weight", "mlp.fc.weight",
                                               "mlp.proj.weight")}
    assert "wte.weight" in _names(model, others)  # the tied embedding and output layer
    assert {"blocks.0.attn.qk_gain", "ln_f.weight"} <= _names(model, others)
    assert len(hidden) + len(others) == len(list(model.parameters()))


@pytest.mark.parametrize("tie", [True, False])
def test_lstm_gates_and_mogrifier_go_to_muon_the_output_layer_does_not(tie):
    model = build_model("lstm", {**LSTM, "tie_weights": tie})
    hidden, others = muon_groups(model)
    names = _names(model, hidden)
    assert {"layers.0.weight_ih_l0", "layers.0.weight_hh_l0", "layers.1.weight_hh_l0",
            "mogrifiers.0.gates.0.weight", "mogrifiers.1.gates.1.weight"} <= names
    assert not any(name.startswith(("encoder", "decoder")) or "bias" in name for name in names)
    assert "decoder.weight" not in names and "encoder.weight" in _names(model, others)


def _trained_steps(optimizer, model, steps: int, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        tokens = torch.randint(0, 40, (2, 8), generator=generator)
        model(tokens).logits.logsumexp(-1).mean().backward()
        optimizer.step()


def test_muon_with_adamw_steps_both_and_restores_its_state():
    cfg = TrainingConfig(optimizer="muon", lr=0.02, weight_decay=0.1)
    torch.manual_seed(0)
    model = build_model("gpt", GPT)
    optimizer = build_optimizer(model, cfg)
    assert isinstance(optimizer, MuonWithAdamW)
    muon, adamw = optimizer.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert len(optimizer.param_groups) == 1 + 2  # the schedule sets every group's lr
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    _trained_steps(optimizer, model, 2)
    assert all(not torch.equal(before[name], p) for name, p in model.named_parameters())  # both optimizers moved

    state = optimizer.state_dict()
    indices = sorted(state["state"])
    assert indices == list(range(len(list(model.parameters()))))  # numbered across both, Muon's first
    twin = build_model("gpt", GPT)
    twin.load_state_dict(model.state_dict())
    restored = build_optimizer(twin, cfg)
    restored.load_state_dict(copy.deepcopy(state))  # as from a file: torch would share the tensors
    _trained_steps(optimizer, model, 2, seed=1)
    _trained_steps(restored, twin, 2, seed=1)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_muon_lr_scales_the_muon_group_under_the_schedule(tmp_path):
    from training.config import ConfigError, config_from_dict
    from training.trainer import RunOptions, Trainer
    from tests.training.conftest import tiny_config

    optimizer = build_optimizer(build_model("gpt", GPT), TrainingConfig(optimizer="muon", lr=0.01, muon_lr=0.03))
    muon_group, *adamw_groups = optimizer.param_groups
    assert muon_group["lr"] == pytest.approx(0.03) and muon_group["lr_scale"] == pytest.approx(3.0)
    assert all(group["lr"] == pytest.approx(0.01) for group in adamw_groups)
    trainer = Trainer(config_from_dict(tiny_config("gpt", optimizer="muon", lr=0.01, muon_lr=0.03), "t.yaml"),
                      RunOptions(output=tmp_path / "run", progress=False))
    trainer.state.step = 50  # after the warmup, somewhere on the cosine
    trainer._set_lr(seq_len=32)
    muon_group, *adamw_groups = trainer.optimizer.param_groups
    assert 0 < adamw_groups[0]["lr"] < 0.01 and muon_group["lr"] == pytest.approx(3 * adamw_groups[0]["lr"])
    with pytest.raises(ConfigError, match="muon_lr: applies to optimizer: muon only"):
        config_from_dict(tiny_config("gpt", muon_lr=0.03), "t.yaml")
