"""At most MAX_CONCURRENT_GENERATIONS generations at once in this process.

A CPU running more generations than it has cores makes every one of them slower; past the limit a request
waits QUEUE_TIMEOUT seconds for a slot and is then told to come back (503 + Retry-After) rather than queueing
forever.
"""

from __future__ import annotations

import math
import threading

from flask import Flask, current_app

EXTENSION = "scriptorium.slots"


class Slot:
    """One held generation slot. `release` may be called more than once (a stream ends *and* is closed)."""

    def __init__(self, owner: GenerationSlots) -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._owner._release()

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class GenerationSlots:
    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._semaphore = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._active = 0

    def try_acquire(self) -> Slot | None:
        """A slot, or None when none freed up within `wait_seconds`."""
        if not self._semaphore.acquire(timeout=self.wait_seconds):
            return None
        with self._lock:
            self._active += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._active -= 1
        self._semaphore.release()

    @property
    def active(self) -> int:
        return self._active

    @property
    def retry_after(self) -> int:
        """Seconds a client is told to wait before retrying (whole seconds, as Retry-After wants)."""
        return max(1, math.ceil(self.wait_seconds))


def get_slots() -> GenerationSlots:
    return current_app.extensions[EXTENSION]


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = GenerationSlots(
        app.config["MAX_CONCURRENT_GENERATIONS"], app.config["QUEUE_TIMEOUT"]
    )
