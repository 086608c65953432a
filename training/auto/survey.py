"""What `--auto` looks at in the text before sizing a run: its size, how well a trial BPE packs it, its alphabet
and how repetitive it is, from a bounded sample spread across the training part (never the whole text in memory)."""

from __future__ import annotations

import bz2
from collections import Counter

from lm.tokenizers import train_tokenizer
from training.auto.rules import COMMON_SHARE, TRIAL_VOCAB, CorpusStats
from training.data.corpus import Corpus
from training.data.tokenizer_training import sample_part

SAMPLE_CHARS = 600_000  # a trial BPE learns from this in about a second on this project's CPU
HELD_OUT = 0.1  # the sample's last blocks, which the trial BPE does not learn from, measure its packing


def survey(corpus: Corpus) -> CorpusStats:
    """The statistics `plan_run` needs, read from the corpus's train and valid parts."""
    train = corpus.part("train")
    train_chars, valid_chars = train.characters, corpus.characters("valid")
    blocks = [block for block in sample_part(train, SAMPLE_CHARS) if block] if train_chars else []
    text = "".join(blocks)
    if not text:
        return CorpusStats(train_chars, valid_chars, 0, 0, 1.0, 8.0, 0)
    cut = max(1, int(len(blocks) * (1 - HELD_OUT))) if len(blocks) > 1 else 1
    learn, measure = blocks[:cut], blocks[cut:]
    if not measure:  # one block: learn from its first 90%, measure on the rest
        split = int(len(text) * (1 - HELD_OUT))
        learn, measure = [text[:split]], [text[split:]]
    tokenizer = train_tokenizer("bpe", learn, vocab_size=TRIAL_VOCAB)
    measured = "".join(measure)
    tokens = max(1, len(tokenizer.encode_corpus(measured)))
    compressed = len(bz2.compress(text.encode("utf-8"), 9))
    counts = Counter(text)
    common = sum(1 for n in counts.values() if n * COMMON_SHARE >= len(text))
    return CorpusStats(train_chars=train_chars, valid_chars=valid_chars, charset=len(counts), common_charset=common,
                       bpe_chars_per_token=len(measured) / tokens,
                       compressed_bits_per_char=8.0 * compressed / len(text), sample_chars=len(text))
