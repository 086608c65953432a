"""A run's metrics: `metrics.jsonl` (`MetricsLog`), always written, and the optional experiment trackers
(`training.loggers: [tensorboard, wandb]`) that mirror the same rows elsewhere, used only when installed. A tracker
that is asked for but not installed is a one-line note on stderr, never a failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Protocol

from lm.atomic import atomic_write_text
from lm.checkpoint import METRICS_FILE

LOGGER_NAMES = ("tensorboard", "wandb")


class Tracker(Protocol):
    def log(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class _TensorBoard:
    def __init__(self, output: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(output / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, output: Path, config: dict[str, Any], name: str) -> None:
        import wandb

        self.run = wandb.init(project="scriptorium", name=name, config=config, dir=str(output))

    def log(self, row: dict[str, Any]) -> None:
        self.run.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=row["step"])

    def close(self) -> None:
        self.run.finish()


def open_trackers(names: list[str], output: Path, config: dict[str, Any], run_name: str) -> list[Tracker]:
    trackers: list[Tracker] = []
    for name in names:
        try:
            trackers.append(_TensorBoard(output) if name == "tensorboard" else _WandB(output, config, run_name))
        except ImportError:
            print(f"note: training.loggers asks for {name}, which is not installed; skipping it", file=sys.stderr)
    return trackers


class MetricsLog:
    """`metrics.jsonl` (one JSON object per logged step), the rows the training curve is drawn from, and the
    trackers mirroring them. Only the main process of a run writes: on the others (`enabled=False`) it does nothing."""

    def __init__(self, output: Path, enabled: bool = True) -> None:
        self.path = Path(output) / METRICS_FILE
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        self.trackers: list[Tracker] = []

    def start(self, fresh: bool, loggers: list[str], config: dict[str, Any], run_name: str) -> None:
        """Open the trackers; a fresh run first forgets the rows an earlier run left in the folder."""
        if not self.enabled:
            return
        if fresh:
            self.path.unlink(missing_ok=True)
            self.rows = []
        self.trackers = open_trackers(loggers, self.path.parent, config, run_name)

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        # open and close per row: save_model_dir swaps the directory, so a long-lived handle would go stale
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        for tracker in self.trackers:
            tracker.log(row)

    def keep_until(self, step: int) -> None:
        """On resume: keep the rows up to `step`; later ones were from the lost part of the run."""
        if not self.enabled:
            return
        rows = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by the kill
                if row.get("step", 0) <= step:
                    rows.append(row)
        self.rows = rows
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []
