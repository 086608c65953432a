"""Knowledge distillation (training.teacher): the KL term against a hand computation, a run that learns from a
teacher, the teacher's tokenizer and record, and the errors a user can make."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lm.checkpoint import load_model_dir
from training.card import _teacher_lines, render_card
from training.config import config_from_dict
from training.distillation import TargetStore, Teacher, TeacherTargets
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


def test_the_teacher_reads_every_position_in_order(teacher_dir):
    """A text shorter than the teacher's context is one window: its top k are those of one forward pass."""
    loaded = load_model_dir(teacher_dir)
    ids = np.array(loaded.tokenizer.encode("the quick brown fox jumps"), dtype=np.int64)
    assert len(ids) < loaded.model.config.context_length
    targets = Teacher(teacher_dir, torch.device("cpu"), loaded.tokenizer).read(ids, top_k=4)
    assert targets.tokens.shape == (len(ids) - 1, 4)
    with torch.no_grad():
        best = torch.topk(F.log_softmax(loaded.model(torch.as_tensor(ids[:-1])[None]).logits[0], -1), 4, -1)
    assert np.array_equal(targets.tokens, best.indices.numpy())
    assert np.allclose(targets.log_probs.astype(np.float32), best.values.numpy(), atol=2e-3)
    with pytest.raises(ValueError, match="teacher_top_k"):
        Teacher(teacher_dir, torch.device("cpu"), loaded.tokenizer).read(ids, top_k=10_000)


def test_a_window_teacher_reads_batched_windows_as_reading_in_order_would(teacher_dir):
    """Many windows, 32 to a forward pass: the same predictions, at the same positions, as one window at a time."""
    loaded = load_model_dir(teacher_dir)
    context = loaded.model.config.context_length
    ids = np.random.default_rng(2).integers(0, loaded.model.config.vocab_size, size=7 * context + 5)
    targets = Teacher(teacher_dir, torch.device("cpu"), loaded.tokenizer).read(ids, top_k=3)
    with torch.no_grad():
        logits = torch.cat([part[0] for part, _ in loaded.family.read_in_order(loaded.model, ids, "cpu")])
    expected = F.log_softmax(logits, -1).numpy()
    assert expected.shape[0] == len(ids) - 1 == targets.tokens.shape[0]
    kept = targets.log_probs.astype(np.float32)
    assert np.allclose(np.take_along_axis(expected, targets.tokens, 1), kept, atol=5e-3)
    assert np.allclose(-np.sort(-expected, 1)[:, :3], kept, atol=5e-3)


def test_a_recurrent_teacher_reads_side_by_side_streams_each_from_an_empty_state(tmp_path):
    """Stream b covers positions [b * length, (b + 1) * length) as a reading of that stretch alone would; the few
    positions the streams leave over at the end are read after them, from an empty state too."""
    from lm.models.family import PREDICT_STREAMS as TEACHER_STREAMS

    out = tmp_path / "lstm-teacher"
    train(config_from_dict(tiny_config("lstm", max_steps=2, eval_interval=2), "t.yaml"),
          RunOptions(output=out, progress=False, command="t"))
    loaded = load_model_dir(out)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, loaded.model.config.vocab_size, size=TEACHER_STREAMS * 40 + 7)
    targets = Teacher(out, torch.device("cpu"), loaded.tokenizer).read(ids, top_k=3)
    length = (len(ids) - 1) // TEACHER_STREAMS
    stretches = [(b * length, (b + 1) * length) for b in range(TEACHER_STREAMS)]
    stretches.append((TEACHER_STREAMS * length, len(ids) - 1))
    for first, end in stretches:
        with torch.no_grad():
            read = loaded.family.read_in_order(loaded.model, ids[first: end + 1], "cpu")
            logits = torch.cat([segment[0] for segment, _ in read])
        expected = F.log_softmax(logits, -1).numpy()  # (end - first, V)
        assert expected.shape[0] == end - first
        kept = targets.log_probs[first:end].astype(np.float32)
        assert np.allclose(np.take_along_axis(expected, targets.tokens[first:end], 1), kept, atol=5e-3)
        assert np.allclose(-np.sort(-expected, 1)[:, :3], kept, atol=5e-3)


def test_the_loss_is_the_kl_divergence_to_the_renormalised_top_k():
    rng = np.random.default_rng(0)
    vocab, k = 6, 3
    teacher_logp = np.log(rng.dirichlet(np.ones(vocab), size=10))  # 10 positions
    order = np.argsort(-teacher_logp, axis=1)[:, :k]
    targets = TeacherTargets(order.astype(np.int32), np.take_along_axis(teacher_logp, order, 1).astype(np.float16))
    starts = np.array([1, 4])
    student = torch.randn(2, 3, vocab, generator=torch.Generator().manual_seed(0))
    total = 0.0
    for b, s in enumerate(starts):
        for t in range(3):
            q = np.exp(teacher_logp[s + t, order[s + t]].astype(np.float16).astype(np.float64))
            q /= q.sum()
            p = F.log_softmax(student[b, t].double(), -1).numpy()[order[s + t]]
            total += (q * (np.log(q) - p)).sum()
    assert targets.loss(starts, student).item() == pytest.approx(total / 6, rel=1e-4)
    # with every token kept, the teacher's own distribution is the one student with nothing left to learn
    full = np.argsort(-teacher_logp, axis=1)
    exact = TeacherTargets(full.astype(np.int32), np.take_along_axis(teacher_logp, full, 1).astype(np.float16))
    own = torch.from_numpy(teacher_logp[[1, 2, 3]]).float()[None]
    assert exact.loss(np.array([1]), own).item() == pytest.approx(0.0, abs=1e-3)


