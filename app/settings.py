"""Settings: built-in defaults, then environment variables, then the config given to `create_app`.

Every setting is parsed and checked here, once, so that a typo in the environment stops the server at start-up
with one line naming the variable, instead of surfacing later as a confusing request failure.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from lm import checks
from lm.checks import OptionError
from lm.quantize import QUANTIZE_MODES

REPO_ROOT = Path(__file__).resolve().parent.parent

# The request-body limit is part of the API contract (413 above it), not a deployment knob.
MAX_BODY_BYTES = 64 * 1024


class SettingsError(ValueError):
    """A setting the app cannot use; the message is one line naming the setting."""


def _integer(minimum: int) -> Callable[[str, Any], int]:
    return partial(checks.integer_from, minimum=minimum)


def _seconds(name: str, value: Any) -> float:
    """Seconds (2.5) or a duration ("90s", "2m")."""
    return checks.duration_from(name, value, exclusive_minimum=0)


def _optional_str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise OptionError(name, f"must be a string, got {checks.shown(value)}")
    return os.fspath(value).strip() or None


def _items(name: str, value: Any) -> tuple[str, ...]:
    """A comma-separated list (an environment variable) or a list of strings, as a tuple; empty items dropped."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise OptionError(name, f"must be a comma-separated list, got {checks.shown(value)}")
    return tuple(item.strip() for item in value if item.strip())


def _origins(name: str, value: Any) -> tuple[str, ...]:
    origins = _items(name, value)
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise OptionError(name, f"must list origins such as https://example.com (or *), got {checks.shown(origin)}")
    return origins


def _per_minute(name: str, value: Any) -> float:
    return checks.number_from(name, value, minimum=0)


def _str(name: str, value: Any) -> str:
    parsed = _optional_str(name, value)
    if parsed is None:
        raise OptionError(name, "must not be empty")
    return parsed


def _quantize(name: str, value: Any) -> str | None:
    parsed = _optional_str(name, value)
    mode = "none" if parsed is None else checks.one_of(name, parsed.lower(), ("none", *QUANTIZE_MODES))
    return None if mode == "none" else mode


# name -> (default, parser). These are the settings read from the environment; docs/deploy.md lists them.
ENV_SETTINGS: dict[str, tuple[Any, Callable[[str, Any], Any]]] = {
    "MODEL_DIR": (str(REPO_ROOT / "models"), _str),
    "DEFAULT_MODEL": (None, _optional_str),
    "MAX_NEW_TOKENS": (500, _integer(1)),
    "MAX_PROMPT_CHARS": (4000, _integer(1)),
    "GENERATION_TIMEOUT": (30.0, _seconds),
    # Each model's scheduler in each process (lm/scheduler.py): sequences decoded together, requests that may wait
    # for room, and how long one may wait; past either, 503 + Retry-After.
    "MAX_BATCH_SIZE": (16, _integer(1)),
    "MAX_QUEUED_REQUESTS": (64, _integer(0)),
    "QUEUE_TIMEOUT": (2.0, _seconds),
    # The old name of MAX_BATCH_SIZE (when generations ran side by side on threads), still read.
    "MAX_CONCURRENT_GENERATIONS": (None, _integer(1)),
    "PORT": (5000, _integer(0)),
    "HOST": ("127.0.0.1", _str),
    # Hugging Face shows a Space inside an iframe on huggingface.co, so the page must allow that framer.
    "FRAME_ANCESTORS": ("'self' https://huggingface.co https://*.hf.space", _str),
    # int8 linear layers for CPU serving (lm.quantize); none = float32
    "QUANTIZE": (None, _quantize),
    # Access control (app/access.py), all off by default.
    "API_KEYS": ((), _items),
    "RATE_LIMIT": (0.0, _per_minute),  # generation requests per minute per key or client address; 0 = no limit
    "RATE_LIMIT_BURST": (10, _integer(1)),
    "CORS_ORIGINS": ((), _origins),
    "PROXY_HOPS": (0, _integer(0)),
    # Signs the playground pages' tokens; random per process unless set (gunicorn.conf.py sets one for its workers).
    "SECRET_KEY": (None, _optional_str),
}


def load_settings(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then `environ`, then `overrides` (the test config); every known setting parsed and checked.

    Keys of `overrides` that are not settings listed here (e.g. TESTING) pass through unchanged to Flask.
    """
    settings: dict[str, Any] = {name: default for name, (default, _parse) in ENV_SETTINGS.items()}
    for name in ENV_SETTINGS:
        if environ.get(name, "").strip():
            settings[name] = environ[name]
    settings.update(overrides or {})
    for name, (default, parse) in ENV_SETTINGS.items():
        if settings[name] is not None or default is not None:
            try:
                settings[name] = parse(name, settings[name])
            except OptionError as error:
                raise SettingsError(str(error)) from None
    batch_size_given = environ.get("MAX_BATCH_SIZE", "").strip() or "MAX_BATCH_SIZE" in (overrides or {})
    if settings["MAX_CONCURRENT_GENERATIONS"] is not None and not batch_size_given:
        settings["MAX_BATCH_SIZE"] = settings["MAX_CONCURRENT_GENERATIONS"]
    settings.setdefault("MAX_CONTENT_LENGTH", MAX_BODY_BYTES)
    settings["SECRET_KEY"] = settings["SECRET_KEY"] or secrets.token_hex(32)
    return settings
