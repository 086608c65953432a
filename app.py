"""Serve Scriptorium with waitress, a production WSGI server that also runs on Windows: `python app.py`.

This is what `make run` runs. HOST and PORT (default 127.0.0.1:5000) and the other settings in
docs/deploy.md come from the environment. On Linux and in Docker, gunicorn.conf.py serves the same app.

(This file and the `app/` package share a name on purpose: `import app` finds the package, because Python
prefers a package directory over a module file of the same name.)
"""

from __future__ import annotations

import logging
import sys

import waitress

from app import NoUsableModelError, SettingsError, create_app
from app.registry import EXTENSION as MODELS
from app.registry import close_models


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        application = create_app()
    except (NoUsableModelError, SettingsError) as error:
        # One clear line, no traceback: these are set-up problems the person starting the server can fix.
        print(f"scriptorium: cannot start: {error}", file=sys.stderr)
        return 1
    config = application.config
    host, port = config["HOST"], config["PORT"]
    # A thread per request in a full batch (each waits while the model's scheduler decodes them together), plus some
    # waiting for room and quick requests (pages, /health, 503 answers).
    threads = config["MAX_BATCH_SIZE"] + 8
    try:
        server = waitress.create_server(
            application, host=host, port=port, threads=threads, ident="scriptorium"
        )
    except OSError as error:  # e.g. the port is taken
        print(f"scriptorium: cannot listen on {host}:{port}: {error.strerror or error}", file=sys.stderr)
        return 1
    names = ", ".join(application.extensions[MODELS].names)
    print(f"scriptorium: serving {names} on http://{host}:{port}", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        close_models(application)
    return 0


if __name__ == "__main__":
    sys.exit(main())
