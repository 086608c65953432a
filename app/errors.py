"""JSON errors. Every error the app returns is `{"error": {"type", "message", "field"?}}` with its status, except on
the OpenAI-compatible paths (`/v1/...`), whose clients expect OpenAI's error object, `{"error": {"message", "type",
"param", "code"}}` (a refused field is 400 there, as OpenAI answers). Both shapes are app/schema.py's models.

Browsers asking for a page get a small HTML error page instead (a person following a bad link should not be
shown raw JSON); anything else — curl, scripts, fetch() — gets JSON, and the API paths always do.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from app.schema import ErrorBody, ErrorDetail, OpenAIErrorBody, OpenAIErrorDetail
from lm.checks import OptionError

log = logging.getLogger(__name__)

# Stable machine-readable names for the statuses the API documents (docs/api.md, /openapi.json).
ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "invalid_field",
    429: "rate_limited",
    500: "internal_error",
    503: "overloaded",
}
OPENAI_PREFIX = "/v1/"
API_PATHS = ("/generate", "/health", "/openapi.json", "/models", "/metrics")


class APIError(Exception):
    """An error a view raises to answer with a JSON error body (see `error_response`)."""

    def __init__(self, status: int, message: str, field: str | None = None, retry_after: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)


def invalid_input(error: ValueError) -> APIError:
    """The core refused an input: 422, pointing `field` at the option an `OptionError` names."""
    return APIError(422, str(error), field=error.option if isinstance(error, OptionError) else None)


def openai_status(status: int) -> int:
    return 400 if status == 422 else status


def error_body(status: int, message: str, field: str | None = None, openai: bool = False) -> dict:
    """The error object, in the shape of the path's API."""
    kind = ERROR_TYPES.get(status, "error")
    if openai:
        category = ("authentication_error" if status == 401 else "rate_limit_error" if status == 429
                    else "server_error" if status >= 500 else "invalid_request_error")
        return OpenAIErrorBody(error=OpenAIErrorDetail(message=message, type=category, param=field,
                                                       code=kind)).model_dump()
    return ErrorBody(error=ErrorDetail(type=kind, message=message, field=field)).model_dump()


def _is_openai_path() -> bool:
    return request.path.startswith(OPENAI_PREFIX)


def error_response(status: int, message: str, field: str | None = None) -> Response:
    openai = _is_openai_path()
    response = jsonify(error_body(status, message, field, openai))
    response.status_code = openai_status(status) if openai else status
    return response


def _wants_html() -> bool:
    if request.path in API_PATHS or _is_openai_path():
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def _respond(status: int, message: str, field: str | None = None) -> Response:
    if _wants_html():
        return Response(render_template("error.html", status=status, message=message), status=status)
    return error_response(status, message, field)


def handle_api_error(error: APIError) -> Response:
    response = _respond(error.status, error.message, error.field)
    response.headers.update(error.headers)
    return response


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    messages = {
        404: f"no such route: {request.method} {request.path}",
        405: f"{request.method} is not allowed on {request.path}",
        413: "the request body is larger than the 64 KiB limit",
    }
    response = _respond(status, messages.get(status, error.description or error.name))
    # Keep protocol headers such as Allow (405) but not werkzeug's HTML Content-Type.
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_unexpected(error: Exception) -> Response:
    # Never show a traceback to a client; the log has it.
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _respond(500, "internal error; the server log has the details")


def init_app(app: Flask) -> None:
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
