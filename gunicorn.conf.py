"""gunicorn settings for Linux and the Docker image: `gunicorn -c gunicorn.conf.py`.

- gthread workers: each request waits on its own thread while the worker's scheduler (one per model, lm/scheduler.py)
  decodes every request in flight together, and streaming responses hold a connection open.
- No preload_app: each worker calls create_app() itself, after the fork, and loads its own copy of the models.
  torch's thread pools and fork do not mix (a pool started in the master deadlocks or is dead in the child).
- torch threads per worker = cores / workers, so that the workers together use each core once.

Environment: PORT (default 7860, the Space's port), HOST (default 0.0.0.0) or BIND ("host:port", overrides
both), WEB_CONCURRENCY (workers), GUNICORN_THREADS (threads per worker), plus the app's own settings
(docs/deploy.md), of which GENERATION_TIMEOUT sets the worker timeout here.
"""

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from app.settings import SettingsError, load_settings
from lm.checks import OptionError, integer_from

# Where the Space and the image listen unless PORT / HOST say otherwise (the app's own defaults suit `python app.py`).
IMAGE_DEFAULTS = {"PORT": "7860", "HOST": "0.0.0.0"}


def _app_settings() -> dict:
    """The app's settings as its workers will read them (PORT and HOST defaulting to the image's)."""
    given = {name: value for name, value in os.environ.items() if value.strip()}
    try:
        return load_settings({**IMAGE_DEFAULTS, **given})
    except SettingsError as error:
        sys.exit(f"gunicorn.conf.py: {error}")


def _env_int(name: str, default: int) -> int:
    """A gunicorn-only setting (not one of the app's), an integer >= 1."""
    raw = os.environ.get(name, "").strip()
    try:
        return integer_from(name, raw, minimum=1) if raw else default
    except OptionError as error:
        sys.exit(f"gunicorn.conf.py: {error}")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours CPU pinning (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 1


CORES = _cores()
SETTINGS = _app_settings()

# Every worker signs the playground pages' tokens with the same key (app/access.py), so a page served by one worker
# works with the others.
os.environ.setdefault("SECRET_KEY", secrets.token_hex(32))
# prometheus_client's multiprocess mode: each worker keeps its metrics in files here, and /metrics adds them up
# (app/metrics.py). A fresh folder per server unless PROMETHEUS_MULTIPROC_DIR names one (emptied at start).
OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="scriptorium-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR

# each worker builds the app; a set-up problem stops the server with one line (app/gunicorn_worker.py)
wsgi_app = "app.gunicorn_worker:create_app_or_stop()"
bind = [os.environ.get("BIND") or f"{SETTINGS['HOST']}:{SETTINGS['PORT']}"]
worker_class = "gthread"
# Small models spend much of each token in Python (sampling, decoding text) under the GIL, so processes scale
# better than torch threads; past 4 workers the extra copies of the models cost more than they bring. With
# batching, 16 clients on 2 cores got as many tokens/s from 2 workers of 1 torch thread as from 1 worker of 2, and
# their first token sooner (docs/benchmarks.md, "Serving engine"), so one worker per core stays.
workers = _env_int("WEB_CONCURRENCY", max(1, min(CORES, 4)))
# A thread per request in a full batch, plus some waiting for room and quick requests (pages, /health, 503s).
threads = _env_int("GUNICORN_THREADS", SETTINGS["MAX_BATCH_SIZE"] + 8)
TORCH_THREADS = max(1, CORES // workers)
preload_app = False

# A request's longest legitimate run is one generation (GENERATION_TIMEOUT, default 30 s) plus its wait for a
# slot and model loading at boot; past `timeout` without a heartbeat the master restarts the worker.
timeout = int(SETTINGS["GENERATION_TIMEOUT"]) + 60
graceful_timeout = int(SETTINGS["GENERATION_TIMEOUT"]) + 10
keepalive = 5
# Requests are at most 64 KiB of JSON; headers stay small.
limit_request_field_size = 8190

# gunicorn's control socket (a per-user path) is not used here, and two servers of one user would share it.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# Behind the Space's (or any) reverse proxy: trust X-Forwarded-* from it only.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    """Stop early, with one line, when there is obviously nothing to serve (checked without importing
    torch); start the metrics from zero."""
    for stale in Path(METRICS_DIR).glob("*.db"):
        stale.unlink()
    model_dir = Path(SETTINGS["MODEL_DIR"])
    # lm.checkpoint.CONFIG_FILE, spelled out here: importing lm.checkpoint would import torch
    candidates = [p for p in model_dir.glob("*/config.json") if not p.parent.name.startswith((".", "_"))]
    if not candidates:
        print(
            f"scriptorium: cannot start: no model directories with a config.json in {model_dir} "
            "(set MODEL_DIR, or train the shipped models with `make train`)",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)
    server.log.info(
        "workers=%d threads=%d torch threads per worker=%d (cores=%d)", workers, threads, TORCH_THREADS, CORES
    )


def post_fork(server, worker):
    # Runs in the worker, before it calls create_app(): size torch's intra-op pool for this worker, and send
    # the app's log lines (e.g. a model directory skipped, and why) to gunicorn's error log, in its format.
    import logging

    import torch

    torch.set_num_threads(TORCH_THREADS)
    app_log = logging.getLogger("app")
    app_log.handlers = list(server.log.error_log.handlers)
    app_log.setLevel(logging.INFO)
    app_log.propagate = False


def child_exit(server, worker):
    # In the master, when a worker has gone: its gauges (queue, batch) stop counting in /metrics.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if OWN_METRICS_DIR:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)


def worker_exit(server, worker):
    # The worker is stopping (after its graceful timeout): end each model's scheduler between two steps.
    application = getattr(worker, "wsgi", None)
    if application is not None:
        from app.registry import close_models

        close_models(application)
