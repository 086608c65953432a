"""Config validation: every problem is one line naming the file and the key; exit status 2 from the CLI."""

from __future__ import annotations

import pytest

from tests.training.conftest import ROOT, tiny_config, write_config
from training.cli import main
from training.config import ConfigError, config_from_dict, load_config

PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_presets_load(preset):
    config = load_config(preset)
    assert config.model_type in ("gpt", "lstm")
    assert config.name


def test_required_presets_exist():
    names = {p.name for p in PRESETS}
    assert {"shakespeare-lstm.yaml", "shakespeare-gpt.yaml", "awd-lstm-wikitext2.yaml", "tiny-smoke.yaml"} <= names


def test_awd_preset_has_the_paper_settings():
    c = load_config(ROOT / "configs" / "awd-lstm-wikitext2.yaml")
    m, t = c.model, c.training
    assert (m["emb_size"], m["hidden_size"], m["n_layers"]) == (400, 1150, 3)
    assert (m["dropout"], m["dropout_hidden"], m["dropout_input"], m["dropout_embedding"]) == (0.4, 0.3, 0.65, 0.1)
    assert m["weight_drop"] == 0.5
    assert (t.optimizer, t.lr, t.grad_clip, t.alpha, t.beta) == ("ntasgd", 30.0, 0.25, 2.0, 1.0)
    assert (t.seq_len, t.batch_size, t.weight_decay, c.data.tokenizer) == (70, 80, 1.2e-6, "word")


def test_shakespeare_presets_use_the_nanogpt_split():
    for name in ("shakespeare-gpt.yaml", "shakespeare-lstm.yaml"):
        c = load_config(ROOT / "configs" / name)
        assert c.data.source == "tinyshakespeare" and c.data.split[:2] == [0.9, 0.1]


def _error(tmp_path, config: dict, overrides=()) -> ConfigError:
    path = write_config(tmp_path / "bad.yaml", config)
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return info.value


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["training"].update(lerning_rate=1), "training.lerning_rate"),
        (lambda c: c["training"].update(lr="fast"), "training.lr"),
        (lambda c: c["training"].update(max_steps=2.5), "training.max_steps"),
        (lambda c: c["training"].update(compile="yes"), "training.compile"),
        (lambda c: c["training"].update(optimizer="adagrad"), "training.optimizer"),
        (lambda c: c["training"].update(seq_len=64), "training.seq_len"),  # longer than context_length 32
        (lambda c: c["model"].update(n_embd=30, n_head=4), "model.n_embd"),  # width not divisible by heads
        (lambda c: c["model"].update(n_layers=3), "model.n_layers"),  # an LSTM key on a GPT
        (lambda c: c["model"].update(type="rnn"), "model.type"),
        (lambda c: c["data"].update(split=[0.8, 0.5]), "data.split"),
        (lambda c: c["data"].update(cleaner="magic"), "data.cleaner"),
        (lambda c: c["training"].update(max_time="an hour"), "training.max_time"),
        (lambda c: c["training"].update(max_time="0s"), "training.max_time"),
        (lambda c: c["training"].update(teacher_weight=0), "training.teacher_weight"),
        (lambda c: c["training"].update(teacher_weight=1.5), "training.teacher_weight"),
        (lambda c: c["training"].update(teacher=" "), "training.teacher"),
        (lambda c: c["training"].update(teacher=[]), "training.teacher"),
        (lambda c: c["training"].update(teacher=["models/a", " "]), "training.teacher"),
        (lambda c: c["training"].update(teacher=["models/a", 3]), "training.teacher[1]"),
        (lambda c: c.update(extras={}), "extras"),
    ],
)
def test_bad_values_name_the_file_and_key(tmp_path, mutate, key):
    config = tiny_config("gpt")
    mutate(config)
    error = _error(tmp_path, config)
    assert error.key == key
    assert str(error).startswith(f"{tmp_path / 'bad.yaml'}: {key}: ")
    assert "\n" not in str(error)


def test_lstm_only_options_rejected_for_gpt(tmp_path):
    assert _error(tmp_path, tiny_config("gpt", variable_bptt=True)).key == "training.variable_bptt"
    assert _error(tmp_path, tiny_config("gpt", alpha=2.0)).key == "training.alpha"


