"""`evaluate --custom-prompts`: the user's prompts continued, saved with the figures, repeated exactly with a seed;
a prompts file that cannot be used is one line and exit status 2."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from training.card import render_card
from training.cli import EXIT_USAGE, main
from training.config import ConfigError
from training.evaluation.prompts import PromptFileError, read_prompts, unescape
from training.evaluation.sampling import SamplingSettings, validated

TEXT = "".join(f"ANNA:\nThe old king fears the river {i}.\n\n" for i in range(60))


def test_a_prompts_file_is_one_prompt_a_line_with_escapes(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("ANNA:\\n\n\n   \nBORIS:\\nThe cat \\\\n is \\t here \nC:\\d\n", encoding="utf-8")
    assert read_prompts(path) == ["ANNA:\n", "BORIS:\nThe cat \\n is \t here ", "C:\\d"]
    assert unescape("a\\\\\\nb") == "a\\\nb"
    path.write_bytes("\ufeffROMEO:\r\nJULIET:\r\n".encode("utf-8"))  # as Notepad saves it
    assert read_prompts(path) == ["ROMEO:", "JULIET:"]


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    (b"", "no prompts in it"),
    (b"\n   \n\t\n", "no prompts in it"),
    (b"PK\x03\x04\x00\x00binary", "not UTF-8 text (a NUL byte"),
    (b"\xff\xfe\xfa caf\xe9", "not UTF-8 text (bytes that are not UTF-8"),
    ("directory", "is a directory"),
])
def test_a_bad_prompts_file_is_one_line_and_exit_2(tmp_path, trained_gpt, capsys, content, problem):
    path = tmp_path / "prompts.txt"
    if content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(PromptFileError, match=re.escape(problem)):
        read_prompts(path)
    model_dir = tmp_path / "model"
    shutil.copytree(trained_gpt, model_dir)
    assert main(["evaluate", str(model_dir), "--custom-prompts", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: evaluate: --custom-prompts: prompts file {path}: {problem}")
    assert not (model_dir / "evaluations").exists()  # nothing written


def test_evaluate_needs_data_or_prompts_and_the_ensemble_takes_no_prompts(tmp_path, trained_gpt, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("ANNA:\n")
    assert main(["evaluate", str(trained_gpt)]) == EXIT_USAGE
    assert "give --data PATH, --custom-prompts FILE, or both" in capsys.readouterr().err
    assert main(["evaluate", str(trained_gpt), "--data", str(prompts), "--ensemble", str(trained_gpt),
                 "--custom-prompts", str(prompts)]) == EXIT_USAGE
    assert "drop --custom-prompts" in capsys.readouterr().err
    assert main(["evaluate", str(trained_gpt), "--custom-prompts", str(prompts), "--temperature", "-1"]) == EXIT_USAGE
    assert "argument --temperature: must be 0 or in [0.001, 100], got -1.0" in capsys.readouterr().err


def test_sampling_settings_are_checked_by_the_option_definitions(trained_gpt, capsys):
    with pytest.raises(ConfigError, match=re.escape("x: top_p: must be in (0, 1], got 0")):
        validated(SamplingSettings, {"top_p": 0}, "x")
    with pytest.raises(ConfigError, match="x: num_samples: Input should be less than or equal to 64"):
        validated(SamplingSettings, {"num_samples": 65}, "x")
    with pytest.raises(ConfigError, match="x: temp: unknown field; allowed: num_samples, max_new_tokens, "):
        validated(SamplingSettings, {"temp": 1}, "x")
    assert SamplingSettings(seed=2**63 - 1).seed_for(1) == 0  # wraps inside the seed's bounds
    assert main(["evaluate", str(trained_gpt), "--custom-prompts", "p.txt", "--num-samples", "100"]) == EXIT_USAGE
    assert capsys.readouterr().err == ("error: evaluate --custom-prompts: num_samples: Input should be less than or "
                                       "equal to 64\n")


@pytest.mark.slow
def test_continuations_are_saved_with_the_figures_and_repeat_with_a_seed(tmp_path, trained_gpt, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_gpt, model_dir)
    data = tmp_path / "corpus.txt"
    data.write_text(TEXT)
    prompts = tmp_path / "my prompts.txt"
    prompts.write_text("ANNA:\\nThe old\n\nBORIS:\n")
    args = ["evaluate", str(model_dir), "--data", str(data), "--samples", "1", "--custom-prompts", str(prompts),
            "--num-samples", "3", "--temperature", "0.9", "--max-new-tokens", "24", "--seed", "11"]

    def evaluate(*extra: str) -> tuple[dict, str]:
        assert main(args + list(extra)) == 0
        out = capsys.readouterr().out
        written = Path(out.strip().splitlines()[-1].removeprefix("written to "))
        assert written == model_dir / "evaluations" / "corpus-whole.json"
        return json.loads(written.read_text()), out

    result, out = evaluate()
    assert result["loss"] > 0 and result["tokens"] > 0  # the figures, and beside them the continuations
    custom = result["custom_prompts"]
    assert (custom["num_samples"], custom["temperature"], custom["max_new_tokens"], custom["seed"]) == (3, 0.9, 24, 11)
    assert [item["prompt"] for item in custom["prompts"]] == ["ANNA:\nThe old", "BORIS:"]
    assert [item["seed"] for item in custom["prompts"]] == [11, 12]
    for item in custom["prompts"]:
        assert len(item["continuations"]) == 3
        assert all(0 < c["tokens"] <= 24 and c["finish_reason"] in ("length", "eos") for c in item["continuations"])
    texts = [c["text"] for item in custom["prompts"] for c in item["continuations"]]
    assert len(set(texts)) > 1  # sampled, not one text repeated
    # printed readably: each prompt, then each continuation after it with the join marked
    first = custom["prompts"][0]["continuations"][0]["text"]
    assert "[1] seed 11, prompt 'ANNA:\\nThe old'" in out
    assert "  1.  ANNA:\n      The old|" + first.replace("\n", "\n      ") in out

    again, _ = evaluate()
    assert again["custom_prompts"] == custom  # the same seed, the same continuations
    other, _ = evaluate("--seed", "12")
    assert other["custom_prompts"]["prompts"][0]["continuations"] != custom["prompts"][0]["continuations"]

    # the same text under the same generator: the saved continuation is what `generate` gives for that seed
    from lm import load

    check = load(model_dir).generate("BORIS:", max_new_tokens=24, temperature=0.9, seed=12, num_return_sequences=3)
    assert [c.text for c in check.choices] == [c["text"] for c in custom["prompts"][1]["continuations"]]


@pytest.mark.slow
def test_prompts_without_data_go_to_their_own_file_and_leave_the_card_alone(tmp_path, trained_gpt, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_gpt, model_dir)
    card_before = render_card(model_dir)
    prompts = tmp_path / "poems.txt"
    prompts.write_text("CLARA:\n")
    assert main(["evaluate", str(model_dir), "--custom-prompts", str(prompts), "--max-new-tokens", "10"]) == 0
    shown = capsys.readouterr()
    assert shown.err == ""  # no data read
    written = model_dir / "evaluations" / "prompts-poems.json"
    assert shown.out.strip().endswith(f"written to {written}")
    result = json.loads(written.read_text())
    assert "loss" not in result and result["custom_prompts"]["prompts"][0]["prompt"] == "CLARA:"
    assert result["command"].startswith("python -m training evaluate ")
    assert render_card(model_dir) == card_before  # continuations are no figures for the card
