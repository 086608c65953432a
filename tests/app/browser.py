"""Which Chromium the browser tests drive, and getting one onto a fresh machine.

The tests take, in this order: `$CHROMIUM` when it is set; Playwright's own build when `python -m playwright install
chromium` has put it in place; the system's Chromium (`chromium`, `chromium-browser`, `google-chrome` on PATH).
A candidate counts only if `--version` runs (a download without its system libraries does not).

`python -m tests.app.browser` (the first step of `make test`) gets one where none is found, the way the machine
allows: Playwright's download where the network reaches it; otherwise, as root with apt-get, Debian's `chromium`
package. It prints one line: the browser the tests will drive, or why they will be skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Headless in a container: no sandbox (often unavailable), no GPU, and no calls home or updates mid-test.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NONE_FOUND = ("no Chromium: neither Playwright's (python -m playwright install chromium) nor the system's "
              "(apt-get install chromium)")
INSTALL_TIMEOUT_S = 900


def find_chromium() -> tuple[Path | None, str]:
    """(the executable, what it is), or (None, why there is none)."""
    configured = os.environ.get("CHROMIUM")
    if configured:
        path = Path(configured)
        if _runs(path):
            return path, f"$CHROMIUM ({path})"
        return None, f"CHROMIUM={configured} is not a Chromium that runs"
    if not _playwright_installed():
        return None, "the playwright Python package is not installed (pip install -r requirements-dev.txt)"
    own = _playwright_chromium()
    if own is not None and _runs(own):
        return own, f"Playwright's Chromium ({own})"
    for name in SYSTEM_NAMES:
        found = shutil.which(name)
        if found and _runs(Path(found)):
            return Path(found), f"the system's Chromium ({found})"
    return None, NONE_FOUND


def ensure_chromium() -> tuple[Path | None, str]:
    """find_chromium, after installing one where none is found and the machine allows it."""
    path, what = find_chromium()
    if path is not None or os.environ.get("CHROMIUM") or not _playwright_installed():
        return path, what
    tried = []
    for name, commands, env in _installers():
        if all(_install(command, env) for command in commands):
            path, what = find_chromium()
            if path is not None:
                return path, what
            tried.append(f"{name} gave a Chromium that does not run here (system libraries missing?)")
        else:
            tried.append(f"{name} failed")
    return None, f"{NONE_FOUND}; {'; '.join(tried)}"


def _installers() -> list[tuple[str, list[list[str]], dict[str, str] | None]]:
    """(name, commands, environment) of each way this machine may get a Chromium, in order of preference."""
    installers = [("Playwright's download (needs its CDN)",
                   [[sys.executable, "-m", "playwright", "install", "chromium"]], None)]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        installers.append(("apt-get install chromium",
                           [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]],
                           {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}))
    return installers


def _playwright_installed() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def _playwright_chromium() -> Path | None:
    """Where Playwright keeps its own Chromium for this version (whether or not it is there)."""
    from playwright.sync_api import Error, sync_playwright

    try:
        with sync_playwright() as playwright:
            return Path(playwright.chromium.executable_path)
    except Error:  # a platform Playwright ships no build for
        return None


def _runs(path: Path) -> bool:
    try:
        return subprocess.run([str(path), "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _install(command: list[str], env: dict[str, str] | None = None) -> bool:
    print(f"browser tests: {' '.join(command)}", flush=True)
    try:
        return subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=INSTALL_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main() -> int:
    path, what = ensure_chromium()
    print(f"browser tests: {'will use ' + what if path else 'will be skipped: ' + what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