def test_several_teachers_are_learnt_as_their_mean_distribution(monkeypatch):
    """Each teacher's probability outside its top k counts as 0; the mean's top k, in blocks of positions."""
    monkeypatch.setattr("training.distillation.MERGE_ROWS", 2)  # three positions: two blocks
    log = lambda rows: np.log(np.array(rows, dtype=np.float64)).astype(np.float16)
    a = TeacherTargets(np.array([[0, 1], [2, 0], [1, 3]], np.int32), log([[0.6, 0.4], [0.5, 0.5], [0.9, 0.1]]))
    b = TeacherTargets(np.array([[1, 3], [2, 1], [3, 1]], np.int32), log([[0.8, 0.2], [0.7, 0.3], [0.5, 0.5]]))
    merged = TeacherTargets.mean([a, b], top_k=2, vocab_size=4)
    assert merged.tokens.tolist() == [[1, 0], [2, 0], [1, 3]]
    probs = np.exp(merged.log_probs.astype(np.float64))
    assert np.allclose(probs, [[0.6, 0.3], [0.6, 0.25], [0.7, 0.3]], atol=2e-3)
    assert TeacherTargets.mean([a], top_k=2, vocab_size=4) is a


def test_a_run_with_two_teachers_records_both(teacher_dir, tmp_path):
    config = config_from_dict(_teacher_config(teacher=[teacher_dir, teacher_dir], max_steps=2, eval_interval=2),
                              "two.yaml")
    trainer = Trainer(config, RunOptions(output=tmp_path / "two", progress=False, command="two"))
    alone = Teacher(teacher_dir, torch.device("cpu"), trainer.tokenizer).read(trainer.train_ids, 32)
    expected = torch.softmax(torch.from_numpy(alone.log_probs.astype(np.float32)), -1).numpy()
    assert np.allclose(np.exp(trainer.teacher.log_probs.astype(np.float32)), expected, atol=2e-3)  # mean with itself
    trainer.run()
    recorded = json.loads((tmp_path / "two" / "config.json").read_text())["training"]
    assert recorded["teacher"]["names"] == ["tiny-teacher", "tiny-teacher"]
    (line,) = _teacher_lines(recorded)  # the card's line (the whole card: the single-teacher test above)
    assert "the mean next-token distribution of `tiny-teacher` and `tiny-teacher`" in line


def test_a_student_moves_toward_its_teacher(teacher_dir, tmp_path):
    """Only the KL term (weight 1): the student's distance to the teacher falls, and the run records its teacher."""
    config = config_from_dict(_teacher_config(teacher=teacher_dir, teacher_weight=1.0, max_steps=30, seed=3), "s.yaml")
    trainer = Trainer(config, RunOptions(output=tmp_path / "student", progress=False, command="s"))
    starts = np.arange(4) * 100
    x = torch.as_tensor(np.stack([trainer.train_ids[s: s + 32] for s in starts]).astype("int64"))

    def distance() -> float:
        trainer.model.eval()
        with torch.no_grad():
            return trainer.teacher.loss(starts, trainer.model(x, None).logits).item()

    assert trainer.state.elapsed > 0  # the teacher's reading counts toward max_time
    before = distance()
    trainer.run()
    assert distance() < 0.5 * before
    recorded = json.loads((tmp_path / "student" / "config.json").read_text())["training"]
    assert recorded["teacher"] == {"names": ["tiny-teacher"], "weight": 1.0, "top_k": 32, "temperature": 1.0}
    assert "distilled from `tiny-teacher`" in render_card(tmp_path / "student")


def test_an_lstm_learns_from_a_teacher_along_its_streams(teacher_dir, tmp_path):
    config = tiny_config("lstm", teacher=teacher_dir, max_steps=4, eval_interval=4)
    result = train(config_from_dict(config, "l.yaml"), RunOptions(output=tmp_path / "lstm", progress=False))
    assert result.steps == 4 and np.isfinite(result.best_val_loss)


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


def _read_with(teacher_dir, store, top_k=4, ids=None):
    loaded = load_model_dir(teacher_dir)
    ids = np.arange(300) % loaded.model.config.vocab_size if ids is None else ids
    return Teacher(teacher_dir, torch.device("cpu"), loaded.tokenizer).read(ids, top_k, store)


