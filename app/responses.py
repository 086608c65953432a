"""Generation results as API JSON, built with app/schema.py's models: a plain response body, and Server-Sent Events
while a stream runs."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

from app.errors import error_body, invalid_input
from app.schema import Alternative, Choice, GenerateResponse, StreamDoneEvent, StreamTokenEvent, Timing, Token

log = logging.getLogger(__name__)


def finite(number: float) -> float | None:
    # JSON has no Infinity/NaN; a log-probability of -inf is reported as null rather than as invalid JSON.
    return number if math.isfinite(number) else None


def token_model(event: Any, details: bool) -> Token:
    token = Token(id=event.id, text=event.text, logprob=finite(event.logprob))
    if details:
        token.rank = event.rank
        token.alternatives = [Alternative(id=alt.id, text=alt.text, prob=finite(alt.prob))
                              for alt in (event.alternatives or [])]
    return token


def result_fields(request: Any, result: Any, details: bool, elapsed: float) -> dict[str, Any]:
    """The fields of a finished generation's response; top-level text fields mirror `choices[0]`."""
    prompt = request.prompt
    lead = prompt if request.return_full_text else ""
    choices = [
        Choice(
            index=index,
            generated_text=lead + choice.text,
            full_text=prompt + choice.text,
            finish_reason=choice.finish_reason,
            generated_tokens=len(choice.tokens),
            tokens=[token_model(event, True) for event in choice.tokens] if details else None,
        )
        for index, choice in enumerate(result.choices)
    ]
    generated = sum(choice.generated_tokens for choice in choices)
    first = choices[0]
    return {
        "model": request.model,
        "prompt": prompt,
        "generated_text": first.generated_text,
        "full_text": first.full_text,
        "finish_reason": first.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "generated_tokens": first.generated_tokens,
        "seed": result.seed,
        "timing": Timing(total_ms=round(elapsed * 1000, 1),
                         tokens_per_second=round(generated / elapsed, 1) if elapsed > 0 else None),
        "choices": choices,
    }


def result_json(request: Any, result: Any, elapsed: float) -> dict[str, Any]:
    return GenerateResponse(**result_fields(request, result, request.details, elapsed)).model_dump()


def sse(payload: dict[str, Any] | str) -> str:
    """One event: a dict as JSON, or JSON (or `[DONE]`) already written."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n"


def sse_events(running: Any, request: Any, started: float) -> Iterator[str]:
    """Server-Sent Events for a started stream (app.engine.Started): one per token, then a summary with "done": true.

    The stream is closed however this ends: normal end, an error, or the client going away, which the WSGI server
    reports by closing this iterator (GeneratorExit at the current `yield`); closing it stops the generation.
    """
    stream = running.stream
    try:
        for event in running.events():
            yield sse(StreamTokenEvent(index=event.index, token=token_model(event, request.details)).model_dump_json())
        fields = result_fields(request, stream.result, False, time.perf_counter() - started)
        yield sse(StreamDoneEvent(**fields).model_dump_json())
    except ValueError as error:
        invalid = invalid_input(error)
        yield sse(error_body(invalid.status, invalid.message, invalid.field))
    except Exception:  # noqa: BLE001 - headers are sent; the client can only be told in-band
        log.exception("generation failed mid-stream (model %s)", request.model)
        yield sse(error_body(500, "generation failed; the server log has the details"))
    finally:
        stream.close()
