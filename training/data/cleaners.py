"""Text cleaners: one per kind of corpus, chosen by name (`data.cleaner`, `--cleaner`).

Each takes the raw text and returns the cleaned text. `default` only normalises line endings and drops byte-order
marks and control characters, so a clean corpus such as TinyShakespeare passes through unchanged; `none` is the
identity (WikiText word-level recipes train on the tokens exactly as published). The others start with `default`
and remove what their docstrings list.

A corpus larger than memory is cleaned as a stream (`Cleaner.stream`): cut into chunks at safe boundaries (after
a blank line where there is one, else after a line break: every cleaner's rules read one line, or a cue of lines
between blank lines), each chunk cleaned on its own, and the final tidying (trailing spaces off, runs of blank lines
down to one, one final newline) carried across chunks, so the result is the same as cleaning the whole text at once.
`gutenberg` alone needs a whole document (its START and END markers may be anywhere): it cleans each file whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

STREAM_CHUNK_CHARS = 1 << 20  # characters cleaned at a time (about; chunks end at safe boundaries)


@dataclass(frozen=True)
class Cleaner:
    """`lines` cleans a run of whole lines (`per_character`: any run of characters); `tidy` then takes trailing
    spaces off, runs of blank lines down to one and ends the text with one newline; `whole_document`: `lines` must see
    a document whole."""

    name: str
    lines: Callable[[str], str]
    tidy: bool = False
    whole_document: bool = False
    per_character: bool = False

    def __call__(self, text: str) -> str:
        return "".join(self.stream([text]))

    def stream(self, chunks: Iterable[str], chunk_chars: int = STREAM_CHUNK_CHARS) -> Iterator[str]:
        """The cleaned text of the concatenated `chunks`, in pieces: the same text as cleaning it whole."""
        if self.whole_document:
            pieces: Iterable[str] = [self.lines("".join(chunks))]
        elif self.per_character:  # any cut will do, but not between a carriage return and its line feed
            pieces = (self.lines(chunk) for chunk in _crlf_whole(chunks))
        else:
            pieces = (self.lines(chunk) for chunk in safe_chunks(chunks, chunk_chars))
        if not self.tidy:
            yield from pieces
            return
        tidy = _Tidy()
        for piece in pieces:
            yield tidy.feed(piece)
        yield tidy.finish()

    def documents(self, documents: Iterable[Iterable[str]], chunk_chars: int = STREAM_CHUNK_CHARS) -> Iterator[str]:
        """The cleaned text of several documents (the files of a directory), each given as chunks: joined by line
        breaks, then cleaned as one text, or (`whole_document`) each cleaned whole, then joined."""
        if self.whole_document:
            for i, document in enumerate(documents):
                if i:
                    yield "\n"
                yield from self.stream(document, chunk_chars)
        else:
            yield from self.stream(_joined(documents), chunk_chars)


def _joined(documents: Iterable[Iterable[str]]) -> Iterator[str]:
    for i, document in enumerate(documents):
        if i:
            yield "\n"
        yield from document


CLEANERS: dict[str, Cleaner] = {}


def register_cleaner(name: str, tidy: bool = False, whole_document: bool = False,
                     per_character: bool = False) -> Callable:
    """Register a function as the `lines` of the cleaner `name` (the function itself stays as it is)."""

    def decorate(fn: Callable[[str], str]) -> Callable[[str], str]:
        CLEANERS[name] = Cleaner(name, fn, tidy, whole_document, per_character)
        return fn

    return decorate


def get_cleaner(name: str) -> Cleaner:
    if name not in CLEANERS:
        raise ValueError(f"unknown cleaner {name!r}; choose one of {', '.join(CLEANERS)}")
    return CLEANERS[name]


def cleaners_version() -> str:
    """A digest of this module's code: cached results of a cleaner are keyed by it, so a changed rule never reuses
    text cleaned by the old one."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def safe_chunks(chunks: Iterable[str], size: int = STREAM_CHUNK_CHARS) -> Iterator[str]:
    """The text of `chunks` again, in chunks of at most `size` characters that end after a blank line (where there is
    one), else after a line break, else (a line longer than `size`) anywhere but between a carriage return and its
    line feed."""
    buffer = ""
    for chunk in chunks:
        buffer = buffer + chunk if buffer else chunk
        start = 0
        while len(buffer) - start > size:
            end = start + size
            cut = buffer.rfind("\n\n", start, end) + 2
            if cut < start + 2:
                cut = buffer.rfind("\n", start, end) + 1
            if cut < start + 1:
                cut = end - 1 if buffer[end - 1] == "\r" else end
            yield buffer[start:cut]
            start = cut
        buffer = buffer[start:] if start else buffer
    if buffer:
        yield buffer


