"""Property: whatever JSON a client sends to /generate, the answer is never a 5xx (and always JSON or SSE)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from tests.app.sse import sse_events

FIELDS = [
    "prompt",
    "max_new_tokens",
    "max_length",
    "max_seq_len",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "seed",
    "stop",
    "num_return_sequences",
    "model",
    "details",
    "stream",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

# Values near the interesting edges, so that many examples get past validation and actually generate.
plausible = {
    "prompt": st.text(max_size=40),
    "max_new_tokens": st.integers(-2, 50),
    "max_length": st.integers(-2, 50),
    "max_seq_len": st.integers(-2, 50),
    "temperature": st.floats(-1, 3) | st.just(0),
    "top_k": st.integers(-1, 200),
    "top_p": st.floats(0, 1.2),
    "repetition_penalty": st.floats(0, 150),
    "seed": st.integers(-1, 2**64),
    "stop": st.lists(st.text(max_size=3), max_size=5),
    "num_return_sequences": st.integers(0, 9),
    "model": st.sampled_from(["tiny-gpt", "tiny-lstm", "other"]),
    "details": st.booleans(),
    "stream": st.booleans(),
}


@st.composite
def bodies(draw):
    body = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS))):
        body[name] = draw(plausible[name] if draw(st.booleans()) else json_values)
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies() | json_values)
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
