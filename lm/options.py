"""The generation options, each defined once: name, type, default, bounds and description.

`GenerationOptions` and the logits processors check values with these definitions; the web app builds its request
schema and its OpenAPI document from them, adding only server policy (a tighter bound, a cap). Bounds use JSON
Schema's names (`minimum`, `exclusive_minimum`, ...), so a definition maps onto a schema or a pydantic `Field`
(`ge`, `le`, `gt`, `lt`) word for word. Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lm import checks
from lm.checks import OptionError

__all__ = ["FINISH_REASONS", "OPTIONS", "Option", "OptionError", "PROMPT"]


@dataclass(frozen=True)
class Option:
    """One option's definition. `check` returns the value as its type or raises `OptionError` naming the option."""

    name: str
    type: type  # int, float, bool, str, or list (of strings)
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    # the smallest value allowed above zero, for an option where 0 means something of its own (temperature)
    smallest_positive: float | None = None
    nullable: bool = False  # None is allowed and means "not given"
    max_length: int | None = None  # characters of a string (of each string, for a list)
    max_items: int | None = None  # strings in a list

    def check(self, value: Any) -> Any:
        if value is None and self.nullable:
            return None
        if self.type is bool:
            return checks.boolean(self.name, value)
        if self.type is str:
            return checks.text(self.name, value, self.max_length)
        if self.type is list:
            return checks.strings(self.name, value, self.max_items, self.max_length)
        value = checks.integer(self.name, value) if self.type is int else checks.number(self.name, value)
        in_gap = self.smallest_positive is not None and 0 < value < self.smallest_positive
        bounds = (self.minimum, self.maximum, self.exclusive_minimum, self.exclusive_maximum)
        if in_gap or not checks.in_bounds(value, *bounds):
            raise OptionError(self.name, f"must be {self.bounds_text()}, got {checks.shown(value)}")
        return value

    def parse(self, text: str) -> Any:
        """The value written as text (a command-line argument), checked."""
        if self.type is int:
            return self.check(checks.integer_from(self.name, text))
        if self.type is float:
            return self.check(checks.number_from(self.name, text))
        return self.check(text)

    def bounds_text(self) -> str:
        bounds = checks.bounds_text(self.minimum, self.maximum, self.exclusive_minimum, self.exclusive_maximum)
        if self.smallest_positive is None:
            return bounds
        upper = checks.bounds_text(self.smallest_positive, self.maximum, None, self.exclusive_maximum)
        return f"0 or {upper}"

    def narrowed(self, **changes: Any) -> Option:
        """This definition with a server's policy applied (a tighter bound, another default or description)."""
        return dataclasses.replace(self, **changes)


PROMPT = Option("prompt", str, "", "Text the model continues.")

MAX_NEW_TOKENS = Option("max_new_tokens", int, 100, "Tokens to generate at most.", minimum=0)
# Outside [1e-3, 100], float32 logits overflow to inf and sampling would see NaN probabilities; the same holds for
# the repetition penalty.
TEMPERATURE = Option(
    "temperature",
    float,
    1.0,
    "Sampling temperature: 1 samples from the model's own distribution, lower is more conservative, higher more "
    "surprising; 0 means greedy decoding (always the most likely token).",
    minimum=0,
    maximum=100,
    smallest_positive=1e-3,
)
TOP_K = Option("top_k", int, 0, "Sample only from the k most likely tokens; 0 turns it off.", minimum=0)
TOP_P = Option(
    "top_p",
    float,
    1.0,
    "Nucleus sampling: the smallest set of tokens whose probability reaches p; 1 turns it off.",
    exclusive_minimum=0,
    maximum=1,
)
REPETITION_PENALTY = Option(
    "repetition_penalty",
    float,
    1.0,
    "CTRL-style penalty on tokens already in the text; 1 is off, above 1 discourages repeats.",
    minimum=1e-3,
    maximum=100,
)
SEED = Option(
    "seed",
    int,
    None,
    "Random seed; the one used is in the result, so any output can be reproduced. Without one, a seed below 2**53 "
    "is drawn (exact in JavaScript numbers).",
    minimum=0,
    maximum=2**63 - 1,
    nullable=True,
)
STOP = Option("stop", list, (), "Strings that end the generation; the text ends before the first one found.")
NUM_RETURN_SEQUENCES = Option(
    "num_return_sequences", int, 1, "Independent continuations to return, decoded together as one batch.", minimum=1
)
STOP_AT_EOS = Option("stop_at_eos", bool, True, "End a sequence when the tokenizer's <eos> token is sampled.")
TOP_ALTERNATIVES = Option(
    "top_alternatives", int, 0, "How many of the most likely tokens to report at each step.", minimum=0
)
TIME_LIMIT = Option(
    "time_limit", float, None, "Seconds after which generation ends (finish_reason time_limit).",
    exclusive_minimum=0, nullable=True,
)

# In the order of `lm.generation.GenerationOptions`' fields.
OPTIONS: tuple[Option, ...] = (
    MAX_NEW_TOKENS,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    REPETITION_PENALTY,
    SEED,
    STOP,
    NUM_RETURN_SEQUENCES,
    STOP_AT_EOS,
    TOP_ALTERNATIVES,
    TIME_LIMIT,
)

# Why a returned sequence ended (`Choice.finish_reason`): max_new_tokens reached, the tokenizer's <eos> sampled, a
# stop string found, time_limit passed.
FINISHED_BY_LENGTH, FINISHED_BY_EOS, FINISHED_BY_STOP, FINISHED_BY_TIME_LIMIT = FINISH_REASONS = (
    "length",
    "eos",
    "stop",
    "time_limit",
)
