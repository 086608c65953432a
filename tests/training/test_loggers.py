"""training/loggers.py: metrics.jsonl as a run writes it, trims it on resume, and leaves it alone off rank 0."""

from __future__ import annotations

import json

from lm.checkpoint import METRICS_FILE
from training.loggers import MetricsLog


def rows_on_disk(folder):
    return [json.loads(line) for line in (folder / METRICS_FILE).read_text().splitlines()]


def test_rows_are_appended_kept_for_the_curve_and_cleared_by_a_fresh_run(tmp_path):
    log = MetricsLog(tmp_path)
    log.start(fresh=True, loggers=[], config={}, run_name="t")
    for step in (5, 10):
        log.log({"step": step, "train_loss": 1.0 / step})
    assert rows_on_disk(tmp_path) == log.rows and [r["step"] for r in log.rows] == [5, 10]
    log.close()
    again = MetricsLog(tmp_path)
    again.start(fresh=True, loggers=[], config={}, run_name="t")
    assert again.rows == [] and not (tmp_path / METRICS_FILE).exists()


def test_a_resumed_run_keeps_the_rows_up_to_its_step(tmp_path):
    (tmp_path / METRICS_FILE).write_text('{"step": 5}\n{"step": 10}\n{"step": 15}\n{"step": 2')  # cut by a kill
    log = MetricsLog(tmp_path)
    log.keep_until(10)
    log.start(fresh=False, loggers=[], config={}, run_name="t")
    log.log({"step": 11})
    assert [r["step"] for r in rows_on_disk(tmp_path)] == [5, 10, 11] == [r["step"] for r in log.rows]


def test_other_processes_write_nothing(tmp_path):
    log = MetricsLog(tmp_path, enabled=False)
    log.start(fresh=True, loggers=["tensorboard"], config={}, run_name="t")
    log.log({"step": 1})
    log.keep_until(0)
    assert log.rows == [] and list(tmp_path.iterdir()) == []
