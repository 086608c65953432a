import pytest
import torch
import torch.nn.functional as F

from lm.models import build_model, config_from_dict

from .conftest import TINY, tiny_model

V = 30


@pytest.mark.parametrize("model_type", ["gpt", "lstm"])
def test_shapes_finite_loss_and_backward(model_type):
    model = tiny_model(model_type, V)
    tokens = torch.randint(0, V, (3, 16))
    out = model(tokens)
    assert out.logits.shape == (3, 16, V)
    loss = F.cross_entropy(out.logits.reshape(-1, V), tokens.reshape(-1))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("model_type", ["gpt", "lstm"])
def test_dropout_only_in_training_mode(model_type):
    model = tiny_model(model_type, V, **({"dropout": 0.3} if model_type == "gpt" else {}))
    tokens = torch.randint(0, V, (2, 12))
    model.train()
    assert not torch.allclose(model(tokens).logits, model(tokens).logits)
    model.eval()
    assert torch.equal(model(tokens).logits, model(tokens).logits)


def test_lstm_weight_drop_masks_hidden_to_hidden_weights_in_training_only(monkeypatch):
    model = tiny_model("lstm", V, dropout=0.0, dropout_hidden=0.0, dropout_input=0.0, dropout_embedding=0.0,
                       weight_drop=0.5)
    tokens = torch.randint(0, V, (2, 12))
    seen = []
    import lm.models.lstm as lstm_module

    real = lstm_module.functional_call

    def spy(module, params, args, **kwargs):
        seen.append(params["weight_hh_l0"])
        return real(module, params, args, **kwargs)

    monkeypatch.setattr(lstm_module, "functional_call", spy)
    model.train()
    first = model(tokens).logits
    assert len(seen) == model.config.n_layers
    dropped = seen[0]
    zero_fraction = (dropped == 0).float().mean().item()
    assert 0.3 < zero_fraction < 0.7
    assert not torch.allclose(first, model(tokens).logits)  # a new mask each pass
    model.eval()
    seen.clear()
    assert torch.equal(model(tokens).logits, model(tokens).logits)
    assert seen == []  # no weight drop at inference
    # the raw weights are untouched by dropping
    assert (model.layers[0].weight_hh_l0 == 0).float().mean().item() < 0.01


def test_lstm_returns_hidden_outputs_for_ar_tar():
    model = tiny_model("lstm", V)
    out = model(torch.randint(0, V, (2, 7)))
    assert out.hidden.shape == out.dropped_hidden.shape == (2, 7, model.config.emb_size)


@pytest.mark.parametrize("model_type", ["gpt", "lstm"])
def test_weight_tying_shares_one_tensor(model_type):
    model = tiny_model(model_type, V)
    if model_type == "gpt":
        assert model.lm_head.weight is model.wte.weight
    else:
        assert model.decoder.weight is model.encoder.weight
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))


@pytest.mark.parametrize("model_type,extra", [("gpt", {"positions": "rotary"}), ("gpt", {"positions": "learned"}),
                                              ("gpt", {"bias": True}), ("lstm", {})])
def test_incremental_logits_equal_full_recompute(model_type, extra):
    model = tiny_model(model_type, V, **extra).eval()
    tokens = torch.randint(0, V, (2, 30))
    with torch.no_grad():
        full = model(tokens).logits
        state = model.init_state(2)
        first = model(tokens[:, :9], state)
        state = first.state
        pieces = [first.logits]
        for t in range(9, 30):
            step = model(tokens[:, t : t + 1], state)
            state = step.state
            pieces.append(step.logits)
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-4)


def test_gpt_decode_step_follows_new_weights():
    """The one-token decode path keeps a list of the weights; loading others or training must not leave it stale."""
    model, other = tiny_model("gpt", V).eval(), build_model("gpt", {"vocab_size": V, **TINY["gpt"]}).eval()
    tokens = torch.randint(0, V, (1, 6))

    def last_step_logits(m):
        state = m.init_state(1)
        with torch.no_grad():
            m(tokens[:, :5], state)
            return m(tokens[:, 5:], state).logits[0, -1]

    last_step_logits(model)  # builds the decode path's weight list
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        expected = other(tokens).logits[0, -1]
    assert torch.allclose(last_step_logits(model), expected, atol=1e-5)
    model.train()
    with torch.no_grad():
        model.blocks[0].mlp.fc.weight = torch.nn.Parameter(torch.zeros_like(model.blocks[0].mlp.fc.weight))
    model.eval()
    with torch.no_grad():
        expected = model(tokens).logits[0, -1]
    assert torch.allclose(last_step_logits(model), expected, atol=1e-5)


