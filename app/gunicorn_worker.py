"""The app as each gunicorn worker builds it (gunicorn.conf.py's `wsgi_app`).

A set-up problem a person can fix (no model loads, a bad setting) becomes gunicorn's AppImportError: gunicorn
prints its message as one line and stops, where any other exception from the factory is logged with a traceback and
the master retries. Imported only by gunicorn, which is not installed on Windows.
"""

from __future__ import annotations

from flask import Flask
from gunicorn.errors import AppImportError

from app import NoUsableModelError, SettingsError, create_app


def create_app_or_stop() -> Flask:
    try:
        return create_app()
    except (NoUsableModelError, SettingsError) as error:
        raise AppImportError(f"scriptorium: cannot start: {error}") from None
