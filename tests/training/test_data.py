"""Data sources, splits, the token cache and downloads (with the network monkeypatched)."""

from __future__ import annotations

import hashlib
import urllib.error

import numpy as np
import pytest

from lm.tokenizers import train_tokenizer
from tests.training.conftest import ROOT
from training.cli import main
from training.config import DataConfig
from training.data import corpora
from training.data import corpus as corpus_module
from training.data.cleaners import get_cleaner
from training.data.corpus import CleanedText, DataError, Part, load_corpus, load_whole, split_text
from training.data.sources import memory_source
from training.data.token_cache import encode_part, encode_parts


def test_nanogpt_split_sizes():
    text = "x" * 1_115_394  # TinyShakespeare's length
    train, valid, test = split_text(text, [0.9, 0.1])
    assert (len(train), len(valid), len(test)) == (1_003_854, 111_540, 0)


def test_three_way_split_is_contiguous():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    train, valid, test = split_text(text, [0.7, 0.15, 0.15])
    assert (len(train), len(valid), len(test)) == (700, 150, 150)
    assert train + valid + test == text


def test_text_file_source(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("line\n" * 200)
    corpus = load_corpus(DataConfig(source=str(path), split=[0.5, 0.25, 0.25]))
    assert [len(corpus.text(s)) for s in ("train", "valid", "test")] == [500, 250, 250]
    assert "train [0%, 50%)" in corpus.split


def test_directory_of_txt_files_is_recursive_and_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "b" / "c.txt").write_text("gamma\n")
    (tmp_path / "b" / "skip.md").write_text("not text\n")
    text = load_whole(str(tmp_path)).read()
    assert text == "alpha\n\ngamma\n"


@pytest.mark.parametrize("names", [("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
                                   ("train.txt", "valid.txt", "test.txt")])
def test_wikitext_layout_uses_the_given_files(tmp_path, names):
    for name, content in zip(names, ("train words\n", "valid words\n", "test words\n")):
        (tmp_path / name).write_text(content)
    corpus = load_corpus(DataConfig(source=str(tmp_path), cleaner="none"))
    assert [corpus.text(s) for s in ("train", "valid", "test")] == ["train words\n", "valid words\n", "test words\n"]


def test_synthetic_source_is_deterministic():
    a = load_corpus(DataConfig(source="synthetic", synthetic_chars=5000), seed=3)
    b = load_corpus(DataConfig(source="synthetic", synthetic_chars=5000), seed=3)
    assert a.text("train") == b.text("train") and len(a.text("train")) == 4500


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        load_corpus(DataConfig(source=str(tmp_path / "nope.txt")))


def test_hf_source_without_datasets_package_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DataError, match="pip install datasets"):
        load_corpus(DataConfig(source="hf:wikitext:wikitext-2-raw-v1"))


def _offline(monkeypatch):
    def refuse(url, timeout=30.0):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(corpora, "_fetch_url", refuse)


def test_offline_download_says_where_to_put_the_file(monkeypatch, cache_dir):
    _offline(monkeypatch)
    with pytest.raises(DataError) as info:
        load_corpus(DataConfig(source="tinyshakespeare"))
    message = str(info.value)
    assert "cannot download tinyshakespeare" in message and "offline" in message
    assert str(cache_dir / "tinyshakespeare" / "input.txt") in message and "\n" not in message


