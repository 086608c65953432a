"""Absolute paths of this machine taken out of text that leaves it (a model card, a public error message): each is
cut to its last part, the file or folder name, which still says what is meant without saying where it lives."""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath

# A POSIX path from the root (not the "//" or "/path" of a URL, not a relative path) or a Windows drive path.
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/[^\s`'\"<>()\[\]{},;]+|\b[A-Za-z]:\\[^\s`'\"<>()\[\]{},;]+")


def without_paths(text: str) -> str:
    """`text` with every absolute path cut to its last part ("/data/corpora/my.txt" -> "my.txt")."""
    def name(match: re.Match) -> str:
        found = match.group(0)
        path = PureWindowsPath(found) if "\\" in found else PurePosixPath(found.rstrip(".:"))
        tail = found[len(found.rstrip(".:")):] if "\\" not in found else ""
        return (path.name or found) + tail

    return _ABSOLUTE.sub(name, text)
