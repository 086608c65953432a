"""Evaluation maths."""

from __future__ import annotations

import math

import numpy as np
import torch

from training.evaluation.metrics import TokenStats, bits_per_char, distinct_n, perplexity, repetition_rate, unigram_loss


def test_perplexity_and_bits_per_char():
    assert abs(perplexity(math.log(7.0)) - 7.0) < 1e-9
    assert perplexity(1e6) == float("inf")
    # a char model: tokens == characters, so bits/char is loss / ln 2
    assert abs(bits_per_char(1.0, 100, 100) - 1 / math.log(2)) < 1e-12
    # a word model with 5 characters per token spreads the loss over them
    assert abs(bits_per_char(5.0, 20, 100) - 1 / math.log(2)) < 1e-12


def test_uniform_predictions():
    V, N = 8, 64
    stats = TokenStats()
    stats.update(torch.zeros(N, V), torch.randint(0, V, (N,)))
    s = stats.summary(characters=N)
    assert abs(s["loss"] - math.log(V)) < 1e-6 and abs(s["perplexity"] - V) < 1e-4
    assert abs(s["avg_entropy"] - math.log(V)) < 1e-5 and abs(s["avg_top_token_prob"] - 1 / V) < 1e-6
    assert s["low_confidence_ratio"] == 1.0 and s["loss_std"] < 1e-6 and s["tokens"] == N


def test_ece_is_zero_for_calibrated_and_large_for_overconfident():
    targets = torch.zeros(1000, dtype=torch.long)
    confident_right = torch.full((1000, 4), -20.0)
    confident_right[:, 0] = 20.0
    stats = TokenStats()
    stats.update(confident_right, targets)
    assert stats.ece() < 1e-6
    wrong = TokenStats()
    wrong.update(confident_right, torch.ones(1000, dtype=torch.long))
    assert wrong.ece() > 0.99


def test_unigram_loss_matches_the_entropy_of_the_counts():
    ids = np.array([0, 0, 0, 1])
    expected = -(0.75 * math.log(4 / 6) + 0.25 * math.log(2 / 6))  # add-one: counts 4, 2 over a vocab of 2
    assert abs(unigram_loss(ids, ids, 2) - expected) < 1e-12


def test_distinct_and_repetition():
    assert distinct_n([[1, 2, 3, 4]], 1) == 1.0 and distinct_n([[1, 1, 1, 1]], 1) == 0.25
    assert distinct_n([[1, 2, 1, 2]], 2) == 2 / 3
    assert repetition_rate([[1, 2, 3, 4, 5, 6]]) == 0.0
    assert repetition_rate([[1, 2, 3, 4] * 3]) > 0.5
