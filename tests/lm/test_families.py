"""lm/models/family.py: the hooks each family registers beside MODEL_TYPES, and a third family going through the
core's generic code (checkpoints, generation, scoring) with nothing but its registration."""

import numpy as np
import pytest
import torch

from lm import load, save_model_dir
from lm.checks import OptionError
from lm.models import MODEL_TYPES, build_model, check_training, config_from_dict, family_named, family_of
from lm.models.output import ModelOutput
from tests.third_family import bigram_registered  # noqa: F401  (a fixture)

from .conftest import TINY, tiny_model

V = 30
SETTINGS = {"seq_len": 16, "variable_bptt": False, "alpha": 0.0, "beta": 0.0, "optimizer": "adamw"}


def test_every_family_is_registered_with_its_classes():
    for name, family in MODEL_TYPES.items():
        model = build_model(name, {"vocab_size": V, **TINY[name]})
        assert family.name == name and family_of(model) is family and isinstance(model, family.model_class)
        assert isinstance(model.config, family.config_class) and family.title
    with pytest.raises(OptionError) as caught:
        family_named("rnn")
    assert caught.value.option == "type"


@pytest.mark.parametrize(
    "model_type, changes, option",
    [
        ("gpt", {"variable_bptt": True}, "variable_bptt"),
        ("gpt", {"alpha": 2.0}, "alpha"),
        ("gpt", {"optimizer": "ntasgd"}, "optimizer"),
        ("gpt", {"seq_len": 33}, "seq_len"),  # longer than the tiny GPT's context of 32
    ],
)
def test_training_settings_another_family_owns_are_refused(model_type, changes, option):
    config = config_from_dict(model_type, {"vocab_size": V, **TINY[model_type]})
    with pytest.raises(OptionError) as caught:
        check_training(model_type, {**SETTINGS, **changes}, config)
    assert caught.value.option == option


def test_the_lstm_trains_with_its_own_settings():
    config = config_from_dict("lstm", {"vocab_size": V, **TINY["lstm"]})
    check_training("lstm", {**SETTINGS, "variable_bptt": True, "alpha": 2.0, "beta": 1.0, "optimizer": "ntasgd",
                            "seq_len": 1000}, config)


def test_carried_state_and_loss_terms():
    lstm, gpt = MODEL_TYPES["lstm"], MODEL_TYPES["gpt"]
    model = tiny_model("lstm", V)
    out = model(torch.randint(0, V, (2, 8)))
    carried = lstm.carry(out.state)
    assert all(not h.requires_grad and not c.requires_grad for h, c in carried)
    assert torch.equal(carried[0][0], out.state[0][0])
    restored = lstm.state_from_tensors(lstm.state_tensors(carried), torch.device("cpu"))
    assert all(torch.equal(a, b) for pair, again in zip(carried, restored) for a, b in zip(pair, again))
    assert lstm.state_from_tensors({}, torch.device("cpu")) is None
    assert len(lstm.loss_terms(out, {**SETTINGS, "alpha": 2.0, "beta": 1.0})) == 2
    assert lstm.loss_terms(out, SETTINGS) == []
    gpt_out = tiny_model("gpt", V)(torch.randint(0, V, (2, 8)))
    assert gpt.carry(gpt_out.state) is None and gpt.loss_terms(gpt_out, SETTINGS) == []


def test_batches_follow_the_family():
    ids = np.arange(2000)
    window = MODEL_TYPES["gpt"].batches(ids, 4, 16, seed=1)
    stream = MODEL_TYPES["lstm"].batches(ids, 4, 16, seed=1)
    first, second = stream.batch(0), stream.batch(1)
    assert window.batch(0).x.shape == first.x.shape == (4, 16)
    assert second.x[0, 0] == first.x[0, -1] + 1  # contiguous, so the state can be carried
    assert not window.batch(1).x[0, 0] == window.batch(0).x[0, -1] + 1  # random windows


def test_generation_slides_past_the_context_through_the_family_hooks():
    gpt = MODEL_TYPES["gpt"]
    model = tiny_model("gpt", V, positions="learned").eval()
    assert list(gpt.prompt_window(model, list(range(40)))) == list(range(8, 40))
    full, short = torch.randint(0, V, (40,)).tolist(), torch.randint(0, V, (10,)).tolist()
    with torch.no_grad():
        state = model.init_state(0)
        for ids in (full[-32:], short):  # two rows of a batch: one at the context length, one not
            row = model.init_state(1)
            model(torch.tensor([ids]), row)
            state = gpt.join_rows(model, state, row, copies=1)
        state = gpt.make_room(model, state, [full, short], torch.device("cpu"))
        # the full row holds its last half-context, less the token about to be fed; the other is untouched
        assert state.lengths == [15, 10] and state.positions == [15, 10]
        expected = model(torch.tensor([full[-16:]])).logits[0, -1]
        stepped = model(torch.tensor([[full[-1]], [short[-1]]]), state).logits[0, -1]
    assert torch.allclose(stepped, expected, atol=1e-5)
    assert MODEL_TYPES["lstm"].make_room(tiny_model("lstm", V), "state", [full], "cpu") == "state"


def test_a_third_family_saves_loads_generates_and_scores(tmp_path, char_tokenizer, bigram_registered):
    family = bigram_registered
    model = build_model("bigram", {"vocab_size": char_tokenizer.vocab_size})
    save_model_dir(tmp_path / "bigram", model, char_tokenizer)
    generator = load(tmp_path / "bigram")
    assert generator.model_type == "bigram" and generator.family is family
    result = generator.generate("The", max_new_tokens=12, seed=3)
    assert len(result.tokens) == 12
    scored = []
    family.score_text(generator.model, np.arange(100) % char_tokenizer.vocab_size,
                      lambda logits, targets: scored.append(targets.numel()), "cpu")
    assert sum(scored) == 99
    assert isinstance(generator.model(torch.tensor([[1, 2]])), ModelOutput)


@pytest.mark.parametrize("model_type", ["gpt", "lstm", "bigram"])
def test_reading_in_order_yields_each_segment_once_and_only_when_asked(model_type, bigram_registered):
    """read_in_order (dynamic evaluation's reading): every target once, in order, one forward pass per segment, run
    lazily, so weights changed between two segments already act on the second."""
    config = {"vocab_size": V} if model_type == "bigram" else {"vocab_size": V, **TINY[model_type]}
    model = build_model(model_type, config).eval()
    ids = np.arange(70) % V
    family = family_of(model)
    reading = family.read_in_order(model, ids, "cpu", segment=8)
    logits, targets = next(reading)
    first = 8 if model.context_length is None else model.context_length  # a window family's first window is whole
    assert targets.tolist() == [ids[1: first + 1].tolist()] and logits.shape[:2] == targets.shape
    assert logits.requires_grad
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every later segment is read by these weights: uniform predictions
    rest = list(reading)
    assert torch.cat([targets] + [t for _, t in rest], dim=1).tolist() == [ids[1:].tolist()]
    assert all(torch.allclose(out, out[..., :1].expand_as(out)) for out, _ in rest)
    assert family.default_segment(model) == (32 if model.context_length is None else model.context_length // 2)
