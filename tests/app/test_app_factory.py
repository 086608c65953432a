"""Settings precedence, model discovery, default model choice and start-up failures."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from app import create_app
from app.registry import ModelRegistry, NoUsableModelError
from app.settings import SettingsError, load_settings


def test_settings_defaults_then_environment_then_config():
    defaults = load_settings({})
    assert defaults["PORT"] == 5000 and defaults["HOST"] == "127.0.0.1"
    assert defaults["MAX_CONTENT_LENGTH"] == 64 * 1024
    from_env = load_settings({"PORT": "8000", "MAX_NEW_TOKENS": " 64 ", "GENERATION_TIMEOUT": "2.5",
                              "QUEUE_TIMEOUT": "1m"})
    assert (from_env["PORT"], from_env["MAX_NEW_TOKENS"], from_env["GENERATION_TIMEOUT"]) == (8000, 64, 2.5)
    assert from_env["QUEUE_TIMEOUT"] == 60
    overridden = load_settings({"PORT": "8000"}, {"PORT": 9000, "TESTING": True})
    assert overridden["PORT"] == 9000 and overridden["TESTING"] is True


@pytest.mark.parametrize(
    "name, value",
    [
        ("PORT", "http"),
        ("MAX_NEW_TOKENS", "0"),
        ("GENERATION_TIMEOUT", "-1"),
        ("GENERATION_TIMEOUT", "nan"),
        ("MAX_CONCURRENT_GENERATIONS", "1.5"),
        ("MAX_BATCH_SIZE", "0"),
        ("MAX_QUEUED_REQUESTS", "-1"),
        ("QUEUE_TIMEOUT", "soon"),
    ],
)
def test_unusable_setting_is_one_line_naming_it(name, value):
    with pytest.raises(SettingsError, match=name) as caught:
        load_settings({name: value})
    assert "\n" not in str(caught.value)


def test_max_concurrent_generations_is_still_read_as_the_batch_size():
    assert load_settings({})["MAX_BATCH_SIZE"] == 16 and load_settings({})["MAX_QUEUED_REQUESTS"] == 64
    assert load_settings({"MAX_CONCURRENT_GENERATIONS": "3"})["MAX_BATCH_SIZE"] == 3
    assert load_settings({"MAX_CONCURRENT_GENERATIONS": "3", "MAX_BATCH_SIZE": "5"})["MAX_BATCH_SIZE"] == 5
    assert load_settings({"MAX_CONCURRENT_GENERATIONS": "3"}, {"MAX_BATCH_SIZE": 7})["MAX_BATCH_SIZE"] == 7


def test_create_app_reads_environment(models_dir, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(models_dir))
    monkeypatch.setenv("DEFAULT_MODEL", "tiny-lstm")
    monkeypatch.setenv("MAX_NEW_TOKENS", "7")
    app = create_app({"TESTING": True})
    assert app.config["MAX_NEW_TOKENS"] == 7
    assert app.test_client().get("/models").get_json()["default"] == "tiny-lstm"


def test_default_model_is_lowest_bits_per_char(client):
    body = client.get("/models").get_json()
    assert body["default"] == "tiny-gpt"
    assert [m["name"] for m in body["models"] if m["default"]] == ["tiny-gpt"]


def fake(bpc=None):
    return SimpleNamespace(config={"metrics": {"val_bits_per_char": bpc}} if bpc is not None else {})


def test_default_model_falls_back_to_first_by_name_without_metrics(tmp_path):
    for name in ("b-model", "a-model"):
        (tmp_path / name).mkdir()
    registry = ModelRegistry.from_directory(tmp_path, loader=lambda path: fake())
    assert registry.names == ["a-model", "b-model"] and registry.default_name == "a-model"


def test_unknown_default_model_is_logged_and_replaced(tmp_path, caplog):
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
    loader = {"x": fake(3.0), "y": fake(2.0)}
    with caplog.at_level(logging.WARNING, logger="app.registry"):
        registry = ModelRegistry.from_directory(tmp_path, "nope", loader=lambda path: loader[path.name])
    assert registry.default_name == "y"
    assert "DEFAULT_MODEL=nope" in caplog.text


def test_broken_directories_are_skipped_with_their_reason(make_models_dir, caplog):
    root = make_models_dir("broken")
    (root / ".tmp-staging").mkdir()  # a half-written save: not a model, not a failure
    with caplog.at_level(logging.WARNING, logger="app.registry"):
        app = create_app({"TESTING": True, "MODEL_DIR": str(root)})
    client = app.test_client()
    models = client.get("/models").get_json()
    assert [m["name"] for m in models["models"]] == ["tiny-gpt", "tiny-lstm"]
    assert [f["name"] for f in models["unavailable"]] == ["broken"]
    error = models["unavailable"][0]["error"]
    assert error.startswith("broken/config.json: not valid JSON") and str(root) not in error  # no server path
    assert str(root / "broken") in caplog.text  # the log has it
    assert client.get("/health").get_json()["unavailable"] == models["unavailable"]
    assert "skipping model" in caplog.text and "broken" in caplog.text
    assert b"could not be loaded" in client.get("/").data


def test_a_load_failure_that_is_not_a_checkpoint_error_is_named_by_its_kind(tmp_path, caplog):
    for name in ("good", "bad"):
        (tmp_path / name).mkdir()

    def loader(path):
        if path.name == "bad":
            raise OSError(f"[Errno 5] Input/output error: '{path / 'model.safetensors'}'")
        return fake()

    with caplog.at_level(logging.WARNING, logger="app.registry"):
        registry = ModelRegistry.from_directory(tmp_path, loader=loader)
    [failure] = registry.failures
    assert failure.to_json() == {"name": "bad", "error": "OSError while loading (see the server log)"}
    assert str(tmp_path / "bad" / "model.safetensors") in caplog.text


def test_no_usable_model(tmp_path):
    with pytest.raises(NoUsableModelError, match="no model directory"):
        create_app({"MODEL_DIR": str(tmp_path / "missing")})
    with pytest.raises(NoUsableModelError, match="no model directories"):
        create_app({"MODEL_DIR": str(tmp_path)})
    (tmp_path / "broken").mkdir()
    with pytest.raises(NoUsableModelError, match="broken"):
        create_app({"MODEL_DIR": str(tmp_path)})
