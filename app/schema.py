"""The JSON API's shapes, each defined once as a pydantic v2 model: the requests of `POST /generate` and
`POST /v1/completions`, their responses and streaming events, `/models`, `/health`, `/v1/models` and the error
bodies. Validation, the error messages that name a field, and the OpenAPI document (app/openapi.py) all come from
these models.

A request field that is a generation option is the core's own definition (lm.options: type, default, bounds,
description), mapped onto a pydantic `Field` word for word and checked by the definition itself (so the messages
are the core's, e.g. "top_p must be in (0, 1], got 1.5"). The app adds only server policy: the prompt's length, the
cap on new tokens, tighter bounds that keep one request cheap, the loaded models. The request models depend on the
settings and the loaded models, so `RequestModels` builds them once per app.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, create_model

import lm.options as core
from lm.checks import OptionError
from lm.options import FINISH_REASONS, Option
from lm.quantize import QUANTIZE_MODES

# Server policy: bounds tighter than the core's, so that one request stays cheap.
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 64
MAX_RETURN_SEQUENCES = 8
MAX_TOP_K = 1_000_000
# Alternatives shown per token when details are asked for: enough for the probability view's hover card.
TOP_ALTERNATIVES = 5
# OpenAI's own limit: logprobs up to 5 alternatives per token; and up to 16 prompts in one request here.
MAX_LOGPROBS = 5
MAX_PROMPTS = 16

# The app's own /generate fields, defined like the core's options.
DETAILS = Option("details", bool, False, "Include each token's log-probability, its rank among the vocabulary and "
                 "its most likely alternatives.")
STREAM = Option("stream", bool, False, "Answer with Server-Sent Events, one per token, then a final summary.")
RETURN_FULL_TEXT = Option("return_full_text", bool, False, "generated_text includes the prompt (as in Hugging Face "
                          "pipelines); full_text always does.")

# An HTML form's values are strings: "30" and "0.6" are read as the numbers they spell (as the seed app's server did
# with int() and float()); anything else (" 30", "1_000", "nan", "0x1e", "") is refused as not a number.
_CLEAN = {
    int: re.compile(r"[+-]?\d{1,30}"),
    float: re.compile(r"[+-]?(\d{1,30}(\.\d{0,30})?|\.\d{1,30})([eE][+-]?\d{1,3})?"),
}


def form_number(option: Option, value: Any) -> Any:
    """A numeric option's value written as a string, read as that number; any other value unchanged."""
    pattern = _CLEAN.get(option.type)
    if isinstance(value, str) and pattern is not None and pattern.fullmatch(value):
        return option.type(value)
    return value


def _checked_by(option: Option, strings: bool) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if strings:
            value = form_number(option, value)
        if option.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON has one number type: many clients send 5.0 for 5
        checked = option.check(value)
        return list(checked) if option.type is list else checked

    return check


_TYPES: dict[type, Any] = {int: int, float: float, bool: bool, str: str}


def option_field(
    option: Option, *, strings: bool = False, aliases: tuple[str, ...] = (), required: bool = False,
    enum: list[Any] | None = None,
) -> tuple[Any, Any]:
    """(annotation, Field) for a request field that is `option`: its bounds and description in the schema, its own
    check as the validator. Every request field may be null, which means "not given" (see `parse_request`)."""
    if option.type is list:
        item = Annotated[str, Field(min_length=1, max_length=option.max_length)]
        annotation: Any = list[item]  # type: ignore[valid-type]
    else:
        annotation = _TYPES[option.type]
    extra: dict[str, Any] = {}
    if option.smallest_positive is not None:  # temperature: 0, or at least 0.001 (null still allowed)
        extra["not"] = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": option.smallest_positive}
    if enum is not None:
        extra["enum"] = [*enum, None]
    default = list(option.default) if option.type is list else option.default
    field = Field(
        ... if required else default,
        description=option.description,
        ge=option.minimum,
        le=option.maximum,
        gt=option.exclusive_minimum,
        lt=option.exclusive_maximum,
        max_length=option.max_items if option.type is list else option.max_length,
        validation_alias=AliasChoices(option.name, *aliases) if aliases else None,
        json_schema_extra=extra or None,
    )
    return Annotated[annotation | None, BeforeValidator(_checked_by(option, strings))], field


