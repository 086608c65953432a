"""Corpora: read a data source, clean it and split it into train / valid / test text.

Sources (`data.source` or `--data`):
- a known corpus name: `tinyshakespeare`, `wikitext2`, `wikitext103` (local copy or download, see corpora.py);
- a text file, split by `data.split` fractions into contiguous parts;
- a directory with train/valid(/test) files (WikiText layout: wiki.train.tokens ... or train.txt ...);
- any other directory: every `.txt` file below it, in sorted path order, joined, then split by fractions;
- `hf:NAME[:CONFIG]`: a Hugging Face dataset (needs the optional `datasets` package and a network);
- `synthetic`: a generated corpus for smoke tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.config import DataConfig
from training.data import corpora
from training.data.cleaners import get_cleaner
from training.data.synthetic import synthetic_text


class DataError(ValueError):
    """A data source that cannot be read; the message is one line naming the source."""


@dataclass
class Corpus:
    train: str
    valid: str
    test: str = ""
    source: str = ""
    split: str = ""  # how the parts were made, for the model card and config.json
    files: list[str] = field(default_factory=list)

    def part(self, name: str) -> str:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"split must be train, valid or test, got {name!r}")
        return getattr(self, name)


def split_text(text: str, fractions: list[float]) -> tuple[str, str, str]:
    """Contiguous parts: characters [0, f0), [f0, f0 + f1), [f0 + f1, f0 + f1 + f2) of the text."""
    n = len(text)
    fractions = list(fractions) + [0.0] * (3 - len(fractions))
    a = int(n * fractions[0])
    b = int(n * (fractions[0] + fractions[1]))
    c = int(n * min(1.0, sum(fractions))) if fractions[2] > 0 else b
    return text[:a], text[a:b], text[b:c]


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def text_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.txt") if p.is_file())


def resolve_source(config: DataConfig, data: str | None = None) -> str | Path | dict[str, Path]:
    """What to read: a corpus name, a file, or a dict of split files.

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
                return local
        files = corpora.split_files(path)
        if files:
            return files
    return path


def load_corpus(config: DataConfig, data: str | None = None, seed: int = 0) -> Corpus:
    """Read, clean and split the configured source (or `data`, the --data override)."""
    clean = get_cleaner(config.cleaner)
    resolved = resolve_source(config, data)
    if resolved == "synthetic":
        train, valid, test = split_text(clean(synthetic_text(config.synthetic_chars, seed)), config.split)
        return Corpus(train, valid, test, source="synthetic", split=_describe_split(config.split))
    if isinstance(resolved, str) and resolved.startswith("hf:"):
        return _load_hf(resolved, config, clean)
    if isinstance(resolved, str):  # a known corpus name
        try:
            resolved = corpora.fetch(resolved)
        except corpora.CorpusUnavailable as exc:
            raise DataError(str(exc)) from None
        source_name = config.source if data is None else str(data)
    else:
        source_name = str(data if data is not None else config.source)
    if isinstance(resolved, dict):
        parts = {name: clean(read_text(path)) for name, path in resolved.items()}
        return Corpus(
            parts["train"], parts["valid"], parts.get("test", ""), source=source_name,
            split="given train/valid/test files", files=[str(p) for p in resolved.values()],
        )
    if resolved.is_dir():
        files = text_files(resolved)
        if not files:
            raise DataError(f"data source {resolved}: no .txt files in this directory")
        text = "\n".join(read_text(p) for p in files)
    else:
        files = [resolved]
        text = read_text(resolved)
    text = clean(text)
    if not text.strip():
        raise DataError(f"data source {source_name}: no text left after the {config.cleaner!r} cleaner")
    train, valid, test = split_text(text, config.split)
    return Corpus(train, valid, test, source=source_name, split=_describe_split(config.split),
                  files=[str(p) for p in files])


def load_text(source: str, cleaner: str = "default") -> str:
    """All the text of a source (file, directory, corpus name) with no split: for evaluate and train-tokenizer."""
    config = DataConfig(source=source, cleaner=cleaner, split=[1.0, 0.0, 0.0])
    resolved = resolve_source(config)
    if isinstance(resolved, str) and resolved in corpora.KNOWN_CORPORA:
        try:
            resolved = corpora.fetch(resolved)
        except corpora.CorpusUnavailable as exc:
            raise DataError(str(exc)) from None
    clean = get_cleaner(cleaner)
    if resolved == "synthetic":
        return clean(synthetic_text(config.synthetic_chars))
    if isinstance(resolved, str):
        corpus = _load_hf(resolved, config, clean)
        return corpus.train + corpus.valid + corpus.test
    if isinstance(resolved, dict):
        return "\n".join(clean(read_text(resolved[name])) for name in ("train", "valid", "test") if name in resolved)
    if resolved.is_dir():
        files = text_files(resolved)
        if not files:
            raise DataError(f"data source {resolved}: no .txt files in this directory")
        return clean("\n".join(read_text(p) for p in files))
    return clean(read_text(resolved))


def _describe_split(fractions: list[float]) -> str:
    start, out = 0.0, []
    for name, f in zip(("train", "valid", "test"), fractions):
        if f > 0:
            out.append(f"{name} [{start:.0%}, {start + f:.0%})")
        start += f
    return "contiguous characters: " + ", ".join(out)


def _load_hf(spec: str, config: DataConfig, clean) -> Corpus:
    """`hf:NAME[:CONFIG]` through the optional `datasets` package."""
    name, _, subset = spec[3:].partition(":")
    try:
        import datasets  # optional: not in requirements.txt
    except ImportError:
        raise DataError(f"data source {spec}: needs the `datasets` package (pip install datasets)") from None
    try:
        dataset = datasets.load_dataset(name, subset or None)
    except Exception as exc:  # network, unknown name, auth: datasets raises many kinds
        raise DataError(f"data source {spec}: cannot load: {str(exc).splitlines()[0] if str(exc) else exc}") from None

    def join(split) -> str:
        columns = [c for c, f in split.features.items() if getattr(f, "dtype", None) == "string"]
        if not columns:
            raise DataError(f"data source {spec}: no text column")
        column = "text" if "text" in columns else columns[0]
        return clean("\n".join(split[column]))

    splits = {"valid" if k == "validation" else k: v for k, v in dataset.items()}
    if "train" in splits and "valid" in splits:
        return Corpus(join(splits["train"]), join(splits["valid"]),
                      join(splits["test"]) if "test" in splits else "", source=spec, split="dataset splits")
    first = splits.get("train") or next(iter(splits.values()))
    train, valid, test = split_text(join(first), config.split)
    return Corpus(train, valid, test, source=spec, split=_describe_split(config.split))