def test_gpt_rotary_cache_slides_past_the_context():
    model = tiny_model("gpt", V).eval()
    state = model.init_state(1)
    with torch.no_grad():
        model(torch.randint(0, V, (1, 32)), state)
        out = model(torch.randint(0, V, (1, 1)), state)
    assert state.length == 32 and state.offset == 1
    assert torch.isfinite(out.logits).all()
    with pytest.raises(ValueError, match="context length"):
        model(torch.randint(0, V, (1, 33)))


@pytest.mark.parametrize(
    "model_type,values,message",
    [
        ("gpt", {"vocab_size": V, "n_embd": 30, "n_head": 4}, "divisible"),
        ("gpt", {"vocab_size": V, "bogus": 1}, "unknown gpt option"),
        ("gpt", {"vocab_size": V, "n_layer": "six"}, "n_layer must be an integer"),
        ("gpt", {"vocab_size": V, "positions": "alibi"}, "positions"),
        ("lstm", {"vocab_size": V, "weight_drop": 1.5}, "weight_drop"),
        ("lstm", {}, "missing lstm option"),
        ("rnn", {"vocab_size": V}, "model type"),
    ],
)
def test_config_errors_are_value_errors_naming_the_field(model_type, values, message):
    with pytest.raises(ValueError, match=message):
        build_model(model_type, values)


def test_config_from_dict_accepts_ints_for_floats():
    assert config_from_dict("lstm", {"vocab_size": 5, "dropout": 0}).dropout == 0.0


def test_kv_cache_keeps_the_last_window_across_slides_and_compaction():
    from lm.models.gpt import KVCache

    cache = KVCache(n_layer=1, context_length=4)
    seen = []
    for step in range(20):  # the capacity (8) fills and compacts several times
        if cache.length + 1 > 4:
            cache.drop_front(cache.length + 1 - 4)
        cache.make_room(1)
        value = torch.full((1, 1, 1, 2), float(step))
        keys, values = cache.store(0, value, value * 10)
        cache.advance(1)
        seen.append(step)
        assert keys[0, 0, :, 0].tolist() == [float(s) for s in seen[-4:]]
        assert values[0, 0, :, 0].tolist() == [10.0 * s for s in seen[-4:]]
    assert cache.offset == 16


@pytest.mark.parametrize("flat_decode", [True, False], ids=["flat-step", "modules"])
@pytest.mark.parametrize("positions", ["rotary", "learned"])
def test_rows_of_different_lengths_decode_as_each_would_alone(positions, flat_decode):
    """A batch's KV cache holds rows that joined at different times: each row attends to its own positions only,
    on the float decode step and through the modules (the path int8 layers take, lm.quantize)."""
    model = tiny_model("gpt", V, positions=positions).eval()
    model.flat_decode = flat_decode
    sequences = [torch.randint(0, V, (n,)) for n in (5, 17, 9, 12)]
    with torch.no_grad():
        state = model.init_state(0)
        for sequence in sequences:
            row = model.init_state(1)
            model(sequence[None, :-1], row)
            state.add_rows(row)
        assert state.lengths == [4, 16, 8, 11] and not state.aligned
        batched = model(torch.stack([s[-1:] for s in sequences]), state).logits[:, -1]
        alone = torch.stack([model(s[None]).logits[0, -1] for s in sequences])
        assert torch.allclose(batched, alone, atol=1e-5)
        state.keep_rows([3, 1])  # rows 0 and 2 leave; row 3 moves into row 0
        more = [torch.cat([s, torch.randint(0, V, (1,))]) for s in (sequences[3], sequences[1])]
        batched = model(torch.stack([s[-1:] for s in more]), state).logits[:, -1]
        alone = torch.stack([model(s[None]).logits[0, -1] for s in more])
    assert torch.allclose(batched, alone, atol=1e-5)
