"""`python -m training evaluate`: how well a model directory predicts a text.

The LSTM reads the whole text as one stream, carrying its state; the GPT reads it in windows of its context with
a stride of half the context, so every token after the first window has at least half a context before it.
`bits_per_char` = loss x tokens / (characters x ln 2), with the characters of the evaluated text, so char, word and
BPE models compare on the same scale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lm import load
from lm.checkpoint import load_model_dir
from training import plots
from training.config import DataConfig
from training.data import load_corpus, load_text
from training.metrics import TokenStats, distinct_n, repetition_rate
from training.scoring import score_gpt, score_lstm

TABLE_KEYS = ("loss", "perplexity", "bits_per_char", "tokens", "characters", "loss_std", "avg_top_token_prob",
              "avg_entropy", "low_confidence_ratio", "ece")


def evaluation_text(config: dict, data: str, split: str | None, cleaner: str | None) -> tuple[str, str]:
    """The text to evaluate and a description of it. Without `split`: all of `data`. With it: that part, cut as
    the model's training run cut its data (its recorded split fractions and cleaner)."""
    recorded = ((config.get("training") or {}).get("config") or {}).get("data") or {}
    cleaner = cleaner or recorded.get("cleaner") or "default"
    if split is None:
        return load_text(data, cleaner), f"{data} (whole, cleaner {cleaner})"
    fractions = recorded.get("split") or [0.9, 0.1, 0.0]
    corpus = load_corpus(DataConfig(source=data, cleaner=cleaner, split=list(fractions)))
    text = corpus.part(split)
    if not text:
        raise ValueError(f"the {split} split of {data} is empty (split fractions {fractions})")
    return text, f"{data} ({split} split: {corpus.split}, cleaner {cleaner})"


def evaluate_model(model_dir: str, data: str, split: str | None = None, cleaner: str | None = None,
                   device: str = "cpu", stride: int | None = None, samples: int = 4, sample_tokens: int = 120,
                   plots_dir: str | None = None, seed: int = 0) -> dict[str, Any]:
    loaded = load_model_dir(model_dir, device=device)
    text, description = evaluation_text(loaded.config, data, split, cleaner)
    ids = loaded.tokenizer.encode_corpus(text)
    if len(ids) < 2:
        raise ValueError(f"{data}: the text to evaluate has fewer than two tokens")
    model = loaded.model.eval()
    stats = TokenStats(detailed=True)
    if loaded.model_type == "gpt":
        context = model.context_length
        score_gpt(model, ids, stats, device, stride=stride or max(1, context // 2))
    else:
        score_lstm(model, ids, stats, device, streams=1, chunk=256)
    result: dict[str, Any] = {"model": str(model_dir), "data": description}
    result.update(stats.summary(characters=len(text)))
    result["generation"] = generation_diversity(model_dir, text, device, samples, sample_tokens, seed)
    if plots_dir:
        out = Path(plots_dir)
        out.mkdir(parents=True, exist_ok=True)
        nll = np.concatenate(stats.nll_samples)
        plots.loss_histogram(nll, out / "loss_histogram.png")
        plots.reliability_diagram(*stats.reliability(), out / "calibration.png")
        plots.confidence_histogram(np.concatenate(stats.top_prob_samples), out / "confidence_histogram.png")
        result["plots"] = [str(out / n) for n in ("loss_histogram.png", "calibration.png", "confidence_histogram.png")]
    return result


def generation_diversity(model_dir: str, text: str, device: str, samples: int, tokens: int,
                         seed: int = 0) -> dict[str, float]:
    """distinct-1, distinct-2 and the repeated-4-gram rate of a few sampled continuations (temperature 1) of
    prompts taken at evenly spaced places in the text."""
    generator = load(model_dir, device=device)
    sequences = []
    for i, start in enumerate(np.linspace(0, max(0, len(text) - 200), samples).astype(int)):
        line_start = text.rfind("\n", 0, start) + 1
        prompt = text[line_start: line_start + 80]
        with torch.no_grad():
            result = generator.generate(prompt, max_new_tokens=tokens, temperature=1.0, seed=seed + i,
                                        stop_at_eos=False)
        sequences.append([event.id for event in result.tokens])
    return {
        "samples": samples,
        "new_tokens": tokens,
        "distinct_1": distinct_n(sequences, 1),
        "distinct_2": distinct_n(sequences, 2),
        "repetition_rate": repetition_rate(sequences),
    }


def format_table(result: dict[str, Any]) -> str:
    rows = [(key, result[key]) for key in TABLE_KEYS if key in result]
    rows += [(f"generation.{k}", v) for k, v in result.get("generation", {}).items()
             if k in ("distinct_1", "distinct_2", "repetition_rate")]
    width = max(len(k) for k, _ in rows)
    lines = [f"{result['model']}  on  {result['data']}"]
    for key, value in rows:
        shown = f"{value:,}" if isinstance(value, int) else f"{value:.4f}"
        lines.append(f"  {key:<{width}}  {shown:>12}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str) -> None:
    from lm.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
