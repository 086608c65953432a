"""OpenAI-compatible endpoints, so that OpenAI's client libraries, evaluation harnesses (EleutherAI's
lm-evaluation-harness `local-completions`) and front ends can use these models: `POST /v1/completions`,
`GET /v1/models`, and `POST /v1/chat/completions`, which says these are completion models.

Shapes are app/schema.py's (`CompletionRequest`, `Completion`, OpenAI's error object); every generation goes through
the model's scheduler like any other (app/engine.py). `echo` with `logprobs` scores the prompt with the family's
faithful reading of a text (`Generator.score`), and `max_tokens: 0` with `echo` scores without generating.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, stream_with_context

from app import engine
from app.api import get_request_models
from app.errors import APIError, error_body, invalid_input
from app.registry import get_registry
from app.responses import finite, sse
from app.schema import Completion, CompletionChoice, CompletionLogprobs, ModelObject, ModelObjectList, Usage
from app.validation import json_object_body, parse_request
from lm.checkpoint import CONFIG_FILE
from lm.options import FINISHED_BY_LENGTH, FINISHED_BY_TIME_LIMIT

bp = Blueprint("openai", __name__, url_prefix="/v1")

OWNER = "scriptorium"
COMPLETION_EXAMPLE = '{"model": "MODEL", "prompt": "ROMEO:", "max_tokens": 16}'


def finish_reason(reason: str) -> str:
    """OpenAI's two reasons: cut short ("length": max_tokens or the time limit), or ended ("stop": eos, a stop
    string)."""
    return "length" if reason in (FINISHED_BY_LENGTH, FINISHED_BY_TIME_LIMIT) else "stop"


class Echo:
    """A prompt as a completion choice starts with it: its text and, with logprobs, its scored tokens."""

    def __init__(self, generator: Any, prompt: str | list[int], logprobs: int | None) -> None:
        self.text = prompt if isinstance(prompt, str) else generator.tokenizer.decode(prompt)
        self.scores = generator.score(prompt, top=logprobs) if logprobs is not None else []


class Logprobs:
    """OpenAI's `logprobs` object of one choice, built token by token."""

    def __init__(self, offset: int = 0) -> None:
        self.tokens: list[str] = []
        self.token_logprobs: list[float | None] = []
        self.top_logprobs: list[dict[str, float] | None] = []
        self.text_offset: list[int] = []
        self.offset = offset

    def add(self, token: str, logprob: float | None, top: list[tuple[str, float]] | None, text: str) -> None:
        self.tokens.append(token)
        self.token_logprobs.append(finite(logprob) if logprob is not None else None)
        # the most likely tokens, and the chosen one too (OpenAI: up to logprobs + 1 entries)
        self.top_logprobs.append(None if top is None else
                                 {t: v for t, v in [*top, (token, logprob)] if v is not None and math.isfinite(v)})
        self.text_offset.append(self.offset)
        self.offset += len(text)

    def add_echo(self, generator: Any, echo: Echo) -> None:
        token_text = generator.tokenizer.token_text
        for position, score in enumerate(echo.scores):
            top = None if position == 0 else [(token_text(i), lp) for i, lp in score.alternatives]
            self.add(score.text, score.logprob, top, score.text)

    def add_event(self, generator: Any, event: Any) -> None:
        top = [(alt.text, math.log(alt.prob)) for alt in event.alternatives or [] if alt.prob > 0]
        self.add(generator.tokenizer.token_text(event.id), event.logprob, top, event.text)

    def model(self) -> CompletionLogprobs:
        return CompletionLogprobs(tokens=self.tokens, token_logprobs=self.token_logprobs,
                                  top_logprobs=self.top_logprobs, text_offset=self.text_offset)


