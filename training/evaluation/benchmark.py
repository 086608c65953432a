"""`python -m training benchmark`: model directories side by side.

- completion: greedy continuations of a few fixed prompts, with their mean token log-probability;
- consistency: the same seed gives the same text, and how much continuations under different seeds share
  (mean pairwise Jaccard overlap of their token bigrams: high = the model says much the same thing every time);
- repetition: repeated-4-gram rate and distinct-1/2 of sampled (temperature 0.8) and greedy continuations;
- speed: generated tokens per second and per-step latency at batch 1, 4 and 8 (`num_return_sequences`).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from lm import load
from lm.generation import Generator
from training.evaluation.metrics import distinct_n, repetition_rate

PROMPTS = ("ROMEO:", "The king", "Once upon a time")
BATCH_SIZES = (1, 4, 8)


def _ids(result) -> list[int]:
    return [event.id for event in result.tokens]


def _bigram_overlap(a: list[int], b: list[int]) -> float:
    x, y = set(zip(a, a[1:])), set(zip(b, b[1:]))
    return len(x & y) / len(x | y) if x | y else 1.0


def model_summary(generator: Generator, model_dir: str) -> dict[str, Any]:
    """What a comparison says about each model: its name, path, family, size, tokenizer and validation figure."""
    return {
        "model": generator.name,
        "path": str(model_dir),
        "model_type": generator.model_type,
        "parameters": generator.num_parameters,
        "tokenizer": generator.tokenizer.kind,
        "val_bits_per_char": (generator.config.get("metrics") or {}).get("val_bits_per_char"),
    }


def benchmark_model(model_dir: str, device: str = "cpu", new_tokens: int = 64, seed: int = 0) -> dict[str, Any]:
    with load(model_dir, device=device) as generator:
        return measure_generator(generator, model_dir, new_tokens, seed)


def measure_generator(generator: Generator, model_dir: str, new_tokens: int, seed: int) -> dict[str, Any]:
    """The benchmark's figures for a loaded model: completions, seed consistency, repetition and speed."""
    out = model_summary(generator, model_dir)

    completions = []
    for prompt in PROMPTS:
        result = generator.generate(prompt, max_new_tokens=new_tokens, temperature=0.0, stop_at_eos=False)
        logprobs = [event.logprob for event in result.tokens]
        completions.append({"prompt": prompt, "text": result.text,
                            "mean_logprob": sum(logprobs) / len(logprobs) if logprobs else None})
    out["completion"] = completions

    prompt = PROMPTS[0]
    first = generator.generate(prompt, max_new_tokens=new_tokens, seed=seed, stop_at_eos=False)
    again = generator.generate(prompt, max_new_tokens=new_tokens, seed=seed, stop_at_eos=False)
    samples = [_ids(generator.generate(prompt, max_new_tokens=new_tokens, seed=seed + i, temperature=0.8,
                                       stop_at_eos=False)) for i in range(4)]
    pairs = list(itertools.combinations(samples, 2))
    out["consistency"] = {
        "same_seed_identical": first.text == again.text,
        "cross_seed_bigram_overlap": sum(_bigram_overlap(a, b) for a, b in pairs) / len(pairs),
    }

    long = 3 * new_tokens
    sampled = [_ids(generator.generate(p, max_new_tokens=long, seed=seed, temperature=0.8, stop_at_eos=False))
               for p in PROMPTS]
    greedy = [_ids(generator.generate(p, max_new_tokens=long, temperature=0.0, stop_at_eos=False)) for p in PROMPTS]
    out["repetition"] = {
        "sampled_repetition_rate": repetition_rate(sampled),
        "greedy_repetition_rate": repetition_rate(greedy),
        "distinct_1": distinct_n(sampled, 1),
        "distinct_2": distinct_n(sampled, 2),
    }

    out["speed"] = generation_speed(generator, prompt, new_tokens, seed, BATCH_SIZES)
    return out


def generation_speed(generator: Generator, prompt: str, new_tokens: int, seed: int = 0,
                     batch_sizes: tuple[int, ...] = BATCH_SIZES) -> dict[str, dict[str, float]]:
    """Generated tokens per second, milliseconds per step and time to the first token of `new_tokens` sampled
    tokens at each batch size (`num_return_sequences`), after a warm-up call."""
    speed = {}
    generator.generate(prompt, max_new_tokens=8, seed=seed)  # warm-up: first-call allocations
    for batch in batch_sizes:
        start = time.perf_counter()
        stream = generator.stream(prompt, max_new_tokens=new_tokens, seed=seed, num_return_sequences=batch,
                                  stop_at_eos=False)
        first_token = None
        for _ in stream:
            if first_token is None:
                first_token = time.perf_counter() - start
        elapsed = time.perf_counter() - start
        generated = sum(len(choice.tokens) for choice in stream.result.choices)
        speed[f"batch_{batch}"] = {
            "tokens_per_second": generated / elapsed,
            "ms_per_step": 1000 * elapsed / max(1, new_tokens),
            "first_token_ms": 1000 * (first_token or elapsed),
        }
    return speed


def format_side_by_side(results: list[dict[str, Any]]) -> str:
    rows = [
        ("type", lambda r: r["model_type"]),
        ("parameters", lambda r: f"{r['parameters']:,}"),
        ("val bits/char", lambda r: "-" if r["val_bits_per_char"] is None else f"{r['val_bits_per_char']:.3f}"),
        ("same seed, same text", lambda r: "yes" if r["consistency"]["same_seed_identical"] else "NO"),
        ("cross-seed overlap", lambda r: f"{r['consistency']['cross_seed_bigram_overlap']:.3f}"),
        ("repetition (sampled)", lambda r: f"{r['repetition']['sampled_repetition_rate']:.3f}"),
        ("repetition (greedy)", lambda r: f"{r['repetition']['greedy_repetition_rate']:.3f}"),
        ("distinct-2", lambda r: f"{r['repetition']['distinct_2']:.3f}"),
    ]
    for batch in BATCH_SIZES:
        key = f"batch_{batch}"
        rows.append((f"tokens/s @ batch {batch}", lambda r, k=key: f"{r['speed'][k]['tokens_per_second']:,.0f}"))
        rows.append((f"ms/step @ batch {batch}", lambda r, k=key: f"{r['speed'][k]['ms_per_step']:.1f}"))
    label_width = max(len(label) for label, _ in rows)
    widths = [max(14, len(r["model"])) for r in results]
    lines = [" " * label_width + "  " + "  ".join(f"{r['model']:>{w}}" for r, w in zip(results, widths))]
    for label, get in rows:
        lines.append(f"{label:<{label_width}}  " + "  ".join(f"{get(r):>{w}}" for r, w in zip(results, widths)))
    for r in results:
        lines.append(f"\n{r['model']}, greedy completion of {r['completion'][0]['prompt']!r}:")
        lines.append("  " + r["completion"][0]["text"][:200].replace("\n", "\n  "))
    return "\n".join(lines)
