"""What simple baselines reach on an evaluated text, learning only from the training text: the rungs of the ladder.

- **unigram (characters)**: add-one counts of each character of the training text, no context at all;
- **unigram (model's tokens)**: the same over the model's own tokens, in nats per character of the text;
- **character n-gram, Kneser-Ney** (training/evaluation/kneser_ney.py): the order is chosen on the training text alone
  (counted on its first 90 %, scored on its last 10 %), then the model is counted on the whole training text;
- **bzip2 -9 and xz -9** given the training text as context: bits for compress(context + text) minus
  compress(context). bzip2 compresses blocks of at most 900 kB independently, so the evaluated text goes in
  pieces of 100 kB, each after as much of the text just before it (the training text's end, then the evaluated
  text read so far) as still fits in its block; xz sees the last 64 MiB (its window).

Every figure is per character of the evaluated text. Training text beyond 100 million characters is cut to its
last 100 million (said in the result). The figures are cached in the model directory (`baselines.json`), keyed by
a hash of the training text, the evaluated text, the tokenizer and these settings, so another corpus or split
never reuses them.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import lzma
import time
from pathlib import Path
from typing import Any

import numpy as np

from lm.atomic import atomic_write_text
from lm.checkpoint import BASELINES_FILE
from training.evaluation.kneser_ney import HELD_OUT_FRACTION, KneserNeyModel, alphabet_of, choose_order, text_codes
from training.evaluation.metrics import LN2, unigram_loss

CACHE_ENTRIES = 8  # distinct (data, split) pairs kept per model directory
VERSION = 1  # bump when a figure would change for the same inputs
MAX_TRAIN_CHARS = 100_000_000
BZ2_BLOCK = 899_981  # bytes bzip2 -9 puts in one block, counted after its first run-length stage
BZ2_PIECE = 100_000
XZ_WINDOW = 64 << 20


def _rung(name: str, kind: str, nats_per_char: float, detail: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "nats_per_char": nats_per_char, "bits_per_char": nats_per_char / LN2,
            "detail": detail, **extra}


def char_unigram(train: str, text: str, alphabet: np.ndarray) -> float:
    """Nats/char of add-one character counts of `train` on `text`."""
    counts = np.bincount(text_codes(train, alphabet), minlength=len(alphabet)) + 1.0
    return float(-np.log(counts / counts.sum())[text_codes(text, alphabet)].mean())


def _bz2_stage_one_length(data: bytes) -> int:
    """Length of `data` after bzip2's first stage (runs of 4-255 equal bytes become 4 bytes and a count)."""
    if not data:
        return 0
    array = np.frombuffer(data, dtype=np.uint8)
    starts = np.flatnonzero(np.concatenate(([True], array[1:] != array[:-1])))
    runs = np.diff(np.append(starts, len(array)))
    rest = runs % 255
    return int((runs // 255 * 5 + np.where(rest >= 4, 5, rest)).sum())


def bz2_bits(context: bytes, text: bytes) -> tuple[float, int]:
    """Bits bzip2 -9 spends on `text` after `context`, and the fewest context bytes any piece had."""
    stream = context + text
    bits, fewest = 0.0, len(stream)
    for start in range(len(context), len(stream), BZ2_PIECE):
        piece = stream[start: start + BZ2_PIECE]
        first, last = max(0, start - (BZ2_BLOCK - len(piece))), start
        if _bz2_stage_one_length(stream[first: start + len(piece)]) <= BZ2_BLOCK:
            last = first
        while first < last:  # the longest context whose first stage still fits in the block
            middle = (first + last) // 2
            if _bz2_stage_one_length(stream[middle: start + len(piece)]) > BZ2_BLOCK:
                first = middle + 1
            else:
                last = middle
        before = stream[first:start]
        bits += 8.0 * (len(bz2.compress(before + piece, 9)) - len(bz2.compress(before, 9)))
        fewest = min(fewest, len(before))
    return bits, fewest


def xz_bits(context: bytes, text: bytes) -> tuple[float, int]:
    """Bits xz -9 spends on `text` after the end of `context` that fits its window with the text."""
    context = context[max(0, len(context) - max(0, XZ_WINDOW - len(text))):]
    window = min(XZ_WINDOW, max(1 << 20, 1 << (len(context) + len(text)).bit_length()))
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": window}]

    def size(data: bytes) -> int:
        return len(lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=filters))

    return 8.0 * (size(context + text) - size(context)), len(context)


def compute_baselines(train: str, text: str, tokenizer=None, text_ids: np.ndarray | None = None) -> dict[str, Any]:
    """The rungs for `text` learned from `train`; `tokenizer` and `text_ids` (the model's tokens of `text`)
    add the unigram over the model's tokens."""
    if not train or not text:
        raise ValueError("baselines need a non-empty training text and evaluated text")
    started = time.perf_counter()
    notes = []
    if len(train) > MAX_TRAIN_CHARS:
        notes.append(f"sampled: built from the last {MAX_TRAIN_CHARS:,} of the {len(train):,} training characters")
        train = train[-MAX_TRAIN_CHARS:]
    alphabet = alphabet_of(train, text)
    rungs = [_rung("unigram (characters)", "unigram_chars", char_unigram(train, text, alphabet),
                   f"add-one counts of the {len(alphabet)} characters, no context")]
    if tokenizer is not None and text_ids is not None and len(text_ids) > 1:
        targets = np.asarray(text_ids[1:])  # the tokens the model predicts
        loss = unigram_loss(tokenizer.encode_corpus(train), targets, tokenizer.vocab_size)
        rungs.append(_rung("unigram (model's tokens)", "unigram_tokens", loss * len(targets) / len(text),
                           f"add-one counts of the model's {tokenizer.vocab_size} tokens, no context"))
    order, held_out = choose_order(train, alphabet)
    ngram = KneserNeyModel.fit(train, order, alphabet)
    rungs.append(_rung(f"character {order}-gram (Kneser-Ney)", "ngram", ngram.nats_per_char(text),
                       f"interpolated modified Kneser-Ney; order {order} chosen on the last "
                       f"{HELD_OUT_FRACTION:.0%} of the training text", order=order,
                       held_out_nats_per_char={str(n): v for n, v in held_out.items()}))
    context, data = train.encode("utf-8"), text.encode("utf-8")
    bits, fewest = bz2_bits(context[-BZ2_BLOCK:], data)
    rungs.append(_rung("bzip2 -9", "bz2", bits * LN2 / len(text),
                       f"{BZ2_PIECE // 1000} kB pieces, each after at least {fewest:,} bytes of the text before it "
                       "(its 900 kB block holds no more)", context_bytes=fewest))
    bits, used = xz_bits(context, data)
    rungs.append(_rung("xz -9", "xz", bits * LN2 / len(text),
                       f"after the last {used:,} bytes of the training text"
                       + (" (all of it)" if used == len(context) else " (its window holds no more)"),
                       context_bytes=used))
    return {"rungs": rungs, "train_characters": len(train), "characters": len(text), "notes": notes,
            "seconds": round(time.perf_counter() - started, 1)}


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def cached_baselines(model_dir: str | Path, train: str, text: str, tokenizer=None,
                     text_ids: np.ndarray | None = None) -> dict[str, Any]:
    """`compute_baselines`, read from MODEL_DIR/baselines.json when it was computed from the same inputs."""
    path = Path(model_dir) / BASELINES_FILE
    settings = json.dumps([VERSION, MAX_TRAIN_CHARS, BZ2_BLOCK, BZ2_PIECE, XZ_WINDOW, HELD_OUT_FRACTION])
    tokens = tokenizer.to_str().encode("utf-8") if tokenizer is not None and text_ids is not None else b""
    key = _digest(settings.encode(), train.encode("utf-8"), text.encode("utf-8"), tokens)
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("entries", {})
    except (OSError, ValueError, AttributeError):
        entries = {}
    if isinstance(entries, dict) and isinstance(entries.get(key), dict):
        return {**entries[key], "cached": True}
    result = compute_baselines(train, text, tokenizer, text_ids)
    entries = {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}
    entries[key] = {**result, "computed_at": time.time()}
    kept = sorted(entries, key=lambda k: entries[k].get("computed_at", 0))[-CACHE_ENTRIES:]
    try:
        atomic_write_text(path, json.dumps({"entries": {k: entries[k] for k in kept}}, indent=1) + "\n")
    except OSError:
        pass  # a read-only model directory: the figures are still reported, just computed again next time
    return {**result, "cached": False}

