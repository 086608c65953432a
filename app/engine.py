"""Calling a model's generator from a view: what the core refuses or cannot take on becomes the API's error.

A generation goes to its model's scheduler (lm/scheduler.py), which batches it with every other one in this process.
A full queue, or a request that waited QUEUE_TIMEOUT for room, is 503 with Retry-After; options the core refuses are
422. A stream is started here and its first token awaited before the response begins, so that those errors still
get their status, not an event inside a 200.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import current_app

from app.errors import APIError, invalid_input
from app.metrics import observe_first_token
from lm.scheduler import Overloaded, SchedulerClosed


def retry_after() -> int:
    """Seconds a client is told to wait before retrying (whole seconds, as Retry-After wants)."""
    return max(1, math.ceil(current_app.config["QUEUE_TIMEOUT"]))


@contextmanager
def core_errors() -> Iterator[None]:
    try:
        yield
    except Overloaded:
        raise APIError(503, "the server is busy with other generations; retry in a moment",
                       retry_after=retry_after()) from None
    except SchedulerClosed:
        raise APIError(503, "the server is shutting down; retry in a moment", retry_after=retry_after()) from None
    except ValueError as error:
        raise invalid_input(error) from None


def generate(generator: Any, prompt: str | list[int], options: dict[str, Any]) -> Any:
    """The finished `GenerationResult`."""
    with core_errors():
        result = generator.generate(prompt, **options)
    observe_first_token(generator.name, result.time_to_first_token)
    return result


def generate_all(generator: Any, prompts: list[Any], options: dict[str, Any]) -> list[Any]:
    """The finished results of several prompts, queued together so that they share the scheduler's batch."""
    with core_errors():
        streams = []
        try:
            for prompt in prompts:
                streams.append(generator.stream(prompt, **options))
            for stream in streams:
                for _event in stream:
                    pass
        except BaseException:
            for stream in streams:
                stream.close()
            raise
    for stream in streams:
        observe_first_token(generator.name, stream.result.time_to_first_token)
    return [stream.result for stream in streams]


@dataclass
class Started:
    """A stream whose first token has arrived (None: it ended without one)."""

    stream: Any
    first: Any
    rest: Iterator[Any]

    def events(self) -> Iterator[Any]:
        if self.first is not None:
            yield self.first
        yield from self.rest


def start_stream(generator: Any, prompt: str | list[int], options: dict[str, Any]) -> Started:
    """A stream, once it has room and its first token."""
    asked = time.perf_counter()
    with core_errors():
        stream = generator.stream(prompt, **options)
        events = iter(stream)
        try:
            first = next(events)
        except StopIteration:
            first = None
        except BaseException:
            stream.close()
            raise
    if first is not None:
        observe_first_token(generator.name, time.perf_counter() - asked)
    return Started(stream, first, events)
