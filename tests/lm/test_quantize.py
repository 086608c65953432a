"""lm.load(path, quantize="int8"): int8 linear (and LSTM) layers, close to float32, for both families."""

import pytest
import torch
import torch.nn as nn

from lm import load
from lm.checkpoint import load_model_dir
from lm.quantize import QUANTIZE_MODES, quantize_model


def _float_layers(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) in (nn.Linear, nn.LSTM)]


def test_int8_replaces_every_linear_and_lstm_layer(model_dir):
    fp32, int8 = load(model_dir), load(model_dir, quantize="int8")
    assert _float_layers(fp32.model) and _float_layers(int8.model) == []
    assert int8.quantize == "int8" and fp32.quantize is None
    assert int8.num_parameters == fp32.num_parameters  # counted before the int8 layers hide their weights
    assert int8.model.flat_decode is False


def test_int8_logits_stay_close_to_float32(model_dir):
    loaded = load_model_dir(model_dir)
    tokens = torch.tensor([loaded.tokenizer.encode("First Speaker:\nWhat light")])
    with torch.inference_mode():
        reference = loaded.model(tokens).logits.log_softmax(-1)
        quantize_model(loaded.model, "int8")
        quantized = loaded.model(tokens).logits.log_softmax(-1)
    kl = (reference.exp() * (reference - quantized)).sum(-1).mean().item()
    assert kl < 1e-3
    assert not torch.equal(reference, quantized)  # it did change something


def test_int8_generates_incrementally_like_its_own_full_forward(model_dir):
    """The int8 model decodes through its modules (not the float fast path); greedy decoding still picks each
    step's argmax of a full forward pass over the text so far, up to int8 rounding of ties."""
    generator = load(model_dir, quantize="int8")
    result = generator.generate("The", max_new_tokens=25, temperature=0)
    assert len(result.tokens) == 25
    ids = generator.tokenizer.encode("The")
    agree = 0
    with torch.inference_mode():
        for event in result.tokens:
            logits = generator.model(torch.tensor([ids])).logits[0, -1]
            agree += int(logits.argmax()) == event.id or bool(logits.max() - logits[event.id] < 1e-2)
            ids.append(event.id)
    assert agree == len(result.tokens)


def test_batched_int8_generation(model_dir):
    result = load(model_dir, quantize="int8").generate("The", max_new_tokens=10, num_return_sequences=3, seed=2)
    assert [len(c.tokens) for c in result.choices] == [10, 10, 10]


def test_unknown_quantization_is_refused(model_dir):
    with pytest.raises(ValueError, match="quantize must be one of int8"):
        load(model_dir, quantize="int4")
    assert QUANTIZE_MODES == ("int8",)


@pytest.mark.parametrize("model_type,options", [
    ("gpt", {"mlp": "swiglu", "qk_norm": True}),
    ("gpt", {"mlp": "relu2", "zero_init_proj": True}),
    ("lstm", {"mogrifier_rounds": 3}),
    ("lstm", {"mogrifier_rounds": 2, "mogrifier_rank": 4}),
])
def test_int8_quantizes_the_quality_options_and_decodes_like_its_full_forward(tmp_path, char_tokenizer, model_type,
                                                                             options):
    """SwiGLU and QK-norm run through the GPT's modules; a Mogrifier LSTM's cells step its int8 LSTM module one
    token at a time, with its gating matrices int8 as well."""
    from tests.lm.conftest import tiny_model

    from lm.checkpoint import save_model_dir

    model = tiny_model(model_type, char_tokenizer.vocab_size, **options)
    with torch.no_grad():  # weights away from their initial zeros and ones, so every option matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_model_dir(tmp_path / "m", model, char_tokenizer, metadata={})
    loaded = load_model_dir(tmp_path / "m")
    tokens = torch.tensor([loaded.tokenizer.encode("First Speaker:\nWhat light")])
    with torch.inference_mode():
        reference = loaded.model(tokens).logits.log_softmax(-1)
        quantize_model(loaded.model, "int8")
        assert _float_layers(loaded.model) == []
        quantized = loaded.model(tokens).logits.log_softmax(-1)
        state, steps = None, []
        for t in range(tokens.shape[1]):  # one token at a time through the carried state or cache
            output = loaded.model(tokens[:, t: t + 1], state if state is not None else
                                  loaded.model.init_state(1))
            state = output.state
            steps.append(output.logits.log_softmax(-1))
    # int8 quantizes each call's inputs with their own range, so a step and a whole pass differ by rounding only:
    # both stay close to float32 (the float paths are held equal by tests/lm/test_models.py)
    for int8 in (quantized, torch.cat(steps, dim=1)):
        kl = (reference.exp() * (reference - int8)).sum(-1).mean().item()
        assert 0 < kl < 1e-2
