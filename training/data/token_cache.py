"""Token ids on disk: each corpus part is encoded once, by streaming it, into a numpy memmap.

The file name is a hash of the cleaned text (its content hash, cleaner and cleaners' code), the part's character
range and the tokenizer's JSON, so a rerun with the same data, and `evaluate` on the data a model was trained on,
start at once, and a changed corpus, cleaner or vocabulary can never reuse stale ids. Ids are uint16 when the
vocabulary fits, else uint32. They are memory-mapped, not loaded, so a corpus larger than memory can be trained on
(the batch samplers only touch the windows they read).

Parts encoded together (train and valid, as the trainer asks) share one pass over the text. Encoding overlaps
reading: while one chunk's pieces are encoded on every core (tiktoken's encoder for BPE, the
`tokenizers` library for word: both let go of Python's lock), the next chunk is read and cleaned.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lm.atomic import atomic_file
from lm.cache import cache_dir
from lm.tokenizers import Tokenizer, cut_point, split_at_newlines
from training.data.corpus import CleanedText, Part

_IN_FLIGHT = 2  # chunks being encoded while the next is read
_MAX_CARRY = 1 << 22  # a "word" longer than this (no space, no line break) is cut anyway


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def cache_path(part: Part, tokenizer: Tokenizer, directory: Path | None = None) -> Path:
    start, end = part.range()
    digest = hashlib.sha256()
    digest.update(tokenizer.to_str().encode("utf-8"))
    digest.update(f"\0{part.text.key}\0{start}\0{end}".encode())
    directory = Path(directory) if directory is not None else cache_dir() / "tokens"
    return directory / f"{digest.hexdigest()[:32]}.{token_dtype(tokenizer.vocab_size).name}"


def _whole_words(chunks: Iterable[str]) -> Iterator[str]:
    """The chunks again, each ending at a line break or a space (the rest goes with the next one), so that a chunk
    boundary never falls inside a word."""
    carry = ""
    for chunk in chunks:
        text = carry + chunk
        cut = cut_point(text, 0, len(text))
        carry = text[cut:] if len(text) - cut < _MAX_CARRY else ""
        yield text[: len(text) - len(carry)]
    if carry:
        yield carry


class _Reader:
    """One pass over a cleaned text, handed out part by part in order: a later part goes on where the earlier one
    stopped instead of reading (and cleaning) the text before it again."""

    def __init__(self, text: CleanedText, start: int) -> None:
        self.chunks = text.chunks(start)
        self.offset = start  # where `pending` begins in the text
        self.pending = ""

    def take(self, start: int, end: int) -> Iterator[str]:
        """The characters [start, end), at or after where the last part stopped."""
        while self.offset < end:
            if not self.pending:
                self.pending = next(self.chunks, "")
                if not self.pending:
                    return
            skip = min(max(0, start - self.offset), len(self.pending))
            stop = min(len(self.pending), end - self.offset)
            if stop > skip:
                yield self.pending[skip:stop]
            consumed = max(skip, stop)
            self.pending, self.offset = self.pending[consumed:], self.offset + consumed


def _write_ids(chunks: Iterable[str], tokenizer: Tokenizer, path: Path, dtype: np.dtype) -> None:
    # several processes (DDP ranks) may race here; each writes the same bytes and renames them into place
    with atomic_file(path) as f, ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque()
        for text in _whole_words(chunks):
            pending.append(pool.submit(tokenizer.encode_pieces, split_at_newlines(text)))
            if len(pending) > _IN_FLIGHT:
                f.write(pending.popleft().result().astype(dtype).tobytes())
        while pending:
            f.write(pending.popleft().result().astype(dtype).tobytes())


def _read_ids(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def encode_parts(parts: list[Part], tokenizer: Tokenizer, directory: Path | None = None,
                 log: Callable[[str], None] | None = None) -> list[np.ndarray]:
    """The ids of each of `parts`, read from (or written to) the cache as read-only memmaps; those not cached are
    encoded in one pass over their text."""
    dtype = token_dtype(tokenizer.vocab_size)
    paths = [cache_path(part, tokenizer, directory) for part in parts]
    readers: dict[int, _Reader] = {}  # one pass per text (a corpus of split files has a text per part)
    for part, path in sorted(zip(parts, paths), key=lambda pair: pair[0].range()):
        if path.exists():  # cached, or the same part asked twice
            continue
        start, end = part.range()
        if id(part.text) not in readers:
            readers[id(part.text)] = _Reader(part.text, start)
        reader = readers[id(part.text)]
        _write_ids(reader.take(start, end), tokenizer, path, dtype)
        if log:
            log(f"tokens: the {part.name} text encoded into {path} ({path.stat().st_size // dtype.itemsize:,} ids)")
    return [_read_ids(path, dtype) for path in paths]


def encode_part(part: Part, tokenizer: Tokenizer, directory: Path | None = None,
                log: Callable[[str], None] | None = None) -> np.ndarray:
    """The ids of `part`, read from (or written to) the cache as a read-only memmap."""
    return encode_parts([part], tokenizer, directory, log)[0]
