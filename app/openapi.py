"""The OpenAPI 3.1 document served at /openapi.json, built from the same field table the server validates
with (app/schema.py), whose generation fields are the core's option definitions (lm/options.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.errors import ERROR_TYPES
from app.schema import Field, request_fields
from lm.models import MODEL_TYPES
from lm.options import FINISH_REASONS

# Python types of the option definitions -> JSON Schema types.
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _field_schema(field: Field, description: str | None = None) -> dict[str, Any]:
    option = field.option
    # Every field may be null, which the server reads as "not given" (use the default).
    schema: dict[str, Any] = {
        "type": [_JSON_TYPES[option.type], "null"],
        "description": description or option.description,
    }
    if option.default is not None:
        schema["default"] = list(option.default) if option.type is list else option.default
    for key, value in (
        ("minimum", option.minimum),
        ("maximum", option.maximum),
        ("exclusiveMinimum", option.exclusive_minimum),
        ("exclusiveMaximum", option.exclusive_maximum),
    ):
        if value is not None:
            schema[key] = value
    if option.smallest_positive is not None:  # temperature: 0, or at least 0.001 (null still allowed)
        schema["not"] = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": option.smallest_positive}
    if option.type is str and option.max_length is not None:
        schema["maxLength"] = option.max_length
    if option.type is list:
        schema["items"] = {"type": "string", "minLength": 1, "maxLength": option.max_length}
        schema["maxItems"] = option.max_items
    if field.enum is not None:
        schema["enum"] = [*field.enum, None]
    return schema


def _request_schema(fields: list[Field]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for field in fields:
        properties[field.name] = _field_schema(field)
        for alias in field.aliases:
            properties[alias] = _field_schema(field, f"Alias of {field.name} (give only one of them).")
    return {
        "type": "object",
        "properties": properties,
        "required": [field.name for field in fields if field.required],
        "additionalProperties": False,
    }


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
    }


_FINISH_REASON = {"type": "string", "enum": list(FINISH_REASONS)}


def _component_schemas() -> dict[str, Any]:
    alternative = _object(
        {"id": {"type": "integer"}, "text": {"type": "string"}, "prob": {"type": ["number", "null"]}}
    )
    token = _object(
        {
            "id": {"type": "integer"},
            "text": {
                "type": "string",
                "description": "Visible text this token adds (may be empty while a possible "
                "stop string is held back).",
            },
            "logprob": {"type": ["number", "null"], "description": "Natural log-probability of the token."},
            "alternatives": {
                "type": "array",
                "items": _ref("Alternative"),
                "description": "Most likely tokens at this step (only with details).",
            },
        },
        ["id", "text", "logprob"],
    )
    choice = _object(
        {
            "index": {"type": "integer"},
            "generated_text": {"type": "string"},
            "full_text": {"type": "string"},
            "finish_reason": _FINISH_REASON,
            "generated_tokens": {"type": "integer"},
            "tokens": {"type": "array", "items": _ref("Token"), "description": "Only when details is true."},
        },
        ["index", "generated_text", "full_text", "finish_reason", "generated_tokens"],
    )
    timing = _object({"total_ms": {"type": "number"}, "tokens_per_second": {"type": ["number", "null"]}})
    response = _object(
        {
            "model": {"type": "string"},
            "prompt": {"type": "string"},
            "generated_text": {"type": "string", "description": "The continuation (of choices[0])."},
            "full_text": {"type": "string", "description": "Prompt + continuation (of choices[0])."},
            "finish_reason": _FINISH_REASON,
            "prompt_tokens": {"type": "integer"},
            "generated_tokens": {"type": "integer"},
            "seed": {
                "type": "integer",
                "description": "The seed used; send it back to reproduce this output.",
            },
            "timing": _ref("Timing"),
            "choices": {"type": "array", "items": _ref("Choice"), "minItems": 1},
        }
    )
    stream_token = _object(
        {"index": {"type": "integer", "description": "Which returned sequence."}, "token": _ref("Token")}
    )
    stream_done = {"allOf": [_object({"done": {"const": True}}), _ref("GenerateResponse")]}
    error = _object(
        {
            "error": _object(
                {
                    "type": {"type": "string", "enum": sorted(set(ERROR_TYPES.values()))},
                    "message": {"type": "string"},
                    "field": {
                        "type": "string",
                        "description": "The request field at fault, when there is one.",
                    },
                },
                ["type", "message"],
            )
        }
    )
    failure = _object({"name": {"type": "string"}, "error": {"type": "string"}})
    model = _object(
        {
            "name": {"type": "string"},
            "type": {"type": "string", "enum": list(MODEL_TYPES)},
            "parameters": {"type": "integer"},
            "tokenizer": _object({"kind": {"type": "string"}, "vocab_size": {"type": "integer"}}),
            "context_length": {
                "type": ["integer", "null"],
                "description": "null for the LSTM (no fixed context).",
            },
            "quantization": {
                "type": ["string", "null"],
                "enum": ["int8", None],
                "description": "int8: the linear layers run in int8 (QUANTIZE setting); null: float32.",
            },
            "metrics": {"type": "object"},
            "default": {"type": "boolean"},
        }
    )
    models = _object(
        {
            "models": {"type": "array", "items": _ref("Model")},
            "default": {"type": "string"},
            "unavailable": {"type": "array", "items": _ref("LoadFailure")},
        }
    )
    health = _object(
        {
            "status": {"const": "ok"},
            "models": {"type": "array", "items": {"type": "string"}},
            "default_model": {"type": "string"},
            "unavailable": {"type": "array", "items": _ref("LoadFailure")},
            "generations": _object({"active": {"type": "integer"}, "limit": {"type": "integer"}}),
        }
    )
    return {
        "Alternative": alternative,
        "Token": token,
        "Choice": choice,
        "Timing": timing,
        "GenerateResponse": response,
        "StreamTokenEvent": stream_token,
        "StreamDoneEvent": stream_done,
        "Error": error,
        "LoadFailure": failure,
        "Model": model,
        "ModelList": models,
        "Health": health,
    }


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def openapi_document(config: Mapping[str, Any], model_names: list[str], default_model: str) -> dict[str, Any]:
    fields = request_fields(config, model_names, default_model)
    schemas = _component_schemas()
    schemas["GenerateRequest"] = _request_schema(fields)
    generate = {
        "summary": "Continue a prompt",
        "description": (
            "The body is parsed as JSON whatever its Content-Type. Unknown fields are rejected (422). "
            f"max_new_tokens above {config['MAX_NEW_TOKENS']} is capped; a generation stops after "
            f'{config["GENERATION_TIMEOUT"]} s with finish_reason "time_limit".'
        ),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("GenerateRequest")}},
        },
        "responses": {
            "200": {
                "description": (
                    "The generation; with stream=true, Server-Sent Events: one StreamTokenEvent per token, "
                    "then a StreamDoneEvent, or an event holding an Error if it fails midway."
                ),
                "content": {
                    "application/json": {"schema": _ref("GenerateResponse")},
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "x-events": {
                            "oneOf": [_ref("StreamTokenEvent"), _ref("StreamDoneEvent"), _ref("Error")]
                        },
                    },
                },
            },
            "400": _error("The body is not a JSON object."),
            "404": _error("Unknown model."),
            "413": _error("The body is larger than 64 KiB."),
            "422": _error("A field is unknown, of the wrong type or out of range (see error.field)."),
            "503": _error(
                "Too many generations in progress; retry after the Retry-After delay.",
                {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Scriptorium",
            "version": "1.0",
            "description": "Text generation with small language models (AWD-LSTM and GPT). See docs/api.md.",
        },
        # Relative to where this document is served: right behind any proxy, http or https.
        "servers": [{"url": "/"}],
        "paths": {
            "/generate": {"post": generate},
            "/models": {
                "get": {
                    "summary": "The models this server has loaded",
                    "responses": {"200": _json("Models, the default, and load failures.", "ModelList")},
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness and load",
                    "responses": {"200": _json("The server is up.", "Health")},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1 document.", "content": {"application/json": {}}}
                    },
                }
            },
        },
        "components": {"schemas": schemas},
    }
