"""lm/atomic.py: a reader sees the old file or the new one, never a half-written one."""

import pytest

from lm.atomic import atomic_file, atomic_write_text


def test_a_file_written_in_steps_appears_whole_when_done(tmp_path):
    path = tmp_path / "ids.bin"
    with atomic_file(path) as f:
        f.write(b"first ")
        assert not path.exists()  # nothing at the path until the block ends
        f.write(b"second")
    assert path.read_bytes() == b"first second"
    assert [p.name for p in tmp_path.iterdir()] == ["ids.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "ids.bin"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write(b"half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["ids.bin"]
