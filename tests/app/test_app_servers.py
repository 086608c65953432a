"""The real servers, as subprocesses on loopback: `python app.py` (waitress, what `make run` runs) and
the Docker
image's command `gunicorn -c gunicorn.conf.py`, spoken to over HTTP."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

requests = pytest.importorskip("requests")

from tests.app.servers import GUNICORN, REPO, Server, free_port, server_command, server_env  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(params=["waitress", "gunicorn"])
def server_kind(request):
    if request.param == "gunicorn" and not GUNICORN.exists():
        pytest.skip("gunicorn is not installed (it does not run on Windows)")
    return request.param


def read_events(response):
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            yield json.loads(line[len("data: ") :])


def test_streams_a_generation_over_http(server_kind, models_dir):
    server = Server(server_kind, models_dir)
    try:
        with requests.post(
            server.url + "/generate",
            data='{"prompt": "ROMEO:", "max_new_tokens": 20, "stream": true}',
            stream=True,
            timeout=30,
        ) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = list(read_events(response))
        *tokens, done = events
        assert done["done"] and len(tokens) == done["generated_tokens"] > 0
        assert "".join(e["token"]["text"] for e in tokens) == done["generated_text"]
        plain = requests.post(server.url + "/generate", json={"prompt": "A", "max_new_tokens": 3}, timeout=30)
        assert plain.status_code == 200 and plain.json()["generated_tokens"] <= 3
        bad = requests.post(server.url + "/generate", data="nope", timeout=30)
        assert bad.status_code == 400 and "curl" in bad.json()["error"]["message"]
        assert requests.get(server.url + "/", timeout=30).status_code == 200
    finally:
        server.stop()


def test_a_client_that_disconnects_frees_its_slot(server_kind, models_dir):
    # One slot, and a generation that would run for minutes unless the disconnect stops it.
    server = Server(
        server_kind,
        models_dir,
        MAX_CONCURRENT_GENERATIONS="1",
        MAX_NEW_TOKENS="1000000",
        GENERATION_TIMEOUT="300",
        QUEUE_TIMEOUT="0.5",
    )
    try:
        response = requests.post(
            server.url + "/generate",
            json={"prompt": "A", "max_new_tokens": 1000000, "stream": True},
            stream=True,
            timeout=30,
        )
        events = read_events(response)
        assert "token" in next(events) and "token" in next(events)
        busy = requests.post(server.url + "/generate", json={"prompt": "A", "max_new_tokens": 1}, timeout=30)
        assert busy.status_code == 503 and busy.headers["Retry-After"]
        response.close()  # the client goes away mid-stream

        deadline = time.monotonic() + 30
        while requests.get(server.url + "/health", timeout=5).json()["generations"]["active"]:
            assert time.monotonic() < deadline, "the slot was not freed after the client disconnected"
            time.sleep(0.2)
        again = requests.post(server.url + "/generate", json={"prompt": "A", "max_new_tokens": 1}, timeout=30)
        assert again.status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("nothing_like_a_model", [False, True])
def test_no_usable_model_is_one_clear_line(server_kind, tmp_path, nothing_like_a_model):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    if nothing_like_a_model:  # under gunicorn, the master's own check before any worker starts
        (tmp_path / "broken" / "config.json").unlink()
    result = subprocess.run(
        server_command(server_kind),
        cwd=REPO,
        env=server_env(tmp_path, free_port()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    [line] = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert str(tmp_path) in line


def test_gunicorn_refuses_a_bad_setting_in_one_line(tmp_path):
    if not GUNICORN.exists():
        pytest.skip("gunicorn is not installed (it does not run on Windows)")
    env = server_env(tmp_path, free_port(), MAX_CONCURRENT_GENERATIONS="none")
    result = subprocess.run(server_command("gunicorn"), cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    assert "gunicorn.conf.py: MAX_CONCURRENT_GENERATIONS must be an integer, got 'none'" in result.stderr
