"""The OpenAPI 3.1 document served at /openapi.json: its schemas are the pydantic models the server validates and
answers with (app/schema.py); only the paths, which say which model each route takes and returns, are written here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from app import schema
from lm.models import MODEL_TYPES

REF = "#/components/schemas/{model}"
RESPONSES = (
    schema.GenerateResponse, schema.StreamTokenEvent, schema.StreamDoneEvent, schema.ErrorBody, schema.OpenAIErrorBody,
    schema.ModelList, schema.Health, schema.Completion, schema.ModelObjectList,
)


class OpenAPISchema(GenerateJsonSchema):
    """pydantic's JSON Schema, with a nullable simple type written as OpenAPI 3.1 does (`"type": ["integer",
    "null"]` beside its bounds) rather than as an anyOf."""

    def nullable_schema(self, schema_: Any) -> dict[str, Any]:
        inner = self.generate_inner(schema_["schema"])
        if "const" in inner:  # a one-value Literal: an enum, so that null can join it
            inner = {**{key: value for key, value in inner.items() if key != "const"}, "enum": [inner["const"]]}
        if isinstance(inner.get("type"), str) and "$ref" not in inner:
            nullable = {**inner, "type": [inner["type"], "null"]}
            if "enum" in inner:
                nullable["enum"] = [*inner["enum"], None]
            return nullable
        return super().nullable_schema(schema_)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(body: type[BaseModel], statuses: Mapping[str, str]) -> dict[str, Any]:
    answers = {status: _json(description, body) for status, description in statuses.items()}
    for status, header in (("429", "Retry-After"), ("503", "Retry-After"), ("401", "WWW-Authenticate")):
        if status in answers:
            kind = "integer" if header == "Retry-After" else "string"
            answers[status]["headers"] = {header: {"schema": {"type": kind}}}
    return answers


def _schemas(requests: schema.RequestModels) -> dict[str, Any]:
    pairs = [(requests.generate, "validation"), (requests.completion, "validation")]
    pairs += [(model, "serialization") for model in RESPONSES]
    _, document = models_json_schema(pairs, ref_template=REF, schema_generator=OpenAPISchema)
    schemas = document["$defs"]
    schemas["ModelInfo"]["properties"]["type"]["enum"] = list(MODEL_TYPES)
    request = schemas["GenerateRequest"]
    for alias in schema.spellings(requests.generate, "max_new_tokens")[1:]:
        request["properties"][alias] = {**request["properties"]["max_new_tokens"],
                                        "description": "Alias of max_new_tokens (give only one of them)."}
    return schemas


# No credentials, or a bearer key when the server sets API_KEYS (app/access.py).
KEYED = [{}, {"bearer": []}]
COMMON_ERRORS = {
    "401": "API_KEYS is set and the request has neither `Authorization: Bearer <key>` nor a playground page's token.",
    "413": "The body is larger than 64 KiB.",
    "429": "This key (or client address) is over RATE_LIMIT; retry after the Retry-After delay.",
    "503": "The batch is full and too many requests wait (or this one waited too long); retry after the Retry-After "
    "delay.",
}


def openapi_document(config: Mapping[str, Any], requests: schema.RequestModels) -> dict[str, Any]:
    generate = {
        "summary": "Continue a prompt",
        "security": KEYED,
        "description": (
            "The body is parsed as JSON whatever its Content-Type. Unknown fields are rejected (422). Numeric fields "
            'also take numeric strings ("30", "0.6"), as HTML forms send them. '
            f"max_new_tokens above {config['MAX_NEW_TOKENS']} is capped; a generation stops after "
            f'{config["GENERATION_TIMEOUT"]} s with finish_reason "time_limit".'
        ),
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(requests.generate)}}},
        "responses": {
            "200": {
                "description": (
                    "The generation; with stream=true, Server-Sent Events: one StreamTokenEvent per token, then a "
                    "StreamDoneEvent, or an event holding an ErrorBody if it fails midway."
                ),
                "content": {
                    "application/json": {"schema": _ref(schema.GenerateResponse)},
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "x-events": {"oneOf": [_ref(schema.StreamTokenEvent), _ref(schema.StreamDoneEvent),
                                               _ref(schema.ErrorBody)]},
                    },
                },
            },
            **_errors(schema.ErrorBody, {
                "400": "The body is not a JSON object.",
                "404": "Unknown model.",
                "422": "A field is unknown, of the wrong type or out of range (see error.field).",
                **COMMON_ERRORS,
            }),
        },
    }
    completions = {
        "summary": "OpenAI-compatible text completion",
        "security": KEYED,
        "description": "OpenAI's completions API (docs/api.md says what is supported); errors are OpenAI error "
        "objects.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(requests.completion)}}},
        "responses": {
            "200": {
                "description": "The completion; with stream=true, Server-Sent Events of completion chunks, then "
                "`data: [DONE]`.",
                "content": {
                    "application/json": {"schema": _ref(schema.Completion)},
                    "text/event-stream": {"schema": {"type": "string"},
                                          "x-events": {"oneOf": [_ref(schema.Completion)]}},
                },
            },
            **_errors(schema.OpenAIErrorBody, {
                "400": "The body is not a JSON object, or a field is wrong (see error.param).",
                "404": "Unknown model.",
                **COMMON_ERRORS,
            }),
        },
    }

    def get(summary: str, description: str, model: type[BaseModel], keyed: bool = True) -> dict[str, Any]:
        operation = {"summary": summary, "responses": {"200": _json(description, model)}}
        return {"get": {**operation, "security": KEYED} if keyed else operation}

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Scriptorium",
            "version": "1.1",
            "description": "Text generation with small language models (AWD-LSTM and GPT). See docs/api.md.",
        },
        # Relative to where this document is served: right behind any proxy, http or https.
        "servers": [{"url": "/"}],
        "components": {
            "schemas": _schemas(requests),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Asked only when the server sets API_KEYS."}},
        },
        "paths": {
            "/generate": {"post": generate},
            "/v1/completions": {"post": completions},
            "/v1/models": get("The models, as OpenAI's model list", "The models.", schema.ModelObjectList),
            "/v1/chat/completions": {"post": {"summary": "Not served: these are completion models", "responses": {
                "404": _json("Always: an error object pointing to /v1/completions.", schema.OpenAIErrorBody)}}},
            "/models": get("The models this server has loaded", "Models, the default, and load failures.",
                           schema.ModelList),
            "/health": get("Liveness and load", "The server is up.", schema.Health, keyed=False),
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": KEYED, "responses": {
                "200": {"description": "Prometheus' text format.", "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI 3.1 document.", "content": {"application/json": {}}}}}},
        },
    }
