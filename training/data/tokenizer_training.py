"""A tokenizer learned from a corpus part of any size: from a bounded sample spread evenly across it, cached.

BPE and word tokenizers learn from `data.tokenizer_sample` characters (default 10M) in blocks of about 64K
characters cut at line breaks, taken evenly from the whole part in one pass (`SpreadSample`); a part no larger than
the bound is learned from whole. A char tokenizer needs no sample: it is built from the counts of every character of
the part (`lm.tokenizers.char_tokenizer`, the vocabulary the library's trainer would learn from the whole text). The
result is cached in `$SCRIPTORIUM_CACHE/tokenizers/`, keyed by the cleaned text, the part and the settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lm.cache import cache_dir
from lm.checkpoint import TOKENIZER_FILE
from lm.tokenizers import Tokenizer, char_tokenizer, split_at_newlines, train_tokenizer
from training.config import DataConfig
from training.data.corpus import Part

SAMPLE_BLOCK_CHARS = 1 << 16


class SpreadSample:
    """Blocks of a stream of unknown length, at most `limit` characters, spread evenly across it: every block while
    they fit, then every second one (dropping the others), then every fourth, and so on."""

    def __init__(self, limit: int) -> None:
        self.limit, self.stride, self.count, self.size = limit, 1, 0, 0
        self.blocks: list[tuple[int, int, str]] = []  # (index, offset, text)

    def offer(self, offset: int, text: str) -> None:
        index, self.count = self.count, self.count + 1
        if index % self.stride:
            return
        self.blocks.append((index, offset, text))
        self.size += len(text)
        while self.size > self.limit and len(self.blocks) > 1:
            self.stride *= 2
            self.blocks = [block for block in self.blocks if block[0] % self.stride == 0]
            self.size = sum(len(block[2]) for block in self.blocks)

    def texts(self, start: int, end: int) -> list[str]:
        """The kept blocks, cut to the characters [start, end) of the stream."""
        return [text[max(0, start - offset): end - offset] for _, offset, text in self.blocks
                if offset < end and offset + len(text) > start]


def character_counts(part: Part) -> dict[str, int]:
    """How often each character occurs in the part (a table of code points, counted a chunk at a time)."""
    counts = np.zeros(0, dtype=np.int64)
    for chunk in part.chunks():
        chunk_counts = np.bincount(np.frombuffer(chunk.encode("utf-32-le", "surrogatepass"), dtype=np.uint32))
        if len(chunk_counts) > len(counts):
            counts = np.pad(counts, (0, len(chunk_counts) - len(counts)))
        counts[: len(chunk_counts)] += chunk_counts
    return {chr(code): int(counts[code]) for code in np.flatnonzero(counts)}


def sample_part(part: Part, limit: int) -> list[str]:
    """At most `limit` characters of the part, in blocks cut at line breaks, spread evenly across it."""
    sample = SpreadSample(limit)
    offset = 0
    for chunk in part.chunks():
        for piece in split_at_newlines(chunk, SAMPLE_BLOCK_CHARS):
            sample.offer(offset, piece)
            offset += len(piece)
    return sample.texts(0, offset)


def read_given_tokenizer(path: str) -> Tokenizer:
    """`data.tokenizer_path`: a tokenizer file made by `train-tokenizer`, or a model directory holding one. Raises
    ValueError with a one-line message when there is none or it cannot be read."""
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / TOKENIZER_FILE
    if not file.is_file():
        raise ValueError(f"data.tokenizer_path: no tokenizer file at {path}")
    try:
        return Tokenizer.from_file(file)
    except Exception as error:  # noqa: BLE001  (the tokenizers library raises its own exception types)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"data.tokenizer_path: {path} is not a tokenizer file ({reason})") from None


def tokenizer_for(part: Part, data: DataConfig, log: Callable[[str], None] | None = None) -> Tokenizer:
    """The tokenizer a run uses: the file `data.tokenizer_path` names, else one learned from `part`."""
    if data.tokenizer_path is None:
        return learn_tokenizer(part, data, log)
    tokenizer = read_given_tokenizer(data.tokenizer_path)
    if log:
        log(f"tokenizer: {tokenizer.kind}, {tokenizer.vocab_size:,} tokens, from {data.tokenizer_path}")
    return tokenizer


def learn_tokenizer(part: Part, data: DataConfig, log: Callable[[str], None] | None = None) -> Tokenizer:
    """The tokenizer `data` asks for, learned from `part` (cached)."""
    settings = {"text": part.text.key, "part": part.name, "fractions": part.fractions, "kind": data.tokenizer,
                "vocab_size": data.vocab_size, "min_freq": data.min_freq, "sample": data.tokenizer_sample}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]
    path = cache_dir() / "tokenizers" / f"{key}.json"
    if path.is_file():
        tokenizer = Tokenizer.from_file(path)
        if log:
            log(f"tokenizer: {data.tokenizer}, {tokenizer.vocab_size:,} tokens, from the cache ({path.name})")
        return tokenizer
    total = part.characters
    if data.tokenizer == "char":  # a character's count needs no sample: every character of the part is counted
        tokenizer = char_tokenizer(character_counts(part), data.vocab_size, data.min_freq)
        how = f"the character counts of all {total:,} characters of the {part.name} text"
    else:
        texts = sample_part(part, data.tokenizer_sample)
        tokenizer = train_tokenizer(data.tokenizer, texts, vocab_size=data.vocab_size, min_freq=data.min_freq)
        sampled = sum(map(len, texts))
        how = (f"all {total:,} characters of the {part.name} text" if sampled >= total else
               f"{sampled:,} characters in {len(texts):,} blocks spread evenly across the {total:,} of the "
               f"{part.name} text (data.tokenizer_sample {data.tokenizer_sample:,})")
    tokenizer.save(path)
    if log:
        log(f"tokenizer: {data.tokenizer}, {tokenizer.vocab_size:,} tokens, learned from {how}")
    return tokenizer
