"""Weight averaging: an exponential moving average (EMA) of the weights over the whole run, or stochastic weight
averaging (SWA, the plain mean of the weights after every step) over the last part of the run.

`torch.optim.swa_utils.AveragedModel` holds the averaged copy. The trainer updates it after each optimizer step,
validates it beside the raw weights at every validation and keeps whichever scores better as the run's best
weights; the averaged copy is part of the resume state, so `--resume` continues it exactly.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from training.config import TrainingConfig
from training.resume import prefixed

AVERAGE_PREFIX = "average"  # the averaged model's tensors in the resume state: "average.<name>"


class WeightAverage:
    """The averaged weights of `model` under the config's `averaging` (`ema` or `swa`)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainingConfig) -> None:
        self.model, self.kind = model, cfg.averaging
        self.ema_decay, self.swa_start = cfg.ema_decay, cfg.swa_start
        self.averaged: AveragedModel | None = None
        self.started_at: int | None = None  # the step of the first update

    @property
    def active(self) -> bool:
        """Whether there are averaged weights (at least one update)."""
        return self.averaged is not None and int(self.averaged.n_averaged) > 0

    def eval_model(self) -> torch.nn.Module:
        """The model with the averaged weights (only once `active`)."""
        if not self.active:
            raise ValueError("no weights have been averaged yet")
        return self.averaged.module

    def due(self, progress: float) -> bool:
        """Whether SWA should start now, at `progress` in [0, 1] of the run (the schedule's). The trainer asks at
        validations, where the processes of a torchrun run are at the same step and can agree on it."""
        return self.kind == "swa" and self.averaged is None and progress >= self.swa_start

    def update(self, step: int) -> None:
        """After optimizer step `step` (counted from 1). EMA starts with the first step, SWA once `start` ran."""
        if self.averaged is None and self.kind == "ema":
            self.start(step)
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)  # the first update copies the weights

    def start(self, step: int) -> None:
        # EMA: avg <- decay * avg + (1 - decay) * weights; SWA: AveragedModel's default running mean
        multi_avg_fn = get_ema_multi_avg_fn(self.ema_decay) if self.kind == "ema" else None
        self.averaged = AveragedModel(self.model, multi_avg_fn=multi_avg_fn)
        self.started_at = step

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors (under AVERAGE_PREFIX) and JSON values for the resume state."""
        if self.averaged is None:
            return {}, {"started_at": None}
        tensors = {f"{AVERAGE_PREFIX}.{k}": v for k, v in self.averaged.state_dict().items()}
        return tensors, {"started_at": self.started_at}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict | None) -> None:
        """Restore what `state` saved (tensors with their prefix, as the resume state holds them)."""
        if not meta or meta.get("started_at") is None:
            return
        self.start(int(meta["started_at"]))
        self.averaged.load_state_dict(prefixed(tensors, AVERAGE_PREFIX))
