"""Crash-safe writes: a reader sees the old file (or directory) or the new one, never a half-written one."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_RENAME_EXCHANGE = 2  # from <linux/fs.h>


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open directories; its renames are durable enough here
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write in steps (a corpus too large to hold): a temporary file beside `path`, flushed to disk
    and renamed over `path` when the block ends; removed, leaving `path` as it was, if the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_staging_dir(target: str | os.PathLike) -> Path:
    """An empty directory beside `target` (same filesystem, so it can be renamed onto it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a model directory is meant to be shared
    return staging


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2). False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _link_tree(src: Path, dst: Path) -> None:
    """Mirror `src` into `dst` with hard links (no data copied); copies where links are not possible."""
    if src.is_dir() and not src.is_symlink():
        dst.mkdir()
        for child in src.iterdir():
            _link_tree(child, dst / child.name)
    else:
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:
            shutil.copy2(src, dst, follow_symlinks=False)


def replace_directory(new_dir: str | os.PathLike, target: str | os.PathLike, keep: bool = True) -> None:
    """Atomically make the fully written `new_dir` become `target`.

    With `keep`, entries of the old `target` that `new_dir` does not have (a model card, metrics, the trainer's
    resume folder) carry over, hard-linked so nothing is copied. On Linux the swap is a single
    renameat2(RENAME_EXCHANGE): at every instant `target` is either the complete old or the complete new directory.
    """
    new_dir, target = Path(new_dir), Path(target)
    file_mode = 0o666 & ~_umask()
    for root, _dirs, files in os.walk(new_dir):
        for name in files:
            file = Path(root) / name
            file.chmod(file_mode)  # some writers (safetensors) create files readable by their owner only
            with open(file, "rb") as f:
                os.fsync(f.fileno())
    if not target.exists():
        os.rename(new_dir, target)
        _fsync_dir(target.parent)
        return
    if keep:
        for entry in target.iterdir():
            if not (new_dir / entry.name).exists() and not entry.name.endswith(".tmp"):
                _link_tree(entry, new_dir / entry.name)
    if _exchange(new_dir, target):
        shutil.rmtree(new_dir, ignore_errors=True)  # now holds the old contents
    else:
        old = make_staging_dir(target)
        os.rmdir(old)
        os.rename(target, old)
        os.rename(new_dir, target)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)
