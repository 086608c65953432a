"""Optional experiment trackers (`training.loggers: [tensorboard, wandb]`), used only when installed.

metrics.jsonl and the training-curve PNG are always written; these only mirror the same rows elsewhere. A tracker
that is asked for but not installed is a one-line note on stderr, never a failure.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Protocol

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
