import pytest
import torch

from lm.models.dropout import dropout, keep_mask


def test_the_mask_keeps_each_element_with_probability_one_minus_p():
    torch.manual_seed(0)
    mask, kept = keep_mask((500, 401), 0.2)  # an odd count: the last 64-bit word is cut
    assert mask.shape == (500, 401) and mask.dtype == torch.bool
    assert kept == pytest.approx(0.8, abs=1 / 65536)
    assert mask.float().mean().item() == pytest.approx(0.8, abs=0.005)
    halves = mask.reshape(-1)[:200_000].reshape(-1, 4).float().mean(0)  # every 16-bit lane of a word is uniform
    assert torch.allclose(halves, torch.full((4,), 0.8), atol=0.01)


def test_a_probability_of_0_keeps_everything():
    mask, kept = keep_mask((3, 5), 0.0)
    assert mask.all() and kept == 1.0


def test_the_mask_follows_the_seed():
    torch.manual_seed(3)
    first, _ = keep_mask((64, 64), 0.3)
    torch.manual_seed(3)
    again, _ = keep_mask((64, 64), 0.3)
    other, _ = keep_mask((64, 64), 0.3)
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_a_probability_outside_0_to_1_is_refused(p):
    with pytest.raises(ValueError, match="dropout probability"):
        keep_mask((4,), p)


def test_dropout_zeroes_and_rescales_and_its_gradient_follows_the_mask():
    x = torch.ones(200, 300, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.75), rtol=1e-4)
    assert y.mean().item() == pytest.approx(1.0, abs=0.02)  # the expectation is kept
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)


def test_dropout_is_the_identity_when_not_training_or_at_p_0():
    x = torch.randn(5, 7)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x


def test_dropout_keeps_bf16_in_bf16():
    x = torch.randn(16, 16, dtype=torch.bfloat16)
    assert dropout(x, 0.1, training=True).dtype == torch.bfloat16
