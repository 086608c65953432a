"""QUANTIZE=int8: every model loads with int8 linear layers, and /models and the model pages say so."""

from __future__ import annotations

import pytest

from app import SettingsError, create_app

from .conftest import TEST_CONFIG


@pytest.fixture
def int8_client(models_dir, monkeypatch):
    monkeypatch.delenv("QUANTIZE", raising=False)
    return create_app({**TEST_CONFIG, "MODEL_DIR": str(models_dir), "QUANTIZE": "int8"}).test_client()


def test_models_say_which_run_quantized(client, int8_client):
    assert {m["quantization"] for m in client.get("/models").get_json()["models"]} == {None}
    models = int8_client.get("/models").get_json()["models"]
    assert {m["name"]: m["quantization"] for m in models} == {"tiny-gpt": "int8", "tiny-lstm": "int8"}


def test_model_page_shows_int8_weights(client, int8_client):
    for name in ("tiny-gpt", "tiny-lstm"):
        assert "int8 weights" in int8_client.get(f"/models/{name}").get_data(as_text=True)
        assert "int8 weights" not in client.get(f"/models/{name}").get_data(as_text=True)


@pytest.mark.parametrize("model", ["tiny-gpt", "tiny-lstm"])
def test_int8_models_generate(int8_client, model):
    response = int8_client.post("/generate", json={"prompt": "ROMEO:", "model": model, "max_new_tokens": 12,
                                                   "seed": 3})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["generated_tokens"] == 12


def test_quantize_setting_from_the_environment(models_dir, monkeypatch):
    monkeypatch.setenv("QUANTIZE", "INT8")
    app = create_app({**TEST_CONFIG, "MODEL_DIR": str(models_dir)})
    assert app.config["QUANTIZE"] == "int8"
    monkeypatch.setenv("QUANTIZE", "none")
    assert create_app({**TEST_CONFIG, "MODEL_DIR": str(models_dir)}).config["QUANTIZE"] is None
    monkeypatch.setenv("QUANTIZE", "int4")
    with pytest.raises(SettingsError, match="QUANTIZE") as caught:
        create_app({**TEST_CONFIG, "MODEL_DIR": str(models_dir)})
    assert "\n" not in str(caught.value)
