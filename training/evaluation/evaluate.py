"""`python -m training evaluate`: how well a model directory predicts a text.

Each family reads the text as faithfully as it can (`Family.score_text`): the LSTM as one stream, carrying its state;
the GPT in windows of its context with a stride of half the context, so every token after the first window has at
least half a context before it. `bits_per_char` = loss x tokens / (characters x ln 2), with the characters of the
evaluated text, so char, word and BPE models compare on the same scale. `--split all` scores the train, validation
and test parts one after the other into one table (`splits` in the JSON); a part that the model's split fractions
leave empty is reported as empty. `run_evaluation` is the whole command: these figures and, with
`--custom-prompts`, the continuations of the user's prompts beside them (prompts.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lm import load
from lm.atomic import atomic_write_text
from lm.checkpoint import EVALUATIONS_DIR, LoadedModel, load_model_dir
from lm.quantize import check_quantize, quantize_model
from training.config import DataConfig
from training.data.corpora import KNOWN_CORPORA
from training.data.corpus import Corpus, Part, load_corpus, load_whole
from training.data.token_cache import encode_part
from training.evaluation import plots
from training.evaluation.baselines import MAX_TRAIN_CHARS
from training.evaluation.dynamic_eval import DynamicOptions, dynamic_figures, format_dynamic
from training.evaluation.ladder import format_ladder, model_ladder
from training.evaluation.metrics import TokenStats, distinct_n, repetition_rate
from training.evaluation.prompts import continue_prompts, format_continuations
from training.evaluation.sampling import SamplingSettings

SPLITS = ("train", "valid", "test")
PROMPT_TEXT_CHARS = 4_000_000  # diversity prompts come from the first this many characters of the evaluated text
TABLE_KEYS = ("loss", "perplexity", "bits_per_char", "tokens", "characters", "loss_std", "avg_top_token_prob",
              "avg_entropy", "low_confidence_ratio", "ece")


@dataclass(frozen=True)
class DataChoice:
    """How to read the data to evaluate: the cleaner, the split fractions and a directory's include and exclude
    patterns, each the model's training run's unless given."""

    cleaner: str
    fractions: list[float]
    include: list[str]
    exclude: list[str]

    @classmethod
    def recorded(cls, config: dict, cleaner: str | None = None, include: list[str] | None = None,
                 exclude: list[str] | None = None) -> DataChoice:
        data = ((config.get("training") or {}).get("config") or {}).get("data") or {}
        return cls(cleaner or data.get("cleaner") or "default", list(data.get("split") or [0.9, 0.1, 0.0]),
                   list(include if include is not None else data.get("include") or []),
                   list(exclude if exclude is not None else data.get("exclude") or []))

    def corpus(self, data: str) -> Corpus:
        return load_corpus(DataConfig(source=data, cleaner=self.cleaner, split=self.fractions, include=self.include,
                                      exclude=self.exclude))

    def identity(self, config: dict, data: str, content_hash: str, split: str) -> dict[str, Any]:
        """What a result records about its text: the source as given, the split, a hash of the text read, and
        whether it is the model's own data (the text it was trained on, cut and cleaned as then) and, split
        `valid` (or `all`), its own validation figures, which the model card shows."""
        recorded = (config.get("training") or {}).get("data") or {}
        same_text = (recorded.get("content_hash") == content_hash if recorded.get("content_hash")
                     else recorded.get("source") == data)  # a model trained before content hashes were recorded
        own = same_text and self == DataChoice.recorded(config)
        cut = "whole" if split == "whole" else ",".join(map(str, self.fractions))
        return {"source": data, "split": split, "text_hash": f"{content_hash[:32]}:{self.cleaner}:{cut}",
                "own_data": own, "own_validation": own and split in ("valid", "all")}


def evaluation_part(config: dict, data: str, split: str | None, cleaner: str | None = None,
                    include: list[str] | None = None, exclude: list[str] | None = None
                    ) -> tuple[Part, dict[str, Any]]:
    """The text to evaluate and what the result says about it (`data`: a description; `DataChoice.identity`).
    Without `split`: all of `data`. With it: that part, cut as the model's training run cut its data (its recorded
    split fractions, cleaner, include and exclude)."""
    choice = DataChoice.recorded(config, cleaner, include, exclude)
    if split is None:
        part = load_whole(data, choice.cleaner, choice.include, choice.exclude)
        if not part.characters:
            raise ValueError(f"{data}: no text left after the {choice.cleaner!r} cleaner")
        about = {"data": f"{data} (whole, cleaner {choice.cleaner})", "read": part.description}
        return part, about | choice.identity(config, data, part.text.source.content_hash, "whole")
    corpus = choice.corpus(data)
    part = corpus.part(split)
    if not part.characters:
        raise ValueError(f"the {split} split of {data} is empty (split fractions {choice.fractions})")
    about = {"data": f"{data} ({split} split: {corpus.split}, cleaner {choice.cleaner})", "read": corpus.read}
    return part, about | choice.identity(config, data, corpus.content_hash, split)


def evaluate_model(model_dir: str, data: str, split: str | None = None, cleaner: str | None = None,
                   device: str = "cpu", stride: int | None = None, samples: int = 4, sample_tokens: int = 120,
                   plots_dir: str | None = None, seed: int = 0, baselines: bool = True,
                   dynamic: DynamicOptions | None = None, include: list[str] | None = None,
                   exclude: list[str] | None = None, quantize: str | None = None) -> dict[str, Any]:
    """The figures of one text: all of `data`, or one `split` of it; with `dynamic`, dynamic evaluation's beside
    them (key "dynamic"); with a valid or test `split` and `baselines`, the model on the baseline ladder ("ladder").
    `quantize="int8"`: the model as `lm.load(..., quantize="int8")` (and the app's QUANTIZE=int8) runs it."""
    if dynamic is not None and quantize is not None:
        raise ValueError("dynamic evaluation takes gradient steps, which int8 layers cannot; give one or the other")
    loaded = _load(model_dir, device, quantize)
    part, about = evaluation_part(loaded.config, data, split, cleaner, include, exclude)
    result: dict[str, Any] = {"model": str(model_dir), **about, **_quantized(quantize)}
    result.update(_text_figures(loaded, model_dir, part, data, device, stride, samples, sample_tokens, plots_dir,
                                seed, quantize))
    with_ladder = baselines and split in ("valid", "test")  # the baselines learn from the training split
    if dynamic is None and not with_ladder:
        return result
    ids = encode_part(part, loaded.tokenizer)
    needs_training_text = with_ladder or dynamic.rule == "rms"
    train = evaluation_part(loaded.config, data, "train", cleaner, include, exclude)[0] if needs_training_text else None
    if dynamic is not None:
        result["dynamic"] = dynamic_figures(loaded.model, ids, part.characters, device, dynamic,
                                            lambda: encode_part(train, loaded.tokenizer))
    if with_ladder:  # the baselines learn from at most the last MAX_TRAIN_CHARS of the training text
        result["ladder"] = model_ladder(model_dir, loaded, train.read(last=MAX_TRAIN_CHARS), part.read(), ids, result)
    return result


def run_evaluation(model_dir: str, data: str | None = None, split: str | None = None, *,
                   prompts: list[str] | None = None, prompts_source: str | None = None,
                   sampling: SamplingSettings | None = None, cleaner: str | None = None, device: str = "cpu",
                   samples: int = 4, plots_dir: str | None = None, baselines: bool = True,
                   dynamic: DynamicOptions | None = None, include: list[str] | None = None,
                   exclude: list[str] | None = None, quantize: str | None = None) -> dict[str, Any]:
    """What `python -m training evaluate` computes: the figures of `data` (one `split`, all three with
    `split="all"`, or the whole text) and, with `prompts`, their continuations under `custom_prompts` (`sampling`:
    how; `prompts_source`: the file they came from, recorded). With prompts only (no `data`), just those."""
    if data is None and not prompts:
        raise ValueError("nothing to evaluate: give a data set, prompts, or both")
    if data is None:
        result: dict[str, Any] = {"model": str(model_dir), **_quantized(quantize)}
    elif split == "all":
        if dynamic:
            raise ValueError("dynamic evaluation reads one text: give the split valid, test or train, or none")
        result = evaluate_splits(model_dir, data, cleaner=cleaner, device=device, samples=samples,
                                 plots_dir=plots_dir, include=include, exclude=exclude, quantize=quantize)
    else:
        result = evaluate_model(model_dir, data, split=split, cleaner=cleaner, device=device, samples=samples,
                                plots_dir=plots_dir, baselines=baselines, dynamic=dynamic, include=include,
                                exclude=exclude, quantize=quantize)
    if prompts:
        with load(model_dir, device=device, quantize=quantize) as generator:
            result["custom_prompts"] = continue_prompts(generator, prompts, sampling or SamplingSettings(),
                                                        prompts_source)
    return result


def save_evaluation(result: dict[str, Any], model_dir: str | Path, output: str | Path | None = None) -> Path:
    """Writes a `run_evaluation` result to `output`, or where it belongs in the model directory: `result_file`
    for the figures of a data set, `prompts_file` for continuations alone. Returns the path written."""
    if output is None:
        has_figures = "source" in result
        output = result_file(model_dir, result) if has_figures else prompts_file(
            model_dir, result["custom_prompts"].get("file") or "prompts")
    write_json(result, output)
    return Path(output)


def format_evaluation(result: dict[str, Any]) -> str:
    """A `run_evaluation` result for a terminal: the table of figures, then the prompts' continuations."""
    parts = [format_table(result)] if "source" in result else []
    if result.get("custom_prompts"):
        parts.append(format_continuations(result["custom_prompts"]))
    return "\n\n".join(parts)


def _load(model_dir: str, device: str, quantize: str | None) -> LoadedModel:
    if check_quantize(quantize) is None:
        return load_model_dir(model_dir, device=device)
    loaded = load_model_dir(model_dir, device=device, dtype="float32")  # int8 is made from float32 weights
    quantize_model(loaded.model, quantize)
    return loaded


def _quantized(quantize: str | None) -> dict[str, Any]:
    """What a quantized result records: the mode, and that its figures are not the model's own validation figures
    (the card and the model page show the model as stored; an int8 result never replaces them)."""
    return {} if quantize is None else {"quantize": quantize, "own_validation": False}


def evaluate_splits(model_dir: str, data: str, cleaner: str | None = None, device: str = "cpu",
                    stride: int | None = None, samples: int = 4, sample_tokens: int = 120,
                    plots_dir: str | None = None, seed: int = 0, include: list[str] | None = None,
                    exclude: list[str] | None = None, quantize: str | None = None) -> dict[str, Any]:
    """The figures of the train, valid and test parts of `data`, cut as the model's training run cut its data,
    under `splits`; a part those fractions leave empty is `{"empty": true}`. Plots go to `plots_dir/<split>/`."""
    loaded = _load(model_dir, device, quantize)
    choice = DataChoice.recorded(loaded.config, cleaner, include, exclude)
    corpus = choice.corpus(data)
    result: dict[str, Any] = {"model": str(model_dir),
                              "data": f"{data} (train, valid and test splits: {corpus.split}, cleaner "
                                      f"{choice.cleaner})", "read": corpus.read,
                              **choice.identity(loaded.config, data, corpus.content_hash, "all"),
                              **_quantized(quantize), "splits": {}}
    for split in SPLITS:
        part = corpus.part(split)
        if not part.characters:
            result["splits"][split] = {"empty": True}
            continue
        split_plots = str(Path(plots_dir) / split) if plots_dir else None
        result["splits"][split] = _text_figures(loaded, model_dir, part, f"the {split} split of {data}", device,
                                                stride, samples, sample_tokens, split_plots, seed, quantize)
    return result


def _text_figures(loaded: LoadedModel, model_dir: str, part: Part, name: str, device: str, stride: int | None,
                  samples: int, sample_tokens: int, plots_dir: str | None, seed: int,
                  quantize: str | None = None) -> dict[str, Any]:
    """Scores, diversity of sampled continuations and (with `plots_dir`) the plots of one text (`name` says which,
    for errors). The ids come from the token cache (the model's own data: the ids it was trained on)."""
    ids = encode_part(part, loaded.tokenizer)
    if len(ids) < 2:
        raise ValueError(f"{name}: the text to evaluate has fewer than two tokens")
    stats = TokenStats(detailed=True)
    loaded.family.score_text(loaded.model.eval(), ids, stats.update, device, stride=stride)
    figures: dict[str, Any] = stats.summary(characters=part.characters)
    figures["generation"] = generation_diversity(model_dir, part.read(PROMPT_TEXT_CHARS), device, samples,
                                                 sample_tokens, seed, quantize)
    if plots_dir:
        out = Path(plots_dir)
        out.mkdir(parents=True, exist_ok=True)
        nll = np.concatenate(stats.nll_samples)
        plots.loss_histogram(nll, out / "loss_histogram.png")
        plots.reliability_diagram(*stats.reliability(), out / "calibration.png")
        plots.confidence_histogram(np.concatenate(stats.top_prob_samples), out / "confidence_histogram.png")
        names = ("loss_histogram.png", "calibration.png", "confidence_histogram.png")
        figures["plots"] = [str(out / name) for name in names]
    return figures


def generation_diversity(model_dir: str, text: str, device: str, samples: int, tokens: int,
                         seed: int = 0, quantize: str | None = None) -> dict[str, float]:
    """distinct-1, distinct-2 and the repeated-4-gram rate of a few sampled continuations (temperature 1) of
    prompts taken at evenly spaced places in the text."""
    sequences = []
    with load(model_dir, device=device, quantize=quantize) as generator:
        for i, start in enumerate(np.linspace(0, max(0, len(text) - 200), samples).astype(int)):
            line_start = text.rfind("\n", 0, start) + 1
            prompt = text[line_start: line_start + 80]
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
    """The figures as a table: one column, or one per split (train, valid, test) for `evaluate_splits`."""
    columns = result["splits"] if "splits" in result else {"": result}
    rows = [key for key in TABLE_KEYS if any(key in figures for figures in columns.values())]
    rows += [f"generation.{key}" for key in ("distinct_1", "distinct_2", "repetition_rate")
             if any(key in figures.get("generation", {}) for figures in columns.values())]
    width = max(len(key) for key in rows)
    lines = [f"{result['model']}  on  {result['data']}"]
    if "splits" in result:
        lines.append(f"  {'':<{width}}" + "".join(f"  {name:>12}" for name in columns))
    for key in rows:
        cells = [_cell(figures, key) for figures in columns.values()]
        lines.append(f"  {key:<{width}}" + "".join(f"  {cell:>12}" for cell in cells))
    if result.get("dynamic"):
        lines.append(format_dynamic(result["dynamic"]))
    if result.get("ladder"):
        lines.append(format_ladder(result["ladder"]))
    return "\n".join(lines)


def _cell(figures: dict[str, Any], key: str) -> str:
    if figures.get("empty"):
        return "empty"
    group, _, name = key.rpartition(".")
    value = (figures.get(group) or {}).get(name) if group else figures.get(key)
    if value is None:
        return ""
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def write_json(result: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")


def result_file(model_dir: str | Path, result: dict[str, Any]) -> Path:
    """Where a result goes in the model directory: evaluations/<source>-<split>.json (source: the corpus name, or
    the file or directory name; <source>-int8-<split>.json for `--quantize int8`). Another text of the same name
    (a different `text_hash`) gets its own file, <source>-<hash>-<split>.json, so no result ever replaces the
    figures of a different text."""
    folder = Path(model_dir) / EVALUATIONS_DIR
    source = result["source"].rstrip("/\\")
    name = _file_name_part(source if source in KNOWN_CORPORA else Path(source.removeprefix("hf:")).stem, "data")
    if result.get("quantize"):
        name = f"{name}-{result['quantize']}"
    path = folder / f"{name}-{result['split']}.json"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("text_hash")
    except (OSError, ValueError, AttributeError):
        return path
    if recorded == result["text_hash"]:
        return path
    return folder / f"{name}-{hashlib.sha256(result['text_hash'].encode()).hexdigest()[:8]}-{result['split']}.json"


def prompts_file(model_dir: str | Path, prompts_path: str | Path) -> Path:
    """Where continuations of prompts evaluated without a data set go: evaluations/prompts-<file name>.json."""
    return Path(model_dir) / EVALUATIONS_DIR / f"prompts-{_file_name_part(Path(prompts_path).stem, 'prompts')}.json"


def _file_name_part(name: str, fallback: str) -> str:
    """`name` with what a file name should not hold (spaces, slashes, ...) as dashes."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or fallback
