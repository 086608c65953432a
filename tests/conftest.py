"""Fixtures for every test: an isolated Scriptorium cache (downloads, token ids, matmul probe results)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scriptorium-cache")


@pytest.fixture(autouse=True)
def _isolated_env(cache_dir, monkeypatch):
    """Never touch the user's ~/.cache or their SCRIPTORIUM_DATA; share one cache across the session."""
    monkeypatch.setenv("SCRIPTORIUM_CACHE", str(cache_dir))
    monkeypatch.delenv("SCRIPTORIUM_DATA", raising=False)
