"""Token ids on disk: each (text, tokenizer) pair is encoded once into a numpy memmap.

The file name is a hash of the text and the tokenizer's JSON, so a rerun with the same data starts at once and a
changed corpus or vocabulary can never reuse stale ids. The ids are memory-mapped, not loaded, so a corpus larger
than memory can be trained on (the batch samplers only touch the windows they read).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from lm.tokenizers import Tokenizer
from training.data.corpora import cache_dir

_CHUNK_CHARS = 1 << 22  # encode 4M characters at a time so memory stays bounded on big corpora


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def cache_key(text: str, tokenizer: Tokenizer) -> str:
    digest = hashlib.sha256()
    digest.update(tokenizer.to_str().encode("utf-8"))
    digest.update(b"\0")
    digest.update(text.encode("utf-8", errors="surrogatepass"))
    return digest.hexdigest()[:32]


def encode_cached(text: str, tokenizer: Tokenizer, directory: Path | None = None) -> np.ndarray:
    """The ids of `text`, read from (or written to) the cache as a read-only memmap."""
    dtype = token_dtype(tokenizer.vocab_size)
    directory = Path(directory) if directory is not None else cache_dir() / "tokens"
    path = directory / f"{cache_key(text, tokenizer)}.{dtype.name}"
    if not path.exists():
        _write(path, text, tokenizer, dtype)
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def _write(path: Path, text: str, tokenizer: Tokenizer, dtype: np.dtype) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            start = 0
            while start < len(text):
                end = min(start + _CHUNK_CHARS, len(text))
                if end < len(text):  # cut at a line break so no token is split between chunks
                    newline = text.rfind("\n", start, end)
                    end = newline + 1 if newline > start else end
                f.write(tokenizer.encode_corpus(text[start:end]).astype(dtype).tobytes())
                start = end
        os.replace(tmp, path)  # several processes (DDP ranks) may race here; each writes the same bytes
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
