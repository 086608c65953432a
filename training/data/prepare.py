"""`python -m training prepare-data`: fetch or read a corpus, clean it, split it, write train/valid/test files.

The output directory has the WikiText layout (train.txt, valid.txt, test.txt), so `--data DIR` reads it back
with the split exactly as written.
"""

from __future__ import annotations

import json
from pathlib import Path

from lm.atomic import atomic_write_text
from training.config import DataConfig
from training.data.corpus import load_corpus

DEFAULT_SPLITS = {"tinyshakespeare": [0.9, 0.1, 0.0]}  # the nanoGPT split; others default to 70/15/15


def prepare_data(source: str, out: str, cleaner: str | None = None, split: list[float] | None = None) -> dict:
    fractions = split or DEFAULT_SPLITS.get(source, [0.7, 0.15, 0.15])
    if cleaner is None:
        cleaner = "none" if source.startswith("wikitext") else "default"
    corpus = load_corpus(DataConfig(source=source, cleaner=cleaner, split=fractions))
    target = Path(out)
    summary = {"source": corpus.source, "cleaner": cleaner, "split": corpus.split, "files": {}}
    for name in ("train", "valid", "test"):
        text = corpus.part(name)
        if not text and name == "test":
            continue
        atomic_write_text(target / f"{name}.txt", text)
        summary["files"][f"{name}.txt"] = {"characters": len(text), "lines": text.count("\n")}
    atomic_write_text(target / "prepare.json", json.dumps(summary, indent=2) + "\n")
    return summary
