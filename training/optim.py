"""Optimizers, learning-rate schedules and AWD-LSTM's non-monotonically triggered averaged SGD (NT-ASGD)."""

from __future__ import annotations

import math

import torch
from torch.optim.swa_utils import AveragedModel

from training.config import TrainingConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer | MuonWithAdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "muon":
        hidden, others = muon_groups(model)
        # the schedule sets every group's lr to its value times the group's lr_scale
        scale = 1.0 if cfg.muon_lr is None else cfg.muon_lr / cfg.lr
        muon = torch.optim.Muon([{"params": hidden, "lr_scale": scale}], lr=cfg.lr * scale,
                                weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw")
        return MuonWithAdamW(muon, _adamw(others, cfg))
    if cfg.optimizer == "adamw":
        return _adamw(params, cfg)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    # sgd, and ntasgd which is plain SGD until the averaging is triggered (Merity et al. 2017, section 3)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _adamw(params: list[torch.nn.Parameter], cfg: TrainingConfig) -> torch.optim.AdamW:
    # nanoGPT's grouping: decay matrices and embeddings, not biases and norm gains
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def muon_groups(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """The hidden weight matrices (for Muon) and everything else (for AdamW).

    Muon orthogonalises each update of a 2-D matrix that maps one hidden representation to another; the
    embedding and the output layer (vocabulary-sized, tied or not), norm gains and biases are not such matrices
    (Jordan et al. 2024), so AdamW keeps them.
    """
    vocab_size = model.config.vocab_size
    outer = {id(m.weight) for m in model.modules()
             if isinstance(m, torch.nn.Embedding) or (isinstance(m, torch.nn.Linear) and m.out_features == vocab_size)}
    hidden, others = [], []
    for p in model.parameters():
        if p.requires_grad:
            (hidden if p.dim() == 2 and id(p) not in outer else others).append(p)
    return hidden, others


class MuonWithAdamW:
    """Muon and AdamW stepping together, seen by the trainer as one optimizer: `param_groups` lists both
    optimizers' groups (the schedule sets every group's lr), and one state dict holds both, parameters numbered
    Muon's first, the way torch numbers them across the groups of one optimizer."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer) -> None:
        self.optimizers = (muon, adamw)

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict:
        state, groups, offset = {}, [], 0
        for optimizer in self.optimizers:
            own = optimizer.state_dict()
            state.update({index + offset: values for index, values in own["state"].items()})
            groups += [{**group, "params": [index + offset for index in group["params"]]}
                       for group in own["param_groups"]]
            offset += sum(len(group["params"]) for group in own["param_groups"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups, offset = list(state_dict["param_groups"]), 0
        for optimizer in self.optimizers:
            own_groups, groups = groups[: len(optimizer.param_groups)], groups[len(optimizer.param_groups):]
            count = sum(len(group["params"]) for group in own_groups)
            own_state = {int(index) - offset: values for index, values in state_dict["state"].items()
                         if offset <= int(index) < offset + count}
            optimizer.load_state_dict({"state": own_state, "param_groups": [
                {**group, "params": [index - offset for index in group["params"]]} for group in own_groups]})
            offset += count


def scheduled_lr(cfg: TrainingConfig, step: int, progress: float) -> float:
    """The learning rate before plateau and BPTT scaling.

    `progress` in [0, 1] is how far the run is, the larger of steps / max_steps and elapsed / max_time, so the
    cosine ends when the first budget does (a wall-clock-budgeted run still anneals).
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule != "warmup_cosine":
        return cfg.lr
    min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
    if cfg.warmup_steps and cfg.max_steps > cfg.warmup_steps:
        # progress counts from the end of the warmup
        warm = cfg.warmup_steps / cfg.max_steps
        progress = (progress - warm) / (1 - warm) if progress > warm else 0.0
    progress = min(max(progress, 0.0), 1.0)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - min_lr)


class PlateauScale:
    """ReduceLROnPlateau's rule as a multiplier, so it composes with warmup and AWD's per-step BPTT scaling
    (torch's scheduler owns the optimizer's lr and would fight them)."""

    def __init__(self, factor: float, patience: int, min_scale: float = 1e-3) -> None:
        self.factor, self.patience, self.min_scale = factor, patience, min_scale
        self.best = math.inf
        self.bad_evals = 0
        self.scale = 1.0

    def step(self, val_loss: float) -> None:
        if val_loss < self.best * (1 - 1e-4):
            self.best, self.bad_evals = val_loss, 0
            return
        self.bad_evals += 1
        if self.bad_evals > self.patience:
            self.scale = max(self.scale * self.factor, self.min_scale)
            self.bad_evals = 0

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals, "scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_evals, self.scale = float(state["best"]), int(state["bad_evals"]), float(state["scale"])


class NTASGD:
    """The NT-ASGD trigger and the running average of the weights once it fires.

    SGD runs as usual; when the validation loss is worse than the best of the evaluations more than `nonmono`
    evaluations ago, averaging starts: from then on every step adds the weights to a running mean
    (torch.optim.swa_utils.AveragedModel), and validation and checkpoints use the averaged weights.
    """

    def __init__(self, model: torch.nn.Module, nonmono: int) -> None:
        self.model, self.nonmono = model, nonmono
        self.averaged: AveragedModel | None = None
        self.started_at: int | None = None

    @property
    def active(self) -> bool:
        return self.averaged is not None

    def after_eval(self, history: list[float], step: int) -> bool:
        """Check the trigger after an evaluation (history includes it); True when averaging starts now."""
        if self.active or len(history) <= self.nonmono:
            return False
        if history[-1] > min(history[: -self.nonmono]):
            self.start(step)
            return True
        return False

    def start(self, step: int) -> None:
        self.averaged = AveragedModel(self.model)
        self.started_at = step

    def update(self) -> None:
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)

    def eval_model(self) -> torch.nn.Module:
        return self.averaged.module if self.averaged is not None else self.model
