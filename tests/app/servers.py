"""Real servers as subprocesses on loopback, for the tests that speak HTTP to them (servers, browser)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"
# The Dockerfile's CMD, word for word.
IMAGE_COMMAND = ["gunicorn", "-c", "gunicorn.conf.py"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(kind: str) -> list[str]:
    if kind == "waitress":
        return [sys.executable, "app.py"]
    return [str(GUNICORN), *IMAGE_COMMAND[1:]]


def server_env(models_dir: Path, port: int, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEFAULT_MODEL", "BIND", "WEB_CONCURRENCY")}
    env.update(
        {
            "MODEL_DIR": str(models_dir),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "MAX_NEW_TOKENS": "40",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
            **settings,
        }
    )
    return env


class Server:
    def __init__(self, kind: str, models_dir: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(models_dir.parent / f"{kind}-{self.port}.log", "w+b")
        self.process = subprocess.Popen(
            server_command(kind),
            cwd=REPO,
            env=server_env(models_dir, self.port, **settings),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_up(kind)
        except BaseException as error:
            # Whatever went wrong (including Ctrl+C), never leave a server running behind the tests.
            output = self.output()
            self.stop()
            raise AssertionError(f"{kind} did not come up ({error!r}):\n{output}") from None

    def _wait_until_up(self, kind: str) -> None:
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{kind} exited with {self.process.returncode}")
            try:
                if requests.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or the worker is still booting
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} did not answer /health in 90 s")
            time.sleep(0.2)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
