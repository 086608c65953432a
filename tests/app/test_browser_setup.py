"""Which Chromium the browser tests use, and the one line a run without one ends with."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.browser import find_chromium

ROOT = Path(__file__).resolve().parents[2]


def _script(path: Path, status: int) -> Path:
    path.write_text(f"#!/bin/sh\necho 'Chromium 1.0'\nexit {status}\n")
    path.chmod(0o755)
    return path


def test_chromium_variable_is_taken_when_it_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CHROMIUM", str(_script(tmp_path / "chromium", 0)))
    assert find_chromium() == (tmp_path / "chromium", f"$CHROMIUM ({tmp_path / 'chromium'})")
    monkeypatch.setenv("CHROMIUM", str(_script(tmp_path / "broken", 127)))
    assert find_chromium() == (None, f"CHROMIUM={tmp_path / 'broken'} is not a Chromium that runs")


@pytest.mark.slow
def test_a_run_without_chromium_ends_with_one_line_saying_why():
    env = {**os.environ, "CHROMIUM": "/nonexistent/chromium"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/app/test_app_browser.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("browser tests skipped")]
    assert len(lines) == 1
    assert re.fullmatch(r"browser tests skipped \(\d+ of tests/app/test_app_browser.py\): "
                        r"CHROMIUM=/nonexistent/chromium is not a Chromium that runs; "
                        r"`make test` installs one where the machine allows", lines[0])
