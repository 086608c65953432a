"""Text cleaners: one function per kind of corpus, chosen by name (`data.cleaner`, `--cleaner`).

Each takes the raw text and returns the cleaned text. `default` only normalises line endings and drops byte-order
marks and control characters, so a clean corpus such as TinyShakespeare passes through unchanged; `none` is the
identity (WikiText word-level recipes train on the tokens exactly as published). The others start with `default`
and remove what their docstrings list.
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


# Control characters (C0 and C1) other than tab and newline: form feeds, NULs, stray escape codes in scraped text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Line endings: Windows, old Mac and NEL (U+0085, EBCDIC's newline, the one line break among the C1 controls).
_LINE_ENDING = re.compile(r"\r\n?|\x85")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


@register_cleaner("none")
def clean_none(text: str) -> str:
    return text


@register_cleaner("default")
def clean_default(text: str) -> str:
    """Line endings to `\\n`, byte-order marks out (also those of the second and later files of a directory, which
    are joined before cleaning), control characters other than tab and newline out."""
    text = _LINE_ENDING.sub("\n", text.replace("\ufeff", ""))
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


@register_cleaner("subtitles")
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
    return _tidy("\n".join(kept))


_STAGE_DIRECTION = re.compile(r"\[[^\]\n]*\]")
# A speaker label at the start of a line: "ROMEO:", "Mrs. Smith:", "Q:". At most four words, each capitalised.
_SPEAKER = re.compile(r"^\s*(?:[A-Z][\w.'-]*)(?: [A-Z][\w.'-]*){0,3}\s*:(?:\s+|$)")


@register_cleaner("dialogue")
def clean_dialogue(text: str) -> str:
    """Scripts and transcripts: drop [stage directions] and the speaker labels that start lines."""
    kept = []
    for line in clean_default(text).split("\n"):
        stripped = _SPEAKER.sub("", _STAGE_DIRECTION.sub("", line), count=1)
        if line.strip() and not stripped.strip():  # a label or a direction alone on its line goes away entirely
            continue
        kept.append(_MANY_SPACES.sub(" ", stripped).strip())
    return _tidy("\n".join(kept))


_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(
    r"^(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*|End of (?:the )?Project Gutenberg.*)$",
    re.MULTILINE | re.IGNORECASE,
)


# The transcriber's credit paragraph that often opens the text after the START marker.
_GUTENBERG_PRODUCED_BY = re.compile(r"\A\s*(?:Produced|Prepared|Transcribed|E-?text prepared) by\b.*?(?:\n\s*\n|\Z)",
                                    re.IGNORECASE | re.DOTALL)


@register_cleaner("gutenberg")
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
    return _tidy(text)
