"""The matmul probe (measured once per machine, cached in the user's cache) and the dtype `lm.load` computes in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lm import save_model_dir
from lm.cache import cache_dir
from lm.checkpoint import compute_dtype, load_model_dir
from lm.precision import CACHE_FILE, MatmulProbe, default_probe, measure_flops

from tests.lm.conftest import FakeMeasure, tiny_model

ROOT = Path(__file__).resolve().parents[2]


def test_the_probe_measures_fp32_and_the_precision_together_once_then_reads_its_cache(tmp_path):
    measure = FakeMeasure(bf16=300.0)
    probe = MatmulProbe(tmp_path / "probe.json", measure=measure)
    assert probe.speedup("bf16", 64, 32) == pytest.approx(3.0)
    assert probe.speedup("bf16", 64, 32) == pytest.approx(3.0)
    assert measure.calls == [(("fp32", "bf16"), 64, 32, True)] * 2  # two rounds, then the cache
    # a new process reads the file instead of measuring again
    again = MatmulProbe(tmp_path / "probe.json", measure=FakeMeasure(bf16=1.0))
    assert again.speedup("bf16", 64, 32) == pytest.approx(3.0)
    assert again.measure.calls == []
    stored = json.loads((tmp_path / "probe.json").read_text())
    assert any("torch " + torch.__version__ in key for key in stored)  # per torch version


def test_inference_and_training_shapes_are_measured_separately(tmp_path):
    measure = FakeMeasure(bf16=50.0)
    probe = MatmulProbe(tmp_path / "probe.json", measure=measure)
    probe.speedup("bf16", 64, 8, autocast=False)
    probe.speedup("bf16", 64, 8, autocast=True)
    probe.speedup("bf16", 128, 8, autocast=True)
    assert len(measure.calls) == 3 * 2


def test_an_unknown_precision_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="precision must be one of"):
        MatmulProbe(tmp_path / "p.json", measure=FakeMeasure()).flops("int4", 64, 8)


def test_a_real_measurement_is_positive_and_quick():
    figures = measure_flops(["fp32", "bf16"], 32, 16, torch.device("cpu"), autocast=True)
    assert set(figures) == {"fp32", "bf16"} and all(v > 0 for v in figures.values())


def test_the_cache_lives_in_the_users_cache_never_in_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("SCRIPTORIUM_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "scriptorium"
    probe = default_probe()
    assert probe.path == tmp_path / ".cache" / "scriptorium" / CACHE_FILE
    probe.measure = FakeMeasure(bf16=10.0)
    probe.speedup("bf16", 16, 16)
    assert probe.path.is_file()
    assert not list(ROOT.rglob(CACHE_FILE))


@pytest.mark.parametrize("stored", ["bfloat16", "float16"])
def test_half_weights_stay_half_only_where_measured_faster(tmp_path, stored):
    cpu = torch.device("cpu")
    precision = {"bfloat16": "bf16", "float16": "fp16"}[stored]
    fast = MatmulProbe(tmp_path / "fast.json", measure=FakeMeasure(**{precision: 200.0}))
    slow = MatmulProbe(tmp_path / "slow.json", measure=FakeMeasure(**{precision: 2.0}))
    assert compute_dtype(stored, "auto", cpu, 64, fast) == getattr(torch, stored)
    assert compute_dtype(stored, "auto", cpu, 64, slow) == torch.float32
    # the decode step's shape (a few rows), weights stored in the precision itself (not autocast)
    assert fast.measure.calls[0][2:] == (8, False)


def test_float32_weights_are_never_downcast_and_a_forced_dtype_is_used(tmp_path):
    fast = MatmulProbe(tmp_path / "fast.json", measure=FakeMeasure(bf16=1000.0))
    cpu = torch.device("cpu")
    assert compute_dtype("float32", "auto", cpu, 64, fast) == torch.float32
    assert fast.measure.calls == []
    assert compute_dtype("float32", "bfloat16", cpu, 64, fast) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of"):
        compute_dtype("float32", "int8", cpu, 64, fast)


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_a_model_computing_in_bf16_generates_like_float32(tmp_path, char_tokenizer, kind):
    path = tmp_path / kind
    save_model_dir(path, tiny_model(kind, char_tokenizer.vocab_size), char_tokenizer, dtype="bfloat16")
    fast = MatmulProbe(tmp_path / "fast.json", measure=FakeMeasure(bf16=1000.0))
    slow = MatmulProbe(tmp_path / "slow.json", measure=FakeMeasure(bf16=1.0))
    half = load_model_dir(path, probe=fast)
    full = load_model_dir(path, probe=slow)
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert next(full.model.parameters()).dtype == torch.float32
    from lm.generation import Generator

    # past the GPT's context of 32, so the sliding cache and the bf16 decode step both run
    texts = [Generator(loaded).generate("What light", max_new_tokens=48, temperature=0).text for loaded in (half, full)]
    assert len(texts[0]) > 0 and texts[0][:8] == texts[1][:8]


def test_rounds_that_disagree_are_used_but_not_cached(tmp_path):
    rounds = iter([{"fp32": 100.0, "bf16": 300.0}, {"fp32": 100.0, "bf16": 100.0}])
    probe = MatmulProbe(tmp_path / "busy.json", measure=lambda precisions, *args: next(rounds))
    assert probe.speedup("bf16", 64, 8) == pytest.approx(3.0)  # the best of the two rounds
    assert not (tmp_path / "busy.json").exists()
