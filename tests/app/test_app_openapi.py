"""/openapi.json describes what the server does: its request schema is the validation table, and real
responses
match its response schemas (checked with a small JSON Schema subset validator, enough for this document)."""

from __future__ import annotations

import pytest

from tests.app.request_fields import REQUEST_FIELDS
from tests.app.sse import sse_events

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def check(instance, schema, doc, path="$"):
    """Raise AssertionError where `instance` breaks `schema` (type, required, properties, items, enum,
    const...)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return check(instance, doc["components"]["schemas"][name], doc, path)
    for part in schema.get("allOf", []):
        check(instance, part, doc, path)
    if "anyOf" in schema:
        failures = []
        for part in schema["anyOf"]:
            try:
                check(instance, part, doc, path)
            except AssertionError as failure:
                failures.append(str(failure))
        assert len(failures) < len(schema["anyOf"]), f"{path}: {instance!r} matches none of {failures}"
    if "not" in schema:
        try:
            check(instance, schema["not"], doc, path)
        except AssertionError:
            pass
        else:
            raise AssertionError(f"{path}: {instance!r} is what the schema excludes")
    for key, holds in (("minimum", lambda v, b: v >= b), ("maximum", lambda v, b: v <= b),
                       ("exclusiveMinimum", lambda v, b: v > b), ("exclusiveMaximum", lambda v, b: v < b)):
        if key in schema and isinstance(instance, (int, float)) and not isinstance(instance, bool):
            assert holds(instance, schema[key]), f"{path}: {instance!r} breaks {key} {schema[key]}"
    for key, holds in (("maxLength", lambda v, b: len(v) <= b), ("minLength", lambda v, b: len(v) >= b)):
        if key in schema and isinstance(instance, str):
            assert holds(instance, schema[key]), f"{path}: {instance!r} breaks {key} {schema[key]}"
    for key, holds in (("maxItems", lambda v, b: len(v) <= b), ("minItems", lambda v, b: len(v) >= b)):
        if key in schema and isinstance(instance, list):
            assert holds(instance, schema[key]), f"{path}: {len(instance)} items break {key} {schema[key]}"
    if "const" in schema:
        assert instance == schema["const"], f"{path}: {instance!r} != {schema['const']!r}"
    if "enum" in schema:
        assert instance in schema["enum"], f"{path}: {instance!r} not in {schema['enum']}"
    if "type" in schema:
        allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            (t == "integer" and isinstance(instance, int) and not isinstance(instance, bool))
            or (t == "number" and isinstance(instance, (int, float)) and not isinstance(instance, bool))
            or (t in TYPES and isinstance(instance, TYPES[t]))
            for t in allowed
        )
        assert ok, f"{path}: {instance!r} is not {allowed}"
    if isinstance(instance, dict):
        for key in schema.get("required", []):
            assert key in instance, f"{path}: missing {key}"
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(instance) <= set(properties), f"{path}: extra {set(instance) - set(properties)}"
        for key, value in instance.items():
            if key in properties:
                check(value, properties[key], doc, f"{path}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            check(item, schema["items"], doc, f"{path}[{i}]")


@pytest.fixture
def doc(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_document_shape(doc, app):
    assert doc["openapi"].startswith("3.1")
    assert {"/generate", "/models", "/health", "/openapi.json", "/v1/completions", "/v1/models"} <= set(doc["paths"])
    responses = doc["paths"]["/generate"]["post"]["responses"]
    assert {"200", "400", "404", "413", "422", "503"} <= set(responses)
    assert "Retry-After" in responses["503"]["headers"]
    assert "text/event-stream" in responses["200"]["content"]
    request = doc["components"]["schemas"]["GenerateRequest"]
    assert request["additionalProperties"] is False and request["required"] == ["prompt"]
    assert set(REQUEST_FIELDS) == set(request["properties"])
    properties = request["properties"]
    assert properties["prompt"]["maxLength"] == app.config["MAX_PROMPT_CHARS"]
    assert properties["model"]["enum"][:2] == ["tiny-gpt", "tiny-lstm"]
    assert properties["stop"]["maxItems"] == 4 and properties["num_return_sequences"]["maximum"] == 8
    assert properties["top_p"]["exclusiveMinimum"] == 0 and properties["top_p"]["maximum"] == 1


def test_every_field_limit_in_the_document_is_enforced(doc, client):
    """Just past each documented numeric bound, the server answers 422 for that field."""
    for name, schema in doc["components"]["schemas"]["GenerateRequest"]["properties"].items():
        probes = []
        if "minimum" in schema:
            probes.append(schema["minimum"] - 1)
        if "exclusiveMinimum" in schema:
            probes.append(schema["exclusiveMinimum"])
        if "maximum" in schema:
            probes.append(schema["maximum"] + 1)
        if "maxItems" in schema:
            probes.append(["x"] * (schema["maxItems"] + 1))
        body = {"prompt": "A"}
        for value in probes:
            response = client.post("/generate", json={**body, name: value})
            assert response.status_code == 422 and response.get_json()["error"]["field"] == name, (
                name,
                value,
            )


def test_the_document_and_the_server_agree_on_temperature(doc, client):
    """Temperature is 0 (greedy) or in [0.001, 100]: the document says so exactly, and null still means the default."""
    request = {"$ref": "#/components/schemas/GenerateRequest"}
    for value, allowed in ((0, True), (None, True), (0.001, True), (100, True), (1e-4, False), (101, False)):
        body = {"prompt": "A", "max_new_tokens": 1, "temperature": value}
        try:
            check(body, request, doc)
            documented = True
        except AssertionError:
            documented = False
        assert documented == allowed, value
        assert (client.post("/generate", json=body).status_code == 200) == allowed, value


def test_documented_request_example_is_accepted(doc, client):
    example = {
        "prompt": "ROMEO:",
        "max_new_tokens": 5,
        "temperature": 0.8,
        "top_k": 10,
        "top_p": 0.9,
        "repetition_penalty": 1.1,
        "seed": 1,
        "stop": ["\n\n"],
        "num_return_sequences": 2,
        "model": "tiny-lstm",
        "details": True,
        "stream": False,
    }
    check(example, {"$ref": "#/components/schemas/GenerateRequest"}, doc)
    assert client.post("/generate", json=example).status_code == 200


def test_responses_match_their_schemas(doc, client):
    def schema_of(path, method, status, media="application/json"):
        return doc["paths"][path][method]["responses"][status]["content"][media]["schema"]

    plain = client.post(
        "/generate", json={"prompt": "A", "max_new_tokens": 4, "details": True, "num_return_sequences": 2}
    ).get_json()
    check(plain, schema_of("/generate", "post", "200"), doc)
    events = sse_events(
        client.post("/generate", json={"prompt": "A", "max_new_tokens": 3, "stream": True}).data
    )
    for event in events[:-1]:
        check(event, {"$ref": "#/components/schemas/StreamTokenEvent"}, doc)
    check(events[-1], {"$ref": "#/components/schemas/StreamDoneEvent"}, doc)
    for status, body in (
        ("400", b"[]"),
        ("422", b'{"prompt": 1}'),
        ("404", b'{"prompt": "A", "model": "x"}'),
    ):
        response = client.post("/generate", data=body)
        assert response.status_code == int(status)
        check(response.get_json(), schema_of("/generate", "post", status), doc)
    check(client.get("/models").get_json(), schema_of("/models", "get", "200"), doc)
    check(client.get("/health").get_json(), schema_of("/health", "get", "200"), doc)


def test_openai_responses_match_their_schemas(doc, client):
    def schema_of(path, status, media="application/json"):
        return doc["paths"][path]["post"]["responses"][status]["content"][media]["schema"]

    request = {"$ref": "#/components/schemas/CompletionRequest"}
    body = {"model": "tiny-gpt", "prompt": ["A", "B"], "max_tokens": 3, "n": 2, "logprobs": 2, "echo": True,
            "stop": "\n", "seed": 1, "user": "u"}
    check(body, request, doc)
    check(client.post("/v1/completions", json=body).get_json(), schema_of("/v1/completions", "200"), doc)
    events = sse_events(client.post("/v1/completions", json={**body, "stream": True}).data.replace(
        b"data: [DONE]", b""))
    for event in events:
        check(event, {"$ref": "#/components/schemas/Completion"}, doc)
    for status, data in (("400", b'{"prompt": 1}'), ("404", b'{"prompt": "A", "model": "x"}')):
        response = client.post("/v1/completions", data=data)
        assert response.status_code == int(status)
        check(response.get_json(), schema_of("/v1/completions", status), doc)
    check(client.get("/v1/models").get_json(), doc["paths"]["/v1/models"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"], doc)
