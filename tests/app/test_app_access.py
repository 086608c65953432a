"""Access control (app/access.py): API keys, the playground's own token, the rate limit, CORS."""

from __future__ import annotations

import re

import pytest

from app import SettingsError, create_app
from app.access import TokenBuckets
from app.registry import close_models
from app.settings import load_settings

KEYS = ("key-one-0123456789", "key-two-0123456789")


@pytest.fixture
def make_app(models_dir):
    apps = []

    def make(**settings):
        apps.append(create_app({"TESTING": True, "MODEL_DIR": str(models_dir), "MAX_NEW_TOKENS": 8, **settings}))
        return apps[-1]

    yield make
    for app in apps:
        close_models(app)


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_with_api_keys_the_api_needs_one(make_app):
    client = make_app(API_KEYS=KEYS).test_client()
    body = {"prompt": "A", "max_new_tokens": 2}
    refused = client.post("/generate", json=body)
    assert refused.status_code == 401 and refused.get_json()["error"]["type"] == "unauthorized"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/generate", json=body, headers=bearer("wrong")).status_code == 401
    assert client.post("/generate", json=body, headers={"Authorization": KEYS[0]}).status_code == 401  # no scheme
    for key in KEYS:
        assert client.post("/generate", json=body, headers=bearer(key)).status_code == 200
    openai = client.post("/v1/completions", json={"prompt": "A", "max_tokens": 1})
    assert openai.status_code == 401 and openai.get_json()["error"]["type"] == "authentication_error"
    assert client.post("/v1/completions", json={"prompt": "A", "max_tokens": 1},
                       headers=bearer(KEYS[1])).status_code == 200
    for path in ("/models", "/metrics", "/v1/models"):
        assert client.get(path).status_code == 401 and client.get(path, headers=bearer(KEYS[0])).status_code == 200
    for path in ("/", "/compare", "/models/tiny-gpt", "/health", "/openapi.json", "/static/js/api.js"):
        assert client.get(path).status_code == 200, path


def test_the_playground_works_with_keys_on_through_its_pages_token(make_app):
    app = make_app(API_KEYS=KEYS)
    client = app.test_client()
    page = client.get("/").data.decode()
    token = re.search(r'<meta name="scriptorium-playground" content="([^"]+)">', page).group(1)
    body = {"prompt": "A", "max_new_tokens": 2}
    assert client.post("/generate", json=body, headers={"X-Playground-Token": token}).status_code == 200
    other = make_app(API_KEYS=KEYS, SECRET_KEY="another server's secret").test_client()
    assert other.post("/generate", json=body, headers={"X-Playground-Token": token}).status_code == 401
    assert client.post("/generate", json=body, headers={"X-Playground-Token": token[:-2]}).status_code == 401


def test_without_keys_nothing_is_asked(client):
    assert client.post("/generate", json={"prompt": "A", "max_new_tokens": 1}).status_code == 200
    assert client.get("/metrics").status_code == 200


def test_the_rate_limit_is_a_bucket_per_key_answering_429(make_app):
    client = make_app(API_KEYS=KEYS, RATE_LIMIT=6, RATE_LIMIT_BURST=2).test_client()
    body = {"prompt": "A", "max_new_tokens": 1}
    statuses = [client.post("/generate", json=body, headers=bearer(KEYS[0])).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = client.post("/v1/completions", json={"prompt": "A", "max_tokens": 1}, headers=bearer(KEYS[0]))
    assert limited.status_code == 429 and limited.get_json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(limited.headers["Retry-After"]) <= 10  # 6 a minute: a token every 10 s
    assert client.post("/generate", json=body, headers=bearer(KEYS[1])).status_code == 200  # its own bucket
    assert client.get("/models", headers=bearer(KEYS[0])).status_code == 200  # only generations are counted


def test_the_rate_limit_without_keys_is_per_client_address(make_app):
    client = make_app(RATE_LIMIT=6, RATE_LIMIT_BURST=1).test_client()
    body = {"prompt": "A", "max_new_tokens": 1}
    assert client.post("/generate", json=body).status_code == 200
    assert client.post("/generate", json=body).status_code == 429
    other = {"REMOTE_ADDR": "10.0.0.9"}
    assert client.post("/generate", json=body, environ_overrides=other).status_code == 200


def test_behind_a_proxy_the_address_is_the_forwarded_one(make_app):
    client = make_app(RATE_LIMIT=6, RATE_LIMIT_BURST=1, PROXY_HOPS=1).test_client()
    body = {"prompt": "A", "max_new_tokens": 1}
    for address in ("203.0.113.1", "203.0.113.2"):
        assert client.post("/generate", json=body, headers={"X-Forwarded-For": address}).status_code == 200
    assert client.post("/generate", json=body, headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 429


def test_token_buckets_refill_at_their_rate():
    now = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(1.0)
    now[0] = 0.5
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] = 1.0
    assert buckets.take("a") == 0.0
    now[0] = 100.0
    assert [buckets.take("a") for _ in range(3)][:2] == [0.0, 0.0]  # never more than the burst


def test_cors_allows_only_the_listed_origins(make_app):
    client = make_app(CORS_ORIGINS=("https://good.example",), API_KEYS=KEYS).test_client()
    good, bad = {"Origin": "https://good.example"}, {"Origin": "https://evil.example"}
    answer = client.get("/models", headers={**good, **bearer(KEYS[0])})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://good.example"
    assert "Access-Control-Allow-Origin" not in client.get("/models", headers={**bad, **bearer(KEYS[0])}).headers
    preflight = client.options("/v1/completions", headers={**good, "Access-Control-Request-Method": "POST",
                                                            "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200  # no key asked of a preflight
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://good.example"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Origin" not in client.get("/", headers=good).headers  # pages are not shared


@pytest.mark.parametrize("name, value", [("CORS_ORIGINS", "example.com"), ("RATE_LIMIT", "-1"),
                                         ("RATE_LIMIT_BURST", "0"), ("PROXY_HOPS", "x")])
def test_bad_access_settings_stop_the_server(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})
    assert load_settings({"API_KEYS": " a, b ,,"})["API_KEYS"] == ("a", "b")
