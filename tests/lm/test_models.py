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


@pytest.mark.parametrize("takes_bf16", [True, False])
def test_lstm_trains_under_cpu_bf16_autocast_on_any_cpu(monkeypatch, takes_bf16):
    # AVX2-only CPUs: oneDNN has no bf16 LSTM, and autocast would send the fused layer there and fail
    from lm.models import lstm as lstm_module

    if takes_bf16 and not lstm_module.cpu_lstm_takes_bf16():
        pytest.skip("this CPU's oneDNN has no bf16 LSTM (no AVX512-BF16 or AMX)")
    monkeypatch.setattr(lstm_module, "cpu_lstm_takes_bf16", lambda: takes_bf16)
    model = tiny_model("lstm", V).train()
    x = torch.randint(0, V, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, model.init_state(2, torch.device("cpu")))
    out.logits.float().sum().backward()
    assert out.hidden.dtype == (torch.bfloat16 if takes_bf16 else torch.float32)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


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


GPT_OPTIONS = [{"qk_norm": True}, {"mlp": "relu2"}, {"mlp": "swiglu"}, {"zero_init_proj": True},
               {"qk_norm": True, "mlp": "swiglu", "zero_init_proj": True, "positions": "learned", "bias": True}]
LSTM_OPTIONS = [{"mogrifier_rounds": 1}, {"mogrifier_rounds": 4}, {"mogrifier_rounds": 5, "mogrifier_rank": 3}]


