"""The OpenAI-compatible endpoints: shapes through Flask's test client, then OpenAI's own `openai` package against a
live server (plain, n > 1, streaming, logprobs, echo scoring, errors)."""

from __future__ import annotations

import json

import pytest
import torch

from app.registry import get_registry
from lm import load
from tests.app.servers import Server


def complete(client, **body):
    return client.post("/v1/completions", json=body)


def test_a_completion_has_openais_shape(client):
    body = complete(client, model="tiny-gpt", prompt="ROMEO:", max_tokens=6, seed=2, user="someone").get_json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == "tiny-gpt"
    [choice] = body["choices"]
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"} and choice["logprobs"] is None
    assert choice["finish_reason"] in ("length", "stop")
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12}
    same = client.post("/generate", json={"prompt": "ROMEO:", "max_new_tokens": 6, "seed": 2}).get_json()
    assert choice["text"] == same["generated_text"]


def test_several_prompts_and_n_give_prompts_times_n_choices(client):
    body = complete(client, prompt=["A", "B", "C"], n=2, max_tokens=3, seed=1).get_json()
    assert [c["index"] for c in body["choices"]] == list(range(6))
    assert body["usage"]["prompt_tokens"] == 3 and body["usage"]["completion_tokens"] == 18


def test_stop_takes_a_string_or_a_list(client):
    greedy = complete(client, prompt="ROMEO:", max_tokens=30, temperature=0).get_json()["choices"][0]["text"]
    stop = greedy[4:6]
    for given in (stop, [stop, "never"]):
        choice = complete(client, prompt="ROMEO:", max_tokens=30, temperature=0, stop=given).get_json()["choices"][0]
        assert choice["text"] == greedy[: greedy.index(stop)] and choice["finish_reason"] == "stop"


def test_stream_sends_chunks_then_done(client):
    response = complete(client, prompt="ROMEO:", max_tokens=5, seed=4, stream=True,
                        stream_options={"include_usage": True})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    blocks = [b for b in response.data.decode().split("\n\n") if b]
    assert blocks[-1] == "data: [DONE]"
    chunks = [json.loads(b[len("data: "):]) for b in blocks[:-1]]
    *tokens, finish, usage = chunks
    assert all(c["object"] == "text_completion" and "usage" not in c for c in tokens)
    assert finish["choices"][0]["finish_reason"] == "length" and usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 5
    plain = complete(client, prompt="ROMEO:", max_tokens=5, seed=4).get_json()["choices"][0]["text"]
    assert "".join(c["choices"][0]["text"] for c in tokens) == plain


def test_echo_with_max_tokens_zero_scores_the_prompt(app, client):
    prompt = "ROMEO: But soft, what light"  # within the tiny GPT's context of 32: one window
    body = complete(client, model="tiny-gpt", prompt=prompt, max_tokens=0, echo=True, logprobs=1).get_json()
    [choice] = body["choices"]
    logprobs = choice["logprobs"]
    assert choice["text"] == prompt and body["usage"]["completion_tokens"] == 0
    assert "".join(logprobs["tokens"]) == prompt and logprobs["token_logprobs"][0] is None
    assert logprobs["top_logprobs"][0] is None and logprobs["text_offset"][:3] == [0, 1, 2]
    generator = load(app.config["MODEL_DIR"] + "/tiny-gpt")
    ids = generator.tokenizer.encode(prompt)
    with torch.no_grad():
        expected = generator.model(torch.tensor([ids[:-1]])).logits[0].log_softmax(-1)
    for i, logprob in enumerate(logprobs["token_logprobs"][1:]):
        assert logprob == pytest.approx(float(expected[i, ids[i + 1]]), abs=1e-4)
        top = logprobs["top_logprobs"][i + 1]
        assert max(top.values()) == pytest.approx(float(expected[i].max()), abs=1e-4)  # what lm-eval's is_greedy reads
    generator.close()


def test_echo_and_logprobs_with_generation(client):
    body = complete(client, prompt="ROMEO:", max_tokens=4, echo=True, logprobs=3, seed=5).get_json()
    choice = body["choices"][0]
    logprobs = choice["logprobs"]
    assert choice["text"].startswith("ROMEO:") and len(logprobs["tokens"]) == 6 + 4
    for top in logprobs["top_logprobs"][1:]:
        assert 3 <= len(top) <= 4  # the 3 most likely, and the chosen token when it is not among them
    assert logprobs["text_offset"] == list(range(10))


