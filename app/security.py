"""Response headers that keep generated text inert in the browser.

Model output is untrusted text (a model can emit `<script>`): pages insert it with textContent, and the
Content-Security-Policy below forbids inline scripts and any script not served by this app, so even a slip
in that rule would not run code.
"""

from __future__ import annotations

from flask import Flask, Response, current_app


def content_security_policy(frame_ancestors: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors}",
        ]
    )


def add_security_headers(response: Response) -> Response:
    response.headers.setdefault(
        "Content-Security-Policy", content_security_policy(current_app.config["FRAME_ANCESTORS"])
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
