"""POST /generate: every field, alias, limit and error; streaming; GET /models, /health."""

from __future__ import annotations

import json
import time

import pytest

from app.registry import close_models, get_registry
from lm.checks import OptionError
from tests.app.sse import sse_events


def generate(client, **body):
    return client.post("/generate", json=body)


def test_generate_answers_the_documented_fields(client):
    response = generate(client, prompt="ROMEO:", max_new_tokens=12, seed=3)
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == [
        "model",
        "prompt",
        "generated_text",
        "full_text",
        "finish_reason",
        "prompt_tokens",
        "generated_tokens",
        "seed",
        "timing",
        "choices",
    ]
    assert body["model"] == "tiny-gpt" and body["prompt"] == "ROMEO:" and body["seed"] == 3
    assert body["full_text"] == "ROMEO:" + body["generated_text"]
    assert body["finish_reason"] in {"length", "eos", "stop", "time_limit"}
    assert 0 < body["generated_tokens"] <= 12 and body["prompt_tokens"] == 6
    assert set(body["timing"]) == {"total_ms", "tokens_per_second"}
    [choice] = body["choices"]
    for key in ("generated_text", "full_text", "finish_reason", "generated_tokens"):
        assert choice[key] == body[key]
    assert "tokens" not in choice


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_body_is_json_whatever_the_content_type(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/generate", data='{"prompt": "A", "max_new_tokens": 2}', headers=headers)
    assert response.status_code == 200 and response.get_json()["generated_tokens"] <= 2


def test_seed_reproduces_the_output(client):
    first = generate(client, prompt="ROMEO:", max_new_tokens=20, temperature=1.2, seed=1234).get_json()
    again = generate(
        client, prompt="ROMEO:", max_new_tokens=20, temperature=1.2, seed=first["seed"]
    ).get_json()
    assert again["generated_text"] == first["generated_text"]
    unseeded = generate(client, prompt="ROMEO:", max_new_tokens=20).get_json()
    replay = generate(client, prompt="ROMEO:", max_new_tokens=20, seed=unseeded["seed"]).get_json()
    assert replay["generated_text"] == unseeded["generated_text"]


def test_a_random_seed_survives_javascript_numbers(client):
    seeds = [generate(client, prompt="A", max_new_tokens=1).get_json()["seed"] for _ in range(5)]
    assert all(0 <= seed < 2**53 for seed in seeds) and len(set(seeds)) > 1


def test_temperature_zero_is_greedy(client):
    texts = {
        generate(client, prompt="JULIET:", max_new_tokens=15, temperature=0).get_json()["generated_text"]
        for _ in range(2)
    }
    assert len(texts) == 1


@pytest.mark.parametrize("alias", ["max_new_tokens", "max_length", "max_seq_len"])
def test_max_new_tokens_and_its_aliases(client, alias):
    body = generate(client, prompt="A", temperature=0, **{alias: 5}).get_json()
    assert body["generated_tokens"] <= 5


def test_two_spellings_of_max_new_tokens_are_refused(client):
    response = generate(client, prompt="A", max_new_tokens=5, max_seq_len=6)
    assert response.status_code == 422
    assert "only one of" in response.get_json()["error"]["message"]


def test_max_new_tokens_is_capped_not_refused(client, app):
    body = generate(client, prompt="A", max_new_tokens=10**9, stop=None).get_json()
    assert body["generated_tokens"] <= app.config["MAX_NEW_TOKENS"]


def test_stop_strings_end_the_text(client):
    greedy = generate(client, prompt="ROMEO:", max_new_tokens=30, temperature=0).get_json()["generated_text"]
    stop = greedy[5:7]
    body = generate(
        client, prompt="ROMEO:", max_new_tokens=30, temperature=0, stop=[stop, "never"]
    ).get_json()
    assert body["finish_reason"] == "stop"
    assert body["generated_text"] == greedy[: greedy.index(stop)]


def test_num_return_sequences(client):
    body = generate(client, prompt="A", max_new_tokens=8, num_return_sequences=3, seed=5).get_json()
    assert len(body["choices"]) == 3
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["generated_text"] == body["choices"][0]["generated_text"]
    assert len({c["generated_text"] for c in body["choices"]}) > 1


def test_details_give_logprobs_and_alternatives(client):
    body = generate(client, prompt="A", max_new_tokens=6, details=True, top_k=3).get_json()
    tokens = body["choices"][0]["tokens"]
    assert len(tokens) == body["generated_tokens"]
    assert "".join(t["text"] for t in tokens) == body["generated_text"]
    for token in tokens:
        assert token["logprob"] <= 0
        assert 1 <= token["rank"] <= 3  # top_k 3: the drawn token is among the 3 most likely
        assert 1 <= len(token["alternatives"]) <= 5
        assert all(0 <= alt["prob"] <= 1 for alt in token["alternatives"])


def test_model_choice(client):
    body = generate(client, prompt="A", max_new_tokens=3, model="tiny-lstm").get_json()
    assert body["model"] == "tiny-lstm"


def test_null_means_default(client):
    response = generate(
        client,
        prompt="A",
        max_new_tokens=None,
        temperature=None,
        top_k=None,
        top_p=None,
        repetition_penalty=None,
        seed=None,
        stop=None,
        num_return_sequences=None,
        model=None,
        details=None,
        stream=None,
    )
    assert response.status_code == 200
    assert response.get_json()["model"] == "tiny-gpt"


def test_time_limit_ends_the_generation(models_dir):
    from app import create_app

    app = create_app({"TESTING": True, "MODEL_DIR": str(models_dir), "GENERATION_TIMEOUT": 1e-9})
    body = app.test_client().post("/generate", json={"prompt": "A", "max_new_tokens": 30}).get_json()
    assert body["finish_reason"] == "time_limit" and body["generated_tokens"] < 30


@pytest.mark.parametrize(
    "field, value",
    [
        ("prompt", 5),
        ("prompt", ["A"]),
        ("prompt", "x" * 4001),
        ("max_new_tokens", -1),
        ("max_new_tokens", 2.5),
        ("max_new_tokens", "10.5"),  # a numeric string is read only when it is a clean number of the field's type
        ("max_new_tokens", " 10"),
        ("max_new_tokens", "1_000"),
        ("max_new_tokens", "9" * 50),
        ("max_new_tokens", True),
        ("max_length", -3),
        ("max_seq_len", "many"),
        ("temperature", -0.1),
        ("temperature", "hot"),
        ("temperature", "nan"),
        ("temperature", "inf"),
        ("temperature", "0x1p-2"),
        ("temperature", ""),
        ("temperature", 101),
        ("temperature", 1e-9),
        ("temperature", False),
        ("top_k", -1),
        ("top_k", 1.5),
        ("top_k", 10**30),
        ("top_p", 0),
        ("top_p", 1.01),
        ("top_p", [0.5]),
        ("repetition_penalty", 0),
        ("repetition_penalty", -1),
        ("repetition_penalty", 1e9),
        ("seed", -1),
        ("seed", 2**63),
        ("seed", 1.5),
        ("stop", "\n"),
        ("stop", [""]),
        ("stop", ["a", "b", "c", "d", "e"]),
        ("stop", [1]),
        ("stop", ["x" * 65]),
        ("num_return_sequences", 0),
        ("num_return_sequences", 9),
        ("model", 7),
        ("details", "yes"),
        ("details", "true"),  # booleans stay strict
        ("stream", 1),
    ],
)
def test_bad_values_are_422_naming_the_field(client, field, value):
    body = {"prompt": "A", field: value} if field != "prompt" else {"prompt": value}
    response = client.post("/generate", json=body)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["type"] == "invalid_field" and error["field"] == field and field in error["message"]


def test_the_seed_apps_page_body_is_answered(client):
    """The seed app's page sends JSON.stringify({prompt, max_seq_len, temperature}) of its range inputs' values:
    strings, and no Content-Type."""
    response = client.post("/generate", data='{"prompt": "harry", "max_seq_len": "30", "temperature": "0.6"}')
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["prompt"] == "harry" and 0 < body["generated_tokens"] <= 30


@pytest.mark.parametrize("field, text, value", [("max_new_tokens", "7", 7), ("temperature", "0.6", 0.6),
                                                ("top_p", ".9", 0.9), ("seed", "12", 12), ("top_k", "+3", 3),
                                                ("repetition_penalty", "1e0", 1.0)])
def test_numeric_strings_are_read_as_numbers(client, field, text, value):
    body = {"prompt": "A", "max_new_tokens": 4, "seed": 1}
    as_number = client.post("/generate", json={**body, field: value}).get_json()
    as_string = client.post("/generate", json={**body, field: text}).get_json()
    assert as_string["generated_text"] == as_number["generated_text"]


def test_return_full_text_puts_the_prompt_in_generated_text(client):
    plain = generate(client, prompt="ROMEO:", max_new_tokens=5, seed=2).get_json()
    full = generate(client, prompt="ROMEO:", max_new_tokens=5, seed=2, return_full_text=True).get_json()
    assert full["generated_text"] == "ROMEO:" + plain["generated_text"] == full["full_text"]
    assert full["choices"][0]["generated_text"] == full["generated_text"]
    *_, done = sse_events(generate(client, prompt="ROMEO:", max_new_tokens=5, seed=2, stream=True,
                                   return_full_text=True).data)
    assert done["generated_text"] == full["generated_text"]
    assert generate(client, prompt="A", return_full_text="yes").status_code == 422


def test_lone_surrogates_are_refused(client):
    for body in ('{"prompt": "A\\ud800"}', '{"prompt": "A", "stop": ["\\udc00"]}'):
        response = client.post("/generate", data=body)
        assert response.status_code == 422 and "Unicode" in response.get_json()["error"]["message"]


def test_nan_and_infinity_are_refused(client):
    for literal in ("NaN", "Infinity", "-Infinity"):
        response = client.post("/generate", data=f'{{"prompt": "A", "temperature": {literal}}}')
        assert response.status_code == 422 and response.get_json()["error"]["field"] == "temperature"


def test_prompt_limit_comes_from_settings(models_dir):
    from app import create_app

    app = create_app({"TESTING": True, "MODEL_DIR": str(models_dir), "MAX_PROMPT_CHARS": 10})
    client = app.test_client()
    assert client.post("/generate", json={"prompt": "x" * 10, "max_new_tokens": 1}).status_code == 200
    assert client.post("/generate", json={"prompt": "x" * 11}).status_code == 422


def test_missing_prompt(client):
    response = client.post("/generate", json={"max_new_tokens": 3})
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "prompt"


def test_unknown_fields_are_refused_naming_the_allowed_ones(client):
    response = generate(client, prompt="A", max_tokens=5)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "max_tokens"
    for name in ("prompt", "max_new_tokens", "max_seq_len", "top_p", "stop", "stream"):
        assert name in error["message"]


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[1, 2]", b"null", b"42", b'"prompt"', b"\xff\xfe{", b'{"prompt": "A"', b"[" * 5000],
)
def test_body_that_is_not_a_json_object_is_400_with_a_curl_example(client, data):
    response = client.post("/generate", data=data)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["type"] == "bad_request" and "curl" in error["message"] and "-d '{" in error["message"]


def test_unknown_model_is_404(client):
    response = generate(client, prompt="A", model="gpt-5")
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["field"] == "model" and "tiny-gpt" in error["message"]


def test_unknown_route_is_json_404(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.get_json()["error"]["type"] == "not_found"


def test_wrong_method_is_json_405(client):
    response = client.get("/generate")
    assert response.status_code == 405
    assert response.get_json()["error"]["type"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    assert client.post("/models").status_code == 405


def test_body_over_64_kib_is_413(client):
    response = client.post("/generate", data=json.dumps({"prompt": "x" * 70_000}))
    assert response.status_code == 413
    assert response.get_json()["error"]["type"] == "payload_too_large"


def load_of(app, model="tiny-gpt"):
    with app.app_context():
        return get_registry().get(model).scheduler.load


def wait_until_idle(app, model="tiny-gpt"):
    deadline = time.monotonic() + 10
    while load_of(app, model).requests or load_of(app, model).rows:
        assert time.monotonic() < deadline, load_of(app, model)
        time.sleep(0.01)


@pytest.mark.parametrize("queued", [0, 1])
def test_busy_server_answers_503_with_retry_after(models_dir, queued):
    """A full batch and a full queue: 503 at once; a full batch and room to wait: 503 after QUEUE_TIMEOUT."""
    from app import create_app

    app = create_app({"TESTING": True, "MODEL_DIR": str(models_dir), "MAX_BATCH_SIZE": 1,
                      "MAX_QUEUED_REQUESTS": queued, "QUEUE_TIMEOUT": 0.2, "MAX_NEW_TOKENS": 10**6})
    client = app.test_client()
    with app.app_context():
        busy = get_registry().get().stream("A", max_new_tokens=10**6)  # the batch's one row, for a long while
    next(busy)
    try:
        for body in ({"prompt": "A"}, {"prompt": "A", "stream": True}):
            response = client.post("/generate", json=body)
            assert response.status_code == 503
            assert response.get_json()["error"]["type"] == "overloaded"
            assert int(response.headers["Retry-After"]) >= 1
    finally:
        busy.close()
    wait_until_idle(app)  # the row is freed at the scheduler's next step
    assert generate(client, prompt="A", max_new_tokens=1).status_code == 200
    close_models(app)


@pytest.mark.parametrize(
    "error, field",
    [
        (OptionError("top_p", "must be in (0, 1], got 7"), "top_p"),  # the option the core names
        (ValueError("top_p must be in (0, 1], got 7"), None),  # no option named: the message is not guessed at
    ],
)
def test_core_value_error_becomes_422_with_field(app, client, monkeypatch, error, field):
    with app.app_context():
        generator = get_registry().get()

    def refuse(prompt, **options):
        raise error

    monkeypatch.setattr(generator, "generate", refuse)
    response = generate(client, prompt="A")
    assert response.status_code == 422 and response.get_json()["error"].get("field") == field
    assert response.get_json()["error"]["message"] == str(error)


def test_unexpected_failure_is_json_500_without_traceback(app, client, monkeypatch):
    with app.app_context():
        generator = get_registry().get()

    def crash(prompt, **options):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(generator, "generate", crash)
    response = generate(client, prompt="A")
    assert response.status_code == 500
    assert response.get_json()["error"]["type"] == "internal_error"
    assert b"secret" not in response.data and b"Traceback" not in response.data


def test_concurrent_requests_share_decoding_steps_and_keep_their_seeded_text(models_dir):
    from concurrent.futures import ThreadPoolExecutor

    from app import create_app

    app = create_app({"TESTING": True, "MODEL_DIR": str(models_dir), "MAX_NEW_TOKENS": 300})
    with app.app_context():
        scheduler = get_registry().get().scheduler
    peaks = []
    scheduler.on_step = lambda load, drawn: peaks.append(load.rows)
    bodies = [{"prompt": "A" * (i + 1), "max_new_tokens": 300, "seed": i, "temperature": 0.5 + i / 10}
              for i in range(6)]

    def text(body):
        return app.test_client().post("/generate", json=body).get_json()["generated_text"]

    alone = [text(body) for body in bodies]
    assert max(peaks) == 1
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(text, bodies))
    assert together == alone and max(peaks) > 1
    close_models(app)


# --- streaming ------------------------------------------------------------------------------------


def test_stream_sends_one_event_per_token_then_a_summary(client):
    response = generate(client, prompt="ROMEO:", max_new_tokens=10, seed=9, stream=True)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["X-Accel-Buffering"] == "no"
    events = sse_events(response.data)
    *tokens, done = events
    assert done["done"] is True and len(tokens) == done["generated_tokens"] <= 10
    for event in tokens:
        assert event["index"] == 0 and set(event["token"]) == {"id", "text", "logprob"}
    assert "".join(e["token"]["text"] for e in tokens) == done["generated_text"]
    assert done["full_text"] == "ROMEO:" + done["generated_text"]
    assert done["finish_reason"] in {"length", "eos", "stop", "time_limit"} and done["seed"] == 9
    plain = generate(client, prompt="ROMEO:", max_new_tokens=10, seed=9).get_json()
    assert plain["generated_text"] == done["generated_text"]


def test_stream_with_details_and_several_sequences(client):
    events = sse_events(
        generate(client, prompt="A", max_new_tokens=4, num_return_sequences=2, details=True, stream=True).data
    )
    *tokens, done = events
    assert {e["index"] for e in tokens} == {0, 1}
    assert all(e["token"]["alternatives"] for e in tokens)
    assert len(done["choices"]) == 2
    for choice in done["choices"]:
        text = "".join(e["token"]["text"] for e in tokens if e["index"] == choice["index"])
        assert text == choice["generated_text"]


def test_closing_a_stream_stops_the_generation_and_frees_its_row(models_dir):
    from app import create_app

    app = create_app({"TESTING": True, "MODEL_DIR": str(models_dir), "MAX_NEW_TOKENS": 10**6})
    response = app.test_client().post(
        "/generate", json={"prompt": "A", "max_new_tokens": 10**6, "stream": True}, buffered=False
    )
    chunks = iter(response.response)
    assert b'"token"' in next(chunks)
    assert load_of(app).requests == 1 and load_of(app).rows == 1
    response.close()  # what a WSGI server does when the client goes away
    wait_until_idle(app)
    close_models(app)


def test_a_stream_closed_before_its_first_byte_frees_its_row(app, client):
    response = client.post("/generate", json={"prompt": "A", "stream": True}, buffered=False)
    response.close()
    wait_until_idle(app)


def test_a_failure_mid_stream_arrives_as_an_error_event(app, client, monkeypatch):
    with app.app_context():
        generator = get_registry().get()
    real_stream = generator.stream

    class Failing:
        def __init__(self, inner):
            self.inner, self.closed = inner, False

        def __iter__(self):
            yield next(iter(self.inner))
            raise RuntimeError("disk on fire")

        def close(self):
            self.closed = True
            self.inner.close()

    opened = []
    monkeypatch.setattr(
        generator, "stream", lambda *a, **k: opened.append(Failing(real_stream(*a, **k))) or opened[-1]
    )
    events = sse_events(generate(client, prompt="A", max_new_tokens=5, stream=True).data)
    assert "token" in events[0]
    assert events[-1]["error"]["type"] == "internal_error" and "fire" not in events[-1]["error"]["message"]
    assert opened[0].closed
    wait_until_idle(app)


# --- /models and /health --------------------------------------------------------------------------


def test_models_lists_each_model(client):
    body = client.get("/models").get_json()
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"tiny-gpt", "tiny-lstm"} and body["unavailable"] == []
    gpt, lstm = by_name["tiny-gpt"], by_name["tiny-lstm"]
    assert (gpt["type"], lstm["type"]) == ("gpt", "lstm")
    assert gpt["context_length"] == 32 and lstm["context_length"] is None
    assert gpt["parameters"] > 0 and gpt["tokenizer"]["kind"] == "char"
    assert gpt["metrics"]["val_bits_per_char"] == 2.1
    assert gpt["default"] is True and lstm["default"] is False


def test_health(client):
    body = client.get("/health").get_json()
    assert body["status"] == "ok" and body["models"] == ["tiny-gpt", "tiny-lstm"]
    assert body["generations"] == {"active": 0, "queued": 0, "limit": 16}