def test_overrides_parse_yaml_scalars(tmp_path):
    path = write_config(tmp_path / "ok.yaml", tiny_config("gpt"))
    config = load_config(path, ["training.lr=3e-4", "training.eval_interval=200", "training.compile=true",
                                "data.split=[0.7, 0.2, 0.1]", "model.dropout=0.2",
                                "training.teacher=[models/a, models/b]"])
    assert config.training.lr == pytest.approx(3e-4)
    assert config.training.eval_interval == 200 and config.training.compile is True
    assert config.data.split == [0.7, 0.2, 0.1] and config.model["dropout"] == 0.2
    assert config.training.teacher == ["models/a", "models/b"]
    assert load_config(path, ["training.teacher=models/a"]).training.teacher == "models/a"


def test_bad_override_is_a_config_error(tmp_path):
    path = write_config(tmp_path / "ok.yaml", tiny_config("gpt"))
    assert _error(tmp_path, tiny_config("gpt"), ["training.lr=fast"]).key == "training.lr"
    with pytest.raises(ConfigError):
        load_config(path, ["no-equals-sign"])


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_cli_config_error_is_one_line_exit_2(tmp_path, capsys):
    config = tiny_config("gpt")
    config["training"]["lr"] = "fast"
    path = write_config(tmp_path / "bad.yaml", config)
    assert main(["train", "--config", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml" in err and "training.lr" in err and "Traceback" not in err


def test_cli_set_error_exit_2(tmp_path, capsys):
    path = write_config(tmp_path / "ok.yaml", tiny_config("gpt"))
    assert main(["train", "--config", str(path), "--set", "training.seq_len=1000"]) == 2
    err = capsys.readouterr().err
    assert "training.seq_len" in err and err.count("\n") == 1


def test_max_time_takes_a_duration_in_the_config_and_on_the_command_line(tmp_path, capsys):
    path = write_config(tmp_path / "ok.yaml", tiny_config("gpt", max_time="1h30m"))
    assert load_config(path).training.max_time == 5400
    assert load_config(path, ["training.max_time=90s"]).training.max_time == 90
    assert load_config(path, ["training.max_time=120"]).training.max_time == 120
    assert "max_time: 5400" in load_config(path).to_yaml()  # written back as seconds
    assert main(["train", "--config", str(path), "--max-time", "5x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-time" in err and "90s, 30m, 2h, 1h30m" in err and "'5x'" in err


def test_cli_usage_error_is_one_line(capsys):
    assert main(["train"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_model_numbers_written_without_a_dot(tmp_path):
    path = write_config(tmp_path / "ok.yaml", tiny_config("gpt"))
    config = load_config(path, ["model.dropout=1e-1"])  # YAML 1.1 reads this as a string
    assert config.model["dropout"] == 0.1


def test_a_model_error_names_the_key_the_core_names(tmp_path):
    config = tiny_config("gpt")
    config["model"].update(n_head=3)  # 32 / 3: the core's OptionError says which key, n_embd
    error = _error(tmp_path, config)
    assert error.key == "model.n_embd" and error.problem.startswith("must be divisible by n_head")


def test_number_kind_says_which_keys_a_range_can_span():
    from training.config import number_kind

    config = config_from_dict(tiny_config("gpt"), "tiny.yaml")
    assert number_kind(config, "training.lr") is float and number_kind(config, "training.max_time") is float
    assert number_kind(config, "training.min_lr") is float  # Optional[float]
    assert number_kind(config, "training.batch_size") is int and number_kind(config, "data.vocab_size") is int
    assert number_kind(config, "model.n_layer") is int and number_kind(config, "model.attn_dropout") is float
    assert number_kind(config, "model.bias") is None and number_kind(config, "training.optimizer") is None
    assert number_kind(config, "training.betas") is None
    for key, problem in (("training.lrr", "unknown key"), ("model.n_layers", "unknown gpt option"),
                         ("model.vocab_size", "unknown gpt option"), ("lr", "expected section.key")):
        with pytest.raises(ConfigError, match=problem):
            number_kind(config, key)