def test_a_reading_is_kept_on_disk_and_found_again(teacher_dir, tmp_path, monkeypatch):
    store = TargetStore(tmp_path / "teachers")
    first = _read_with(teacher_dir, store)
    assert not first.cached and isinstance(first.tokens, np.memmap) and isinstance(first.log_probs, np.memmap)
    in_memory = _read_with(teacher_dir, None)
    assert np.array_equal(first.tokens, in_memory.tokens) and np.array_equal(first.log_probs, in_memory.log_probs)

    def no_reading(*args, **kwargs):
        raise AssertionError("read again instead of taken from the store")

    with monkeypatch.context() as mp:
        mp.setattr(type(load_model_dir(teacher_dir).family), "predict_all", no_reading)
        again = _read_with(teacher_dir, store)
        with pytest.raises(AssertionError, match="read again"):  # another k is another reading
            _read_with(teacher_dir, store, top_k=3)
        with pytest.raises(AssertionError, match="read again"):  # and so is another text
            _read_with(teacher_dir, store, ids=np.arange(301) % 5)
    assert again.cached and again.key == first.key
    assert np.array_equal(again.tokens, first.tokens) and np.array_equal(again.log_probs, first.log_probs)


def test_other_weights_are_another_reading(teacher_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-teacher"
    shutil.copytree(teacher_dir, other)
    weights = load_file(other / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 0.01
    save_file(weights, other / "model.safetensors")
    store = TargetStore(tmp_path / "teachers")
    assert _read_with(teacher_dir, store).key != _read_with(other, store).key
    assert len(list((tmp_path / "teachers").iterdir())) == 2


def test_an_interrupted_reading_leaves_nothing_in_the_store(teacher_dir, tmp_path, monkeypatch):
    store = TargetStore(tmp_path / "teachers")
    family = type(load_model_dir(teacher_dir).family)
    real = family.predict_all

    def interrupted(self, model, ids, device, keep):
        def half(rows, logits):
            keep(rows, logits)
            raise KeyboardInterrupt

        real(self, model, ids, device, half)

    monkeypatch.setattr(family, "predict_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _read_with(teacher_dir, store)
    assert list((tmp_path / "teachers").iterdir()) == []
    monkeypatch.setattr(family, "predict_all", real)
    assert not _read_with(teacher_dir, store).cached


def test_a_store_that_cannot_be_written_reads_into_memory(teacher_dir, tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    targets = _read_with(teacher_dir, TargetStore(tmp_path / "a-file" / "teachers"))
    assert not isinstance(targets.tokens, np.memmap) and not targets.cached
    assert targets.tokens.shape == (299, 4)


def test_a_second_run_with_the_same_teachers_takes_them_from_the_cache(teacher_dir, tmp_path):
    """The one teacher's reading, and the ensemble's mean, come from `$SCRIPTORIUM_CACHE/teachers`."""
    for teachers in (teacher_dir, [teacher_dir, teacher_dir]):
        config = _teacher_config(teacher=teachers, max_steps=2, eval_interval=2)
        first = Trainer(config_from_dict(config, "a.yaml"), RunOptions(output=tmp_path / "a", progress=False))
        second = Trainer(config_from_dict(config, "b.yaml"), RunOptions(output=tmp_path / "b", progress=False))
        assert second.teacher.cached and second.teacher.key == first.teacher.key
        assert np.array_equal(second.teacher.log_probs, first.teacher.log_probs)


def test_a_temperature_softens_both_sides_and_scales_the_divergence_by_its_square():
    rng = np.random.default_rng(3)
    vocab, k, temperature = 5, 3, 2.0
    teacher_logp = np.log(rng.dirichlet(np.ones(vocab), size=4))
    order = np.argsort(-teacher_logp, axis=1)[:, :k]
    targets = TeacherTargets(order.astype(np.int32), np.take_along_axis(teacher_logp, order, 1).astype(np.float16))
    student = torch.randn(1, 2, vocab, generator=torch.Generator().manual_seed(1))
    total = 0.0
    for t in range(2):
        q = np.exp(teacher_logp[1 + t, order[1 + t]].astype(np.float16).astype(np.float64) / temperature)
        q /= q.sum()
        p = F.log_softmax(student[0, t].double() / temperature, -1).numpy()[order[1 + t]]
        total += (q * (np.log(q) - p)).sum()
    got = targets.loss(np.array([1]), student, temperature).item()
    assert got == pytest.approx(temperature ** 2 * total / 2, rel=1e-4)
    assert got != pytest.approx(targets.loss(np.array([1]), student).item(), rel=1e-2)
    line = _teacher_lines({"teacher": {"names": ["t"], "weight": 0.5, "top_k": 32, "temperature": 2.0}})[0]
    assert "softened at temperature 2" in line
    assert "temperature" not in _teacher_lines({"teacher": {"names": ["t"], "weight": 0.5, "top_k": 32}})[0]


def test_a_temperature_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="teacher_temperature"):
        config_from_dict(_teacher_config(teacher="somewhere", teacher_temperature=0), "t.yaml")
