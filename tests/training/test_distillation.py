"""Knowledge distillation (training.teacher): the KL term against a hand computation, a run that learns from a
teacher, the teacher's tokenizer and record, and the errors a user can make."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from lm.checkpoint import load_model_dir
from training.card import render_card
from training.config import config_from_dict
from training.distillation import Teacher
from training.trainer import RunOptions, Trainer, TrainingError, train
from tests.training.conftest import run_cli, tiny_config, write_config


def _teacher_config(**training) -> dict:
    return tiny_config("gpt", **{"max_steps": 40, "eval_interval": 20, **training})


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, cache_dir) -> str:
    out = tmp_path_factory.mktemp("teacher") / "tiny-teacher"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCRIPTORIUM_CACHE", str(cache_dir))
        train(config_from_dict(_teacher_config(), "teacher.yaml"), RunOptions(output=out, progress=False, command="t"))
    return str(out)


def test_the_loss_is_the_kl_divergence_by_hand(teacher_dir):
    loaded = load_model_dir(teacher_dir)
    teacher = Teacher(teacher_dir, torch.device("cpu"), loaded.tokenizer)
    x = torch.randint(0, loaded.tokenizer.vocab_size, (2, 5), generator=torch.Generator().manual_seed(0))
    student_logits = torch.randn(2, 5, loaded.tokenizer.vocab_size, generator=torch.Generator().manual_seed(1))
    p = F.softmax(loaded.model(x, None).logits.float(), dim=-1)
    by_hand = (p * (p.log() - F.log_softmax(student_logits, dim=-1))).sum(-1).mean()
    assert teacher.loss(x, student_logits).item() == pytest.approx(by_hand.item(), rel=1e-4)
    # the teacher's own logits are the one student with nothing left to learn from it
    assert teacher.loss(x, loaded.model(x, None).logits).item() == pytest.approx(0.0, abs=1e-5)
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_a_student_moves_toward_its_teacher(teacher_dir, tmp_path):
    """Only the KL term (weight 1): the student's distance to the teacher falls, and the run records its teacher."""
    config = config_from_dict(_teacher_config(teacher=teacher_dir, teacher_weight=1.0, max_steps=30, seed=3), "s.yaml")
    trainer = Trainer(config, RunOptions(output=tmp_path / "student", progress=False, command="s"))
    x = torch.as_tensor(trainer.valid_ids[:4 * 32].astype("int64")).view(4, 32)

    def distance() -> float:
        trainer.model.eval()
        with torch.no_grad():
            return trainer.teacher.loss(x, trainer.model(x, None).logits).item()

    before = distance()
    trainer.run()
    assert distance() < 0.5 * before
    recorded = json.loads((tmp_path / "student" / "config.json").read_text())["training"]
    assert recorded["teacher"] == {"name": "tiny-teacher", "weight": 1.0}
    assert "distilled from `tiny-teacher`" in render_card(tmp_path / "student")


def test_the_run_takes_the_teacher_tokenizer(teacher_dir, tmp_path):
    """A character tokenizer of another size is asked for; the teacher's is used, and the config as run says so."""
    config = _teacher_config(teacher=teacher_dir, max_steps=2, eval_interval=2)
    config["data"]["vocab_size"] = 20
    trainer = Trainer(config_from_dict(config, "s.yaml"), RunOptions(output=tmp_path / "s", progress=False))
    assert trainer.tokenizer.to_str() == load_model_dir(teacher_dir).tokenizer.to_str()
    assert trainer.cfg.data.tokenizer_path == teacher_dir


def test_a_teacher_with_another_tokenizer_is_refused(teacher_dir, tmp_path):
    """A tokenizer given by the user (data.tokenizer_path) that is not the teacher's: refused, before training."""
    from lm.tokenizers import train_tokenizer

    other = tmp_path / "bytes.json"
    train_tokenizer("bpe", "the cat sat on the mat " * 50, vocab_size=280).save(other)
    config = _teacher_config(teacher=teacher_dir, max_steps=2, eval_interval=2)
    config["data"]["tokenizer_path"] = str(other)
    with pytest.raises(TrainingError, match="has another tokenizer"):
        Trainer(config_from_dict(config, "s.yaml"), RunOptions(output=tmp_path / "s", progress=False))
    assert not (tmp_path / "s" / "model.safetensors").exists()


def test_cli_missing_teacher_is_one_line(tmp_path):
    config = write_config(tmp_path / "c.yaml", _teacher_config(teacher=str(tmp_path / "nowhere"), max_steps=2))
    result = run_cli("train", "--config", str(config), "--output", str(tmp_path / "out"), "--quiet")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "training.teacher: no model directory" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()
