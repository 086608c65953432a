"""The model on the ladder of baselines, and what that says in plain words.

A model that beats the character n-gram learned more than counting; one that loses to it is no better than
counting, unless it does far better on its own training text than the n-gram does here, which is memorising;
one that loses to the unigram has not even learned how often each character occurs. The card and the web app's
model page show what `evaluate` writes here (`evaluation.json` "ladder"), so they never recompute it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lm.checkpoint import METRICS_FILE
from training.evaluation.baselines import cached_baselines
from training.evaluation.metrics import LN2

MODEL_NAME = "this model"
DYNAMIC_NAME = "this model, dynamic evaluation"
RECENT_TRAINING_ROWS = 5  # training-loss rows of metrics.jsonl averaged for the training figure


def training_nats_per_char(model_dir: str | Path, config: dict[str, Any]) -> float | None:
    """The training loss of the run's last logged steps (dropout on, so an upper bound), in nats per character
    of the training text; None when the directory does not record it."""
    data = (config.get("training") or {}).get("data") or {}
    tokens, characters = data.get("train_tokens"), data.get("train_characters")
    try:
        lines = (Path(model_dir) / METRICS_FILE).read_text(encoding="utf-8").splitlines()
        losses = [json.loads(line).get("train_loss") for line in lines if line.strip()]
    except (OSError, ValueError, AttributeError):
        return None
    losses = [x for x in losses if isinstance(x, (int, float)) and math.isfinite(x)][-RECENT_TRAINING_ROWS:]
    if not losses or not tokens or not characters:
        return None
    return sum(losses) / len(losses) * tokens / characters


def _by(bits: float) -> str:
    return f"{bits:.2f}"


def build_ladder(baselines: dict[str, Any], model_nats_per_char: float, dynamic_nats_per_char: float | None = None,
                 training_nats: float | None = None) -> dict[str, Any]:
    """The rungs, best first, with the model (and its dynamic evaluation, a separate rung) among them."""
    model_bits = model_nats_per_char / LN2
    rungs = [{**r, "model": None, "model_minus_rung": model_bits - r["bits_per_char"]} for r in baselines["rungs"]]
    rungs.append({"name": MODEL_NAME, "kind": "model", "nats_per_char": model_nats_per_char,
                  "bits_per_char": model_bits, "model": "static", "detail": "the static evaluation above"})
    if dynamic_nats_per_char is not None:
        rungs.append({"name": DYNAMIC_NAME, "kind": "model", "nats_per_char": dynamic_nats_per_char,
                      "bits_per_char": dynamic_nats_per_char / LN2, "model": "dynamic",
                      "detail": "adapting its weights to the text as it reads it"})
    rungs.sort(key=lambda r: r["bits_per_char"])
    verdict, summary = describe(baselines["rungs"], model_bits, training_nats)
    return {"rungs": rungs, "verdict": verdict, "summary": summary, "notes": list(baselines.get("notes", [])),
            "train_characters": baselines.get("train_characters"), "cached": baselines.get("cached", False)}


def describe(baselines: list[dict[str, Any]], model_bits: float, training_nats: float | None) -> tuple[str, str]:
    """(verdict, sentence): learned | counting | memorised | below_unigram."""
    ngram = next(r for r in baselines if r["kind"] == "ngram")
    unigram = next(r for r in baselines if r["kind"] == "unigram_chars")
    best = min(baselines, key=lambda r: r["bits_per_char"])
    if model_bits > unigram["bits_per_char"]:
        return "below_unigram", (f"The {unigram['name']} beats it by {_by(model_bits - unigram['bits_per_char'])} "
                                 "bits/char: it has not learned even how often each character occurs.")
    if model_bits > ngram["bits_per_char"]:
        lead = f"the {ngram['name']} beats it by {_by(model_bits - ngram['bits_per_char'])} bits/char"
        training_bits = training_nats / LN2 if training_nats is not None else None
        if training_bits is not None and training_bits < ngram["bits_per_char"]:
            return "memorised", (f"It memorised its training text: {training_bits:.2f} bits/char there (training "
                                 f"loss) against {model_bits:.2f} here, where {lead}.")
        return "counting", f"No better than counting: {lead}."
    sentence = f"Beats the {ngram['name']} by {_by(ngram['bits_per_char'] - model_bits)} bits/char"
    if best is not ngram:
        gap = best["bits_per_char"] - model_bits
        sentence += (f" and {best['name']}, the best baseline here, by {_by(gap)}" if gap >= 0 else
                     f", but {best['name']} beats it by {_by(-gap)}")
    sentence += f", and the {unigram['name']} by {_by(unigram['bits_per_char'] - model_bits)}: "
    return "learned", sentence + "it learned more than counting."


def format_ladder(ladder: dict[str, Any]) -> str:
    """The ladder as lines for the evaluate table."""
    lines = ["  baseline ladder (bits/char, nats/char; built from the training split only):"]
    for rung in ladder["rungs"]:
        mark = ">" if rung.get("model") else " "
        lines.append(f"  {mark} {rung['name']:<34} {rung['bits_per_char']:7.4f} {rung['nats_per_char']:7.4f}")
    lines += [f"  {ladder['summary']}"] + [f"  note: {n}" for n in ladder.get("notes", [])]
    return "\n".join(lines)


def model_ladder(model_dir: str | Path, loaded, train_text: str, text: str, ids, result: dict[str, Any]) -> dict:
    """The ladder for an evaluation `result` of the model in `model_dir` on `text`, baselines learned from
    `train_text` (cached in the model directory)."""
    baselines = cached_baselines(model_dir, train_text, text, loaded.tokenizer, ids)
    dynamic = result.get("dynamic")
    return build_ladder(baselines, result["loss"] * result["tokens"] / result["characters"],
                        dynamic["nats_per_char"] if dynamic else None,
                        training_nats_per_char(model_dir, loaded.config))