class Request(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


def spellings(model_class: type[BaseModel], name: str) -> tuple[str, ...]:
    """The names a client may give field `name` under: its own, then its aliases."""
    alias = model_class.model_fields[name].validation_alias
    return tuple(alias.choices) if isinstance(alias, AliasChoices) else (name,)


# --- POST /generate ----------------------------------------------------------------------------------------------

class GenerateRequestBase(Request):
    """Methods of the /generate request model (its fields depend on the settings: `RequestModels`)."""

    def core_options(self, time_limit: float, max_new_tokens_cap: int) -> dict[str, Any]:
        """Keyword options for `Generator.generate` / `Generator.stream` (docs/architecture.md). Without a seed,
        the core draws one that JavaScript numbers hold exactly, and reports it."""
        return {
            "max_new_tokens": min(self.max_new_tokens, max_new_tokens_cap),
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
            "stop": tuple(self.stop),
            "num_return_sequences": self.num_return_sequences,
            "time_limit": time_limit,
            "top_alternatives": TOP_ALTERNATIVES if self.details else 0,
        }


def _max_new_tokens(cap: int) -> Option:
    return core.MAX_NEW_TOKENS.narrowed(
        default=min(core.MAX_NEW_TOKENS.default, cap),
        description=f"{core.MAX_NEW_TOKENS.description} Larger values are capped at {cap} (the server's "
        "MAX_NEW_TOKENS).",
    )


def generate_request_model(config: Mapping[str, Any], model_names: list[str], default_model: str) -> type:
    """The /generate request for these settings and models. Numeric fields also read numeric strings (what an
    HTML form sends); booleans stay strict."""
    model = Option("model", str, default_model, "A model name from GET /models.")
    fields = {
        "prompt": option_field(core.PROMPT.narrowed(max_length=config["MAX_PROMPT_CHARS"]), required=True),
        "max_new_tokens": option_field(_max_new_tokens(config["MAX_NEW_TOKENS"]), strings=True,
                                       aliases=("max_length", "max_seq_len")),
        "temperature": option_field(core.TEMPERATURE, strings=True),
        "top_k": option_field(core.TOP_K.narrowed(maximum=MAX_TOP_K), strings=True),
        "top_p": option_field(core.TOP_P, strings=True),
        "repetition_penalty": option_field(core.REPETITION_PENALTY, strings=True),
        "seed": option_field(core.SEED, strings=True),
        "stop": option_field(core.STOP.narrowed(max_items=MAX_STOP_STRINGS, max_length=MAX_STOP_CHARS)),
        "num_return_sequences": option_field(core.NUM_RETURN_SEQUENCES.narrowed(maximum=MAX_RETURN_SEQUENCES),
                                             strings=True),
        "model": option_field(model, enum=model_names),
        "details": option_field(DETAILS),
        "stream": option_field(STREAM),
        "return_full_text": option_field(RETURN_FULL_TEXT),
    }
    return create_model("GenerateRequest", __base__=GenerateRequestBase, **fields)


FinishReason = Literal[FINISH_REASONS]  # type: ignore[valid-type]


def _absent(value: Any) -> bool:
    return value is None


class Alternative(BaseModel):
    id: int
    text: str
    prob: float | None


class Token(BaseModel):
    id: int
    text: str = Field(description="Visible text this token adds (may be empty while a possible stop string is held "
                      "back).")
    logprob: float | None = Field(description="Natural log-probability of the token (null for -infinity).")
    rank: int | None = Field(None, exclude_if=_absent, description="1 + how many tokens the model found more "
                             "likely (only with details): GLTR's measure, 1 is the most likely token.")
    alternatives: list[Alternative] | None = Field(None, exclude_if=_absent,
                                            description="Most likely tokens at this step (only with details).")


class Choice(BaseModel):
    index: int
    generated_text: str
    full_text: str
    finish_reason: FinishReason
    generated_tokens: int
    tokens: list[Token] | None = Field(None, exclude_if=_absent, description="Only when details is true.")


class Timing(BaseModel):
    total_ms: float
    tokens_per_second: float | None


class GenerateResponse(BaseModel):
    model: str
    prompt: str
    generated_text: str = Field(description="The continuation of choices[0] (the prompt and the continuation with "
                                "return_full_text).")
    full_text: str = Field(description="Prompt + continuation (of choices[0]).")
    finish_reason: FinishReason
    prompt_tokens: int
    generated_tokens: int
    seed: int = Field(description="The seed used; send it back to reproduce this output.")
    timing: Timing
    choices: list[Choice] = Field(min_length=1)


class StreamTokenEvent(BaseModel):
    """One generated token of a /generate stream."""

    index: int = Field(description="Which returned sequence.")
    token: Token


class StreamDoneEvent(GenerateResponse):
    """The last event of a /generate stream: the whole response (choices without tokens), marked done."""

    done: Literal[True] = True


# --- errors --------------------------------------------------------------------------------------------------------

ErrorType = Literal["bad_request", "unauthorized", "not_found", "method_not_allowed", "payload_too_large",
                    "invalid_field", "rate_limited", "internal_error", "overloaded"]


class ErrorDetail(BaseModel):
    type: ErrorType
    message: str
    field: str | None = Field(None, exclude_if=_absent, description="The request field at fault, when there is one.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, rate_limit_error or server_error.")
    param: str | None = Field(description="The request field at fault, when there is one.")
    code: str | None


class OpenAIErrorBody(BaseModel):
    """OpenAI's error object, on the /v1/ paths."""

    error: OpenAIErrorDetail


# --- GET /models, GET /health --------------------------------------------------------------------------------------

class LoadFailure(BaseModel):
    name: str
    error: str = Field(description="The kind of problem (the full message and path are in the server's log).")


class TokenizerInfo(BaseModel):
    kind: str
    vocab_size: int


class ModelInfo(BaseModel):
    name: str
    type: str
    parameters: int
    tokenizer: TokenizerInfo
    context_length: int | None = Field(description="null for the LSTM (no fixed context).")
    quantization: Literal[QUANTIZE_MODES] | None = Field(
        description="int8: the linear layers run in int8 (QUANTIZE setting); null: float32."
    )
    metrics: dict[str, Any]
    default: bool


class ModelList(BaseModel):
    models: list[ModelInfo]
    default: str
    unavailable: list[LoadFailure]


class Generations(BaseModel):
    active: int = Field(description="Requests generating now in this process (this gunicorn worker).")
    queued: int = Field(description="Requests waiting for room in a batch.")
    limit: int = Field(description="Sequences one model decodes together (MAX_BATCH_SIZE).")


class Health(BaseModel):
    status: Literal["ok"]
    models: list[str]
    default_model: str
    unavailable: list[LoadFailure]
    generations: Generations


# --- POST /v1/completions (OpenAI's completions API) ---------------------------------------------------------------

MAX_TOKENS = core.MAX_NEW_TOKENS.narrowed(name="max_tokens", default=16, description="Tokens to generate at most "
                                          "(0 with echo scores the prompt without generating).")
N = core.NUM_RETURN_SEQUENCES.narrowed(name="n", maximum=MAX_RETURN_SEQUENCES,
                                       description="Completions to generate for each prompt.")
LOGPROBS = Option("logprobs", int, None, "Return the log-probability of each token and of this many most likely "
                  "tokens at each position.", minimum=0, maximum=MAX_LOGPROBS, nullable=True)
ECHO = Option("echo", bool, False, "Put the prompt before the completion (with logprobs: the prompt's tokens and "
              "their log-probabilities too, the first one null).")
PENALTY_NOTE = ("Not supported here: any value but 0 is refused (400, naming the field); repetition_penalty, CTRL's "
                "penalty on tokens already in the text, is.")
PRESENCE_PENALTY = Option("presence_penalty", float, 0.0, PENALTY_NOTE, minimum=-2, maximum=2)
FREQUENCY_PENALTY = Option("frequency_penalty", float, 0.0, PENALTY_NOTE, minimum=-2, maximum=2)
USER = Option("user", str, None, "An end-user identifier; accepted and ignored.", max_length=256, nullable=True)
OPENAI_STREAM = STREAM.narrowed(description="Answer with Server-Sent Events (completion chunks), ending with "
                                "`data: [DONE]`.")

TokenPrompt = list[Annotated[int, Field(ge=0)]]


class StreamOptions(Request):
    include_usage: bool = Field(False, description="Send a last chunk with the usage counts (and no choices).")


class CompletionRequestBase(Request):
    """Methods of the /v1/completions request model (its fields depend on the settings: `RequestModels`)."""

    def prompts(self) -> list[str | list[int]]:
        """The prompts: one string, or each of a list; token ids stay ids."""
        prompt = self.prompt
        if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
            return [prompt]
        return list(prompt) or [""]

    def unsupported(self) -> OptionError | None:
        """The first field whose value this server does not implement (OpenAI's penalties), if any."""
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                return OptionError(name, "is not supported by this server (only 0): use repetition_penalty, CTRL's "
                                   "penalty on tokens already in the text")
        return None

    def core_options(self, time_limit: float, max_new_tokens_cap: int) -> dict[str, Any]:
        stop = [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else list(self.stop)
        return {
            "max_new_tokens": min(self.max_tokens, max_new_tokens_cap),
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "seed": self.seed,
            "stop": tuple(stop),
            "num_return_sequences": self.n,
            "time_limit": time_limit,
            "top_alternatives": self.logprobs or 0,
        }


def _prompt_field(max_chars: int) -> tuple[Any, Any]:
    def check(value: Any) -> Any:
        prompts = value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]
        if len(prompts) > MAX_PROMPTS:
            raise OptionError("prompt", f"takes at most {MAX_PROMPTS} prompts, got {len(prompts)}")
        for prompt in prompts:
            if isinstance(prompt, list):
                if not prompt or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in prompt):
                    raise OptionError("prompt", "token ids must be a non-empty list of integers >= 0")
                if len(prompt) > max_chars:
                    raise OptionError("prompt", f"must have at most {max_chars} tokens, got {len(prompt)}")
            else:
                core.PROMPT.narrowed(max_length=max_chars).check(prompt)
        return value

    annotation = str | list[str] | TokenPrompt | list[TokenPrompt]
    field = Field(..., description="A string, a list of strings, or token ids (a list, or a list of lists); each at "
                  f"most {max_chars} characters (or token ids).")
    return Annotated[annotation, BeforeValidator(check)], field


