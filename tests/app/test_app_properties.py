"""Property: whatever JSON a client sends to /generate, the answer is never a 5xx (and always JSON or SSE)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from tests.app.request_fields import LENGTH_ALIASES, REQUEST_FIELDS
from tests.app.sse import sse_events

FIELDS = list(REQUEST_FIELDS)
ALIASES = LENGTH_ALIASES

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    # JSON may spell lone UTF-16 surrogates ("\ud800"); st.text() leaves them out unless asked.
    | st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=4)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

# Values the server accepts, and values just around the edges of what it accepts.
valid = {
    "prompt": st.text(max_size=40),
    "max_new_tokens": st.integers(0, 50),
    "max_length": st.integers(0, 50),
    "max_seq_len": st.integers(0, 50),
    "temperature": st.just(0) | st.floats(0.001, 3),
    "top_k": st.integers(0, 200),
    "top_p": st.floats(0.01, 1),
    "repetition_penalty": st.floats(0.5, 3),
    "seed": st.integers(0, 2**63 - 1),
    "stop": st.lists(st.text(min_size=1, max_size=3), max_size=4),
    "num_return_sequences": st.integers(1, 8),
    "model": st.sampled_from(["tiny-gpt", "tiny-lstm"]),
    "details": st.booleans(),
    "stream": st.booleans(),
    "return_full_text": st.booleans(),
}
edges = {
    "prompt": st.text(st.characters(codec=None, categories=["Cs", "Ll"]), max_size=5),
    "max_new_tokens": st.integers(-2, 10**6) | st.integers(-2, 10**6).map(str) | st.text(max_size=6),
    "max_length": st.integers(-2, 10**6),
    "max_seq_len": st.integers(-2, 10**6),
    "temperature": st.floats(-1, 200) | st.floats(0, 0.002),
    "top_k": st.integers(-1, 2 * 10**6),
    "top_p": st.floats(0, 1.2),
    "repetition_penalty": st.floats(0, 150) | st.floats(0, 0.002),
    "seed": st.integers(-1, 2**64),
    "stop": st.lists(st.text(max_size=70), max_size=5),
    "num_return_sequences": st.integers(-1, 9),
    "model": st.text(max_size=10),
    "details": json_values,
    "stream": json_values,
    "return_full_text": json_values,
}


@st.composite
def bodies(draw):
    """A JSON object with a prompt and any other fields, all valid (so that it generates) or all valid but
    one; or any fields with any mixture of valid, edge and arbitrary values, sometimes an unknown one too."""
    names = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS)))
    mode = draw(st.sampled_from(["valid", "one_bad", "mixed"]))
    if mode != "mixed":
        # A prompt, and one spelling of max_new_tokens at most: either mistake alone is refused.
        names = ["prompt", *(name for name in names if name != "prompt")]
        aliases = [name for name in names if name in ALIASES]
        names = [name for name in names if name not in ALIASES or name == (aliases or [None])[0]]
    body = {name: draw(valid[name]) for name in names}
    if mode == "one_bad" and names:
        # The prompt twice as often: it is the one field that reaches the tokenizer.
        name = draw(st.sampled_from(["prompt", *names]))
        body[name] = draw(edges[name] | json_values)
    elif mode == "mixed":
        for name in names:
            body[name] = draw(valid[name] | edges[name] | json_values)
    if mode == "mixed" and draw(st.booleans()):
        body[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(bodies(), bodies(), bodies(), json_values))
def test_no_json_body_yields_a_server_error(models_dir, body):
    app = _app(models_dir)
    response = app.test_client().post("/generate", data=json.dumps(body))
    assert response.status_code < 500, (body, response.data[:300])
    if response.mimetype == "text/event-stream":
        events = sse_events(response.data)
        assert events and ("done" in events[-1] or events[-1]["error"]["type"] != "internal_error"), events[
            -1
        ]
    else:
        payload = response.get_json()
        assert ("error" in payload) == (response.status_code != 200)


_apps: dict = {}


def _app(models_dir):
    # One app for all examples: hypothesis re-runs the test body, not the fixtures.
    if models_dir not in _apps:
        _apps[models_dir] = create_app(
            {"TESTING": True, "MODEL_DIR": str(models_dir), "MAX_NEW_TOKENS": 8, "QUEUE_TIMEOUT": 1.0}
        )
    return _apps[models_dir]
