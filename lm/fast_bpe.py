"""Byte-level BPE ids through tiktoken's encoder: the ids the `tokenizers` pipeline gives, about five times faster
per core, for encoding whole corpora (docs/benchmarks.md, "Large corpora").

The two libraries merge differently. `tokenizers` merges the adjacent pair listed earliest among its merges;
tiktoken merges the adjacent pair whose concatenation has the lowest rank, and returns ranks as ids. They agree when
the ranks are the library's ids, every merge makes a token with a larger id than the merges before it (the
library's trainer adds one id per merge, in order), and every token longer than one byte is some merge's result, so
that tiktoken can never make a token the library would not. `tiktoken_encoder` checks those and the rest of the
pipeline (GPT-2's pre-tokenizer regex, no normalizer, no added tokens, no dropout) on the tokenizer's JSON and
answers None wherever one fails, and the caller keeps the library. Tests hold the two equal on varied text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

# The regex of `tokenizers`' ByteLevel pre-tokenizer with use_regex=True (GPT-2's).
_BYTE_LEVEL_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's map from the printable stand-in characters of byte-level BPE to the bytes they stand for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1),
                 *range(ord("\xae"), ord("\xff") + 1)]
    stand_ins = {byte: chr(byte) for byte in printable}
    others = (byte for byte in range(256) if byte not in stand_ins)
    stand_ins.update({byte: chr(256 + n) for n, byte in enumerate(others)})
    return {char: byte for byte, char in stand_ins.items()}


def _is_plain_byte_level_bpe(spec: dict[str, Any]) -> bool:
    model = spec.get("model") or {}
    pre = spec.get("pre_tokenizer") or {}
    return (
        model.get("type") == "BPE"
        and not model.get("dropout")
        and model.get("unk_token") is None
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
        and not model.get("byte_fallback")
        and not model.get("ignore_merges")
        and spec.get("normalizer") is None
        and not spec.get("added_tokens")
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space")
    )


def tiktoken_encoder(spec: dict[str, Any]) -> Any | None:
    """A `tiktoken.Encoding` that gives this tokenizer's ids, or None (tiktoken missing, or a pipeline it cannot
    reproduce exactly)."""
    if not _is_plain_byte_level_bpe(spec):
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    vocab: dict[str, int] = spec["model"].get("vocab") or {}
    to_byte = _byte_level_alphabet()
    if any(char not in to_byte for token in vocab for char in token):
        return None
    ranks = {bytes(to_byte[char] for char in token): i for token, i in vocab.items()}
    if len(ranks) != len(vocab) or sorted(vocab.values()) != list(range(len(vocab))):
        return None
    if any(bytes([byte]) not in ranks for byte in range(256)):
        return None
    made, last = set(), -1
    for merge in spec["model"].get("merges") or []:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        token_id = vocab.get(left + right)
        if token_id is None or token_id <= last:
            return None
        made.add(token_id)
        last = token_id
    if made != {i for token_bytes, i in ranks.items() if len(token_bytes) > 1}:
        return None
    return tiktoken.Encoding(name="scriptorium-bpe", pat_str=_BYTE_LEVEL_REGEX, mergeable_ranks=ranks,
                             special_tokens={})


def encode_pieces(encoder: Any, pieces: Sequence[str]) -> np.ndarray:
    """The ids of the pieces' concatenation, each piece encoded on its own, on every core (tiktoken's encoder lets
    go of Python's lock)."""
    if len(pieces) <= 1:  # a prompt: no threads to start
        return np.array(encoder.encode_ordinary(pieces[0]) if pieces else [], dtype=np.int64)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(pieces)))) as pool:
        return np.concatenate([np.array(ids, dtype=np.int64) for ids in pool.map(encoder.encode_ordinary, pieces)])
