"""Running a checked `GenerationRequest` on a generator and shaping its results as API JSON (plain and
SSE)."""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

from app.errors import APIError, error_body
from app.schema import GenerationRequest

log = logging.getLogger(__name__)

JSON_SAFE_SEEDS = 2**53

# Alternatives shown per token when details are asked for: enough for the probability view's hover card.
TOP_ALTERNATIVES = 5

_REQUEST_OPTIONS = (
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "seed",
    "stop",
    "num_return_sequences",
)


def generation_options(request: GenerationRequest, time_limit: float) -> dict[str, Any]:
    """Keyword options for `Generator.generate` / `Generator.stream` (docs/architecture.md)."""
    options = {name: getattr(request, name) for name in _REQUEST_OPTIONS}
    options["stop"] = list(request.stop)
    options["time_limit"] = time_limit
    options["top_alternatives"] = TOP_ALTERNATIVES if request.details else 0
    if request.seed is None:
        # Drawn here rather than by the core (which uses all 63 bits) so that the seed reported back survives
        # JavaScript and every other JSON reader that keeps numbers as doubles: exact below 2**53.
        options["seed"] = secrets.randbelow(JSON_SAFE_SEEDS)
    return options


def core_error(error: ValueError) -> APIError:
    """The core's ValueError names the option first (e.g. "top_p must be in (0, 1]"): point `field` at it."""
    message = str(error)
    field = next((name for name in ("prompt", *_REQUEST_OPTIONS) if message.startswith(name)), None)
    return APIError(422, message, field=field)


def _finite(number: float) -> float | None:
    # JSON has no Infinity/NaN; a log-probability of -inf is reported as null rather than as invalid JSON.
    return number if math.isfinite(number) else None


def token_json(event: Any, details: bool) -> dict[str, Any]:
    token: dict[str, Any] = {"id": event.id, "text": event.text, "logprob": _finite(event.logprob)}
    if details:
        token["alternatives"] = [
            {"id": alt.id, "text": alt.text, "prob": _finite(alt.prob)} for alt in (event.alternatives or [])
        ]
    return token


def result_json(model: str, prompt: str, result: Any, details: bool, elapsed: float) -> dict[str, Any]:
    """The response body of a finished generation; top-level text fields mirror `choices[0]`."""
    choices = []
    for index, choice in enumerate(result.choices):
        entry: dict[str, Any] = {
            "index": index,
            "generated_text": choice.text,
            "full_text": prompt + choice.text,
            "finish_reason": choice.finish_reason,
            "generated_tokens": len(choice.tokens),
        }
        if details:
            entry["tokens"] = [token_json(event, True) for event in choice.tokens]
        choices.append(entry)
    generated = sum(entry["generated_tokens"] for entry in choices)
    first = choices[0]
    return {
        "model": model,
        "prompt": prompt,
        "generated_text": first["generated_text"],
        "full_text": first["full_text"],
        "finish_reason": first["finish_reason"],
        "prompt_tokens": result.prompt_tokens,
        "generated_tokens": first["generated_tokens"],
        "seed": result.seed,
        "timing": {
            "total_ms": round(elapsed * 1000, 1),
            "tokens_per_second": round(generated / elapsed, 1) if elapsed > 0 else None,
        },
        "choices": choices,
    }


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def sse_events(
    stream: Any, request: GenerationRequest, on_finish: Callable[[], None], started: float
) -> Iterator[str]:
    """Server-Sent Events for an open `GenerationStream`: one per token, then a summary with "done": true.

    `on_finish` (freeing the generation slot) runs however this ends: normal end, an error, or the client
    going away, which the WSGI server reports by closing this iterator (GeneratorExit at the current `yield`).
    """
    try:
        for event in stream:
            yield sse({"index": event.index, "token": token_json(event, request.details)})
        summary = result_json(
            request.model, request.prompt, stream.result, False, time.perf_counter() - started
        )
        yield sse({"done": True, **summary})
    except ValueError as error:
        yield sse(error_body(422, str(error), core_error(error).field))
    except Exception:  # noqa: BLE001 - headers are sent; the client can only be told in-band
        log.exception("generation failed mid-stream (model %s)", request.model)
        yield sse(error_body(500, "generation failed; the server log has the details"))
    finally:
        stream.close()
        on_finish()
