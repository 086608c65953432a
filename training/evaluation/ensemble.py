"""Ensembles: several models' next-token distributions averaged, scored on a text (`evaluate --ensemble`).

The ensemble's probability of each next token is the (weighted) mean of the models' probabilities of it. Only each
model's probability of the token that actually comes next is needed, so every model reads the text on its own, as
`evaluate` reads it (its family's `score_text`: the LSTM as one stream, the GPT in half-overlapping windows), and
the per-token log-probabilities are combined with a logsumexp. The models must share one tokenizer (the same ids
for the same text); the two shipped models do.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from lm.checkpoint import load_model_dir
from training.data.token_cache import encode_part
from training.evaluation.evaluate import evaluation_part
from training.evaluation.metrics import bits_per_char, perplexity


class TargetLogProbs:
    """log p(next token) of every scored position, in text order (the `update` of TokenStats, kept per token)."""

    def __init__(self) -> None:
        self.parts: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        logits = logits.reshape(-1, logits.shape[-1]).float()
        self.parts.append(-F.cross_entropy(logits, targets.reshape(-1), reduction="none").double().cpu())

    def values(self) -> torch.Tensor:
        return torch.cat(self.parts) if self.parts else torch.zeros(0, dtype=torch.float64)


def check_weights(weights: list[float] | None, count: int) -> list[float]:
    """The ensemble weights (equal by default); ValueError unless `count` non-negative numbers, sum positive."""
    weights = [1.0] * count if weights is None else list(weights)
    if len(weights) != count or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"ensemble weights must be {count} non-negative numbers with a positive sum, got {weights}")
    return weights


def mixture_log_probs(log_probs: torch.Tensor, weights: list[float] | None = None) -> torch.Tensor:
    """log of the weighted mean of the probabilities: log_probs (M models, N tokens) -> (N,). Equal weights by
    default; weights are normalised to sum to 1."""
    weights = check_weights(weights, log_probs.shape[0])
    log_weights = torch.tensor([math.log(w / sum(weights)) if w > 0 else -math.inf for w in weights],
                               dtype=log_probs.dtype)
    return torch.logsumexp(log_probs + log_weights[:, None], dim=0)


def _figures(log_probs: torch.Tensor, characters: int) -> dict[str, float]:
    loss = float(-log_probs.mean())
    return {"loss": loss, "perplexity": perplexity(loss),
            "bits_per_char": bits_per_char(loss, log_probs.numel(), characters)}


def evaluate_ensemble(model_dirs: list[str], data: str, split: str | None = None, cleaner: str | None = None,
                      device: str = "cpu", weights: list[float] | None = None, include: list[str] | None = None,
                      exclude: list[str] | None = None) -> dict[str, Any]:
    """Each model's figures and the ensemble's on the same text (cut as the first model's training cut it)."""
    if len(model_dirs) < 2:
        raise ValueError("an ensemble needs at least two model directories")
    weights = check_weights(weights, len(model_dirs))
    loaded = [load_model_dir(d, device=device) for d in model_dirs]
    tokenizer = loaded[0].tokenizer
    for model_dir, other in zip(model_dirs[1:], loaded[1:]):
        if other.tokenizer.to_str() != tokenizer.to_str():
            raise ValueError(f"{model_dir}: its tokenizer differs from {model_dirs[0]}'s; "
                             "an ensemble averages distributions over one vocabulary")
    part, about = evaluation_part(loaded[0].config, data, split, cleaner, include, exclude)
    ids = encode_part(part, tokenizer)
    if len(ids) < 2:
        raise ValueError(f"{data}: the text to evaluate has fewer than two tokens")
    per_model = []
    for item in loaded:
        collector = TargetLogProbs()
        item.family.score_text(item.model.eval(), ids, collector.update, device)
        per_model.append(collector.values())
    stacked = torch.stack(per_model)  # (models, tokens)
    characters = part.characters
    return {
        "data": about["data"],
        "read": about["read"],
        "models": [{"model": str(d), **_figures(lp, characters)} for d, lp in zip(model_dirs, per_model)],
        "weights": weights,
        "ensemble": _figures(mixture_log_probs(stacked, weights), characters),
        "tokens": int(stacked.shape[1]),
        "characters": characters,
    }


def format_ensemble(result: dict[str, Any]) -> str:
    lines = [f"ensemble on {result['data']} ({result['tokens']:,} tokens, {result['characters']:,} characters)"]
    rows = [(m["model"], m) for m in result["models"]] + [("ensemble (mean probability)", result["ensemble"])]
    width = max(len(name) for name, _ in rows)
    for name, figures in rows:
        lines.append(f"  {name:<{width}}  loss {figures['loss']:.4f}  bits/char {figures['bits_per_char']:.4f}"
                     f"  nats/char {figures['bits_per_char'] * math.log(2):.4f}")
    return "\n".join(lines)
