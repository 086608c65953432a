"""The baseline ladder: the Kneser-Ney n-gram, the compressors, the unigram, the cache, and the words."""

import math
import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from training.evaluation import baselines
from training.evaluation.baselines import bz2_bits, cached_baselines, compute_baselines, xz_bits
from training.evaluation.kneser_ney import KneserNeyModel, alphabet_of, choose_order
from training.evaluation.ladder import build_ladder, describe

VERSE = ("When forty winters shall besiege thy brow,\nAnd dig deep trenches in thy beauty's field,\n"
         "Thy youth's proud livery, so gazed on now,\nWill be a tattered weed, of small worth held.\n")


def words_text(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocab = VERSE.replace(",", "").replace(".", "").split()
    return " ".join(rng.choice(vocab) + ("\n" if rng.random() < 0.1 else "") for _ in range(n_words))


def reference_log_probs(train: str, test: str, order: int, alphabet: list[str]) -> list[float]:
    """The same interpolated modified Kneser-Ney written straight from the formulas with dictionaries."""
    raw = {n: Counter(train[i:i + n] for i in range(len(train) - n + 1)) for n in range(1, order + 1)}
    continuation = {n: Counter(g[1:] for g in raw[n + 1]) for n in range(1, order)}

    def level(table: Counter):
        n = [sum(1 for c in table.values() if c == k) for k in (1, 2, 3, 4)]
        y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] else 0.5
        d = [0.0] + [min(float(k), max(0.1, k - (k + 1) * y * n[k] / n[k - 1] if n[k - 1] else 0.5 * k))
                     for k in (1, 2, 3)]
        totals, gammas = defaultdict(float), defaultdict(float)
        for gram, c in table.items():
            totals[gram[:-1]] += c
            gammas[gram[:-1]] += d[min(c, 3)]
        return table, d, totals, gammas

    levels = {n: level(raw[n] if n == order else continuation[n]) for n in range(1, order + 1)}

    def p(history: str, w: str, n: int) -> float:
        if n == 0:
            return 1 / len(alphabet)
        lower = p(history, w, n - 1)
        if len(history) < n - 1:
            return lower
        table, d, totals, gammas = levels[n]
        h = history[len(history) - (n - 1):] if n > 1 else ""
        if totals.get(h, 0) == 0:
            return lower
        c = table.get(h + w, 0)
        return (max(c - d[min(c, 3)], 0) + gammas[h] * lower) / totals[h]

    return [math.log(p(test[max(0, j - order + 1):j], test[j], order)) for j in range(len(test))]


