"""Character, word and byte-level BPE tokenizers, all built on Hugging Face `tokenizers`.

Each is saved as one `tokenizer.json`. The kind is read back from the file's structure, so a tokenizer file is
self-describing: BPE model -> "bpe"; word-level with a lowercasing normalizer -> "word"; word-level otherwise -> "char".

The `word` tokenizer is torchtext's `basic_english` (`torchtext.data.utils._basic_english_normalize`), rule for
rule, as a `tokenizers` normalizer: lowercase; then, in this order, `'` gets spaces around it, `"` is deleted, `.`
gets spaces, `<br />` becomes a space, `,` `(` `)` `!` `?` get spaces, `;` and `:` become spaces, whitespace runs
become one space; then the text is split at spaces. Every line break is an `<eos>` token. Word files saved before
this (lowercase, then `' . , " ( ) ! ? : ;` split off as tokens) still load and keep tokenizing as they were trained.

A whole corpus is encoded with `encode_corpus` / `encode_pieces`: word through the library's batch encoding (Rust
threads, every core); BPE through tiktoken's encoder, which gives the library's ids about five times faster per core
(lm/fast_bpe.py says when, and leaves the rest to the library); char as a table lookup from code point to id, which
gives the library's ids (one token per code point, `<unk>` for the rest and for the literal text "<unk>") some
hundred times faster than the library measures on this machine. Tests hold each fast path equal to the library.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.decoders import DecodeStream

from lm import fast_bpe
from lm.atomic import atomic_write_text

TOKENIZER_KINDS = ("char", "word", "bpe")
PIECE_CHARS = 1 << 14  # characters per piece of a batch: the library encodes pieces of this size fastest here
UNK = "<unk>"
EOS = "<eos>"

# torchtext's basic_english rules, in its order: (pattern, replacement). Plain strings are literal.
_BASIC_ENGLISH_RULES: tuple[tuple[str | Regex, str], ...] = (
    ("'", " '  "),
    ('"', ""),
    (".", " . "),
    ("<br />", " "),
    (",", " , "),
    ("(", " ( "),
    (")", " ) "),
    ("!", " ! "),
    ("?", " ? "),
    (";", " "),
    (":", " "),
    # Python's `\s` (the characters of str.isspace()); Oniguruma's `\s` lacks U+001C..U+001F.
    (Regex("[\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"), " "),
)
# Python's str.lower() makes a word-final capital sigma a final sigma (Unicode's Final_Sigma context: a cased
# letter before it, none after, case-ignorable characters skipped); the Lowercase normalizer maps every capital
# sigma to the medial one, so the final ones are replaced first.
_FINAL_SIGMA = Regex(
    r"(?<=[\p{Cased}&&\P{Case_Ignorable}]\p{Case_Ignorable}*)"  # a cased letter before it, ignorables between
    "\u03a3"
    r"(?!\p{Case_Ignorable}*[\p{Cased}&&\P{Case_Ignorable}])"  # and none after
)
# Decoding: no space before closing punctuation or after opening; `"`, `:` and `;` only occur in older word files.
_NO_SPACE_BEFORE = frozenset(".,!?:;)'")
_NO_SPACE_AFTER = frozenset("('")


class Tokenizer:
    """A trained tokenizer: `encode`, `decode` and the special ids the generation engine needs."""

    def __init__(self, hf: HFTokenizer, kind: str) -> None:
        if kind not in TOKENIZER_KINDS:
            raise ValueError(f"tokenizer kind must be one of {', '.join(TOKENIZER_KINDS)}, got {kind!r}")
        self.hf = hf
        self.kind = kind
        self.unk_id: int | None = hf.token_to_id(UNK) if kind != "bpe" else None
        self.eos_id: int | None = hf.token_to_id(EOS) if kind == "word" else None
        self._table: np.ndarray | None = None  # char: code point -> id, built on first use

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    @property
    def start_id(self) -> int:
        """The token fed to the model before an empty prompt: a line break, the most neutral context."""
        if self.eos_id is not None:
            return self.eos_id
        ids = self.hf.encode("\n").ids
        return ids[0] if len(ids) == 1 else 0

    def encode(self, text: str) -> list[int]:
        if self.kind != "word":
            return self.hf.encode(text).ids
        # Word level: every line break is an <eos> token, as in the AWD-LSTM data pipeline.
        lines = text.split("\n")
        encoded = self.hf.encode_batch(lines)
        ids: list[int] = []
        for i, enc in enumerate(encoded):
            ids.extend(enc.ids)
            if i < len(lines) - 1:
                ids.append(self.eos_id)
        return ids

    def encode_corpus(self, text: str, chunk_chars: int = PIECE_CHARS) -> np.ndarray:
        """Encode a whole corpus in parallel pieces split at line breaks (never inside a token)."""
        return self.encode_pieces(split_at_newlines(text, chunk_chars))

    def encode_pieces(self, pieces: Sequence[str]) -> np.ndarray:
        """The ids of the pieces' concatenation, each piece encoded on its own (cut them at line breaks): char by
        table lookup; BPE through tiktoken's encoder where it gives the library's ids (lm/fast_bpe.py); word, and
        any other BPE, in one batch of the library (it encodes on every core, without Python's lock)."""
        if self.kind == "char":
            ids = [self._char_ids(piece) for piece in pieces]
        elif self.kind == "word":
            ids = [np.asarray(self.encode(piece), dtype=np.int64) for piece in pieces]
        elif self._tiktoken is not None:
            return fast_bpe.encode_pieces(self._tiktoken, pieces)
        else:
            ids = [np.asarray(enc.ids, dtype=np.int64) for enc in self.hf.encode_batch_fast(list(pieces))]
        return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)

    @functools.cached_property
    def _tiktoken(self) -> Any | None:
        """tiktoken's encoder for this BPE vocabulary, or None where it would not give the library's ids."""
        return fast_bpe.tiktoken_encoder(json.loads(self.to_str()))

    def _char_ids(self, text: str) -> np.ndarray:
        """What the library gives a char tokenizer (one token per code point; `<unk>` for a code point outside the
        vocabulary, and for the text "<unk>", which it matches as a special token), by table lookup."""
        if UNK in text:
            parts = [self._char_ids(part) for part in text.split(UNK)]
            unk = np.array([self.unk_id], dtype=np.int64)
            return np.concatenate([piece for part in parts for piece in (part, unk)][:-1])
        table = self._char_table()
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return table[np.minimum(codes, len(table) - 1)]  # past the table: its last entry, <unk>

    def _char_table(self) -> np.ndarray:
        if self._table is None:
            vocab = {token: i for token, i in self.hf.get_vocab().items() if len(token) == 1}
            table = np.full(max(map(ord, vocab), default=0) + 2, self.unk_id, dtype=np.int64)
            for token, i in vocab.items():
                table[ord(token)] = i
            self._table = table
        return self._table

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if self.kind != "word":
            return self.hf.decode(ids, skip_special_tokens=False)
        out: list[str] = []
        prev: str | None = None
        for token in (self.hf.id_to_token(i) for i in ids):
            if token is None:
                continue
            if token == EOS:
                out.append("\n")
                prev = None
                continue
            if prev is not None and token not in _NO_SPACE_BEFORE and prev not in _NO_SPACE_AFTER:
                out.append(" ")
            out.append(token)
            prev = token
        return "".join(out)

    def token_text(self, token_id: int) -> str:
        """How one token reads on its own (for probability views)."""
        if self.kind == "word":
            return "\n" if token_id == self.eos_id else (self.hf.id_to_token(int(token_id)) or "")
        return self.decode([token_id])

    def stream_decoder(self) -> StreamDecoder:
        """A fresh incremental decoder for one sequence of generated token ids."""
        return _WordStreamDecoder(self) if self.kind == "word" else StreamDecoder(self)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.hf.to_str(pretty=False))

    def to_str(self) -> str:
        return self.hf.to_str(pretty=False)

    @classmethod
    def from_str(cls, text: str) -> Tokenizer:
        hf = HFTokenizer.from_str(text)
        return cls(hf, _detect_kind(json.loads(text)))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        return cls.from_str(Path(path).read_text(encoding="utf-8"))