def test_token_id_prompts(app, client):
    with app.app_context():
        ids = get_registry().get("tiny-gpt").tokenizer.encode("ROMEO:")
    by_text = complete(client, prompt="ROMEO:", max_tokens=5, seed=3).get_json()["choices"][0]["text"]
    for prompt in (ids, [ids]):
        body = complete(client, prompt=prompt, max_tokens=5, seed=3, echo=True).get_json()
        assert body["choices"][0]["text"] == "ROMEO:" + by_text and body["usage"]["prompt_tokens"] == 6


@pytest.mark.parametrize("body, status, param", [
    ({"prompt": "A", "temperature": -1}, 400, "temperature"),
    ({"prompt": "A", "max_tokens": "5"}, 400, "max_tokens"),  # OpenAI's types, strictly
    ({"prompt": "A", "logprobs": 6}, 400, "logprobs"),
    ({"prompt": "A", "n": 9}, 400, "n"),
    ({"prompt": "A", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"prompt": [[1, -2]]}, 400, "prompt"),
    ({"prompt": [[10**6]]}, 400, "prompt"),
    ({"prompt": "A", "presence_penalty": 0.5}, 400, "presence_penalty"),
    ({"prompt": "A", "frequency_penalty": -1}, 400, "frequency_penalty"),
    ({"prompt": "A", "best_of": 2}, 400, "best_of"),
    ({"max_tokens": 2}, 400, "prompt"),
    ({"prompt": "A", "model": "gpt-4"}, 404, "model"),
])
def test_errors_are_openai_error_objects(client, body, status, param):
    response = complete(client, **body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert error["type"] == "invalid_request_error" and param in error["message"]


def test_presence_and_frequency_penalties_of_zero_are_accepted(client):
    body = complete(client, prompt="A", max_tokens=2, presence_penalty=0, frequency_penalty=0.0)
    assert body.status_code == 200


def test_chat_completions_points_to_completions(client):
    response = client.post("/v1/chat/completions", json={"model": "tiny-gpt", "messages": [{"role": "user",
                                                                                            "content": "hi"}]})
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert "/v1/completions" in error["message"] and error["type"] == "invalid_request_error"


def test_models_lists_the_models_as_openai_does(client):
    body = client.get("/v1/models").get_json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["tiny-gpt", "tiny-lstm"]
    assert all(m["object"] == "model" and m["owned_by"] == "scriptorium" and m["created"] > 0 for m in body["data"])


def test_a_body_that_is_not_json_is_an_openai_error(client):
    response = client.post("/v1/completions", data=b"nope")
    assert response.status_code == 400 and "curl" in response.get_json()["error"]["message"]
    assert client.get("/v1/nowhere").get_json()["error"]["code"] == "not_found"


# --- OpenAI's client against a live server -----------------------------------------------------------------------

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from tests.app.conftest import build_models

    server = Server("waitress", build_models(tmp_path_factory.mktemp("openai-models")))
    yield openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    server.stop()


@pytest.mark.slow
def test_openai_client_plain_n_and_streaming(live):
    plain = live.completions.create(model="tiny-gpt", prompt="ROMEO:", max_tokens=8, seed=7, user="tests")
    assert plain.choices[0].text and plain.usage.completion_tokens == 8 and plain.object == "text_completion"
    several = live.completions.create(model="tiny-lstm", prompt="ROMEO:", max_tokens=4, n=3, seed=7)
    assert [c.index for c in several.choices] == [0, 1, 2]
    chunks = list(live.completions.create(model="tiny-gpt", prompt="ROMEO:", max_tokens=8, seed=7, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert [m.id for m in live.models.list()] == ["tiny-gpt", "tiny-lstm"]


@pytest.mark.slow
def test_openai_client_logprobs_and_echo_scoring(live):
    scored = live.completions.create(model="tiny-gpt", prompt="ROMEO: But soft", max_tokens=0, echo=True, logprobs=1)
    logprobs = scored.choices[0].logprobs
    assert scored.choices[0].text == "ROMEO: But soft" and logprobs.token_logprobs[0] is None
    assert all(lp <= 0 for lp in logprobs.token_logprobs[1:]) and len(logprobs.tokens) == 15
    generated = live.completions.create(model="tiny-gpt", prompt="ROMEO:", max_tokens=5, logprobs=2, seed=1)
    assert len(generated.choices[0].logprobs.top_logprobs) == 5


@pytest.mark.slow
def test_openai_client_errors(live):
    with pytest.raises(openai.BadRequestError) as caught:
        live.completions.create(model="tiny-gpt", prompt="A", temperature=-1)
    assert caught.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        live.completions.create(model="no-such-model", prompt="A")
    with pytest.raises(openai.NotFoundError, match="/v1/completions"):
        live.chat.completions.create(model="tiny-gpt", messages=[{"role": "user", "content": "hi"}])
