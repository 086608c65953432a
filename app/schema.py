"""The `POST /generate` request: its fields and the checks that turn a JSON body into a `GenerationRequest`.

Every generation field is the core's own definition (lm.options: type, default, bounds, description); the app adds
only server policy: the prompt's length, the cap on max_new_tokens, tighter bounds that keep one request cheap, the
loaded models. The same table (`request_fields`) drives the validation below and the OpenAPI document
(app/openapi.py), so the published schema cannot drift from what the server accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import APIError
import lm.options as core
from lm.checks import OptionError, shown
from lm.options import Option

# Server policy: bounds tighter than the core's, so that one request stays cheap.
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 64
MAX_RETURN_SEQUENCES = 8
MAX_TOP_K = 1_000_000
# Alternatives shown per token when details are asked for: enough for the probability view's hover card.
TOP_ALTERNATIVES = 5

DETAILS = Option("details", bool, False, "Include each token's log-probability and its most likely alternatives.")
STREAM = Option("stream", bool, False, "Answer with Server-Sent Events, one per token, then a final summary.")
_CORE_OPTIONS = frozenset(option.name for option in core.OPTIONS)


@dataclass(frozen=True)
class Field:
    """One request field: a definition, the other spellings clients may use, and whether it must be given."""

    option: Option
    aliases: tuple[str, ...] = ()
    required: bool = False
    enum: tuple[str, ...] | None = None  # listed in the document; the view itself answers an unknown value

    @property
    def name(self) -> str:
        return self.option.name


def request_fields(config: Mapping[str, Any], model_names: list[str], default_model: str) -> list[Field]:
    cap = config["MAX_NEW_TOKENS"]
    max_new_tokens = core.MAX_NEW_TOKENS.narrowed(
        default=min(core.MAX_NEW_TOKENS.default, cap),
        description=f"{core.MAX_NEW_TOKENS.description} Larger values are capped at {cap} (the server's "
        "MAX_NEW_TOKENS).",
    )
    model = Option("model", str, default_model, "A model name from GET /models.")
    return [
        Field(core.PROMPT.narrowed(max_length=config["MAX_PROMPT_CHARS"]), required=True),
        Field(max_new_tokens, aliases=("max_length", "max_seq_len")),
        Field(core.TEMPERATURE),
        Field(core.TOP_K.narrowed(maximum=MAX_TOP_K)),
        Field(core.TOP_P),
        Field(core.REPETITION_PENALTY),
        Field(core.SEED),
        Field(core.STOP.narrowed(max_items=MAX_STOP_STRINGS, max_length=MAX_STOP_CHARS)),
        Field(core.NUM_RETURN_SEQUENCES.narrowed(maximum=MAX_RETURN_SEQUENCES)),
        Field(model, enum=tuple(model_names)),
        Field(DETAILS),
        Field(STREAM),
    ]


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    model: str
    details: bool
    stream: bool
    options: dict[str, Any]  # the core's generation options the client may set, checked

    def core_options(self, time_limit: float) -> dict[str, Any]:
        """Keyword options for `Generator.generate` / `Generator.stream` (docs/architecture.md). Without a seed,
        the core draws one that JavaScript numbers hold exactly, and reports it."""
        top_alternatives = TOP_ALTERNATIVES if self.details else 0
        return {**self.options, "time_limit": time_limit, "top_alternatives": top_alternatives}


def _invalid(field: str, message: str) -> APIError:
    return APIError(422, message, field=field)


def _check_value(field: Field, value: Any, name: str) -> Any:
    """`value` checked against `field`; errors name the spelling the client used (`name`, maybe an alias)."""
    if field.option.type is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: many clients send 5.0 for 5
    try:
        return field.option.check(value)
    except OptionError as error:
        raise _invalid(name, f"{name} {error.problem}") from None


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
            raise _invalid(str(key), f"unknown field {shown(key)}; allowed fields: {allowed}")

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
            values[field.name] = field.option.default
    values["max_new_tokens"] = min(values["max_new_tokens"], max_new_tokens_cap)
    options = {name: value for name, value in values.items() if name in _CORE_OPTIONS}
    return GenerationRequest(values["prompt"], values["model"], values["details"], values["stream"], options)