class StreamDecoder:
    """Text for token ids that arrive one at a time. A byte-level token can end inside a character, so `step`
    returns the text that has become final, often "" while a character is incomplete. Char and BPE use the
    `tokenizers` library's own DecodeStream; word spacing needs `_WordStreamDecoder`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._hf = tokenizer.hf
        self._stream = DecodeStream(skip_special_tokens=False)

    def step(self, token_id: int) -> str:
        return self._stream.step(self._hf, token_id) or ""


class _WordStreamDecoder(StreamDecoder):
    """A word's text depends on its left neighbour (no space before punctuation): each step decodes the new token
    with the one before it and returns what it adds."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0  # decoding restarts here, so a token sees its left neighbour
        self._read_offset = 0  # text up to here has been returned

    def step(self, token_id: int) -> str:
        self._ids.append(token_id)
        before = self.tokenizer.decode(self._ids[self._prefix_offset : self._read_offset])
        after = self.tokenizer.decode(self._ids[self._prefix_offset :])
        if len(after) <= len(before):
            return ""
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return after[len(before) :]


def _detect_kind(spec: dict) -> str:
    model_type = (spec.get("model") or {}).get("type")
    if model_type == "BPE":
        return "bpe"
    if model_type == "WordLevel":
        normalizer = spec.get("normalizer") or {}
        # Older word files have a bare Lowercase normalizer, newer ones a Sequence holding one; char has none.
        parts = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
        return "word" if any(part.get("type") == "Lowercase" for part in parts) else "char"
    raise ValueError(f"unsupported tokenizer model {model_type!r} (expected char, word or bpe)")


