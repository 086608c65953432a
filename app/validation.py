"""Request bodies checked by their pydantic models (app/schema.py), and a refusal turned into the API's 422 naming
the field as the client spelled it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flask import request
from pydantic import BaseModel, ValidationError

from app.errors import APIError
from app.schema import Request, spellings
from lm.checks import OptionError, shown


def json_object_body(example_path: str, example_body: str) -> dict[str, Any]:
    """The body as a JSON object, parsed whatever its Content-Type (so that `curl -d '{...}'` works); 400 with a
    curl line that works otherwise."""
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        body = None
    if not isinstance(body, dict):
        example = f"curl {request.host_url}{example_path.lstrip('/')} -d '{example_body}'"
        raise APIError(400, f"the request body must be a JSON object, for example: {example}")
    return body


def parse_request(model_class: type[Request], body: Mapping[str, Any]) -> Any:
    """The body validated by `model_class`; APIError(422, field=...) naming the first bad field as the client spelled
    it. JSON null means "not given" for every field, so clients can send their defaults explicitly."""
    given = {key: value for key, value in body.items() if value is not None}
    for name in model_class.model_fields:
        sent = [key for key in given if key in spellings(model_class, name)]
        if len(sent) > 1:
            raise APIError(422, f"give only one of {', '.join(sent)}", field=sent[-1])
    try:
        return model_class.model_validate(given)
    except ValidationError as error:
        problems = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")  # unknown fields first
        raise _invalid(model_class, problems[0]) from None


def _allowed_fields(model_class: type[BaseModel]) -> str:
    names = []
    for name in model_class.model_fields:
        others = spellings(model_class, name)[1:]
        names.append(name + (f" (or {' / '.join(others)})" if others else ""))
    return ", ".join(names)


def _invalid(model_class: type[BaseModel], problem: Mapping[str, Any]) -> APIError:
    field = str(problem["loc"][0]) if problem["loc"] else None
    cause = (problem.get("ctx") or {}).get("error")
    if problem["type"] == "extra_forbidden":
        message = f"unknown field {shown(field)}; allowed fields: {_allowed_fields(model_class)}"
    elif problem["type"] == "missing":
        message = f"{field} is required"
    elif isinstance(cause, OptionError):
        message = f"{field} {cause.problem}"  # the core's words, under the name the client used
    else:
        message = f"{' '.join(map(str, problem['loc']))}: {problem['msg']}"
    return APIError(422, message, field=field)
