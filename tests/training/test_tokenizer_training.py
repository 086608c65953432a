"""Tokenizers learned from corpora of any size: a bounded sample spread across the text, character counts for
char, the cache; and token ids of a vocabulary too large for uint16."""

from __future__ import annotations

from collections import Counter

import numpy as np

from lm.tokenizers import train_tokenizer
from training.config import DataConfig
from training.data.corpus import load_corpus
from training.data.token_cache import encode_part, token_dtype
from training.data.tokenizer_training import SpreadSample, learn_tokenizer, sample_part


def test_a_spread_sample_stays_within_its_bound_and_spans_the_stream():
    sample = SpreadSample(limit=1000)
    for i in range(10_000):
        sample.offer(i * 10, f"{i:09d}\n")
    kept = sample.texts(0, 100_000)
    assert 500 <= sum(map(len, kept)) <= 1000
    first, last = int(kept[0]), int(kept[-1])
    assert first == 0 and last >= 10_000 - sample.stride  # from the start to the end, evenly
    assert len({int(b) - int(a) for a, b in zip(kept, kept[1:])}) == 1


def test_a_small_part_is_its_own_sample(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    corpus = load_corpus(DataConfig(source=str(path), split=[0.9, 0.1]))
    assert "".join(sample_part(corpus.part("train"), 10_000_000)) == corpus.text("train")


def test_bpe_learns_from_a_bounded_sample_and_is_cached(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"word{i % 5000} and more words, line {i}\n" for i in range(20_000)))
    data = DataConfig(source=str(path), tokenizer="bpe", vocab_size=300, tokenizer_sample=100_000)
    corpus = load_corpus(data)
    lines = []
    tokenizer = learn_tokenizer(corpus.part("train"), data, log=lines.append)
    assert "spread evenly across the" in lines[0] and "data.tokenizer_sample 100,000" in lines[0]
    sampled = int(lines[0].split("learned from ")[1].split(" characters")[0].replace(",", ""))
    assert 50_000 <= sampled <= 100_000 < corpus.characters("train")
    again = learn_tokenizer(corpus.part("train"), data, log=lines.append)
    assert "from the cache" in lines[1] and again.to_str() == tokenizer.to_str()


def test_char_vocabulary_counts_every_character_of_the_training_part(tmp_path):
    path = tmp_path / "rare.txt"
    text = "abc\n" * 50_000 + "Ω\n" + "abc\n" * 20_000  # Ω once, far from the start; all in the 90% train part
    path.write_text(text)
    data = DataConfig(source=str(path), tokenizer="char", tokenizer_sample=100_000)
    tokenizer = learn_tokenizer(load_corpus(data).part("train"), data)
    assert tokenizer.encode("Ω") != [tokenizer.unk_id]
    # the vocabulary the library's trainer learns from the whole training text, in its order
    train = load_corpus(data).text("train")
    assert tokenizer.to_str() == train_tokenizer("char", train).to_str()
    assert Counter(train)["Ω"] == 1


def test_a_vocabulary_past_uint16_is_stored_as_uint32(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(" ".join(f"w{i}" for i in range(70_000)) + "\n")
    corpus = load_corpus(DataConfig(source=str(path), split=[1.0, 0.0], cleaner="none"), seed=0)
    tokenizer = train_tokenizer("word", corpus.text("train"))
    assert tokenizer.vocab_size > 65_536 and token_dtype(tokenizer.vocab_size) == np.uint32
    ids = encode_part(corpus.part("train"), tokenizer, tmp_path / "tokens")
    assert ids.dtype == np.uint32 and ids.tolist() == tokenizer.encode(corpus.text("train"))
