"""Where a corpus's raw text comes from, read as a stream: files (one, or those of a directory that `--include` and
`--exclude` choose), or text made in memory (synthetic, a Hugging Face dataset's rows).

A `TextSource` is a list of documents (each file one), read a chunk at a time, and a content hash of what it reads,
which names everything derived from it in the cache. A file that is not UTF-8 text (a NUL byte, or a byte sequence
that is not UTF-8, in its first 8 KB) is skipped in a directory, with a note, and refused as a source of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path

READ_CHARS = 1 << 22  # characters read at a time
PROBE_BYTES = 8192  # how much of a file is looked at to tell text from binary
DEFAULT_INCLUDE = ("*.txt",)


class DataError(ValueError):
    """A data source that cannot be read; the message is one line naming the source."""


@dataclass(frozen=True)
class TextSource:
    """The raw text of a corpus: `files` (each a document; documents are joined by a line break), or `texts`, which
    makes the chunks of one document in memory each time it is called."""

    name: str
    files: tuple[Path, ...] = ()
    texts: Callable[[], Iterable[str]] | None = None
    skipped: tuple[Path, ...] = field(default=(), compare=False)  # files left out: not UTF-8 text

    def documents(self, chunk_chars: int = READ_CHARS) -> Iterator[Iterator[str]]:
        if self.texts is not None:
            yield iter(self.texts())
            return
        for path in self.files:
            yield _read(path, chunk_chars)

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of what is read (the files' bytes, each with its length), in hex."""
        digest = hashlib.sha256()
        if self.texts is not None:
            for chunk in self.texts():
                digest.update(chunk.encode("utf-8", "surrogatepass"))
            return digest.hexdigest()
        for path in self.files:
            try:
                with open(path, "rb") as f:
                    digest.update(f"{path.stat().st_size}:".encode())
                    while block := f.read(1 << 23):
                        digest.update(block)
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
        return digest.hexdigest()

    @property
    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)


def _read(path: Path, chunk_chars: int) -> Iterator[str]:
    """A file's text, a chunk at a time: UTF-8 (an invalid byte becomes U+FFFD), line endings as Python's text mode
    reads them (`\\r\\n` and `\\r` become `\\n`), as `Path.read_text` always read them here."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            while chunk := f.read(chunk_chars):
                yield chunk
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def not_text(path: Path) -> str | None:
    """Why the file is not UTF-8 text ("a NUL byte", "bytes that are not UTF-8" in its first 8 KB), or None."""
    try:
        with open(path, "rb") as f:
            block = f.read(PROBE_BYTES)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\0" in block:
        return "a NUL byte"
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as error:
        cut_short = error.reason == "unexpected end of data" and len(block) == PROBE_BYTES
        if not cut_short:  # a character cut in two by the end of the probe is still text
            return "bytes that are not UTF-8"
    return None


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    """A pattern matches the path below the directory ("src/*.py", "*.py") or the file's name ("*.md")."""
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatchcase(relative, pattern) or fnmatchcase(name, pattern) for pattern in patterns)


def directory_source(directory: Path, include: Sequence[str] = (), exclude: Sequence[str] = (),
                     name: str | None = None) -> TextSource:
    """The files below `directory` that match an `include` pattern (default `*.txt`) and no `exclude` pattern, in
    sorted path order, without those that are not UTF-8 text."""
    include = tuple(include) or DEFAULT_INCLUDE
    chosen, skipped = [], []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if not _matches(relative, include) or _matches(relative, exclude):
            continue
        (skipped if not_text(path) else chosen).append(path)
    if not chosen:
        rules = f"--include {' '.join(include)}" + (f" --exclude {' '.join(exclude)}" if exclude else "")
        found = f" ({len(skipped)} not UTF-8 text)" if skipped else ""
        raise DataError(f"data source {directory}: no files matching {rules} in this directory{found}")
    return TextSource(name or str(directory), tuple(chosen), skipped=tuple(skipped))


def file_source(path: Path, name: str | None = None) -> TextSource:
    """One text file; an empty file or one that is not UTF-8 text is refused."""
    try:
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if empty:
        raise DataError(f"data source {path}: the file is empty")
    reason = not_text(path)
    if reason:
        raise DataError(f"data source {path}: not UTF-8 text ({reason} in its first {PROBE_BYTES // 1024} KB); "
                        "is it a binary file?")
    return TextSource(name or str(path), (path,))


def memory_source(name: str, texts: Callable[[], Iterable[str]]) -> TextSource:
    return TextSource(name, texts=texts)


def describe_files(source: TextSource) -> str:
    """'3 files, 1.2 MB' and the files skipped, for the log."""
    if source.texts is not None:
        return "text made in memory"
    count, size = len(source.files), source.size_bytes
    shown_size = f"{size / 1e6:,.1f} MB" if size >= 1e6 else f"{size / 1e3:,.1f} kB" if size >= 1e3 else f"{size} bytes"
    text = f"{count:,} file{'s' if count != 1 else ''}, {shown_size}"
    if source.skipped:
        shown = ", ".join(p.name for p in source.skipped[:3]) + (", ..." if len(source.skipped) > 3 else "")
        text += f"; skipped {len(source.skipped):,} not UTF-8 text (binary?): {shown}"
    return text
