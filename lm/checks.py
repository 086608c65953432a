"""Value checks shared by every layer: the core's options and model configs, the trainer's config and command line,
the app's settings and request fields.

Each check returns the value (as its type) or raises `OptionError`, whose `option` names what was checked, so that
a caller can point at it (the app's `field`, the trainer's `training.lr`) without reading the message. Booleans are
never numbers here, although Python says `True == 1`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any


class OptionError(ValueError):
    """A value that is not allowed for `option`. The message is "<option> <problem>", e.g. "top_p must be in
    (0, 1], got 1.5"; `problem` is the part after the name, for callers that name the option their own way."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem


def shown(value: Any) -> str:
    """A value as a message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() and abs(number) < 1e16 else repr(number)


def bounds_text(
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    exclusive_maximum: float | None = None,
) -> str:
    """">= 0", "> 0", "<= 8" or "in (0, 1]" for the given bounds ("" when there are none)."""
    low = high = None
    if minimum is not None:
        low = ("[", minimum, ">=")
    elif exclusive_minimum is not None:
        low = ("(", exclusive_minimum, ">")
    if maximum is not None:
        high = ("]", maximum, "<=")
    elif exclusive_maximum is not None:
        high = (")", exclusive_maximum, "<")
    if low and high:
        return f"in {low[0]}{_number_text(low[1])}, {_number_text(high[1])}{high[0]}"
    if low or high:
        _bracket, bound, sign = low or high
        return f"{sign} {_number_text(bound)}"
    return ""


def in_bounds(
    value: float,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    exclusive_maximum: float | None = None,
) -> bool:
    return not (
        (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (exclusive_minimum is not None and value <= exclusive_minimum)
        or (exclusive_maximum is not None and value >= exclusive_maximum)
    )


def within(name: str, value: float, **bounds: float | None) -> None:
    """OptionError unless `value` lies within the bounds (`in_bounds`' keywords)."""
    if not in_bounds(value, **bounds):
        raise OptionError(name, f"must be {bounds_text(**bounds)}, got {shown(value)}")


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (not a bool) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(name, f"must be an integer, got {shown(value)}")
    within(name, value, minimum=minimum, maximum=maximum)
    return value


def number(name: str, value: Any, **bounds: float | None) -> float:
    """A finite int or float (not a bool) within the bounds (`in_bounds`' keywords), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(name, f"must be a number, got {shown(value)}")
    if not math.isfinite(value):
        raise OptionError(name, f"must be a finite number, got {shown(value)}")
    within(name, value, **bounds)
    return float(value)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError(name, f"must be true or false, got {shown(value)}")
    return value


def text(name: str, value: Any, max_length: int | None = None) -> str:
    """A string that is valid Unicode: JSON and Python strings can hold a lone UTF-16 surrogate ("\\ud800"), which
    tokenizers and UTF-8 refuse."""
    if not isinstance(value, str):
        raise OptionError(name, f"must be a string, got {shown(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise OptionError(name, f"must be valid Unicode text (a lone surrogate at {error.start})") from None
    if max_length is not None and len(value) > max_length:
        raise OptionError(name, f"must have at most {max_length} characters, got {len(value)}")
    return value


def strings(name: str, value: Any, max_items: int | None = None, max_length: int | None = None) -> tuple[str, ...]:
    """A list (or tuple) of non-empty strings, each valid Unicode."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise OptionError(name, f"must be a list of strings, got {shown(value)}")
    if max_items is not None and len(value) > max_items:
        raise OptionError(name, f"takes at most {max_items} strings, got {len(value)}")
    for item in value:
        if not item:
            raise OptionError(name, "strings must not be empty")
        text(name, item, max_length)
    return tuple(value)


def one_of(name: str, value: Any, choices: Collection[Any]) -> Any:
    if value not in choices:
        raise OptionError(name, f"must be one of {', '.join(map(str, choices))}, got {shown(value)}")
    return value


def integer_from(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`integer`, also reading text (a command line, an environment variable): " 64 " is 64."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise OptionError(name, f"must be an integer, got {shown(value)}") from None
    return integer(name, value, minimum, maximum)


def number_from(name: str, value: Any, **bounds: float | None) -> float:
    """`number`, also reading text: "2.5" is 2.5, "nan" is refused."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise OptionError(name, f"must be a number, got {shown(value)}") from None
    return number(name, value, **bounds)


# "90s", "30m", "2h", "1h30m", "1.5h", "2h 15m": hours, minutes and seconds in that order, each at most once.
_DURATION = re.compile(r"(?:(?P<h>\d+(?:\.\d+)?)h)?\s*(?:(?P<m>\d+(?:\.\d+)?)m)?\s*(?:(?P<s>\d+(?:\.\d+)?)s)?")
DURATION_FORMATS = "seconds (90) or a duration like 90s, 30m, 2h, 1h30m"


def duration_from(name: str, value: Any, **bounds: float | None) -> float:
    """Seconds, from a number or from text: plain seconds ("90", "2.5") or a duration ("90s", "30m", "2h",
    "1h30m"), within the bounds (`in_bounds`' keywords, in seconds)."""
    if isinstance(value, str):
        stripped = value.strip().lower()
        match = _DURATION.fullmatch(stripped)
        try:
            value = float(stripped)
        except ValueError:
            if not stripped or not match or not any(match.groups()):
                raise OptionError(name, f"must be {DURATION_FORMATS}, got {shown(value)}") from None
            hours, minutes, seconds = (float(part or 0) for part in match.group("h", "m", "s"))
            value = 3600 * hours + 60 * minutes + seconds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(name, f"must be {DURATION_FORMATS}, got {shown(value)}")
    return number(name, value, **bounds)
