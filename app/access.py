"""Optional access control for a public deployment: API keys, a rate limit, and which other origins' pages may call
the API.

- `API_KEYS` (bearer tokens; off when unset): the API (`/generate`, `/v1/...`, `/models`, `/metrics`) answers 401
  without `Authorization: Bearer <one of them>`. The pages stay open, and the playground keeps working: each page
  carries a signed token of its own (itsdangerous, with SECRET_KEY), which static/js/api.js sends as
  `X-Playground-Token`. That token is as public as the page; what it is limited by is the rate limit per address.
- `RATE_LIMIT` (generation requests per minute; off when 0) and `RATE_LIMIT_BURST`: a token bucket per key, or per
  client address for requests without one; an empty bucket answers 429 with Retry-After. Buckets are per process.
- `CORS_ORIGINS`: the origins whose pages may call the API from a browser (flask-cors); none when unset.
- `PROXY_HOPS`: how many proxies in front of the app set X-Forwarded-For and -Proto (werkzeug's ProxyFix), so that a
  client's address is its own and not the proxy's.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable

from flask import Flask, current_app, g, request
from flask_cors import CORS
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.middleware.proxy_fix import ProxyFix

from app.errors import OPENAI_PREFIX, APIError

EXTENSION = "scriptorium.access"
PLAYGROUND_HEADER = "X-Playground-Token"
PLAYGROUND_TOKEN_AGE = 24 * 3600  # seconds a page's token stays valid (a tab left open for a day)
KEYED_PATHS = ("/generate", "/models", "/metrics")
GENERATION_ENDPOINTS = ("api.generate", "openai.completions")
MAX_BUCKETS = 100_000  # clients remembered at once; full buckets are forgotten first


class TokenBuckets:
    """A token bucket per client: `per_minute` requests a minute on average, up to `burst` at once."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when `client` may go ahead (a token is taken), else the seconds until it may."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._forget_full(now)
            return (1 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        full = [client for client, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self.rate >= self.burst]
        for client in full:
            del self._buckets[client]


class Access:
    def __init__(self, keys: tuple[str, ...], buckets: TokenBuckets | None, secret: str) -> None:
        self.keys = keys
        self.buckets = buckets
        self.tokens = URLSafeTimedSerializer(secret, salt="scriptorium-playground")

    def playground_token(self) -> str:
        return self.tokens.dumps("playground")

    def key_index(self, given: str) -> int | None:
        found = None
        for index, key in enumerate(self.keys):  # every key compared, in constant time each
            if hmac.compare_digest(given.encode(), key.encode()):
                found = index
        return found

    def from_playground(self) -> bool:
        token = request.headers.get(PLAYGROUND_HEADER, "")
        try:
            self.tokens.loads(token, max_age=PLAYGROUND_TOKEN_AGE)
        except BadSignature:  # includes an expired token
            return False
        return True


def get_access() -> Access:
    return current_app.extensions[EXTENSION]


def _keyed(path: str) -> bool:
    return path in KEYED_PATHS or path.startswith(OPENAI_PREFIX)


def _check() -> None:
    """Before each request: who is calling (a key, or an address), and may they."""
    if request.method == "OPTIONS":  # a CORS preflight carries no credentials
        return
    access = get_access()
    client = f"address {request.remote_addr}"
    if access.keys and _keyed(request.path):
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        index = access.key_index(given.strip()) if scheme.lower() == "bearer" else None
        if index is not None:
            client = f"key {index}"
        elif not access.from_playground():
            raise APIError(401, "this server needs an API key: send the header Authorization: Bearer <key>",
                           headers={"WWW-Authenticate": 'Bearer realm="scriptorium"'})
    g.client = client
    if access.buckets is not None and request.endpoint in GENERATION_ENDPOINTS:
        wait = access.buckets.take(client)
        if wait:
            raise APIError(429, f"too many requests from this {client.split()[0]}; retry in {math.ceil(wait)} s",
                           retry_after=max(1, math.ceil(wait)))


def init_app(app: Flask) -> None:
    config = app.config
    buckets = TokenBuckets(config["RATE_LIMIT"], config["RATE_LIMIT_BURST"]) if config["RATE_LIMIT"] else None
    app.extensions[EXTENSION] = Access(config["API_KEYS"], buckets, config["SECRET_KEY"])
    app.before_request(_check)
    if config["PROXY_HOPS"]:
        hops = config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    if config["CORS_ORIGINS"]:
        api = {"origins": list(config["CORS_ORIGINS"])}
        CORS(app, resources={"/generate": api, "/models": api, "/v1/*": api},
             allow_headers=["Authorization", "Content-Type"], expose_headers=["Retry-After"], max_age=600)
