"""Reading Server-Sent Events bodies in tests."""

from __future__ import annotations

import json


def sse_events(body: bytes | str) -> list[dict]:
    """The JSON payloads of the `data:` events of a Server-Sent Events body."""
    text = body.decode() if isinstance(body, bytes) else body
    return [json.loads(block[len("data: ") :]) for block in text.split("\n\n") if block.startswith("data: ")]
