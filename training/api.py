"""Scriptorium's Python API: what `python -m training` does, from a notebook or a script, in a few lines.

    from training.api import BenchmarkSuite, evaluate_model, prepare_corpus

    prepare_corpus("tinyshakespeare", "data/shakespeare")                    # prepare-data
    result = evaluate_model("models/shakespeare-gpt", "data/shakespeare", split="valid",
                            prompts=["ROMEO:"], num_samples=3, temperature=0.8)  # evaluate --custom-prompts
    suite = BenchmarkSuite.from_yaml("configs/benchmarks/shakespeare.yaml")
    print(suite.run(["models/shakespeare-gpt", "models/shakespeare-lstm"]).markdown())  # benchmark --benchmark-config

Each name is the code the command line runs (training/cli.py calls the same functions), so a result here equals the
command's: the same figures, the same JSON in the same place. What BabyLlama's API calls DataProcessor is
`prepare_corpus`, ModelEvaluator is `evaluate_model`, BenchmarkSuite is `BenchmarkSuite`. Errors are ValueErrors
(ConfigError for a bad suite, PromptFileError for a bad prompts file) with a one-line message. See
docs/python-api.md.
"""

from __future__ import annotations

import os
from typing import Any

from training.config import ConfigError
from training.data.prepare import prepare_data
from training.evaluation.evaluate import format_evaluation, run_evaluation, save_evaluation
from training.evaluation.prompts import PromptFileError, read_prompts
from training.evaluation.sampling import SamplingSettings, validated
from training.evaluation.suites import BenchmarkSuite, SuiteResult

__all__ = ["BenchmarkSuite", "ConfigError", "PromptFileError", "SamplingSettings", "SuiteResult", "evaluate_model",
           "format_evaluation", "prepare_corpus", "read_prompts"]


def prepare_corpus(source: str, out: str | os.PathLike, *, cleaner: str | None = None,
                   split: list[float] | None = None, include: list[str] | None = None,
                   exclude: list[str] | None = None) -> dict[str, Any]:
    """`python -m training prepare-data`: read `source` (tinyshakespeare, wikitext2, a file or a directory), clean
    it, and write train.txt, valid.txt (and test.txt) under `out`, which `data=` and `--data` read back with the
    split as written. Returns the summary the command prints (characters and lines per file)."""
    return prepare_data(source, str(out), cleaner=cleaner, split=split, include=include, exclude=exclude)


def evaluate_model(model_dir: str | os.PathLike, data: str | os.PathLike | None = None, split: str | None = None,
                   *, prompts: list[str] | str | os.PathLike | None = None, num_samples: int = 1,
                   temperature: float = 1.0, max_new_tokens: int = 100, top_k: int = 0, top_p: float = 1.0,
                   seed: int = 0, save: bool = True, output: str | os.PathLike | None = None,
                   **options: Any) -> dict[str, Any]:
    """`python -m training evaluate`: the figures of `data` (one `split`: train, valid, test, or all) and, with
    `prompts` (a list of prompts, or a prompts file as `--custom-prompts` reads it), `num_samples` continuations of
    each under `custom_prompts`, seeded by `seed` so that they repeat. With `save` the result is written where the
    command writes it (MODEL_DIR/evaluations/..., or `output`). Other `options` are `run_evaluation`'s: cleaner,
    device, samples, plots_dir, baselines, dynamic, include, exclude, quantize. `print(format_evaluation(result))`
    shows it as the command does."""
    source = None
    if isinstance(prompts, (str, os.PathLike)):
        source, prompts = str(prompts), read_prompts(prompts)
    elif prompts is not None:
        prompts = list(prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts: give a non-empty list of strings, or the path of a prompts file")
    sampling = validated(SamplingSettings, {"num_samples": num_samples, "temperature": temperature,
                                            "max_new_tokens": max_new_tokens, "top_k": top_k, "top_p": top_p,
                                            "seed": seed}, "evaluate_model")
    result = run_evaluation(str(model_dir), None if data is None else str(data), split, prompts=prompts,
                            prompts_source=source, sampling=sampling, **options)
    if save:
        save_evaluation(result, model_dir, output)
    return result