def _crlf_whole(chunks: Iterable[str]) -> Iterator[str]:
    """The chunks again, a carriage return at the end of one moved to the next (it may be the start of `\r\n`)."""
    held = ""
    for chunk in chunks:
        chunk = held + chunk
        held = "\r" if chunk.endswith("\r") else ""
        if held:
            chunk = chunk[:-1]
        if chunk:
            yield chunk
    if held:
        yield held


_TRAILING_SPACE = re.compile(r"[^\S\n]+$", re.MULTILINE)  # what str.rstrip() takes off each line


class _Tidy:
    """Trailing spaces off each line, runs of blank lines down to one, no blank lines at the start or end and one
    final newline: for text that arrives in pieces (a line may be split between two)."""

    def __init__(self) -> None:
        self.carry = ""  # the start of a line whose end has not arrived
        self.newlines = 0  # line breaks seen since the last text written, not yet written
        self.started = False

    def feed(self, text: str) -> str:
        text = self.carry + text
        cut = text.rfind("\n") + 1
        self.carry = text[cut:]
        return self._lines(_TRAILING_SPACE.sub("", text[:cut]))

    def finish(self) -> str:
        out = self._lines(_TRAILING_SPACE.sub("", self.carry))
        self.carry = ""
        return out + "\n" if self.started else out

    def _lines(self, text: str) -> str:
        body = text.lstrip("\n")
        self.newlines += len(text) - len(body)
        if not body:
            return ""
        stripped = body.rstrip("\n")
        lead = "\n" * min(self.newlines, 2) if self.started else ""
        self.started, self.newlines = True, len(body) - len(stripped)
        return lead + _MANY_BLANK_LINES.sub("\n\n", stripped)


# Control characters (C0 and C1) other than tab and newline: form feeds, NULs, stray escape codes in scraped text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Line endings: Windows, old Mac and NEL (U+0085, EBCDIC's newline, the one line break among the C1 controls).
_LINE_ENDING = re.compile(r"\r\n?|\x85")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


@register_cleaner("none", per_character=True)
def clean_none(text: str) -> str:
    return text


@register_cleaner("default", per_character=True)
def clean_default(text: str) -> str:
    """Line endings to `\\n`, byte-order marks out (also those of the second and later files of a directory, which
    are joined before cleaning), control characters other than tab and newline out."""
    text = text.replace("\ufeff", "")
    if "\r" in text or "\x85" in text:  # a file read in text mode has none left: skip the scan (a large corpus)
        text = _LINE_ENDING.sub("\n", text)
    return _CONTROL.sub("", text)


# WikiText: " = = Section = = " headings, " @-@ " style escapes, spaces around punctuation.
_WIKI_HEADING = re.compile(r"^[^\S\n]*(=[^\S\n]*)+[^=\n]*?([^\S\n]*=)+[^\S\n]*$", re.MULTILINE)  # one line
_WIKI_ESCAPE = re.compile(r" @([-.,])@ ")
_CITATION = re.compile(
    r"\[\s*(?:\d+(?:\s*[,\u2013-]\s*\d+)*|citation needed|clarification needed|note \d+|[a-z])\s*\]"
)
_SPACE_BEFORE_PUNCT = re.compile(r" +([.,;:!?%)\]}'])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{$]) +")
_CONTRACTION = re.compile(r" +(n't|'s|'re|'ve|'ll|'d|'m)\b")
_MANY_SPACES = re.compile(r"[ \t]{2,}")


@register_cleaner("wikipedia", tidy=True)
def clean_wikipedia(text: str) -> str:
    """Wikipedia / WikiText: drop `= = Heading = =` lines and citation marks like [12], fix tokenised spacing."""
    text = clean_default(text)
    text = _WIKI_HEADING.sub("", text)
    text = _CITATION.sub("", text)
    text = _WIKI_ESCAPE.sub(r"\1", text)
    text = _CONTRACTION.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    text = _MANY_SPACES.sub(" ", text)
    return "\n".join(line.strip() for line in text.split("\n"))


