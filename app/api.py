"""The JSON API: POST /generate (plain or streamed), GET /models, GET /health, GET /openapi.json."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, jsonify

from app import engine
from app.errors import APIError
from app.openapi import openapi_document
from app.registry import EXTENSION as MODELS
from app.registry import get_registry
from app.responses import result_json, sse_events
from app.schema import Generations, Health, ModelList, RequestModels
from app.validation import json_object_body, parse_request

bp = Blueprint("api", __name__)

EXTENSION = "scriptorium.requests"
GENERATE_EXAMPLE = '{"prompt": "ROMEO:", "max_new_tokens": 50}'


def get_request_models() -> RequestModels:
    return current_app.extensions[EXTENSION]


@bp.post("/generate")
def generate() -> Response:
    registry = get_registry()
    config = current_app.config
    body = json_object_body("/generate", GENERATE_EXAMPLE)
    generation = parse_request(get_request_models().generate, body)
    if generation.model not in registry.generators:
        raise APIError(
            404, f"unknown model {generation.model!r}; available: {', '.join(registry.names)}", field="model"
        )
    generator = registry.get(generation.model)
    options = generation.core_options(config["GENERATION_TIMEOUT"], config["MAX_NEW_TOKENS"])
    started = time.perf_counter()
    if not generation.stream:
        result = engine.generate(generator, generation.prompt, options)
        return jsonify(result_json(generation, result, time.perf_counter() - started))
    running = engine.start_stream(generator, generation.prompt, options)
    response = Response(
        sse_events(running, generation, started),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    # A server that never starts iterating the body (client gone before the first byte) still closes it.
    response.call_on_close(running.stream.close)
    return response


@bp.get("/models")
def models() -> Response:
    registry = get_registry()
    return jsonify(ModelList(
        models=[registry.describe(name) for name in registry.names],
        default=registry.default_name,
        unavailable=[failure.to_json() for failure in registry.failures],
    ).model_dump())


@bp.get("/health")
def health() -> Response:
    registry = get_registry()
    active, queued = registry.load()
    return jsonify(Health(
        status="ok",
        models=registry.names,
        default_model=registry.default_name,
        unavailable=[failure.to_json() for failure in registry.failures],
        generations=Generations(active=active, queued=queued, limit=current_app.config["MAX_BATCH_SIZE"]),
    ).model_dump())


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(current_app.config, get_request_models()))


def init_app(app: Flask) -> None:
    """The request models for this app's settings and models (the registry is loaded first)."""
    registry = app.extensions[MODELS]
    app.extensions[EXTENSION] = RequestModels(app.config, registry.names, registry.default_name)
    app.register_blueprint(bp)