@pytest.mark.parametrize("order", [1, 2, 4])
def test_kneser_ney_matches_the_formulas_written_with_dictionaries(order):
    train, test = words_text(3000, seed=1), words_text(200, seed=2) + " jinx"  # j, x: never in training
    alphabet = alphabet_of(train, test)
    model = KneserNeyModel.fit(train, order, alphabet)
    expected = reference_log_probs(train, test, order, [chr(c) for c in alphabet])
    assert np.allclose(model.log_probs(test), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("context", ["", "thy ", "When forty", "zzzz", "\n", "s"])
def test_kneser_ney_probabilities_over_the_alphabet_sum_to_one(context):
    train = words_text(4000)
    model = KneserNeyModel.fit(train, 6, alphabet_of(train, "z"))
    distribution = model.distribution(context)
    assert distribution.shape == (len(model.alphabet),)
    assert abs(distribution.sum() - 1.0) < 1e-9 and distribution.min() > 0


def test_kneser_ney_predicts_its_own_kind_of_text_better_with_more_context():
    train, test = words_text(6000, seed=3), words_text(600, seed=4)
    alphabet = alphabet_of(train, test)
    figures = [KneserNeyModel.fit(train, n, alphabet).nats_per_char(test) for n in (1, 2, 3, 5)]
    assert figures == sorted(figures, reverse=True)


def markov_text(memory: int, length: int, seed: int = 0) -> str:
    """Each character is a fixed function of the `memory` characters before it, 10% of the time random: the
    best n-gram order is memory + 1."""
    rng = random.Random(seed)
    rule = {}
    out = list("ab" * memory)[:memory]
    for _ in range(length):
        key = "".join(out[-memory:])
        rule.setdefault(key, rng.choice("abcd"))
        out.append(rule[key] if rng.random() > 0.1 else rng.choice("abcd"))
    return "".join(out)


def test_order_is_chosen_on_the_training_text_alone():
    train = markov_text(memory=3, length=60_000)
    order, figures = choose_order(train, alphabet_of(train))
    assert order == 4 and figures[4] == min(figures.values())
    # the evaluated text plays no part: two different ones get the same order
    orders = {compute_baselines(train, text)["rungs"][1]["order"] for text in (train[:500], "dcba" * 200)}
    assert orders == {4}


def test_compressors_given_the_training_text_spend_little_on_a_repeat_of_it():
    rng = random.Random(5)
    train, fresh = ("".join(rng.choice("abcdefghijklmnopqrstuvwxyz   ") for _ in range(n)) for n in (200_000, 10_000))
    repeat = train[-30_000:-20_000]
    figures = {}
    for bits_of in (bz2_bits, xz_bits):
        figures[bits_of] = [bits_of(context.encode(), text.encode())[0] / len(text)
                            for context, text in ((train, repeat), (train, fresh), ("", fresh))]
        repeated, new, alone = figures[bits_of]
        assert repeated < 0.85 * new and new <= alone, bits_of.__name__
    assert figures[xz_bits][0] < 0.1  # xz copies the whole repeat; bzip2's sorting helps only somewhat


def test_bz2_context_is_what_fits_in_one_block(monkeypatch):
    monkeypatch.setattr(baselines, "BZ2_BLOCK", 50_000)
    monkeypatch.setattr(baselines, "BZ2_PIECE", 10_000)
    context, text = words_text(30_000, seed=7).encode(), words_text(4_000, seed=8).encode()
    _, fewest = bz2_bits(context, text)
    assert fewest == 40_000  # no stage-one runs in this text: block minus piece
    runs = b"aaaab" * 20_000  # bzip2's first stage makes each run of 4 one byte longer: 6 bytes per 5
    assert 41_000 < bz2_bits(runs, b"xyz" * 100)[1] <= (50_000 - 300) * 5 // 6 + 4  # + a cut run


def test_baselines_are_cached_in_the_model_directory_and_recomputed_when_the_data_changes(tmp_path, monkeypatch):
    calls = []
    real = baselines.compute_baselines
    monkeypatch.setattr(baselines, "compute_baselines", lambda *a, **k: calls.append(1) or real(*a, **k))
    train, valid = words_text(3000, seed=9), words_text(300, seed=10)
    first = cached_baselines(tmp_path, train, valid)
    again = cached_baselines(tmp_path, train, valid)
    assert (first["cached"], again["cached"], len(calls)) == (False, True, 1)
    assert again["rungs"] == first["rungs"]
    cached_baselines(tmp_path, train + "x", valid)  # another training text
    cached_baselines(tmp_path, train, valid + "x")  # another evaluated text
    assert len(calls) == 3
    assert cached_baselines(tmp_path, train, valid)["cached"] and len(calls) == 3  # the first still kept
    (tmp_path / "baselines.json").write_text("{not json")
    assert not cached_baselines(tmp_path, train, valid)["cached"] and len(calls) == 4


def test_unigram_over_tokens_is_reported_per_character(char_tokenizer_text):
    tokenizer, text = char_tokenizer_text
    cut = len(text) * 9 // 10
    ids = tokenizer.encode_corpus(text[cut:])
    rungs = {r["kind"]: r for r in compute_baselines(text[:cut], text[cut:], tokenizer, ids)["rungs"]}
    assert set(rungs) == {"unigram_chars", "unigram_tokens", "ngram", "bz2", "xz"}
    # a character tokenizer's unigram is the character unigram but for the first character and smoothing
    assert abs(rungs["unigram_tokens"]["nats_per_char"] - rungs["unigram_chars"]["nats_per_char"]) < 0.05
    for rung in rungs.values():
        assert abs(rung["bits_per_char"] - rung["nats_per_char"] / math.log(2)) < 1e-12


def test_a_long_training_text_is_cut_to_its_end_and_the_result_says_so(monkeypatch):
    monkeypatch.setattr(baselines, "MAX_TRAIN_CHARS", 5_000)
    train = words_text(4_000, seed=12)
    result = compute_baselines(train, words_text(200, seed=13))
    assert result["train_characters"] == 5_000
    assert result["notes"] == [f"sampled: built from the last 5,000 of the {len(train):,} training characters"]


@pytest.fixture
def char_tokenizer_text():
    from lm.tokenizers import train_tokenizer

    text = words_text(5000, seed=11)
    return train_tokenizer("char", text), text


def rungs(**bits):
    kinds = {"ngram": "character 5-gram (Kneser-Ney)", "unigram_chars": "unigram (characters)", "xz": "xz -9"}
    return [{"name": kinds[k], "kind": k, "bits_per_char": v, "nats_per_char": v * math.log(2)}
            for k, v in bits.items()]


@pytest.mark.parametrize("model, training, verdict, words", [
    (2.0, None, "learned", "Beats the character 5-gram (Kneser-Ney) by 0.20 bits/char"),
    (2.4, None, "counting", "No better than counting: the character 5-gram (Kneser-Ney) beats it by 0.20"),
    (2.4, 1.0, "memorised", "It memorised its training text: 1.00 bits/char there"),
    (2.4, 2.3, "counting", "No better than counting"),
    (5.0, 1.0, "below_unigram", "The unigram (characters) beats it by 0.50 bits/char"),
])
def test_the_ladder_says_in_plain_words_what_the_model_learned(model, training, verdict, words):
    said = describe(rungs(ngram=2.2, unigram_chars=4.5, xz=2.6), model,
                    training * math.log(2) if training is not None else None)
    assert said[0] == verdict and words in said[1]


def test_ladder_puts_the_model_among_the_baselines_best_first():
    ladder = build_ladder({"rungs": rungs(ngram=2.2, unigram_chars=4.5, xz=1.9)}, 2.0 * math.log(2),
                          dynamic_nats_per_char=1.8 * math.log(2))
    assert [r["name"] for r in ladder["rungs"]] == [
        "this model, dynamic evaluation", "xz -9", "this model", "character 5-gram (Kneser-Ney)",
        "unigram (characters)"]
    assert "but xz -9 beats it by 0.10" in ladder["summary"]  # the static figure, never the dynamic one
