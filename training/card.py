"""A model card (`card.md`) written from what a model directory records about itself.

Everything in the card is read, not typed: the architecture and training metadata from `config.json`, the quality
figures of the model on its own validation text (`evaluations/`, written by `python -m training evaluate`; the older
`evaluation.json` of directories evaluated before), a line for each other text it was evaluated on, and samples
generated on the spot with the settings printed beside them. The web app's model page shows the card. A card travels
with its model, so the paths of the machine that trained it are cut to file names (`lm.paths.without_paths`): the
corpus is named with its public address.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lm.atomic import atomic_write_text
from lm.checkpoint import CARD_FILE, CURVE_FILE, METRICS_FILE, WEIGHTS_FILE, evaluations, own_evaluation, read_config
from lm.models import MODEL_TYPES
from lm.paths import without_paths
from training.data.corpora import KNOWN_CORPORA

SAMPLE_PROMPTS = ("ROMEO:", "JULIET:\nO", "First Citizen:\n")
SAMPLE_SETTINGS = {"temperature": 0.8, "top_p": 0.95}
SAMPLE_CHARACTERS = 300


def _corpus_line(training: dict[str, Any]) -> str:
    preset_source = ((training.get("config") or {}).get("data") or {}).get("source", "")
    data = training.get("data") or {}
    corpus = KNOWN_CORPORA.get(preset_source)
    where = without_paths(str(data.get("source", preset_source)))
    if corpus is None:
        return f"`{where}` (the text given to the trainer)"
    address = next(iter(corpus.urls.values()))
    return f"{corpus.name}: {corpus.description}; {corpus.licence}. Public address: <{address}> (read from `{where}`)"


def _architecture(config: dict[str, Any]) -> str:
    hyper = ", ".join(f"{k}={v}" for k, v in config["model"].items() if k != "vocab_size")
    return f"{MODEL_TYPES[config['model_type']].title}, {config['parameters']:,} parameters ({hyper})"


def _precision_line(training: dict[str, Any]) -> str:
    """What ran, not what was asked: the resolved precision and why (recorded by the trainer)."""
    precision = training.get("precision")
    if not isinstance(precision, dict):
        return "not recorded (trained before precisions were recorded)"
    used = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast with a gradient scaler"}
    threads = training.get("threads")
    return (f"{used.get(precision.get('used'), precision.get('used'))}; {precision.get('reason', '')}"
            + (f"; {threads} torch thread{'s' if threads != 1 else ''}" if threads else ""))


def _teacher_lines(training: dict[str, Any]) -> list[str]:
    """One line naming the teacher(s) a distilled model learnt from (training/distillation.py), if any."""
    teacher = training.get("teacher")
    if not isinstance(teacher, dict):
        return []
    names = [f"`{name}`" for name in teacher.get("names", [])]
    if not names:
        return []
    source = (names[0] if len(names) == 1 else
              f"the mean next-token distribution of {', '.join(names[:-1])} and {names[-1]}")
    own = "the teacher's own training time is" if len(names) == 1 else "the teachers' own training times are"
    temperature = teacher.get("temperature", 1.0)
    softened = f", both softened at temperature {temperature:g}" if temperature != 1.0 else ""
    return [f"- **Teacher:** distilled from {source}: {teacher.get('weight')} of the objective is the KL divergence "
            f"to its top {teacher.get('top_k')} next tokens at each position of the training text{softened}; {own} "
            f"not in the training time above"]


def _samples(model_dir: Path, chars_per_token: float) -> list[tuple[str, dict[str, Any], str]]:
    from lm import load

    max_new_tokens = max(1, round(SAMPLE_CHARACTERS / chars_per_token))
    samples = []
    with load(model_dir) as generator:
        for seed, prompt in enumerate(SAMPLE_PROMPTS, start=1):
            settings = {**SAMPLE_SETTINGS, "max_new_tokens": max_new_tokens, "seed": seed}
            result = generator.generate(prompt, **settings)
            samples.append((prompt, settings, result.text))
    return samples


_FIGURES = (
    ("loss", lambda e: f"{e['loss']:.4f} nats/token"),
    ("loss per character", lambda e: f"{e['loss'] * e['tokens'] / e['characters']:.4f} nats/char"),
    ("bits per character", lambda e: f"{e['bits_per_char']:.4f}"),
    ("perplexity", lambda e: f"{e['perplexity']:.3f} (per token)"),
    ("tokens / characters", lambda e: f"{e['tokens']:,} / {e['characters']:,}"),
    ("mean top-token probability", lambda e: f"{e['avg_top_token_prob']:.3f}"),
    ("calibration error (ECE)", lambda e: f"{e['ece']:.4f}"),
)


def _figures_table(evaluation: dict[str, Any]) -> list[str]:
    """Markdown rows of evaluation.json's figures: one value column, or one per split for `--split all`."""
    columns = evaluation["splits"] if "splits" in evaluation else {"value": evaluation}
    lines = ["| figure | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for label, shown in _FIGURES:
        cells = ["empty" if figures.get("empty") else shown(figures) for figures in columns.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _dynamic_lines(dynamic: dict[str, Any] | None) -> list[str]:
    if not dynamic:
        return []
    return [f"With dynamic evaluation ({dynamic['method']}: lr {dynamic['lr']:g}, decay {dynamic['decay']:g}, "
            f"{dynamic['segment']} tokens per step), a separate figure: the model adapts its weights to the text "
            f"as it reads it, each segment scored before it is learned from: **{dynamic['bits_per_char']:.4f} "
            f"bits/char** ({dynamic['nats_per_char']:.4f} nats/char).", ""]


def _ladder_lines(ladder: dict[str, Any] | None) -> list[str]:
    """The model among the baselines, best first (training/evaluation/ladder.py wrote it into the evaluation)."""
    if not ladder:
        return []
    lines = ["### On the baseline ladder", "", ladder["summary"], "", "| | bits/char | nats/char | how |",
             "| --- | --- | --- | --- |"]
    for rung in ladder["rungs"]:
        bold = "**" if rung.get("model") else ""
        lines.append(f"| {bold}{rung['name']}{bold} | {bold}{rung['bits_per_char']:.4f}{bold} | "
                     f"{rung['nats_per_char']:.4f} | {rung.get('detail', '')} |")
    notes = ["The baselines learn from the training split only and are scored on the same text as the model."]
    return lines + [""] + notes + list(ladder.get("notes", [])) + [""]


def _other_evaluations(model_dir: Path, own_file: Path) -> list[str]:
    """A line for each other text the model was evaluated on (its own figures stay the ones above)."""
    lines = []
    for file, result in evaluations(model_dir):
        figures = (result.get("splits") or {}).get("valid") or result
        if file == own_file or "bits_per_char" not in figures:
            continue
        lines.append(f"- {without_paths(str(result.get('data', file.stem)))}: {figures['bits_per_char']:.4f} bits/char "
                     f"(`{file.relative_to(model_dir).as_posix()}`)")
    return ["Also evaluated on:", "", *lines, ""] if lines else []


def render_card(model_dir: str | Path) -> str:
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    training = config.get("training") or {}
    own = own_evaluation(model_dir)
    evaluation = own[1] if own else None
    tokenizer = config["tokenizer"]
    data = training.get("data") or {}
    chars_per_token = (data.get("valid_characters") or 1) / (data.get("valid_tokens") or 1)

    lines = [f"# {config.get('name', model_dir.name)}", ""]
    description = (training.get("config") or {}).get("description")
    if description:
        lines += [description, ""]
    lines += [
        "## What it is",
        "",
        f"- **Architecture:** {_architecture(config)}",
        f"- **Tokenizer:** {tokenizer['kind']}, {tokenizer['vocab_size']} tokens "
        f"({chars_per_token:.2f} characters per token on the validation text)",
        f"- **Weights:** `{WEIGHTS_FILE}`, stored as {config.get('weights_dtype', 'float32')}",
        "",
        "## Data",
        "",
        f"- **Corpus:** {_corpus_line(training)}",
        f"- **Split:** {data.get('split', 'unknown')}; {data.get('train_characters', '?'):,} training and "
        f"{data.get('valid_characters', '?'):,} validation characters",
        "",
        "## How it was trained",
        "",
        "```bash",
        without_paths(training.get("command", "(not recorded)")),
        "```",
        "",
        f"- **Steps:** {training.get('steps', '?'):,} ({training.get('tokens_seen', 0):,} tokens seen), "
        f"best validation at step {training.get('best_step', '?'):,}; stopped by {training.get('stop_reason', '?')}",
        f"- **Training time:** {training.get('wall_time_s', 0) / 60:.1f} minutes of wall time "
        f"(total over every resumed session)",
        f"- **Hardware:** {training.get('hardware', 'unknown')}",
        f"- **Precision:** {_precision_line(training)}",
        *_teacher_lines(training),
        f"- **Curve:** `{METRICS_FILE}` (one JSON object per logged step) and `{CURVE_FILE}`",
        "",
        "## How good it is",
        "",
    ]
    if evaluation:
        lines += [
            f"Evaluated with `{without_paths(evaluation.get('command', 'python -m training evaluate'))}` on "
            f"{without_paths(evaluation.get('data', 'the validation text'))}:",
            "",
            *_figures_table(evaluation),
            "",
        ]
        lines += _dynamic_lines(evaluation.get("dynamic")) + _ladder_lines(evaluation.get("ladder"))
        lines += _other_evaluations(model_dir, own[0])
    else:
        metrics = config.get("metrics") or {}
        lines += [f"Validation during training: {json.dumps(metrics)}. Run `python -m training evaluate` for the "
                  "full figures.", ""]
    lines += ["## Samples", ""]
    for prompt, settings, text in _samples(model_dir, chars_per_token):
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        lines += [f"Prompt `{prompt!r}`, {shown}:", "", "```text", prompt + text, "```", ""]
    lines += [
        "## Known limits",
        "",
        "- It learned the look of its corpus (names in capitals, verse line lengths, archaic words), not meaning:",
        "  sentences drift, characters wander in and out, and it invents plausible words.",
        "- It knows nothing beyond its training text and should not be relied on for anything factual.",
        "- A prompt far from that text (modern English, other languages, code) gives poorer continuations; "
        "characters the tokenizer never saw become `<unk>`." if tokenizer["kind"] == "char" else
        "- A prompt far from that text (modern English, other languages, code) gives poorer continuations.",
    ]
    lines += [f"- {limit}" for limit in MODEL_TYPES[config["model_type"]].limitations(config["model"])]
    return "\n".join(lines) + "\n"


def write_card(model_dir: str | Path) -> Path:
    path = Path(model_dir) / CARD_FILE
    atomic_write_text(path, render_card(model_dir))
    return path
