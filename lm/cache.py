"""Where Scriptorium keeps what it can recompute: downloaded corpora, token ids, matmul measurements.

`$SCRIPTORIUM_CACHE`, default `~/.cache/scriptorium`: the user's cache, never the repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lm.atomic import atomic_write_text


def cache_dir() -> Path:
    return Path(os.environ.get("SCRIPTORIUM_CACHE") or Path.home() / ".cache" / "scriptorium")


def read_measurements(path: Path) -> dict[str, float]:
    """A cache file of measurements (JSON, key -> figure); empty when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_measurements(path: Path, figures: dict[str, float]) -> None:
    """Add `figures` to the cache file at `path`, replaced whole. A read-only home only costs measuring again."""
    data = read_measurements(path)
    data.update(figures)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass
