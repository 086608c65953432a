"""Corpora: a data source, cleaned and split into train / valid / test parts that are read as streams.

Sources (`data.source` or `--data`):
- a known corpus name: `tinyshakespeare`, `wikitext2`, `wikitext103` (local copy or download, see corpora.py);
- a text file, split by `data.split` fractions into contiguous parts;
- a directory with train/valid(/test) files (WikiText layout: wiki.train.tokens ... or train.txt ...);
- any other directory: the files `data.include` chooses (default `*.txt`) less those `data.exclude` names, below
  it, in sorted path order, joined by line breaks, then split by fractions;
- `hf:NAME[:CONFIG]`: a Hugging Face dataset (needs the optional `datasets` package and a network);
- `synthetic`: a generated corpus for smoke tests.

Nothing here holds a corpus in memory: a part is a character range of a cleaned text, read again chunk by chunk
whenever it is needed (to sample it for the tokenizer, to encode it into the token cache, to write it out). Its
length is counted once and cached (`$SCRIPTORIUM_CACHE/corpora/`, keyed by the content hash and the cleaner), so a
rerun on the same data knows its parts without reading the text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lm.atomic import atomic_write_text
from lm.cache import cache_dir
from training.config import DataConfig
from training.data import corpora
from training.data.cleaners import STREAM_CHUNK_CHARS, cleaners_version, get_cleaner
from training.data.sources import (READ_CHARS, DataError, TextSource, describe_files, directory_source, file_source,
                                   memory_source)
from training.data.synthetic import synthetic_text

__all__ = ["Corpus", "DataError", "Part", "CleanedText", "load_corpus", "load_whole", "split_text", "part_ranges"]

SPLITS = ("train", "valid", "test")
# Characters read, then cleaned, at a time (module settings, so that tests can make them small).
READ_CHUNK, CLEAN_CHUNK = READ_CHARS, STREAM_CHUNK_CHARS


def part_ranges(characters: int, fractions: list[float]) -> dict[str, tuple[int, int]]:
    """Contiguous parts of a text of `characters`: [0, f0), [f0, f0 + f1), [f0 + f1, f0 + f1 + f2) of it."""
    n = characters
    fractions = list(fractions) + [0.0] * (3 - len(fractions))
    a = int(n * fractions[0])
    b = int(n * (fractions[0] + fractions[1]))
    c = int(n * min(1.0, sum(fractions))) if fractions[2] > 0 else b
    return {"train": (0, a), "valid": (a, b), "test": (b, c)}


def split_text(text: str, fractions: list[float]) -> tuple[str, str, str]:
    """`part_ranges` of a text in memory."""
    return tuple(text[start:end] for start, end in part_ranges(len(text), fractions).values())


@dataclass(frozen=True)
class CleanedText:
    """A source's text after a cleaner, read again as a stream each time; its length counted once and cached."""

    source: TextSource
    cleaner: str

    @cached_property
    def key(self) -> str:
        """Names what is derived from this text in the cache: the content hash, the cleaner and its code."""
        what = f"{self.source.content_hash}\0{self.cleaner}\0{cleaners_version()}"
        return hashlib.sha256(what.encode()).hexdigest()[:32]

    def chunks(self, start: int = 0, end: int | None = None) -> Iterator[str]:
        """The cleaned characters [start, end), in chunks."""
        offset = 0
        documents = self.source.documents(READ_CHUNK)
        for chunk in get_cleaner(self.cleaner).documents(documents, CLEAN_CHUNK):
            following = offset + len(chunk)
            if following > start and chunk:
                yield chunk[max(0, start - offset): None if end is None else end - offset]
            offset = following
            if end is not None and offset >= end:
                return

    def _stats_file(self) -> Path:
        return cache_dir() / "corpora" / f"{self.key}.json"

    def cached_characters(self) -> int | None:
        try:
            return int(json.loads(self._stats_file().read_text())["characters"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def characters(self) -> int:
        """How many characters the cleaned text has (one pass over it the first time)."""
        known = self.cached_characters()
        return known if known is not None else self.scan()

    def scan(self, consume: Callable[[int, str], None] | None = None) -> int:
        """One pass over the whole cleaned text, giving each chunk and its offset to `consume`; counts it."""
        offset = 0
        for chunk in self.chunks():
            if consume is not None:
                consume(offset, chunk)
            offset += len(chunk)
        atomic_write_text(self._stats_file(), json.dumps({"characters": offset, "source": self.source.name}) + "\n")
        return offset


@dataclass(frozen=True)
class Part:
    """A contiguous part of a cleaned text: given `fractions`, the part `name` of them; without, all of it."""

    text: CleanedText
    name: str
    fractions: tuple[float, ...] | None = None

    @property
    def description(self) -> str:
        """What was read, for the log: files, megabytes, files skipped."""
        return describe_files(self.text.source)

    def range(self) -> tuple[int, int]:
        total = self.text.characters()
        return (0, total) if self.fractions is None else part_ranges(total, list(self.fractions))[self.name]

    @property
    def characters(self) -> int:
        start, end = self.range()
        return end - start

    def chunks(self) -> Iterator[str]:
        start, end = self.range()
        if end > start:
            yield from self.text.chunks(start, end)

    def read(self, limit: int | None = None, last: int | None = None) -> str:
        """The part's text in memory (or its first `limit`, or its `last` characters): small texts and excerpts."""
        start, end = self.range()
        if last is not None:
            start = max(start, end - last)
        if limit is not None:
            end = min(end, start + limit)
        return "".join(self.text.chunks(start, end)) if end > start else ""


@dataclass
class Corpus:
    """A data source's train, valid and test parts (a part may be empty), and how they were made."""

    parts: dict[str, Part]
    source: str = ""
    split: str = ""  # how the parts were made, for the model card and config.json
    cleaner: str = "default"
    files: list[str] = field(default_factory=list)
    content_hash: str = ""
    read: str = ""  # what was read: files, megabytes, files skipped

    def part(self, name: str) -> Part:
        if name not in SPLITS:
            raise ValueError(f"split must be train, valid or test, got {name!r}")
        return self.parts[name]

    def characters(self, name: str) -> int:
        return self.part(name).characters

    def text(self, name: str) -> str:
        """A whole part in memory (small corpora, tests)."""
        return self.part(name).read()

    def summary(self) -> str:
        """What was read and how many characters each part has, for the log (counts the text if not yet done)."""
        counts = ", ".join(f"{split} {self.characters(split):,}" for split in SPLITS if self.characters(split))
        return f"data {self.source}: {self.read}; characters after the {self.cleaner!r} cleaner: {counts}"

    def check_not_empty(self) -> None:
        if not any(self.characters(split) for split in SPLITS):
            raise DataError(f"data source {self.source}: no text left after the {self.cleaner!r} cleaner")


def resolve_source(config: DataConfig, data: str | None = None) -> str | TextSource | dict[str, TextSource]:
    """What to read: a corpus name (still to fetch), `synthetic` or `hf:...`, a source, or a dict of split files'
    sources.

    `--data` replaces `data.source`. A directory given with `--data` for a config that names a known corpus is
    first searched for that corpus (so `--data ~/corpora` finds `~/corpora/tinyshakespeare.txt`).
    """
    source = data if data is not None else config.source
    if source == "synthetic" or source.startswith("hf:") or source in corpora.KNOWN_CORPORA:
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"data source {source}: no such file or directory "
            f"(or use a corpus name: {', '.join(corpora.KNOWN_CORPORA)}, synthetic, hf:NAME)"
        )
    if path.is_dir():
        if data is not None and config.source in corpora.KNOWN_CORPORA:
            local = corpora.find_local(corpora.KNOWN_CORPORA[config.source], path)
            if local:
                return _file_sources(local)
        files = corpora.split_files(path)
        if files:
            return _file_sources(files)
        return directory_source(path, config.include, config.exclude, name=source)
    return file_source(path, name=source)


def _file_sources(found: Path | dict[str, Path]) -> TextSource | dict[str, TextSource]:
    if isinstance(found, dict):
        return {name: file_source(path) for name, path in found.items()}
    return file_source(found)


def _fetched(name: str) -> TextSource | dict[str, TextSource]:
    try:
        return _file_sources(corpora.fetch(name))
    except corpora.CorpusUnavailable as exc:
        raise DataError(str(exc)) from None


def _sources(config: DataConfig, data: str | None, seed: int) -> tuple[str, TextSource | dict[str, TextSource]]:
    """The source's name (as given) and what to read."""
    resolved = resolve_source(config, data)
    name = str(data if data is not None else config.source)
    if resolved == "synthetic":
        text = synthetic_text(config.synthetic_chars, seed)
        return "synthetic", memory_source("synthetic", lambda: [text])
    if isinstance(resolved, str) and resolved.startswith("hf:"):
        return resolved, _hf_sources(resolved)
    if isinstance(resolved, str):
        return name, _fetched(resolved)
    return name, resolved


def load_corpus(config: DataConfig, data: str | None = None, seed: int = 0) -> Corpus:
    """The configured source (or `data`, the --data override), cleaned and split: parts to read as streams. Only
    the content hash is computed here; the text is read when a part is."""
    name, sources = _sources(config, data, seed)
    if isinstance(sources, dict):
        parts = {split: Part(CleanedText(sources[split], config.cleaner), split) if split in sources
                 else Part(CleanedText(memory_source("empty", lambda: []), config.cleaner), split) for split in SPLITS}
        files = [str(p) for s in sources.values() for p in s.files]
        content = hashlib.sha256("".join(sources[s].content_hash for s in sources).encode()).hexdigest()
        return Corpus(parts, name, "given train/valid/test files", config.cleaner, files, content,
                      f"{len(sources)} split files")
    text = CleanedText(sources, config.cleaner)
    parts = {split: Part(text, split, tuple(config.split)) for split in SPLITS}
    return Corpus(parts, name, _describe_split(config.split), config.cleaner, [str(p) for p in sources.files],
                  sources.content_hash, describe_files(sources))


def load_whole(source: str, cleaner: str = "default", include: list[str] | tuple[str, ...] = (),
               exclude: list[str] | tuple[str, ...] = ()) -> Part:
    """All the text of a source (file, directory, corpus name), no split: a WikiText-style directory's train, valid
    and test files read as one text, in that order."""
    config = DataConfig(source=source, cleaner=cleaner, split=[1.0, 0.0, 0.0], include=list(include),
                        exclude=list(exclude))
    name, sources = _sources(config, None, 0)
    if isinstance(sources, dict):
        ordered = [sources[s] for s in SPLITS if s in sources]
        sources = TextSource(name, tuple(p for s in ordered for p in s.files),
                             texts=_concatenated(ordered) if ordered[0].texts is not None else None)
    return Part(CleanedText(sources, cleaner), "whole")


def _concatenated(sources: list[TextSource]) -> Callable[[], Iterator[str]]:
    def texts() -> Iterator[str]:
        for i, source in enumerate(sources):
            for document in source.documents():
                if i:
                    yield "\n"
                yield from document

    return texts


def _describe_split(fractions: list[float]) -> str:
    start, out = 0.0, []
    for name, f in zip(SPLITS, fractions):
        if f > 0:
            out.append(f"{name} [{start:.0%}, {start + f:.0%})")
        start += f
    return "contiguous characters: " + ", ".join(out)


def _hf_sources(spec: str) -> TextSource | dict[str, TextSource]:
    """`hf:NAME[:CONFIG]` through the optional `datasets` package: each split's text column, read in batches of
    rows (joined by line breaks)."""
    name, _, subset = spec[3:].partition(":")
    try:
        import datasets  # optional: not in requirements.txt
    except ImportError:
        raise DataError(f"data source {spec}: needs the `datasets` package (pip install datasets)") from None
    try:
        dataset = datasets.load_dataset(name, subset or None)
    except Exception as exc:  # network, unknown name, auth: datasets raises many kinds
        raise DataError(f"data source {spec}: cannot load: {str(exc).splitlines()[0] if str(exc) else exc}") from None

    def rows(split) -> TextSource:
        columns = [c for c, f in split.features.items() if getattr(f, "dtype", None) == "string"]
        if not columns:
            raise DataError(f"data source {spec}: no text column")
        column = "text" if "text" in columns else columns[0]

        def texts() -> Iterator[str]:
            for i, batch in enumerate(split.iter(batch_size=1000)):
                yield ("\n" if i else "") + "\n".join(batch[column])

        return memory_source(spec, texts)

    splits = {"valid" if k == "validation" else k: v for k, v in dataset.items()}
    if "train" in splits and "valid" in splits:
        return {k: rows(v) for k, v in splits.items() if k in SPLITS}
    return rows(splits.get("train") or next(iter(splits.values())))
