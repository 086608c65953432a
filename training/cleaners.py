"""Text cleaners: one function per kind of corpus, chosen by name (`data.cleaner`, `--cleaner`).

Each takes the raw text and returns the cleaned text. `default` only normalises line endings and drops control
characters, so a clean corpus such as TinyShakespeare passes through unchanged; `none` is the identity (WikiText
word-level recipes train on the tokens exactly as published).
"""

from __future__ import annotations

import re
from typing import Callable

Cleaner = Callable[[str], str]
CLEANERS: dict[str, Cleaner] = {}


def register_cleaner(name: str) -> Callable[[Cleaner], Cleaner]:
    def decorate(fn: Cleaner) -> Cleaner:
        CLEANERS[name] = fn
        return fn

    return decorate


def get_cleaner(name: str) -> Cleaner:
    if name not in CLEANERS:
        raise ValueError(f"unknown cleaner {name!r}; choose one of {', '.join(CLEANERS)}")
    return CLEANERS[name]


# Control characters other than tab and newline (form feeds, NULs, stray escape codes in scraped text).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


@register_cleaner("none")
def clean_none(text: str) -> str:
    return text


@register_cleaner("default")
def clean_default(text: str) -> str:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def _tidy(text: str) -> str:
    """Trailing spaces off, runs of blank lines down to one, one final newline."""
    lines = [line.rstrip() for line in text.split("\n")]
    text = _MANY_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")
    return text + "\n" if text else ""


# WikiText: " = = Section = = " headings, " @-@ " style escapes, spaces around punctuation.
_WIKI_HEADING = re.compile(r"^\s*(=\s*)+[^=\n]*?(\s*=)+\s*$", re.MULTILINE)
_WIKI_ESCAPE = re.compile(r" @([-.,])@ ")
_CITATION = re.compile(
    r"\[\s*(?:\d+(?:\s*[,\u2013-]\s*\d+)*|citation needed|clarification needed|note \d+|[a-z])\s*\]"
)
_SPACE_BEFORE_PUNCT = re.compile(r" +([.,;:!?%)\]}'])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{$]) +")
_CONTRACTION = re.compile(r" +(n't|'s|'re|'ve|'ll|'d|'m)\b")
_MANY_SPACES = re.compile(r"[ \t]{2,}")


@register_cleaner("wikipedia")
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
    return _tidy("\n".join(line.strip() for line in text.split("\n")))


_SRT_INDEX = re.compile(r"^\s*\d+\s*$")
_SRT_TIMING = re.compile(r"^\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}.*$")
_MARKUP = re.compile(r"</?[a-zA-Z][^>]*>|\{\\[^}]*\}")  # <i>, <font ...>, {\an8}


@register_cleaner("subtitles")
def clean_subtitles(text: str) -> str:
    """SRT subtitles: drop cue numbers, timing lines and formatting tags; keep the spoken lines."""
    text = clean_default(text)
    kept = []
    for line in text.split("\n"):
        if _SRT_INDEX.match(line) or _SRT_TIMING.match(line):
            continue
        kept.append(_MARKUP.sub("", line).strip())
    return _tidy("\n".join(kept))


_STAGE_DIRECTION = re.compile(r"\[[^\]\n]*\]")
# A speaker label at the start of a line: "ROMEO:", "Mrs. Smith:", "Q:". At most four words, each capitalised.
_SPEAKER = re.compile(r"^\s*(?:[A-Z][\w.'-]*)(?: [A-Z][\w.'-]*){0,3}\s*:(?:\s+|$)")


@register_cleaner("dialogue")
def clean_dialogue(text: str) -> str:
    """Scripts and transcripts: drop [stage directions] and the speaker labels that start lines."""
    text = clean_default(text)
    text = _STAGE_DIRECTION.sub("", text)
    kept = []
    for line in text.split("\n"):
        stripped = _SPEAKER.sub("", line, count=1)
        if line.strip() and not stripped.strip():  # a label alone on its line goes away entirely
            continue
        kept.append(_MANY_SPACES.sub(" ", stripped).strip())
    return _tidy("\n".join(kept))


_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(
    r"^(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*|End of (?:the )?Project Gutenberg.*)$",
    re.MULTILINE | re.IGNORECASE,
)


@register_cleaner("gutenberg")
def clean_gutenberg(text: str) -> str:
    """Project Gutenberg e-books: keep only the text between the START and END markers (no header, no licence)."""
    text = clean_default(text)
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return _tidy(text)
