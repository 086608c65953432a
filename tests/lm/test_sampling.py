"""lm/sampling.py: each logits processor on its own, the fixed-order chain, and drawing tokens."""

import pytest
import torch

from lm.checks import OptionError
from lm.sampling import (
    ProcessorChain,
    RepetitionPenalty,
    SuppressTokens,
    Temperature,
    TopK,
    TopP,
    sample_rows,
)

LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0]])  # softmax: 0.64, 0.24, 0.09, 0.03
HISTORY = torch.tensor([[0, 3]])


def test_suppressed_tokens_are_never_kept():
    assert SuppressTokens([1, 1, 3])(LOGITS.clone(), HISTORY).isinf().tolist() == [[False, True, False, True]]
    assert SuppressTokens([])(LOGITS.clone(), HISTORY).equal(LOGITS)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    assert RepetitionPenalty(2.0)(LOGITS.clone(), HISTORY).tolist() == [[1.0, 1.0, 0.0, -2.0]]
    assert RepetitionPenalty(1.0)(LOGITS.clone(), HISTORY).equal(LOGITS)
    assert RepetitionPenalty(2.0)(LOGITS.clone(), HISTORY[:, :0]).equal(LOGITS)  # nothing generated yet


def test_temperature_scales_the_logits():
    assert Temperature(2.0)(LOGITS.clone(), HISTORY).tolist() == [[1.0, 0.5, 0.0, -0.5]]
    assert Temperature(1.0)(LOGITS.clone(), HISTORY).equal(LOGITS)


def test_top_k_keeps_the_k_most_likely():
    assert TopK(2)(LOGITS.clone(), HISTORY).isinf().tolist() == [[False, False, True, True]]
    assert TopK(0)(LOGITS.clone(), HISTORY).equal(LOGITS)  # off
    assert TopK(10)(LOGITS.clone(), HISTORY).equal(LOGITS)  # more than the vocabulary


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert (~TopP(0.7)(LOGITS.clone(), HISTORY).isinf()).tolist() == [[True, True, False, False]]
    assert (~TopP(0.5)(LOGITS.clone(), HISTORY).isinf()).tolist() == [[True, False, False, False]]
    assert (~TopP(1e-9)(LOGITS.clone(), HISTORY).isinf()).sum() == 1  # the most likely token always stays
    assert TopP(1.0)(LOGITS.clone(), HISTORY).equal(LOGITS)


@pytest.mark.parametrize(
    "make, value, option",
    [
        (Temperature, 0, "temperature"),  # greedy is the chain's, not a processor's
        (Temperature, -1.0, "temperature"),
        (Temperature, 1e-9, "temperature"),
        (Temperature, float("inf"), "temperature"),
        (RepetitionPenalty, 0, "repetition_penalty"),
        (RepetitionPenalty, 101, "repetition_penalty"),
        (TopK, -1, "top_k"),
        (TopK, 2.0, "top_k"),
        (TopK, True, "top_k"),
        (TopP, 0, "top_p"),
        (TopP, 1.5, "top_p"),
        (TopP, "0.5", "top_p"),
    ],
)
def test_each_processor_checks_its_own_argument(make, value, option):
    with pytest.raises(OptionError) as caught:
        make(value)
    assert caught.value.option == option and str(caught.value).startswith(option)


def test_chain_applies_its_steps_in_order_and_shows_the_distribution_before_truncation():
    chain = ProcessorChain(temperature=2.0, top_k=1, repetition_penalty=2.0, suppress_ids=[1])
    view, sampling = chain(LOGITS.clone(), HISTORY)
    # suppress token 1, penalise 0 and 3 (seen), then halve: the view keeps every token the penalty left
    assert view.tolist() == [[0.5, float("-inf"), 0.0, -1.0]]
    assert (~sampling.isinf()).tolist() == [[True, False, False, False]]
    assert chain.choose_next(sampling, torch.Generator().manual_seed(0)).tolist() == [[0]]


def test_temperature_zero_is_greedy_argmax():
    chain = ProcessorChain(temperature=0, suppress_ids=[0])
    assert chain.greedy and not any(isinstance(step, Temperature) for step in chain.shaping)
    _view, sampling = chain(LOGITS.clone(), HISTORY)
    assert chain.choose_next(sampling, None).tolist() == [[1]]
    with pytest.raises(OptionError, match="temperature"):
        ProcessorChain(temperature=-0.5)


def test_half_precision_logits_are_processed_in_float32():
    view, sampling = ProcessorChain()(LOGITS.half(), HISTORY)
    assert view.dtype == sampling.dtype == torch.float32


def test_sample_rows_draws_each_token_at_its_probability_and_never_a_filtered_one():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_rows(probs, generator).T for _ in range(20_000)])  # (N, 2)
    counts = torch.bincount(draws[:, 0], minlength=6) / len(draws)
    assert counts[[0, 2, 5]].tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(counts[[1, 3, 4]], torch.tensor([0.5, 0.3, 0.2]), atol=0.015)
    assert draws[:, 1].eq(5).all()
    again = torch.stack([sample_rows(probs, torch.Generator().manual_seed(0)) for _ in range(3)])
    assert again.tolist() == [sample_rows(probs, torch.Generator().manual_seed(0)).tolist()] * 3
