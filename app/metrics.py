"""Prometheus metrics at GET /metrics (prometheus_client): requests by endpoint and status, generated tokens, time to
first token and request latency histograms, queue length, active batch size, models loaded and failed.

Under gunicorn every worker counts: gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh folder before the
workers fork, prometheus_client then keeps each worker's values in files there, and /metrics (answered by any worker)
adds them up (`MultiProcessCollector`); a worker that exits is marked dead, so its gauges drop out. Under waitress
(one process) the values live in the app's own registry.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

EXTENSION = "scriptorium.metrics"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: a token arrives in milliseconds, a 64-token request in a fraction of a second, a long one in many.
FIRST_TOKEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The app's metrics, registered in a registry of its own (several apps may live in one test process)."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter("scriptorium_requests", "HTTP requests answered, by endpoint, method and status.",
                                ["endpoint", "method", "status"], registry=registry)
        self.latency = Histogram("scriptorium_request_duration_seconds", "Time from a request to the end of its "
                                 "answer (a stream's last event), by endpoint.", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.tokens = Counter("scriptorium_generated_tokens", "Tokens generated, by model.", ["model"],
                              registry=registry)
        self.first_token = Histogram("scriptorium_time_to_first_token_seconds", "Time from a generation request to "
                                     "its first token, by model.", ["model"], buckets=FIRST_TOKEN_BUCKETS,
                                     registry=registry)
        # gauges: summed over the live workers
        self.queued = Gauge("scriptorium_queued_requests", "Requests waiting for room in a model's batch.", ["model"],
                            multiprocess_mode="livesum", registry=registry)
        self.batch = Gauge("scriptorium_batch_size", "Sequences in a model's batch (its scheduler's active rows).",
                           ["model"], multiprocess_mode="livesum", registry=registry)
        self.models = Gauge("scriptorium_models", "Model directories, by state (loaded or failed).", ["state"],
                            multiprocess_mode="livemax", registry=registry)

    def watch(self, name: str, generator: Any) -> None:
        """Follow a model's scheduler: its batch and queue after every step, the tokens each step draws."""
        queued, batch, tokens = self.queued.labels(name), self.batch.labels(name), self.tokens.labels(name)

        def on_step(load: Any, drawn: int) -> None:
            queued.set(load.queued)
            batch.set(load.rows)
            if drawn:
                tokens.inc(drawn)

        generator.scheduler.on_step = on_step

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return generate_latest(collected)


def get_metrics() -> Metrics:
    return current_app.extensions[EXTENSION]


def observe_first_token(model: str, seconds: float | None) -> None:
    if seconds is not None:
        get_metrics().first_token.labels(model).observe(seconds)


def _endpoint() -> str:
    # the route's rule, not the path: a label per URL anyone can type would grow without bound
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _count(response: Response) -> Response:
    metrics, endpoint = get_metrics(), _endpoint()
    metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
    started = g.get("metrics_started", time.perf_counter())
    # observed when the server has sent the whole body: for a stream, after its last event
    response.call_on_close(lambda: metrics.latency.labels(endpoint).observe(time.perf_counter() - started))
    return response


def metrics_view() -> Response:
    return Response(get_metrics().render(), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask, registry: Any) -> None:
    metrics = Metrics()
    app.extensions[EXTENSION] = metrics
    metrics.models.labels("loaded").set(len(registry.names))
    metrics.models.labels("failed").set(len(registry.failures))
    for name in registry.names:
        metrics.watch(name, registry.get(name))
    app.before_request(_start)
    app.after_request(_count)
    app.add_url_rule("/metrics", "metrics", metrics_view)
