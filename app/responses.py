"""Generation results as API JSON: a plain response body, and Server-Sent Events while a stream runs."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from app.errors import error_body, invalid_input
from app.schema import GenerationRequest

log = logging.getLogger(__name__)


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
        invalid = invalid_input(error)
        yield sse(error_body(invalid.status, invalid.message, invalid.field))
    except Exception:  # noqa: BLE001 - headers are sent; the client can only be told in-band
        log.exception("generation failed mid-stream (model %s)", request.model)
        yield sse(error_body(500, "generation failed; the server log has the details"))
    finally:
        stream.close()
        on_finish()