def test_offline_prepare_data_cli_is_one_line_exit_1(monkeypatch, tmp_path, capsys):
    _offline(monkeypatch)
    assert main(["prepare-data", "--source", "wikitext2", "--out", str(tmp_path / "wt2")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "wikitext2" in err and "train.txt" in err and "Traceback" not in err


def test_download_is_cached(monkeypatch, tmp_path):
    calls = []

    def fake(url, timeout=30.0):
        calls.append(url)
        return b"To be, or not to be.\n" * 100

    monkeypatch.setattr(corpora, "_fetch_url", fake)
    first = load_corpus(DataConfig(source="tinyshakespeare"))
    second = load_corpus(DataConfig(source="tinyshakespeare"))
    assert len(calls) == 1 and "karpathy/char-rnn" in calls[0]
    assert first.text("train") == second.text("train") and first.text("train").startswith("To be")


def test_scriptorium_data_directory_is_searched(monkeypatch, tmp_path):
    _offline(monkeypatch)
    (tmp_path / "tinyshakespeare.txt").write_text("Local copy.\n" * 50)
    monkeypatch.setenv("SCRIPTORIUM_DATA", str(tmp_path))
    assert load_corpus(DataConfig(source="tinyshakespeare")).text("train").startswith("Local copy.")


def test_data_directory_override_finds_the_named_corpus(monkeypatch, tmp_path):
    _offline(monkeypatch)
    (tmp_path / "tinyshakespeare.txt").write_text("From --data.\n" * 50)
    (tmp_path / "other.txt").write_text("unrelated\n")
    corpus = load_corpus(DataConfig(source="tinyshakespeare"), data=str(tmp_path))
    assert corpus.text("train").startswith("From --data.")
    assert "unrelated" not in corpus.text("train") + corpus.text("valid")


def test_prepare_data_writes_a_wikitext_layout(tmp_path, capsys):
    source = tmp_path / "book.txt"
    source.write_text("ROMEO:\nBut soft!\n" * 100)
    out = tmp_path / "prepared"
    assert main(["prepare-data", "--source", str(source), "--cleaner", "dialogue", "--split", "0.8,0.1,0.1",
                 "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"train.txt", "valid.txt", "test.txt", "prepare.json"}
    assert "ROMEO" not in (out / "train.txt").read_text()
    corpus = load_corpus(DataConfig(source=str(out)))
    assert corpus.split == "given train/valid/test files"


def _part(text: str) -> Part:
    return Part(CleanedText(memory_source("test", lambda: [text]), "default"), "whole")


def test_token_cache_reuses_and_keys_by_tokenizer(tmp_path):
    text = "hello world\n" * 50
    char = train_tokenizer("char", text)
    first = encode_part(_part(text), char, tmp_path)
    second = encode_part(_part(text), char, tmp_path)
    assert isinstance(first, np.memmap) and first.filename == second.filename and first.dtype == np.uint16
    assert first.tolist() == char.encode(text)
    word = train_tokenizer("word", text)
    assert encode_part(_part(text), word, tmp_path).filename != first.filename
    assert encode_part(_part(text + "!"), char, tmp_path).filename != first.filename


def test_parts_encoded_together_read_the_text_once_and_match_each_part(monkeypatch, tmp_path):
    raw = "".join(f"ROMEO {i}:\n  But soft, what light through yonder window {i * 7} breaks?\n\n" for i in range(300))
    path = tmp_path / "play.txt"
    path.write_text(raw, encoding="utf-8")
    monkeypatch.setattr(corpus_module, "READ_CHUNK", 777)
    monkeypatch.setattr(corpus_module, "CLEAN_CHUNK", 500)
    corpus = load_corpus(DataConfig(source=str(path), split=[0.7, 0.2, 0.1]))
    corpus.text("train")  # counts the characters (one pass) before the passes counted below
    tokenizer = train_tokenizer("bpe", corpus.text("train"), vocab_size=300)
    passes = []
    chunks = CleanedText.chunks
    monkeypatch.setattr(CleanedText, "chunks", lambda self, start=0, end=None: (passes.append(start),
                                                                                 chunks(self, start, end))[1])
    parts = [corpus.part("valid"), corpus.part("train"), corpus.part("test")]  # any order
    ids = encode_parts(parts, tokenizer, tmp_path)
    assert passes == [0]  # valid and test did not read the train part's text again
    passes.clear()
    for part, got in zip(parts, ids):  # the ids each part gets encoded on its own
        assert got.tolist() == encode_part(part, tokenizer, tmp_path / "alone").tolist()
    again = encode_parts(parts, tokenizer, tmp_path)  # cached: nothing read
    assert [a.filename for a in again] == [i.filename for i in ids]


def test_parts_of_split_files_are_encoded_each_from_its_own_file(tmp_path):
    for name, text in (("train", "alpha beta gamma\n" * 40), ("valid", "beta gamma\n" * 10)):
        (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
    corpus = load_corpus(DataConfig(source=str(tmp_path)))
    char = train_tokenizer("char", corpus.text("train"))
    train, valid = encode_parts([corpus.part("train"), corpus.part("valid")], char, tmp_path / "cache")
    assert train.tolist() == char.encode(corpus.text("train")) and valid.tolist() == char.encode(corpus.text("valid"))


TINYSHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
# sha256 of the [0, 90%) and [90%, 100%) parts as the whole-text reader made them before the corpus was streamed
TINYSHAKESPEARE_PARTS = {
    "train": (1_003_854, "a9e24e23a1ec77744dad26844bfd5a09b6e041954e1eef0000e7f24cba6db735"),
    "valid": (111_540, "c54f3753a4e6e3c3d1759212815a7caf826e68a33021b25312984400bed40a1f"),
}


def _digest(part) -> tuple[int, str]:
    digest, characters = hashlib.sha256(), 0
    for chunk in part.chunks():
        digest.update(chunk.encode("utf-8"))
        characters += len(chunk)
    return characters, digest.hexdigest()


@pytest.mark.skipif(not TINYSHAKESPEARE.is_file(), reason="needs ../shared/data/tinyshakespeare.txt")
@pytest.mark.parametrize("read, clean", [(corpus_module.READ_CHUNK, corpus_module.CLEAN_CHUNK), (4093, 1000)])
def test_tinyshakespeare_parts_are_byte_identical_to_the_whole_text_split(monkeypatch, read, clean):
    monkeypatch.setattr(corpus_module, "READ_CHUNK", read)
    monkeypatch.setattr(corpus_module, "CLEAN_CHUNK", clean)
    corpus = load_corpus(DataConfig(source=str(TINYSHAKESPEARE), split=[0.9, 0.1]))
    assert {split: _digest(corpus.part(split)) for split in ("train", "valid")} == TINYSHAKESPEARE_PARTS
    assert corpus.characters("test") == 0


@pytest.mark.parametrize("cleaner", ["default", "none", "wikipedia", "dialogue"])
def test_streamed_parts_are_the_parts_of_the_whole_cleaned_text(monkeypatch, tmp_path, cleaner):
    raw = "".join(f"\ufeffROMEO {i}:\r\n  But soft!\x07 = = H{i} = = \r\n\r\n\r\n[aside] Mrs. Smith: line {i}\n"
                  for i in range(400))
    path = tmp_path / "messy.txt"
    path.write_bytes(raw.encode("utf-8"))
    expected = split_text(get_cleaner(cleaner)(path.read_text(encoding="utf-8")), [0.7, 0.2, 0.1])
    monkeypatch.setattr(corpus_module, "READ_CHUNK", 777)
    monkeypatch.setattr(corpus_module, "CLEAN_CHUNK", 500)
    corpus = load_corpus(DataConfig(source=str(path), cleaner=cleaner, split=[0.7, 0.2, 0.1]))
    assert tuple(corpus.text(split) for split in ("train", "valid", "test")) == expected
