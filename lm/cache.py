"""Where Scriptorium keeps what it can recompute: downloaded corpora, token ids, matmul measurements.

`$SCRIPTORIUM_CACHE`, default `~/.cache/scriptorium`: the user's cache, never the repository.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("SCRIPTORIUM_CACHE") or Path.home() / ".cache" / "scriptorium")
