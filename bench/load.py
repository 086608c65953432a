"""Load test of the web API: N client threads POST /generate to a server on loopback for T seconds, in one or more
phases against the same server (e.g. 1 client, then 16: their tokens/s compared in one run).

    .venv/bin/python bench/load.py --clients 1 16 --duration 60 --max-new-tokens 64 --stream
    .venv/bin/python bench/load.py --server waitress --clients 64 --duration 60

By default it starts the Docker image's command (`gunicorn -c gunicorn.conf.py`, its defaults) or, with
--server waitress, `python app.py`, on a free loopback port with MODEL_DIR from --model-dir (default: models/), and
stops it afterwards; --url targets a server that is already running (loopback only: this is not a tool for loading
other people's machines).

Reports per phase: requests/s, generated tokens/s, p50/p95/p99 latency, with --stream the time to the first streamed
token, and counts by status; it checks every 200 response (valid JSON, or with --stream valid events ending with
the summary; full_text == prompt + generated_text; no more tokens than asked, and as many as the events): a
"garbled" count must stay 0, and any status but 200 and 503 makes the exit status 1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.cli import duration_argument  # noqa: E402  (seconds or 90s, 5m: as every time taken)

MAX_CLIENTS = 64
MAX_DURATION = 600
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Tally:
    """What all client threads of a phase saw; appended under `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: list[float] = field(default_factory=list)  # seconds, 200 responses only
    first_tokens: list[float] = field(default_factory=list)  # seconds to the first streamed token
    statuses: Counter = field(default_factory=Counter)
    tokens: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, status: str, latency: float | None = None, tokens: int = 0, problem: str | None = None,
            first_token: float | None = None) -> None:
        with self.lock:
            self.statuses[status] += 1
            if latency is not None:
                self.latencies.append(latency)
            if first_token is not None:
                self.first_tokens.append(first_token)
            self.tokens += tokens
            if problem and len(self.problems) < 10:
                self.problems.append(problem)


def check_body(body: object, prompt: str, max_new_tokens: int) -> tuple[int, str | None]:
    """(generated tokens, problem or None) for a response body (or a stream's summary)."""
    if not isinstance(body, dict):
        return 0, f"not a JSON object: {str(body)[:80]!r}"
    if body.get("full_text") != prompt + body.get("generated_text", "\0"):
        return 0, "full_text is not prompt + generated_text"
    tokens = body.get("generated_tokens")
    if not isinstance(tokens, int) or not 0 <= tokens <= max_new_tokens:
        return 0, f"generated_tokens {tokens!r} out of range"
    return tokens, None


def read_stream(response: http.client.HTTPResponse, started: float, prompt: str,
                max_new_tokens: int) -> tuple[int, str | None, float | None]:
    """(generated tokens, problem or None, seconds to the first token) for a Server-Sent Events body."""
    first_token, texts, summary = None, [], None
    for raw in response:
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        if not line.startswith("data: "):
            continue
        try:
            event = json.loads(line[len("data: "):])
        except ValueError:
            return 0, f"an event that is not JSON: {line[:80]!r}", first_token
        if "token" in event:
            if first_token is None:
                first_token = time.perf_counter() - started
            texts.append(event["token"]["text"])
        elif event.get("done"):
            summary = event
        else:
            return 0, f"an error event: {line[:120]!r}", first_token
    if summary is None:
        return 0, "the stream ended without its summary", first_token
    tokens, problem = check_body(summary, prompt, max_new_tokens)
    if problem is None and ("".join(texts) != summary["generated_text"] or len(texts) != tokens):
        problem = "the events do not add up to the summary"
    return tokens, problem, first_token


def client(host: str, port: int, payload: dict, deadline: float, tally: Tally, timeout: float) -> None:
    data = json.dumps(payload).encode()
    stream = payload.get("stream", False)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            connection.request("POST", "/generate", body=data, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            if response.status == 200 and stream:
                tokens, problem, first_token = read_stream(response, started, payload["prompt"],
                                                           payload["max_new_tokens"])
            else:
                raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            tally.add(f"error:{type(error).__name__}")
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
            time.sleep(0.1)
            continue
        latency = time.perf_counter() - started
        if response.status == 200:
            if not stream:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                tokens, problem = check_body(body, payload["prompt"], payload["max_new_tokens"])
                first_token = None
            tally.add("garbled" if problem else "200", latency, tokens, problem, first_token)
        else:
            tally.add(str(response.status))
            if response.status == 503:
                # What a well-behaved client does; a short pause rather than the full Retry-After keeps load up.
                time.sleep(min(float(response.getheader("Retry-After") or 1), 0.5))
        if response.getheader("Connection", "").lower() == "close" or stream:
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.close()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind: str, model_dir: Path, port: int, workers: int | None,
                 extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "MODEL_DIR": str(model_dir), "PORT": str(port), "HOST": "127.0.0.1", **extra_env}
    if kind == "waitress":
        command = [sys.executable, "app.py"]
    else:
        if workers:
            env["WEB_CONCURRENCY"] = str(workers)
        # the access log would print one line per request; keep errors only
        command = [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py",
                   "--access-logfile", "/dev/null"]
    shown = " ".join(shlex.quote(c) for c in command)
    print(f"server: {shown} (MODEL_DIR={model_dir} PORT={port})", flush=True)
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL if kind == "waitress" else None)


def wait_until_up(host: str, port: int, process: subprocess.Popen | None, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            sys.exit(f"bench: the server exited with status {process.returncode}")
        try:
            connection = http.client.HTTPConnection(host, port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    sys.exit(f"bench: no answer from http://{host}:{port}/health after {limit:.0f} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[16],
                        help=f"concurrent client threads (1-{MAX_CLIENTS}); several numbers run one phase each, "
                        "in order, against the same server")
    parser.add_argument("--duration", type=duration_argument, default=60,
                        help=f"how long each phase loads: seconds or 90s, 5m (1-{MAX_DURATION} s)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--stream", action="store_true", help="stream every response (measures the first token)")
    parser.add_argument("--model", help="a name from /models (default: the server's default)")
    parser.add_argument("--server", choices=("gunicorn", "waitress"), default="gunicorn",
                        help="what to start: the Docker image's gunicorn command, or python app.py")
    parser.add_argument("--url", help="an already running server on loopback (default: start one)")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", REPO / "models")))
    parser.add_argument("--workers", type=int, help="gunicorn workers (WEB_CONCURRENCY) for the started server")
    parser.add_argument("--timeout", type=duration_argument, default=60,
                        help="per-request client timeout: seconds or 90s, 2m")
    args = parser.parse_args(argv)
    if not all(1 <= n <= MAX_CLIENTS for n in args.clients):
        parser.error(f"--clients must be 1-{MAX_CLIENTS}")
    if not 1 <= args.duration <= MAX_DURATION:
        parser.error(f"--duration must be 1-{MAX_DURATION} seconds")
    if args.max_new_tokens < 1:
        parser.error("--max-new-tokens must be >= 1")
    if args.url:
        parts = urlsplit(args.url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK or not parts.port:
            parser.error("--url must be http://127.0.0.1:PORT or http://localhost:PORT (loopback only)")
    return args


def run_phase(host: str, port: int, payload: dict, clients: int, args: argparse.Namespace) -> tuple[Tally, float]:
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.duration
    threads = [threading.Thread(target=client, args=(host, port, payload, deadline, tally, args.timeout),
                                daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.duration + args.timeout + 5)
    return tally, time.monotonic() - started


def report(clients: int, tally: Tally, elapsed: float, settings: str) -> float:
    """Prints a phase's figures; returns its generated tokens per second."""
    latencies, firsts = sorted(tally.latencies), sorted(tally.first_tokens)
    total = sum(tally.statuses.values())
    rate = tally.tokens / elapsed
    print(f"\n{clients} client{'s' if clients > 1 else ''}, {elapsed:.1f} s, {settings}")
    print(f"requests:         {total} ({total / elapsed:.2f}/s), 200: {len(latencies)} "
          f"({len(latencies) / elapsed:.2f}/s)")
    print(f"generated tokens: {tally.tokens} ({rate:.1f}/s)")
    if latencies:
        p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
        print(f"latency of 200s:  p50 {p50:.3f} s  p95 {p95:.3f} s  p99 {p99:.3f} s  "
              f"mean {statistics.fmean(latencies):.3f} s  max {latencies[-1]:.3f} s")
    if firsts:
        p50, p95 = (percentile(firsts, q) * 1000 for q in (50, 95))
        print(f"first token:      p50 {p50:.1f} ms  p95 {p95:.1f} ms  max {firsts[-1] * 1000:.1f} ms")
    print("by status:        " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())))
    for problem in tally.problems:
        print("problem:", problem)
    return rate


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]), flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores"
          + (f", load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start" if load else ""), flush=True)
    process = None
    if args.url:
        host, port = urlsplit(args.url).hostname, urlsplit(args.url).port
    else:
        host, port = "127.0.0.1", free_port()
        # Enough requested tokens must be allowed by the server for the check on generated_tokens to mean much.
        process = start_server(args.server, args.model_dir, port, args.workers,
                               {"MAX_NEW_TOKENS": str(max(args.max_new_tokens, 1))})
    unexpected = set()
    try:
        wait_until_up(host, port, process)
        payload = {"prompt": args.prompt, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                   "stream": args.stream}
        if args.model:
            payload["model"] = args.model
        settings = f"max_new_tokens={args.max_new_tokens}, prompt={args.prompt!r}, stream={args.stream}"
        rates = []
        for clients in args.clients:
            tally, elapsed = run_phase(host, port, payload, clients, args)
            rates.append(report(clients, tally, elapsed, settings))
            unexpected |= {k for k in tally.statuses if k not in ("200", "503")}
        if len(rates) > 1 and rates[0] > 0:
            print("\ntokens/s against the first phase: " + ", ".join(
                f"{clients} clients {rate / rates[0]:.2f}x" for clients, rate in zip(args.clients, rates)))
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if load:
        end = os.getloadavg()
        print(f"load average at the end: {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