class CompletionRun:
    """One /v1/completions request: its model, prompts and options, and the pieces of the answer."""

    def __init__(self, request: Any) -> None:
        registry, config = get_registry(), current_app.config
        if request.model not in registry.generators:
            raise APIError(404, f"the model {request.model!r} does not exist; available: "
                           f"{', '.join(registry.names)}", field="model")
        refused = request.unsupported()
        if refused is not None:
            raise invalid_input(refused)
        self.request = request
        self.generator = registry.get(request.model)
        self.options = request.core_options(config["GENERATION_TIMEOUT"], config["MAX_NEW_TOKENS"])
        self.prompts = request.prompts()
        with engine.core_errors():
            self.prompt_ids = [self.generator.prompt_ids(prompt) for prompt in self.prompts]
            self.echoes = [Echo(self.generator, prompt, request.logprobs) if request.echo else None
                           for prompt in self.prompts]
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.opened: list[Any] = []  # the streams started (engine.Started), closed however the answer ends

    def close(self) -> None:
        for running in self.opened:
            running.stream.close()

    def completion(self, choices: list[CompletionChoice], usage: Usage | None = None) -> Completion:
        return Completion(id=self.id, created=self.created, model=self.request.model, choices=choices, usage=usage)

    def usage(self, results: list[Any]) -> Usage:
        prompt_tokens = sum(len(ids) for ids in self.prompt_ids)
        completion = sum(len(choice.tokens) for result in results for choice in result.choices)
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion,
                     total_tokens=prompt_tokens + completion)

    def answer(self) -> dict[str, Any]:
        """The whole completion: every prompt generated together (they share the scheduler's batch)."""
        results = engine.generate_all(self.generator, self.prompt_ids, self.options)
        choices = []
        for p, result in enumerate(results):
            echo = self.echoes[p]
            for sequence, choice in enumerate(result.choices):
                logprobs = None
                if self.request.logprobs is not None:
                    built = Logprobs()
                    if echo is not None:
                        built.add_echo(self.generator, echo)
                    for event in choice.tokens:
                        built.add_event(self.generator, event)
                    logprobs = built.model()
                choices.append(CompletionChoice(text=(echo.text if echo else "") + choice.text,
                                                index=p * self.request.n + sequence, logprobs=logprobs,
                                                finish_reason=finish_reason(choice.finish_reason)))
        return self.completion(choices, self.usage(results)).model_dump()

    def chunks(self) -> Iterator[str]:
        """Server-Sent Events: completion chunks, one per token (with echo, the prompt first), the finish reason of
        each choice, the usage when asked for, then `[DONE]`. The prompts run one after another; the first has room
        and its first token before this returns (so a 503 is still a status)."""
        self.opened.append(engine.start_stream(self.generator, self.prompt_ids[0], self.options))
        return self._chunks()

    def _chunks(self) -> Iterator[str]:
        results = []
        try:
            for p, ids in enumerate(self.prompt_ids):
                if p == len(self.opened):
                    self.opened.append(engine.start_stream(self.generator, ids, self.options))
                running = self.opened[p]
                yield from self._prompt_chunks(p, running)
                results.append(running.stream.result)
            if self.request.stream_options is not None and self.request.stream_options.include_usage:
                yield sse(self.completion([], self.usage(results)).model_dump_json())
            yield sse("[DONE]")
        except APIError as error:
            yield sse(error_body(error.status, error.message, error.field, openai=True))
        except Exception:  # noqa: BLE001 - the headers are sent; the client can only be told in-band
            current_app.logger.exception("completion failed mid-stream (model %s)", self.request.model)
            yield sse(error_body(500, "generation failed; the server log has the details", openai=True))
        finally:
            self.close()

    def _prompt_chunks(self, p: int, running: Any) -> Iterator[str]:
        n, echo = self.request.n, self.echoes[p]
        offsets = [0] * n
        if echo is not None:
            for sequence in range(n):
                logprobs = None
                if self.request.logprobs is not None:
                    built = Logprobs()
                    built.add_echo(self.generator, echo)
                    logprobs = built.model()
                    offsets[sequence] = built.offset
                yield self._chunk(CompletionChoice(text=echo.text, index=p * n + sequence, logprobs=logprobs,
                                                   finish_reason=None))
        for event in running.events():
            logprobs = None
            if self.request.logprobs is not None:
                built = Logprobs(offsets[event.index])
                built.add_event(self.generator, event)
                offsets[event.index] = built.offset
                logprobs = built.model()
            yield self._chunk(CompletionChoice(text=event.text, index=p * n + event.index, logprobs=logprobs,
                                               finish_reason=None))
        result = running.stream.result
        for sequence, choice in enumerate(result.choices):
            yield self._chunk(CompletionChoice(text="", index=p * n + sequence, logprobs=None,
                                               finish_reason=finish_reason(choice.finish_reason)))

    def _chunk(self, choice: CompletionChoice) -> str:
        return sse(self.completion([choice]).model_dump_json())


@bp.post("/completions")
def completions() -> Response:
    request = parse_request(get_request_models().completion,
                            json_object_body("/v1/completions", COMPLETION_EXAMPLE))
    run = CompletionRun(request)
    if not request.stream:
        return jsonify(run.answer())
    # the later prompts start while the body streams: they need the app (its settings, metrics)
    response = Response(stream_with_context(run.chunks()), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    # A server that never starts iterating the body (client gone before the first byte) still closes it.
    response.call_on_close(run.close)
    return response


@bp.get("/models")
def models() -> Response:
    registry = get_registry()
    return jsonify(ModelObjectList(data=[
        ModelObject(id=name, created=int((registry.get(name).path / CONFIG_FILE).stat().st_mtime), owned_by=OWNER)
        for name in registry.names
    ]).model_dump())


@bp.post("/chat/completions")
def chat_completions() -> Response:
    raise APIError(404, "these are completion models, not chat models, so this server has no /v1/chat/completions: "
                   "send the conversation as a prompt to /v1/completions instead", field="model")
