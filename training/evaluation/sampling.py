"""How the evaluation commands sample continuations (custom prompts, benchmark suites), validated by pydantic with
the generation options' own definitions (lm.options), and a refused value as one line naming its field."""

from __future__ import annotations

import typing
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from lm.checks import OptionError
from lm.options import MAX_NEW_TOKENS, SEED, TEMPERATURE, TOP_K, TOP_P, Option
from training.config import ConfigError

SEED_LIMIT = SEED.maximum + 1  # seed + i wraps around to stay a seed
MAX_SAMPLES = 64  # continuations of one prompt, decoded as one batch


def by_definition(option: Option) -> BeforeValidator:
    """A field checked by a generation option's own definition (its bounds and its message)."""
    return BeforeValidator(option.check)


class SamplingSettings(BaseModel):
    """`num_samples` continuations of each prompt with `python -m training generate`'s options; prompt (or case) i
    is sampled with seed `seed + i`, so the same settings give the same continuations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_samples: int = Field(1, ge=1, le=MAX_SAMPLES)
    max_new_tokens: Annotated[int, by_definition(MAX_NEW_TOKENS), Field(ge=1)] = MAX_NEW_TOKENS.default
    temperature: Annotated[float, by_definition(TEMPERATURE)] = TEMPERATURE.default
    top_k: Annotated[int, by_definition(TOP_K)] = TOP_K.default
    top_p: Annotated[float, by_definition(TOP_P)] = TOP_P.default
    seed: Annotated[int, by_definition(SEED)] = 0

    def seed_for(self, index: int) -> int:
        """The seed of the `index`-th prompt (or case)."""
        return (self.seed + index) % SEED_LIMIT

    def options(self, index: int) -> dict[str, Any]:
        """`Generator.generate`'s options for the `index`-th prompt."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p, "seed": self.seed_for(index), "num_return_sequences": self.num_samples}


Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], raw: Any, source: str) -> Model:
    """`raw` as a `model`; ConfigError("<source>: <field path>: <problem>") for the first thing wrong with it."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problem = error.errors()[0]
        raise ConfigError(source, _field_path(problem["loc"]), _problem_text(model, problem)) from None


def _field_path(loc: tuple) -> str:
    """pydantic's location as a file writes it: cases[2].keywords[0]."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).startswith(("function-", "constrained-")):  # pydantic's names for validator steps
            path += ("." if path else "") + str(part)
    return path


def _problem_text(model: type[BaseModel], problem: dict[str, Any]) -> str:
    cause = (problem.get("ctx") or {}).get("error")
    if problem["type"] == "extra_forbidden":
        return f"unknown field; allowed: {', '.join(_model_at(model, problem['loc']).model_fields)}"
    if problem["type"] == "missing":
        return "missing (required)"
    if isinstance(cause, OptionError):
        return cause.problem  # the field path already names the option
    if isinstance(cause, ValueError) and str(cause):
        return str(cause)
    return problem["msg"]


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The model whose field `loc` names (a nested model, a model in a list)."""
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            model = next((t for t in _types_in(field.annotation) if isinstance(t, type) and issubclass(t, BaseModel)),
                         model)
    return model


def _types_in(annotation: Any) -> list[Any]:
    return [annotation] + [t for arg in typing.get_args(annotation) for t in _types_in(arg)]
