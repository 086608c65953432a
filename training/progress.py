"""The training progress bar: steps toward `max_steps`, or the time left when the time budget ends the run first.

A run with `--max-time` and the default `max_steps` of 5000 (or a billion, as the budget benchmark sets) would
otherwise show a step count it never reaches. The bar projects, from the steps per second so far, which limit comes
first, and shows that one: `42%|████      | 17m24s left, step 1,234` or `1234/5000 [02:10<07:40, ...]`.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

_STEP_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
_TIME_FORMAT = "{{desc}}: {{percentage:3.0f}}%|{{bar}}| {left} left, step {step:,}{{postfix}}"  # tqdm's after .format


def format_duration(seconds: float) -> str:
    """`1h05m`, `17m24s`, `9s`: how the bar and the log lines say a time."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressBar:
    """tqdm on stderr, in one of two modes: steps (total `max_steps`) or time (total `max_time` seconds)."""

    def __init__(self, max_steps: int, max_time: float | None, step: int = 0, elapsed: float = 0.0,
                 enabled: bool = True, desc: str = "train", file: Any = None) -> None:
        self.max_steps, self.max_time = max_steps, max_time
        self._start_step, self._start_elapsed = step, elapsed
        self.step, self.elapsed = step, elapsed
        self.timed = self._time_ends_first()
        self.bar = tqdm(total=self._total(), initial=self._position(), disable=not enabled, dynamic_ncols=True,
                        file=file or sys.stderr, desc=desc, bar_format=self._format())

    def _time_ends_first(self) -> bool:
        """Whether the time budget will end the run before `max_steps`, at the step rate measured so far (before
        any step has been timed: whenever there is a budget)."""
        if self.max_time is None:
            return False
        steps, seconds = self.step - self._start_step, self.elapsed - self._start_elapsed
        if steps <= 0 or seconds <= 0:
            return True
        steps_in_budget = steps / seconds * max(0.0, self.max_time - self.elapsed)
        return self.step + steps_in_budget < self.max_steps

    def _total(self) -> float:
        return self.max_time if self.timed else self.max_steps

    def _position(self) -> float:
        return min(self.elapsed, self.max_time) if self.timed else self.step

    def _format(self) -> str:
        if not self.timed:
            return _STEP_FORMAT
        return _TIME_FORMAT.format(left=format_duration(self.max_time - self.elapsed), step=self.step)

    def advance(self, step: int, elapsed: float) -> None:
        """One more step done, `elapsed` seconds into the run."""
        self.step, self.elapsed = step, elapsed
        self.bar.bar_format = self._format()
        timed = self._time_ends_first()
        if timed == self.timed:
            self.bar.update(self._position() - self.bar.n)  # tqdm paces the redraws
            return
        self.timed = timed  # the projection changed its mind: show the other limit
        self.bar.total, self.bar.n, self.bar.bar_format = self._total(), self._position(), self._format()
        self.bar.refresh()

    def set_postfix(self, **values: str) -> None:
        """The figures shown after the count or the time left (loss, lr, tokens/s, ...); drawn at the next redraw."""
        self.bar.set_postfix(refresh=False, **values)

    def close(self) -> None:
        self.bar.close()
