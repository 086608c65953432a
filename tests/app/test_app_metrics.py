"""GET /metrics in Prometheus' text format: requests, tokens, time to first token, latency, queue, batch, models;
under gunicorn, every worker's counts together (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.app.servers import GUNICORN, Server


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_tokens_and_times(client, make_models_dir):
    def post(path, body):
        response = client.post(path, json=body)
        response.get_data()
        response.close()  # as a WSGI server does once the body is sent: the request's latency is observed then

    post("/generate", {"prompt": "A", "max_new_tokens": 5, "stop": None})
    post("/generate", {"prompt": "A", "max_new_tokens": 4, "stream": True})
    post("/v1/completions", {"model": "tiny-lstm", "prompt": "A", "max_tokens": 3})
    post("/generate", {"prompt": 1})
    deadline = time.monotonic() + 10
    while True:  # a scheduler reports its step just after its requests have their tokens
        response = client.get("/metrics")
        found = samples(response.data.decode())
        if value(found, "scriptorium_generated_tokens_total", model="tiny-lstm") == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert value(found, "scriptorium_requests_total", endpoint="/generate", method="POST", status="200") == 2
    assert value(found, "scriptorium_requests_total", endpoint="/generate", method="POST", status="422") == 1
    assert value(found, "scriptorium_requests_total", endpoint="/v1/completions", method="POST", status="200") == 1
    assert value(found, "scriptorium_generated_tokens_total", model="tiny-gpt") == 5 + 4
    assert value(found, "scriptorium_generated_tokens_total", model="tiny-lstm") == 3
    assert value(found, "scriptorium_time_to_first_token_seconds_count", model="tiny-gpt") == 2
    assert value(found, "scriptorium_request_duration_seconds_count", endpoint="/generate") == 3
    assert value(found, "scriptorium_models", state="loaded") == 2 and value(found, "scriptorium_models",
                                                                             state="failed") == 0
    assert value(found, "scriptorium_batch_size", model="tiny-gpt") == 0  # all done
    assert ("scriptorium_queued_requests", (("model", "tiny-gpt"),)) in found
    client.get("/no/such/page")
    assert value(samples(client.get("/metrics").data.decode()), "scriptorium_requests_total",
                 endpoint="unmatched", method="GET", status="404") == 1


def test_failed_models_are_counted(make_models_dir):
    from app import create_app

    app = create_app({"TESTING": True, "MODEL_DIR": str(make_models_dir("broken"))})
    found = samples(app.test_client().get("/metrics").data.decode())
    assert value(found, "scriptorium_models", state="failed") == 1


@pytest.mark.slow
def test_under_gunicorn_every_workers_requests_count(models_dir):
    if not GUNICORN.exists():
        pytest.skip("gunicorn is not installed (it does not run on Windows)")
    server = Server("gunicorn", models_dir, WEB_CONCURRENCY="2")
    try:
        for _ in range(12):
            assert requests.post(server.url + "/generate", json={"prompt": "A", "max_new_tokens": 2},
                                 timeout=30).status_code == 200
        deadline = time.monotonic() + 30
        while True:  # each scrape is answered by one worker, and shows the sum of both
            found = samples(requests.get(server.url + "/metrics", timeout=30).text)
            if value(found, "scriptorium_requests_total", endpoint="/generate", method="POST", status="200") == 12:
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        assert value(found, "scriptorium_generated_tokens_total", model="tiny-gpt") == 24
        assert value(found, "scriptorium_models", state="loaded") == 2
    finally:
        server.stop()