def basic_english_normalizer() -> normalizers.Normalizer:
    """torchtext's basic_english normalisation (lowercase, then its regex rules in order) as one normalizer;
    splitting the result at whitespace gives basic_english's tokens."""
    steps = [normalizers.Replace(_FINAL_SIGMA, "\u03c2"), normalizers.Lowercase()]
    steps += [normalizers.Replace(pattern, replacement) for pattern, replacement in _BASIC_ENGLISH_RULES]
    return normalizers.Sequence(steps)


def split_at_newlines(text: str, chunk_chars: int = PIECE_CHARS) -> list[str]:
    """`text` in pieces of about `chunk_chars`, each ending at a line break where one is within reach, else after a
    space (a line longer than a piece is cut between words, not inside one)."""
    pieces, start = [], 0
    while start < len(text):
        end = min(start + chunk_chars, len(text))
        if end < len(text):
            end = cut_point(text, start, end)
        pieces.append(text[start:end])
        start = end
    return pieces


def cut_point(text: str, start: int, end: int) -> int:
    """Where to end a piece of text[start:end] so that no word is split: after its last line break, else after its
    last space, else at `end`."""
    for separator in ("\n", " "):
        found = text.rfind(separator, start, end)
        if found > start:
            return found + 1
    return end


def _as_iterator(texts: str | Iterable[str]) -> Iterable[str]:
    if isinstance(texts, str):
        return split_at_newlines(texts)
    return texts


def train_tokenizer(
    kind: str,
    texts: str | Iterable[str],
    vocab_size: int | None = None,
    min_freq: int = 1,
) -> Tokenizer:
    """Learn a vocabulary from `texts` (one string or an iterable of strings)."""
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer kind must be one of {', '.join(TOKENIZER_KINDS)}, got {kind!r}")
    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}")
    if kind == "char":
        hf = _char_pipeline(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size or 1_000_000, min_frequency=min_freq, special_tokens=[UNK]
        )
    elif kind == "word":
        hf = HFTokenizer(models.WordLevel(unk_token=UNK))
        hf.normalizer = basic_english_normalizer()
        hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size or 10_000_000, min_frequency=min_freq, special_tokens=[UNK, EOS]
        )
    else:
        if vocab_size is None or vocab_size < 257:
            raise ValueError(f"bpe needs vocab_size >= 257 (256 bytes + merges), got {vocab_size}")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_freq,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    if hasattr(trainer, "show_progress"):
        trainer.show_progress = False
    hf.train_from_iterator(_as_iterator(texts), trainer=trainer)
    return Tokenizer(hf, kind)


def _char_pipeline(model: models.Model) -> HFTokenizer:
    """A char tokenizer around its word-level `model`: one token per code point, decoded by joining."""
    hf = HFTokenizer(model)
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    hf.decoder = decoders.Fuse()
    return hf


def char_tokenizer(counts: Mapping[str, int], vocab_size: int | None = None, min_freq: int = 1) -> Tokenizer:
    """The char tokenizer `train_tokenizer("char", ...)` learns from a text with these character counts, built
    from the counts (which a corpus of any size gives in one fast pass): `<unk>` first, then the characters seen at
    least `min_freq` times, most frequent first, ties in code point order (the library's trainer's order), up to
    `vocab_size` tokens in all."""
    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}")
    kept = sorted(((char, n) for char, n in counts.items() if n >= min_freq), key=lambda item: (-item[1], item[0]))
    vocab = {UNK: 0}
    for char, _ in kept[: (vocab_size or 1_000_000) - 1]:
        vocab[char] = len(vocab)
    hf = _char_pipeline(models.WordLevel(vocab=vocab, unk_token=UNK))
    hf.add_special_tokens([UNK])
    return Tokenizer(hf, "char")
