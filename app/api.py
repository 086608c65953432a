"""The JSON API: POST /generate (plain or streamed), GET /models, GET /health, GET /openapi.json."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from app.errors import APIError, invalid_input
from app.limits import get_slots
from app.openapi import openapi_document
from app.registry import get_registry
from app.responses import result_json, sse_events
from app.schema import parse_generation_request, request_fields

bp = Blueprint("api", __name__)


def _json_object_body() -> dict[str, Any]:
    """The body as a JSON object, parsed whatever its Content-Type (so that `curl -d '{...}'` works)."""
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        body = None
    if not isinstance(body, dict):
        example = f'curl {request.host_url}generate -d \'{{"prompt": "ROMEO:", "max_new_tokens": 50}}\''
        raise APIError(400, f"the request body must be a JSON object, for example: {example}")
    return body


@bp.post("/generate")
def generate() -> Response:
    registry = get_registry()
    config = current_app.config
    fields = request_fields(config, registry.names, registry.default_name)
    generation = parse_generation_request(_json_object_body(), fields, config["MAX_NEW_TOKENS"])
    if generation.model not in registry.generators:
        raise APIError(
            404, f"unknown model {generation.model!r}; available: {', '.join(registry.names)}", field="model"
        )
    generator = registry.get(generation.model)
    options = generation.core_options(config["GENERATION_TIMEOUT"])

    slots = get_slots()
    slot = slots.try_acquire()
    if slot is None:
        raise APIError(
            503, "the server is busy with other generations; retry in a moment", retry_after=slots.retry_after
        )
    started = time.perf_counter()
    if not generation.stream:
        with slot:
            try:
                result = generator.generate(generation.prompt, **options)
            except ValueError as error:
                raise invalid_input(error) from None
        return jsonify(
            result_json(
                generation.model, generation.prompt, result, generation.details, time.perf_counter() - started
            )
        )

    try:
        stream = generator.stream(generation.prompt, **options)  # checks options now, generates lazily
    except ValueError as error:
        slot.release()
        raise invalid_input(error) from None
    response = Response(
        sse_events(stream, generation, slot.release, started),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    # A server that never starts iterating the body (client gone before the first byte) still closes it.
    response.call_on_close(slot.release)
    return response


@bp.get("/models")
def models() -> Response:
    registry = get_registry()
    return jsonify(
        {
            "models": [registry.describe(name) for name in registry.names],
            "default": registry.default_name,
            "unavailable": [failure.to_json() for failure in registry.failures],
        }
    )


@bp.get("/health")
def health() -> Response:
    registry = get_registry()
    slots = get_slots()
    return jsonify(
        {
            "status": "ok",
            "models": registry.names,
            "default_model": registry.default_name,
            "unavailable": [failure.to_json() for failure in registry.failures],
            "generations": {"active": slots.active, "limit": slots.limit},
        }
    )


@bp.get("/openapi.json")
def openapi() -> Response:
    registry = get_registry()
    return jsonify(openapi_document(current_app.config, registry.names, registry.default_name))
