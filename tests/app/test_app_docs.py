"""docs/api.md's examples are what the app really answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app import create_app
from tests.app.conftest import TEST_CONFIG

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models"


def _json_block_after(markdown: str, heading: str) -> dict:
    section = markdown[markdown.index(heading):]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))


def _rounded(value, places: int = 4):
    if isinstance(value, float):
        return round(value, places)
    if isinstance(value, dict):
        return {key: _rounded(item, places) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item, places) for item in value]
    return value


@pytest.mark.skipif(not (SHIPPED / "shakespeare-lstm" / "config.json").exists(),
                    reason="the shipped models are not in models/")
def test_models_example_is_what_the_shipped_models_answer(monkeypatch):
    monkeypatch.delenv("DEFAULT_MODEL", raising=False)
    documented = _json_block_after((ROOT / "docs" / "api.md").read_text(encoding="utf-8"), "## `GET /models`")
    app = create_app({**TEST_CONFIG, "MODEL_DIR": str(SHIPPED)})
    answer = app.test_client().get("/models").get_json()
    assert documented == _rounded(answer)


SHIPPED_TEXT = sorted(p for pattern in ("*/card.md", "*/config.json", "*/evaluation.json", "*/evaluations/*.json",
                                         "*/train_config.yaml")
                      for p in SHIPPED.glob(pattern))


@pytest.mark.parametrize("path", SHIPPED_TEXT, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_cards_and_configs_carry_no_absolute_path(path):
    """They travel with the model: they name the corpus (and its public address), not where it was on disk."""
    from lm.paths import without_paths

    text = path.read_text(encoding="utf-8")
    assert without_paths(text) == text