_SRT_INDEX = re.compile(r"^\s*\d+\s*$")
_SRT_TIMING = re.compile(r"^\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}.*$")
_MARKUP = re.compile(r"</?[a-zA-Z][^>]*>|\{\\[^}]*\}")  # <i>, <font ...>, {\an8}
# Credit lines: "Subtitles by X", "Synced and corrected by X", "English subtitles: X", "Sync & corrections by X".
_CREDIT_WORD = (r"(?:english\s+|original\s+|closed\s+)?(?:subtitles?|subtitled|subs|captions?|captioned|captioning|"
                r"re-?sync(?:ed)?|sync(?:ed|hroni[sz]ed|hroni[sz]ation)?|corrected|corrections?|translated|"
                r"translation|transcript|transcribed|ripped|encoded|timings?|timed)")
_CREDIT = re.compile(rf"^\W*{_CREDIT_WORD}(?:\s*(?:,|and|&)\s*{_CREDIT_WORD})*\s*(?:by\b|:)", re.IGNORECASE)
# Subtitle sites' adverts and sign-offs, wherever they are on the line.
_SUBTITLE_ADVERT = re.compile(
    r"opensubtitles|addic7ed|subscene|podnapisi|tvsubtitles|subtitlecat|\byify\b|"
    r"advertise your (?:product|brand)|become (?:a )?vip member|rate this subtitle|"
    r"downloaded\s+from\s+(?:https?://|www\.|\S+\.(?:com|org|net)\b)",
    re.IGNORECASE,
)
_ONLY_AN_ADDRESS = re.compile(r"^\W*(?:https?://|www\.)\S+\W*$", re.IGNORECASE)


def _is_subtitle_credit(line: str) -> bool:
    return bool(_CREDIT.match(line) or _SUBTITLE_ADVERT.search(line) or _ONLY_AN_ADDRESS.match(line))


@register_cleaner("subtitles", tidy=True)
def clean_subtitles(text: str) -> str:
    """SRT subtitles: drop cue numbers (a number alone on the line before a timing line), timing lines, formatting
    tags, and credit lines: a line that starts with a subtitling credit ("Subtitles by ...", "Synced and corrected
    by ...", "Translation: ..."; also captions, sync, corrections, transcript, ripped, encoded, timing), a
    subtitle site's name or advert ("Downloaded from www.opensubtitles.org", "Advertise your product or brand
    here", "Please rate this subtitle"), or only a web address. Keep the spoken lines."""
    lines = clean_default(text).split("\n")
    kept = []
    for i, line in enumerate(lines):
        if _SRT_TIMING.match(line):
            continue
        if _SRT_INDEX.match(line) and i + 1 < len(lines) and _SRT_TIMING.match(lines[i + 1]):
            continue
        line = _MARKUP.sub("", line).strip()
        if not _is_subtitle_credit(line):
            kept.append(line)
    return "\n".join(kept)


_STAGE_DIRECTION = re.compile(r"\[[^\]\n]*\]")
# A speaker label at the start of a line: "ROMEO:", "Mrs. Smith:", "Q:". At most four words, each capitalised.
_SPEAKER = re.compile(r"^\s*(?:[A-Z][\w.'-]*)(?: [A-Z][\w.'-]*){0,3}\s*:(?:\s+|$)")


@register_cleaner("dialogue", tidy=True)
def clean_dialogue(text: str) -> str:
    """Scripts and transcripts: drop [stage directions] and the speaker labels that start lines."""
    kept = []
    for line in clean_default(text).split("\n"):
        stripped = _SPEAKER.sub("", _STAGE_DIRECTION.sub("", line), count=1)
        if line.strip() and not stripped.strip():  # a label or a direction alone on its line goes away entirely
            continue
        kept.append(_MANY_SPACES.sub(" ", stripped).strip())
    return "\n".join(kept)


_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(
    r"^(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*|End of (?:the )?Project Gutenberg.*)$",
    re.MULTILINE | re.IGNORECASE,
)


# The transcriber's credit paragraph that often opens the text after the START marker.
_GUTENBERG_PRODUCED_BY = re.compile(r"\A\s*(?:Produced|Prepared|Transcribed|E-?text prepared) by\b.*?(?:\n\s*\n|\Z)",
                                    re.IGNORECASE | re.DOTALL)


@register_cleaner("gutenberg", tidy=True, whole_document=True)
def clean_gutenberg(text: str) -> str:
    """Project Gutenberg e-books: keep only the text between the START and END markers (no header, no licence),
    without the "Produced by ..." credit paragraph that often opens it."""
    text = clean_default(text)
    start = _GUTENBERG_START.search(text)
    if start:
        text = _GUTENBERG_PRODUCED_BY.sub("", text[start.end():], count=1)
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text
