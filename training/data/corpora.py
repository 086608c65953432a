"""Public corpora by name: where they live online, where a local copy is looked for, and the download cache.

A corpus is looked up, in order, in `$SCRIPTORIUM_DATA` (a file or a directory), in the cache
(`$SCRIPTORIUM_CACHE`, default `~/.cache/scriptorium`), then downloaded from its public address into the cache.
Offline with no local copy, `CorpusUnavailable` says where to put the file.
"""

from __future__ import annotations

import io
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lm.atomic import atomic_write_bytes
from lm.cache import cache_dir

SPLITS = ("train", "valid", "test")


class CorpusUnavailable(ValueError):
    """A named corpus is neither on disk nor downloadable."""


@dataclass(frozen=True)
class KnownCorpus:
    name: str
    description: str
    licence: str
    urls: dict[str, str]  # file name in the cache -> public address
    local_names: tuple[str, ...]  # names a local copy may have under $SCRIPTORIUM_DATA
    zip_members: dict[str, str] | None = None  # cache file name -> member of the downloaded zip


KNOWN_CORPORA: dict[str, KnownCorpus] = {
    "tinyshakespeare": KnownCorpus(
        "tinyshakespeare",
        "40,000 lines of Shakespeare (Karpathy's char-rnn corpus), 1.1 MB",
        "public domain text",
        {"input.txt": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"},
        ("tinyshakespeare.txt", "tinyshakespeare/input.txt", "input.txt"),
    ),
    "wikitext2": KnownCorpus(
        "wikitext2",
        "WikiText-2 (Merity et al. 2016), tokenised, ~2M training words",
        "CC BY-SA 3.0",
        {
            f"{split}.txt": "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/"
            f"wikitext-2/{split}.txt"
            for split in SPLITS
        },
        ("wikitext-2", "wikitext2", "wikitext-2-v1"),
    ),
    "wikitext103": KnownCorpus(
        "wikitext103",
        "WikiText-103 (Merity et al. 2016), tokenised, ~103M training words",
        "CC BY-SA 3.0",
        {"wikitext-103-v1.zip": "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip"},
        ("wikitext-103", "wikitext103", "wikitext-103-v1"),
        zip_members={f"{split}.txt": f"wikitext-103/wiki.{split}.tokens" for split in SPLITS},
    ),
}

# Names a WikiText-style directory may use for its three splits.
SPLIT_FILE_NAMES = {
    "train": ("wiki.train.tokens", "train.txt", "wiki.train.raw"),
    "valid": ("wiki.valid.tokens", "valid.txt", "validation.txt", "wiki.valid.raw"),
    "test": ("wiki.test.tokens", "test.txt", "wiki.test.raw"),
}


def split_files(directory: Path) -> dict[str, Path] | None:
    """The train/valid(/test) files of a WikiText-style directory, or None if it is not one."""
    found = {}
    for split, names in SPLIT_FILE_NAMES.items():
        for name in names:
            if (directory / name).is_file():
                found[split] = directory / name
                break
    return found if "train" in found and "valid" in found else None


def find_local(corpus: KnownCorpus, root: Path) -> Path | dict[str, Path] | None:
    """A local copy of `corpus` at or under `root` (the file itself, or a directory holding it)."""
    single = "input.txt" in corpus.urls
    if root.is_file():
        return root if single else None
    candidates = [root / name for name in corpus.local_names] + [root]
    for candidate in candidates:
        if single and candidate.is_file():
            return candidate
        if not single and candidate.is_dir():
            files = split_files(candidate)
            if files:
                return files
    return None


def fetch(name: str) -> Path | dict[str, Path]:
    """A named corpus as one file (tinyshakespeare) or a dict of split files (wikitext), downloading if needed."""
    corpus = KNOWN_CORPORA[name]
    env = os.environ.get("SCRIPTORIUM_DATA")
    if env:
        local = find_local(corpus, Path(env))
        if local:
            return local
    target = cache_dir() / name
    wanted = list(corpus.zip_members or corpus.urls)
    if not all((target / f).is_file() for f in wanted):
        _download(corpus, target)
    if "input.txt" in corpus.urls:
        return target / "input.txt"
    return {split: target / f"{split}.txt" for split in SPLITS}


def _download(corpus: KnownCorpus, target: Path) -> None:
    for file_name, url in corpus.urls.items():
        if (target / file_name).is_file() or (corpus.zip_members and _have_members(corpus, target)):
            continue
        try:
            data = _fetch_url(url)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            where = target / (next(iter(corpus.zip_members)) if corpus.zip_members else file_name)
            hint = (
                f"put the file at {where}"
                if not corpus.zip_members and len(corpus.urls) == 1
                else f"put {', '.join(corpus.zip_members or corpus.urls)} in {target}"
            )
            raise CorpusUnavailable(
                f"cannot download {corpus.name} from {url} ({reason}); offline? {hint}, "
                f"or set SCRIPTORIUM_DATA to a directory holding it, or pass the path with --data"
            ) from None
        if corpus.zip_members:
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for out_name, member in corpus.zip_members.items():
                    with archive.open(member) as src, open(target / f".{out_name}.part", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(target / f".{out_name}.part", target / out_name)
        else:
            atomic_write_bytes(target / file_name, data)


def _have_members(corpus: KnownCorpus, target: Path) -> bool:
    return all((target / name).is_file() for name in corpus.zip_members or {})


def _fetch_url(url: str, timeout: float = 30.0) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "scriptorium-training"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()
