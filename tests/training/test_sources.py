"""The user's own files: --include / --exclude over a directory, files that are not text, empty files."""

from __future__ import annotations

import pytest

from tests.training.conftest import run_cli
from training.cli import main
from training.config import DataConfig
from training.data.corpus import load_corpus, load_whole
from training.data.sources import PROBE_BYTES, DataError, directory_source, file_source, not_text


@pytest.fixture()
def project(tmp_path):
    """A small source tree: code, docs, notes, an image and a Latin-1 file."""
    root = tmp_path / "project"
    for name, text in {"a.py": "print('a')\n", "b.md": "# B\n", "c.txt": "notes\n", "sub/d.py": "x = 1\n",
                       "tests/e.py": "assert True\n"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (root / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    return root


def test_include_and_exclude_choose_the_files_in_path_order(project):
    source = directory_source(project, include=["*.py", "*.md"], exclude=["tests/*"])
    assert [p.relative_to(project).as_posix() for p in source.files] == ["a.py", "b.md", "sub/d.py"]
    assert [p.name for p in source.skipped] == ["latin1.py"]  # matched, but not UTF-8 text
    assert load_whole(str(project), include=["*.py", "*.md"], exclude=["tests/*"]).read() == \
        "print('a')\n\n# B\n\nx = 1\n"


def test_without_include_a_directory_is_its_txt_files(project):
    assert [p.name for p in directory_source(project).files] == ["c.txt"]


def test_every_file_that_is_not_text_is_skipped_with_a_note(project):
    part = load_whole(str(project), include=["*"])
    assert {p.name for p in part.text.source.skipped} == {"img.png", "latin1.py"}
    assert "skipped 2 not UTF-8 text" in part.description and "5 files, 39 bytes" in part.description
    assert "PNG" not in part.read()


def test_a_character_cut_by_the_end_of_the_probe_is_still_text(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(b"a" * (PROBE_BYTES - 1) + "é and more\n".encode())  # é's two bytes straddle the probe's end
    assert not_text(path) is None
    path.write_bytes(b"a" * (PROBE_BYTES - 1) + b"\xff more\n")
    assert not_text(path) == "bytes that are not UTF-8"


def test_a_binary_or_empty_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match=r"not UTF-8 text \(a NUL byte in its first 8 KB\)"):
        file_source(tmp_path / "model.bin")
    with pytest.raises(DataError, match="the file is empty"):
        file_source(tmp_path / "empty.txt")


def test_a_directory_with_nothing_to_read_says_why(project):
    with pytest.raises(DataError, match=r"no files matching --include \*\.rs in this directory"):
        directory_source(project, include=["*.rs"])
    with pytest.raises(DataError, match=r"\(1 not UTF-8 text\)"):
        directory_source(project, include=["*.png"])


@pytest.mark.parametrize("name, content, message", [("data.bin", b"\0" * 64, "not UTF-8 text"),
                                                    ("empty.txt", b"", "the file is empty")])
def test_cli_bad_data_file_is_one_line_exit_1(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["train-tokenizer", "--data", str(path), "--kind", "char", "--output", str(tmp_path / "t.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "t.json").exists()


def test_cli_train_tokenizer_reads_the_included_files_and_counts_them(project, tmp_path):
    result = run_cli("train-tokenizer", "--data", str(project), "--include", "*.py", "--exclude", "tests/*",
                     "--kind", "char", "--output", str(tmp_path / "tok.json"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "read 2 files" in result.stderr and "skipped 1 not UTF-8 text (binary?): latin1.py" in result.stderr
    assert "learned from the character counts of all 18 characters of the whole text" in result.stderr


def test_train_config_records_include_and_exclude(project):
    corpus = load_corpus(DataConfig(source=str(project), include=["*.py"], exclude=["sub/*"], split=[0.5, 0.5]))
    assert [p.rsplit("/", 1)[-1] for p in corpus.files] == ["a.py", "e.py"]
    assert corpus.text("train") + corpus.text("valid") == "print('a')\n\nassert True\n"
