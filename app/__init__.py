"""Scriptorium's web app: a browser playground and a JSON API serving the models under MODEL_DIR.

`create_app(config)` is the factory used by `python app.py` (waitress), by gunicorn
(`gunicorn -c gunicorn.conf.py`, through app/gunicorn_worker.py) and by the tests. It loads every model once, here, so
under gunicorn each worker loads its own copy after the fork (torch and fork do not mix).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from app.registry import NoUsableModelError
from app.settings import SettingsError, load_settings

__all__ = ["create_app", "NoUsableModelError", "SettingsError"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings (defaults < environment < `config`), then models (each with its scheduler) and routes.

    Raises SettingsError for an unusable setting and NoUsableModelError when no model loads.
    """
    # Imported here, as in Flask's tutorial, so that importing the package stays cheap and free of torch: gunicorn's
    # master process reads app.settings, and must not start torch before it forks the workers.
    from app import access, api, errors, metrics, openai_api, pages, registry, security

    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.config.from_mapping(load_settings(os.environ, config))
    app.json.sort_keys = False  # keep fields in the documented order

    errors.init_app(app)
    security.init_app(app)
    registry.init_app(app)
    metrics.init_app(app, app.extensions[registry.EXTENSION])
    access.init_app(app)
    api.init_app(app)
    app.register_blueprint(openai_api.bp)
    app.register_blueprint(pages.bp)
    return app
