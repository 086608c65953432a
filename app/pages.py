"""Browser pages: the playground, Compare, and one page per model (card, metrics, config, training curve)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, render_template, send_from_directory
from markdown_it import MarkdownIt
from markupsafe import Markup

from app.access import get_access
from app.registry import get_registry
from lm.checkpoint import CARD_FILE, CURVE_FILE, own_evaluation
from lm.options import TEMPERATURE

bp = Blueprint("pages", __name__)

MAX_CARD_CHARS = 100_000  # a card is a page of prose; anything bigger is not worth sending to a browser
MAX_EVALUATION_BYTES = 1_000_000
# CommonMark plus tables (the card's figures), with raw HTML off: a card's "<b>" or "<script>" is shown as text, and
# markdown-it refuses javascript: and other unsafe link targets.
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


@bp.app_context_processor
def navigation() -> dict:
    """What every page (error pages included) needs for its navigation and load-failure notice."""
    registry = get_registry()
    return {
        "models": [registry.describe(name) for name in registry.names],
        "default_model": registry.default_name,
        "failures": registry.failures,
        # what the page's scripts show the API when API_KEYS is set (app/access.py)
        "playground_token": get_access().playground_token(),
    }


def _page_context() -> dict:
    return {
        "max_new_tokens": current_app.config["MAX_NEW_TOKENS"],
        "max_prompt_chars": current_app.config["MAX_PROMPT_CHARS"],
        "temperature": TEMPERATURE.default,  # the slider starts where the API and the core start
    }


@bp.get("/")
def index() -> str:
    return render_template("index.html", **_page_context())


@bp.get("/compare")
def compare() -> str:
    return render_template("compare.html", **_page_context())


def _model_path(name: str) -> Path:
    registry = get_registry()
    if name not in registry.generators:
        abort(404)
    return Path(registry.get(name).path)


def _ladder(path: Path) -> dict | None:
    """The baseline ladder `python -m training evaluate` wrote into the model's evaluation on its own validation
    text (`lm.checkpoint.own_evaluation`: never the figures of another text it was evaluated on), if it is there
    and well-formed: rungs (name, bits/char, nats/char, whether it is the model) best first, and its summary."""
    try:
        own = own_evaluation(path, max_bytes=MAX_EVALUATION_BYTES)
        evaluation = own[1] if own else {}
        ladder = evaluation["ladder"]
        rungs = [
            {"name": str(r["name"]), "bits": float(r["bits_per_char"]), "nats": float(r["nats_per_char"]),
             "model": r.get("model") in ("static", "dynamic"), "detail": str(r.get("detail", ""))}
            for r in ladder["rungs"]
        ]
        summary = str(ladder["summary"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # no evaluation, an older one without the ladder, or a damaged file: the page goes on
    if not rungs or not all(math.isfinite(r["bits"]) and math.isfinite(r["nats"]) for r in rungs):
        return None
    return {"rungs": rungs, "summary": summary, "data": str(evaluation.get("data", ""))}


@bp.get("/models/<name>")
def model(name: str) -> str:
    path = _model_path(name)
    generator = get_registry().get(name)
    card = None
    try:
        text = (path / CARD_FILE).read_text(encoding="utf-8", errors="replace")[:MAX_CARD_CHARS]
        card = Markup(MARKDOWN.render(text))
    except OSError:
        pass  # a card is optional
    config = generator.config or {}
    return render_template(
        "model.html",
        model=get_registry().describe(name),
        card=card,
        metrics=config.get("metrics") or {},
        training=config.get("training") or {},
        config_json=json.dumps(config, indent=2, sort_keys=True, default=str),
        has_curve=(path / CURVE_FILE).is_file(),
        ladder=_ladder(path),
    )


@bp.get(f"/models/<name>/{CURVE_FILE}")
def training_curve(name: str) -> Response:
    # Only this one known file name, and only from a loaded model's own directory: no user-supplied path.
    return send_from_directory(_model_path(name), CURVE_FILE, mimetype="image/png")