def _stop_field() -> tuple[Any, Any]:
    option = core.STOP.narrowed(max_items=MAX_STOP_STRINGS, max_length=MAX_STOP_CHARS)

    def check(value: Any) -> Any:
        return option.check([value] if isinstance(value, str) else value)

    item = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
    field = Field(None, description=f"{option.description} A string or up to {MAX_STOP_STRINGS} strings.")
    return Annotated[item | list[item] | None, BeforeValidator(check)], field  # type: ignore[valid-type]


def completion_request_model(config: Mapping[str, Any], model_names: list[str], default_model: str) -> type:
    model = Option("model", str, default_model, "A model id from GET /v1/models (default: the server's default).")
    fields = {
        "model": option_field(model, enum=model_names),
        "prompt": _prompt_field(config["MAX_PROMPT_CHARS"]),
        "max_tokens": option_field(MAX_TOKENS.narrowed(description=f"{MAX_TOKENS.description} Larger values are "
                                   f"capped at {config['MAX_NEW_TOKENS']} (the server's MAX_NEW_TOKENS).")),
        "temperature": option_field(core.TEMPERATURE),
        "top_p": option_field(core.TOP_P),
        "n": option_field(N),
        "stop": _stop_field(),
        "seed": option_field(core.SEED),
        "stream": option_field(OPENAI_STREAM),
        "stream_options": (StreamOptions | None, Field(None, description="With stream: include_usage.")),
        "logprobs": option_field(LOGPROBS),
        "echo": option_field(ECHO),
        "presence_penalty": option_field(PRESENCE_PENALTY),
        "frequency_penalty": option_field(FREQUENCY_PENALTY),
        "user": option_field(USER),
        # Scriptorium's own sampling options, as other OpenAI-compatible servers accept them.
        "top_k": option_field(core.TOP_K.narrowed(maximum=MAX_TOP_K)),
        "repetition_penalty": option_field(core.REPETITION_PENALTY),
    }
    return create_model("CompletionRequest", __base__=CompletionRequestBase, **fields)


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length"] | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    """A completion, or (with stream) one chunk of it: the same object, a token's text in each choice."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = Field(None, exclude_if=_absent, description="Absent from stream chunks, except the last one "
                         "with stream_options.include_usage.")


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelObjectList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class RequestModels:
    """The request models for one app's settings and loaded models (built once, in `init_app`)."""

    def __init__(self, config: Mapping[str, Any], model_names: list[str], default_model: str) -> None:
        self.generate = generate_request_model(config, model_names, default_model)
        self.completion = completion_request_model(config, model_names, default_model)
