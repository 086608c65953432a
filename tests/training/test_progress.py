"""The progress bar shows the limit that ends the run: steps, or the time left when the budget comes first."""

from __future__ import annotations

import io

import pytest

from tests.training.conftest import tiny_config
from training.config import config_from_dict
from training.progress import ProgressBar, format_duration
from training.trainer import RunOptions, train


def _run(max_steps: int, max_time: float | None, seconds_per_step: float, steps: int) -> str:
    out = io.StringIO()
    bar = ProgressBar(max_steps, max_time, enabled=True, desc="run", file=out)
    for step in range(1, steps + 1):
        bar.advance(step, step * seconds_per_step)
        bar.set_postfix(loss="1.234")
    bar.close()
    return out.getvalue()


def test_a_time_budget_that_ends_the_run_shows_the_time_left_not_the_steps():
    shown = _run(max_steps=1_000_000_000, max_time=90, seconds_per_step=1.0, steps=30)
    last = shown.split("\r")[-1]
    assert "1m00s left, step 30" in last and "loss=1.234" in last and " 33%" in last
    assert "1000000000" not in shown and "/5000" not in shown


def test_steps_that_end_the_run_first_show_the_step_count():
    shown = _run(max_steps=100, max_time=3600, seconds_per_step=0.5, steps=100)
    assert "100/100" in shown.split("\r")[-1] and "left" not in shown.split("\r")[-1]


def test_without_a_budget_the_bar_counts_steps():
    assert "7/50" in _run(max_steps=50, max_time=None, seconds_per_step=1.0, steps=7).split("\r")[-1]


def test_a_switched_off_bar_writes_nothing():
    out = io.StringIO()
    bar = ProgressBar(10, 5.0, enabled=False, file=out)
    bar.advance(1, 1.0)
    bar.set_postfix(loss="1")
    bar.close()
    assert out.getvalue() == ""


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (9.4, "9s"), (61, "1m01s"), (3599, "59m59s"), (5400, "1h30m")])
def test_durations_are_written_short(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.slow
def test_a_run_ended_by_max_time_shows_time_left(tmp_path, capsys):
    config = config_from_dict(tiny_config("gpt", max_steps=10_000_000, eval_interval=1_000_000), "budget.yaml")
    result = train(config, RunOptions(output=tmp_path / "run", max_time=3.0, progress=True))
    err = capsys.readouterr().err
    assert result.stop_reason == "max_time"
    assert "left, step" in err and "10000000" not in err