def _perturbed(model):
    """Random weights everywhere, so options that start as the identity (zero projections, unit gains) count."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("model_type,extra", [("gpt", {"positions": "rotary"}), ("gpt", {"positions": "learned"}),
                                              ("gpt", {"bias": True}), ("lstm", {})]
                         + [("gpt", options) for options in GPT_OPTIONS]
                         + [("lstm", options) for options in LSTM_OPTIONS])
def test_incremental_logits_equal_full_recompute(model_type, extra):
    model = _perturbed(tiny_model(model_type, V, **extra)).eval()
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
        ("gpt", {"vocab_size": V, "mlp": "tanh"}, "mlp must be one of gelu, relu2, swiglu"),
        ("gpt", {"vocab_size": V, "attn_dropout": 1.5}, "attn_dropout must be"),
        ("lstm", {"vocab_size": V, "mogrifier_rounds": -1}, "mogrifier_rounds"),
        ("lstm", {"vocab_size": V, "weight_drop": 1.5}, "weight_drop"),
        ("lstm", {}, "missing lstm option"),
        ("rnn", {"vocab_size": V}, "model type"),
    ],
)
def test_config_errors_are_value_errors_naming_the_field(model_type, values, message):
    with pytest.raises(ValueError, match=message):
        build_model(model_type, values)


def test_gpt_options_change_the_blocks_as_described():
    plain = tiny_model("gpt", V)
    swiglu = tiny_model("gpt", V, mlp="swiglu", n_embd=48, n_head=2)
    assert swiglu.blocks[0].mlp.fc.weight.shape == (2 * 128, 48)  # two halves of 8/3 x 48
    assert swiglu.blocks[0].mlp.proj.weight.shape == (48, 128)
    assert tiny_model("gpt", V, n_embd=48, n_head=2).num_parameters() == swiglu.num_parameters()
    normed = tiny_model("gpt", V, qk_norm=True)
    assert normed.num_parameters() == plain.num_parameters() + 2 * 2 * 16  # two layers, q and k gains of 16
    assert normed.blocks[0].attn.qk_gain.dim() == 1  # a norm gain: no weight decay, not for Muon
    zeroed = tiny_model("gpt", V, zero_init_proj=True)
    projections = [p for name, p in zeroed.named_parameters() if name.endswith("proj.weight")]
    assert len(projections) == 4 and all(torch.count_nonzero(p) == 0 for p in projections)
    assert torch.count_nonzero(zeroed.blocks[0].attn.qkv.weight) > 0
    x = torch.randint(0, V, (2, 10))  # zero output projections: every block starts as the identity
    expected = F.linear(F.layer_norm(zeroed.wte(x), (32,), zeroed.ln_f.weight), zeroed.wte.weight)
    assert torch.allclose(zeroed.eval()(x).logits, expected, atol=1e-6)


def test_gpt_attention_dropout_defaults_to_dropout_and_can_be_set_apart(monkeypatch):
    import lm.models.gpt as gpt_module

    seen = []
    fused, written_out = gpt_module.F.scaled_dot_product_attention, gpt_module.causal_attention_with_dropout

    def spy_fused(*args, dropout_p=0.0, **kwargs):
        seen.append(("fused", dropout_p))
        return fused(*args, dropout_p=dropout_p, **kwargs)

    def spy_written_out(q, k, v, p):
        seen.append(("written out", p))
        return written_out(q, k, v, p)

    monkeypatch.setattr(gpt_module.F, "scaled_dot_product_attention", spy_fused)
    monkeypatch.setattr(gpt_module, "causal_attention_with_dropout", spy_written_out)
    tokens = torch.randint(0, V, (2, 8))
    tiny_model("gpt", V, dropout=0.3).train()(tokens)
    assert seen == [("written out", 0.3)] * 2  # on a CPU, attention dropout's mask comes from lm.models.dropout
    seen.clear()
    apart = tiny_model("gpt", V, dropout=0.3, attn_dropout=0.0).train()
    apart(tokens)
    assert seen == [("fused", 0.0)] * 2
    assert not torch.equal(apart(tokens).logits, apart(tokens).logits)  # residual dropout stays on
    seen.clear()
    apart.eval()(tokens)
    assert seen == [("fused", 0.0)] * 2


def test_written_out_attention_is_the_fused_attention_without_dropout():
    from lm.models.gpt import causal_attention_with_dropout

    q, k, v = torch.randn(3, 2, 3, 7, 8).unbind(0)  # (B, nh, T, hs) each
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(causal_attention_with_dropout(q, k, v, 0.0), expected, atol=1e-6)
    # the first query sees only the first key, with weight 1: dropped (0) or kept and scaled (2 at p = 0.5)
    first = causal_attention_with_dropout(q, k, v, 0.5)[:, :, 0]  # (B, nh, hs)
    for out, value in zip(first.reshape(-1, 8), v[:, :, 0].reshape(-1, 8)):
        assert torch.equal(out, torch.zeros(8)) or torch.allclose(out, 2 * value, atol=1e-3)


def test_written_out_attention_computes_in_float32_under_bf16_autocast():
    # as torch's own unfused CPU kernel does: attention logits in bf16 would be off by ~0.1 at this scale
    from lm.models.gpt import causal_attention_with_dropout

    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 6, 64, 32) * scale for scale in (3, 3, 1))
    q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = causal_attention_with_dropout(q, k, v, 0.0)
    assert got.dtype == torch.bfloat16
    assert (got.float() - expected).abs().max() < 0.03


def test_gpt_relu_squared_and_swiglu_activations():
    from lm.models.gpt import mlp_activation

    h = torch.tensor([[-2.0, -0.5, 0.5, 3.0]])
    assert torch.equal(mlp_activation(h, "relu2"), torch.tensor([[0.0, 0.0, 0.25, 9.0]]))
    gate, value = h[:, :2], h[:, 2:]
    assert torch.allclose(mlp_activation(h, "swiglu"), gate * torch.sigmoid(gate) * value)


def test_mogrifier_with_zero_matrices_is_the_plain_lstm():
    """2 sigmoid(0) = 1: with its matrices at zero the Mogrifier changes nothing, so its hand-written loop must give
    what nn.LSTM's fused kernel gives with the same weights (in training mode too, weight drop aside)."""
    plain = tiny_model("lstm", V, weight_drop=0.0)
    mogrified = tiny_model("lstm", V, weight_drop=0.0, mogrifier_rounds=3)
    missing, unexpected = mogrified.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("mogrifiers.") for name in missing)
    with torch.no_grad():
        for p in mogrified.mogrifiers.parameters():
            p.zero_()
    tokens = torch.randint(0, V, (3, 12))
    for mode in (False, True):
        plain.train(mode), mogrified.train(mode)
        torch.manual_seed(5)
        a = plain(tokens)
        torch.manual_seed(5)
        b = mogrified(tokens)
        assert torch.allclose(a.logits, b.logits, atol=1e-5)
        assert all(torch.allclose(x, y, atol=1e-5) for xs, ys in zip(a.state, b.state) for x, y in zip(xs, ys))


def test_mogrifier_gates_input_and_state_alternately():
    from lm.models.lstm import Mogrifier

    torch.manual_seed(0)
    mogrifier = Mogrifier(input_size=3, hidden_size=4, rounds=3, rank=0)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    q1, r2, q3 = (gate.weight for gate in mogrifier.gates)
    x1 = 2 * torch.sigmoid(h @ q1.t()) * x
    h2 = 2 * torch.sigmoid(x1 @ r2.t()) * h
    x3 = 2 * torch.sigmoid(h2 @ q3.t()) * x1
    got_x, got_h = mogrifier(x, h)
    assert torch.allclose(got_x, x3) and torch.allclose(got_h, h2)
    low_rank = Mogrifier(input_size=3, hidden_size=4, rounds=2, rank=2)
    assert [tuple(p.shape) for p in low_rank.parameters()] == [(2, 4), (3, 2), (2, 3), (4, 2)]


def test_config_from_dict_accepts_ints_for_floats():
    assert config_from_dict("lstm", {"vocab_size": 5, "dropout": 0}).dropout == 0.0


def test_kv_cache_keeps_the_last_window_across_slides_and_compaction():
    from lm.models.kv_cache import KVCache

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
