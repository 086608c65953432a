"""Dynamic evaluation (Krause et al. 2017, "Dynamic Evaluation of Neural Sequence Models").

The model reads the evaluated text in segments; each segment is scored first, with the weights as they are, and
only then is a gradient step taken on that segment's loss, so the model adapts to the text as it reads it and no
token is ever scored by weights that were trained on it. Two update rules, from the paper:

- `sgd`: theta <- theta - lr * grad + decay * (theta_0 - theta), pulling back toward the trained weights theta_0;
- `rms`: the step divided by the root-mean-square gradient over batches of the training text, and the pull back
  scaled per weight by that RMS (relative to its mean, capped at 1/decay), as in the paper's RMS variant.

The model's family reads the text (`Family.read_in_order`): the LSTM in segments of `segment` tokens with its state
carried; the GPT in windows of its context that end at each segment, so every token after the first window keeps
`context - segment` tokens of context, as in the static evaluation with a stride of `segment`. The model is copied,
never changed in place.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lm.models import family_of
from training.evaluation.metrics import TokenStats

RULES = ("sgd", "rms")
# chosen by bench/dynamic_search.py on the last 20,000 characters of the shipped models' training text
# (docs/benchmarks.md)
DEFAULT_LR = {("sgd", "gpt"): 0.03, ("sgd", "lstm"): 0.2, ("rms", "gpt"): 1e-5, ("rms", "lstm"): 3e-5}
DEFAULT_DECAY = 0.0
RMS_BATCHES, RMS_BATCH_SIZE = 20, 16
RMS_EPSILON = 2e-5


@dataclass
class DynamicOptions:
    lr: float | None = None  # default: DEFAULT_LR[rule, family]
    decay: float = DEFAULT_DECAY
    segment: int | None = None  # tokens per step; default: the family's (GPT: half its context; LSTM: 32)
    rule: str = "sgd"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"dynamic rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if self.lr is not None and not self.lr >= 0:
            raise ValueError(f"dynamic learning rate must be >= 0, got {self.lr}")
        if not 0 <= self.decay < 1:
            raise ValueError(f"dynamic decay must be in [0, 1), got {self.decay}")
        if self.segment is not None and self.segment < 1:
            raise ValueError(f"dynamic segment must be >= 1 token, got {self.segment}")

    def lr_for(self, model) -> float:
        if self.lr is not None:
            return self.lr
        family = family_of(model).name
        if (self.rule, family) not in DEFAULT_LR:
            raise ValueError(f"no default dynamic learning rate for a {family} model: give --dynamic-lr")
        return DEFAULT_LR[self.rule, family]

    def segment_for(self, model) -> int:
        return self.segment or family_of(model).default_segment(model)


class _Adapter:
    """Takes the update steps and remembers the trained weights the decay pulls back toward."""

    def __init__(self, model: torch.nn.Module, options: DynamicOptions, rms: list[torch.Tensor] | None) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.original = [p.detach().clone() for p in self.params]
        self.lr, self.decay = options.lr_for(model), options.decay
        self.rms = rms
        if rms is not None:
            mean = torch.stack([r.mean() for r in rms]).mean()
            cap = 1.0 / self.decay if self.decay > 0 else float("inf")
            self.decay_rates = [torch.clamp(r / mean, max=cap) for r in rms]

    def step(self, loss: torch.Tensor) -> None:
        grads = torch.autograd.grad(loss, self.params)
        with torch.no_grad():
            for i, (p, g, p0) in enumerate(zip(self.params, grads, self.original)):
                pull = p0 - p
                if self.rms is None:
                    p.add_(g, alpha=-self.lr).add_(pull, alpha=self.decay)
                else:
                    p.add_(g / (self.rms[i] + RMS_EPSILON), alpha=-self.lr)
                    p.add_(pull * self.decay_rates[i], alpha=self.decay)


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def gradient_rms(model: torch.nn.Module, train_ids: np.ndarray, segment: int, device,
                 batches: int | None = None, batch_size: int | None = None) -> list[torch.Tensor]:
    """Root-mean-square gradient of each weight over batches of windows spread over the training text."""
    batches, batch_size = batches or RMS_BATCHES, batch_size or RMS_BATCH_SIZE
    length = model.context_length or 4 * segment  # a window the model can read (a recurrent one has no limit)
    if len(train_ids) < length + 1:
        raise ValueError(f"the rms rule needs at least {length + 1} training tokens, got {len(train_ids)}")
    starts = np.linspace(0, len(train_ids) - length - 1, batches * batch_size).astype(np.int64)
    params = [p for p in model.parameters() if p.requires_grad]
    squares = [torch.zeros_like(p) for p in params]
    for chunk in np.array_split(starts, batches):
        x = torch.from_numpy(np.stack([np.asarray(train_ids[s: s + length], dtype=np.int64) for s in chunk]))
        y = torch.from_numpy(np.stack([np.asarray(train_ids[s + 1: s + length + 1], dtype=np.int64) for s in chunk]))
        grads = torch.autograd.grad(_loss(model(x.to(device)).logits, y.to(device)), params)
        for square, g in zip(squares, grads):
            square.add_(g * g)
    return [torch.sqrt(s / batches) for s in squares]


def dynamic_score(model: torch.nn.Module, ids: np.ndarray, stats: TokenStats, device, options: DynamicOptions,
                  train_ids: np.ndarray | None = None) -> TokenStats:
    """Score every token of `ids` (all but the first) as it is read, adapting a copy of `model` after each
    segment. `train_ids` (the training text's tokens) are needed by the rms rule only."""
    model = copy.deepcopy(model).to(device).eval()  # eval: no dropout, the weights alone adapt
    for p in model.parameters():
        p.requires_grad_(True)
    segment = options.segment_for(model)
    rms = None
    if options.rule == "rms":
        if train_ids is None:
            raise ValueError("the rms rule needs the training text")
        rms = gradient_rms(model, train_ids, segment, device)
    adapter = _Adapter(model, options, rms)
    for logits, targets in family_of(model).read_in_order(model, ids, device, segment):
        stats.update(logits.detach(), targets)  # scored before the step below
        adapter.step(_loss(logits, targets))
    return stats


def dynamic_figures(model: torch.nn.Module, ids: np.ndarray, characters: int, device, options: DynamicOptions,
                    train_ids=None) -> dict[str, Any]:
    """What `evaluate --dynamic` reports under its own key; `train_ids`: a callable giving the training
    text's tokens, called for the rms rule only."""
    stats = TokenStats(detailed=False)
    dynamic_score(model, ids, stats, device, options, train_ids() if options.rule == "rms" and train_ids else None)
    figures = stats.summary(characters)
    if not math.isfinite(figures["loss"]):
        raise ValueError(f"dynamic evaluation diverged at lr {options.lr_for(model):g}: use a smaller --dynamic-lr")
    return {"method": f"dynamic evaluation (Krause et al. 2017), {options.rule} rule", "rule": options.rule,
            "lr": options.lr_for(model), "decay": options.decay, "segment": options.segment_for(model), **figures,
            "nats_per_char": figures["loss"] * figures["tokens"] / characters}


def format_dynamic(dynamic: dict[str, Any]) -> str:
    """Its lines in the evaluate table, labelled apart from the static figures."""
    lines = [f"  dynamic evaluation, adapting as it reads ({dynamic['rule']} rule, lr {dynamic['lr']:g}, decay "
             f"{dynamic['decay']:g}, {dynamic['segment']} tokens per step):"]
    for key in ("loss", "perplexity", "bits_per_char", "nats_per_char"):
        lines.append(f"    dynamic.{key:<14} {dynamic[key]:>12.4f}")
    return "\n".join(lines)
