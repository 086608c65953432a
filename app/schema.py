"""The `POST /generate` request: its fields, their limits, and the checks that turn a JSON body into options.

One table (`request_fields`) drives both the validation below and the OpenAPI document (app/openapi.py), so
the published schema cannot drift from what the server accepts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import APIError

MAX_SEED = 2**63 - 1
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 64
MAX_RETURN_SEQUENCES = 8
# Bounds beyond the core's own (temperature >= 0, penalty > 0): past them, sampling is numerically meaningless
# (a temperature of 1e-300 or a penalty of 1e300 overflows the logits), so the API refuses them up front.
MAX_TEMPERATURE = 100.0
MIN_POSITIVE_TEMPERATURE = 1e-3
MAX_REPETITION_PENALTY = 100.0
MIN_REPETITION_PENALTY = 1e-3
MAX_TOP_K = 1_000_000


@dataclass(frozen=True)
class Field:
    """One request field, described the way JSON Schema describes it."""

    name: str
    type: str  # "string" | "integer" | "number" | "boolean" | "array" (of strings)
    description: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    max_length: int | None = None
    max_items: int | None = None
    aliases: tuple[str, ...] = ()
    required: bool = False
    enum: tuple[str, ...] | None = None

    def range_text(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f">= {_fmt(self.minimum)}")
        if self.exclusive_minimum is not None:
            parts.append(f"> {_fmt(self.exclusive_minimum)}")
        if self.maximum is not None:
            parts.append(f"<= {_fmt(self.maximum)}")
        return " and ".join(parts)


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() and abs(number) < 1e16 else repr(number)


def request_fields(config: Mapping[str, Any], model_names: list[str], default_model: str) -> list[Field]:
    max_new = config["MAX_NEW_TOKENS"]
    return [
        Field(
            "prompt",
            "string",
            "Text the model continues.",
            required=True,
            max_length=config["MAX_PROMPT_CHARS"],
        ),
        Field(
            "max_new_tokens",
            "integer",
            f"Tokens to generate at most; larger values are capped at {max_new} "
            "(the server's MAX_NEW_TOKENS).",
            default=min(100, max_new),
            minimum=0,
            aliases=("max_length", "max_seq_len"),
        ),
        Field(
            "temperature",
            "number",
            f"Sampling temperature; 0 means greedy decoding, otherwise at least {MIN_POSITIVE_TEMPERATURE}.",
            default=1.0,
            minimum=0,
            maximum=MAX_TEMPERATURE,
        ),
        Field(
            "top_k",
            "integer",
            "Sample only from the k most likely tokens; 0 turns it off.",
            default=0,
            minimum=0,
            maximum=MAX_TOP_K,
        ),
        Field(
            "top_p",
            "number",
            "Nucleus sampling: the smallest set of tokens whose probability reaches p.",
            default=1.0,
            exclusive_minimum=0,
            maximum=1,
        ),
        Field(
            "repetition_penalty",
            "number",
            "CTRL-style penalty on tokens already in the text; 1 is off, above 1 discourages repeats.",
            default=1.0,
            minimum=MIN_REPETITION_PENALTY,
            maximum=MAX_REPETITION_PENALTY,
        ),
        Field(
            "seed",
            "integer",
            "Random seed; the one used is in the response, so any output can be reproduced.",
            minimum=0,
            maximum=MAX_SEED,
        ),
        Field(
            "stop",
            "array",
            "Strings that end the generation; the text ends before the first one found.",
            default=[],
            max_items=MAX_STOP_STRINGS,
            max_length=MAX_STOP_CHARS,
        ),
        Field(
            "num_return_sequences",
            "integer",
            "Independent continuations to return (sampled as one batch).",
            default=1,
            minimum=1,
            maximum=MAX_RETURN_SEQUENCES,
        ),
        Field(
            "model",
            "string",
            "A model name from GET /models.",
            default=default_model,
            enum=tuple(model_names),
        ),
        Field(
            "details",
            "boolean",
            "Include each token's log-probability and its most likely alternatives.",
            default=False,
        ),
        Field(
            "stream",
            "boolean",
            "Answer with Server-Sent Events, one per token, then a final summary.",
            default=False,
        ),
    ]


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    seed: int | None
    stop: tuple[str, ...]
    num_return_sequences: int
    model: str
    details: bool
    stream: bool


def _invalid(field: str, message: str) -> APIError:
    return APIError(422, message, field=field)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_range(field: Field, value: float, name: str) -> None:
    too_low = (field.minimum is not None and value < field.minimum) or (
        field.exclusive_minimum is not None and value <= field.exclusive_minimum
    )
    too_high = field.maximum is not None and value > field.maximum
    if too_low or too_high:
        raise _invalid(name, f"{name} must be {field.range_text()}, got {_shown(value)}")


def _check_unicode(name: str, text: str) -> None:
    # JSON can spell a lone UTF-16 surrogate ("\ud800"), which is not text: tokenizers and UTF-8 refuse it.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _invalid(
            name, f"{name} is not valid Unicode text (a lone surrogate at {error.start})"
        ) from None


def _check_value(field: Field, value: Any, name: str) -> Any:
    """`value` checked against `field`; errors name the spelling the client used (`name`, maybe an alias)."""
    if field.type == "boolean":
        if not isinstance(value, bool):
            raise _invalid(name, f"{name} must be true or false, got {_shown(value)}")
        return value
    if field.type == "string":
        if not isinstance(value, str):
            raise _invalid(name, f"{name} must be a string, got {_shown(value)}")
        _check_unicode(name, value)
        if field.max_length is not None and len(value) > field.max_length:
            raise _invalid(name, f"{name} is {len(value)} characters long; the limit is {field.max_length}")
        return value
    if field.type == "array":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _invalid(name, f"{name} must be a list of strings, got {_shown(value)}")
        if len(value) > (field.max_items or 0):
            raise _invalid(name, f"{name} takes at most {field.max_items} strings, got {len(value)}")
        if any(not item or len(item) > (field.max_length or 0) for item in value):
            raise _invalid(name, f"each {name} string must have 1 to {field.max_length} characters")
        for item in value:
            _check_unicode(name, item)
        return tuple(value)
    # Numbers. JSON has no separate integer type on the wire for many clients (5.0 from Python), so an
    # integral float is accepted as an integer; booleans are not numbers even though Python says True == 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if field.type == "integer" else "a number"
        raise _invalid(name, f"{name} must be {kind}, got {_shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(name, f"{name} must be a finite number, got {_shown(value)}")
    if field.type == "integer" and isinstance(value, float) and not value.is_integer():
        raise _invalid(name, f"{name} must be an integer, got {_shown(value)}")
    _check_range(field, value, name)
    return int(value) if field.type == "integer" else float(value)


def parse_generation_request(
    body: Mapping[str, Any], fields: list[Field], max_new_tokens_cap: int
) -> GenerationRequest:
    """Check every field of a JSON object body; APIError(422, field=...) for the first bad one.

    JSON null means "not given" for every field, so clients can send their defaults explicitly.
    """
    by_name = {field.name: field for field in fields}
    canonical = {alias: field.name for field in fields for alias in (field.name, *field.aliases)}
    for key in body:
        if key not in canonical:
            allowed = ", ".join(
                field.name + (f" (or {' / '.join(field.aliases)})" if field.aliases else "")
                for field in fields
            )
            raise _invalid(str(key), f"unknown field {_shown(key)}; allowed fields: {allowed}")

    given: dict[str, Any] = {}
    for key, value in body.items():
        name = canonical[key]
        if value is None:
            continue
        if name in given:
            spellings = [f for f in (name, *by_name[name].aliases) if body.get(f) is not None]
            raise _invalid(key, f"give only one of {', '.join(spellings)}")
        given[name] = _check_value(by_name[name], value, key)

    values = {}
    for field in fields:
        if field.name in given:
            values[field.name] = given[field.name]
        elif field.required:
            raise _invalid(field.name, f"{field.name} is required")
        else:
            values[field.name] = tuple(field.default) if field.type == "array" else field.default

    temperature = values["temperature"]
    if 0 < temperature < MIN_POSITIVE_TEMPERATURE:
        raise _invalid(
            "temperature", f"temperature must be 0 (greedy) or at least {MIN_POSITIVE_TEMPERATURE}"
        )
    values["max_new_tokens"] = min(values["max_new_tokens"], max_new_tokens_cap)
    return GenerationRequest(**values)
