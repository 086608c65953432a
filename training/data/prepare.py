"""`python -m training prepare-data`: fetch or read a corpus, clean it, split it, write train/valid/test files.

The output directory has the WikiText layout (train.txt, valid.txt, test.txt), so `--data DIR` reads it back
with the split exactly as written. Each part is streamed from the source to its file (never whole in memory) and
swapped into place when complete.
"""

from __future__ import annotations

import json
from pathlib import Path

from lm.atomic import atomic_file, atomic_write_text
from training.config import DataConfig
from training.data.corpus import SPLITS, load_corpus

DEFAULT_SPLITS = {"tinyshakespeare": [0.9, 0.1, 0.0]}  # the nanoGPT split; others default to 70/15/15


def prepare_data(source: str, out: str, cleaner: str | None = None, split: list[float] | None = None,
                 include: list[str] | None = None, exclude: list[str] | None = None) -> dict:
    fractions = split or DEFAULT_SPLITS.get(source, [0.7, 0.15, 0.15])
    if cleaner is None:
        cleaner = "none" if source.startswith("wikitext") else "default"
    corpus = load_corpus(DataConfig(source=source, cleaner=cleaner, split=fractions, include=list(include or []),
                                    exclude=list(exclude or [])))
    corpus.check_not_empty()
    target = Path(out)
    summary = {"source": corpus.source, "cleaner": cleaner, "split": corpus.split, "read": corpus.read, "files": {}}
    for name in SPLITS:
        part = corpus.part(name)
        if not part.characters and name == "test":
            continue
        characters = lines = 0
        with atomic_file(target / f"{name}.txt") as f:
            for chunk in part.chunks():
                f.write(chunk.encode("utf-8"))
                characters += len(chunk)
                lines += chunk.count("\n")
        summary["files"][f"{name}.txt"] = {"characters": characters, "lines": lines}
    atomic_write_text(target / "prepare.json", json.dumps(summary, indent=2) + "\n")
    return summary
