"""The README.md of an export: the Hugging Face Hub's metadata header, how to load it, where it came from
(source model, Scriptorium version, the export command) and the check's figures. Only names, never a path of
the machine that exported it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lm
from lm.checkpoint import LoadedModel, own_evaluation
from lm.paths import without_paths

MARKER = "<!-- written by: python -m training export -->"
# corpora the trainer knows by name -> their dataset ids on the Hugging Face Hub
HUB_DATASETS = {
    "tinyshakespeare": "karpathy/tiny_shakespeare",
    "wikitext2": "Salesforce/wikitext",
    "wikitext103": "Salesforce/wikitext",
}

_LIBRARY = {"hf": "transformers", "gguf": "gguf", "onnx": "onnx"}

_FIGURE_LABELS = {
    "runtime": "runtime",
    "weight_type": "weight type",
    "texts": "texts compared",
    "tokenization_identical": "tokenization identical to ours",
    "max_abs_logit_diff": "largest logit difference",
    "prompt_max_abs_logit_diff": "largest logit difference, whole prompt at once",
    "decode_steps": "tokens decoded one at a time",
    "greedy_prompts": "prompts continued greedily",
    "greedy_tokens": "greedy tokens per prompt",
    "greedy_identical": "greedy continuations identical to ours",
    "perplexity_tokens": "perplexity text (tokens, sampled by the model)",
    "perplexity_ours": "perplexity, ours",
    "perplexity_llama_cpp": "perplexity, llama.cpp",
    "perplexity_relative_diff": "perplexity relative difference",
    "max_end_of_text_probability": "largest probability of the added end-of-text token",
}


def _yaml_list(values: list[str]) -> list[str]:
    return [f"  - {v}" for v in values]


def _tags(fmt: str, loaded: LoadedModel) -> list[str]:
    rotary = loaded.model_type == "gpt" and loaded.model.config.positions == "rotary"
    if fmt == "hf":
        return ["gpt_neox" if rotary else "gpt2"]
    if fmt == "gguf":
        return ["gguf", "llama.cpp", "gptneox" if rotary else "gpt2"]
    return ["onnx", loaded.model_type]


def _header(fmt: str, loaded: LoadedModel, license_id: str) -> list[str]:
    config = loaded.config
    corpus = (((config.get("training") or {}).get("config") or {}).get("data") or {}).get("source")
    tags = ["scriptorium", "text-generation", *_tags(fmt, loaded)]
    lines = ["---", f"license: {license_id}", f"library_name: {_LIBRARY[fmt]}", "pipeline_tag: text-generation"]
    if corpus in HUB_DATASETS:
        lines += ["datasets:", *_yaml_list([HUB_DATASETS[corpus]])]
    lines += ["tags:", *_yaml_list(tags), "---", MARKER, ""]
    return lines


def _figure(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if value >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def render_export_card(
    fmt: str,
    loaded: LoadedModel,
    name: str,
    architecture: str,
    usage: str,
    command: str,
    figures: dict[str, Any] | None,
    not_checked: str | None,
    notes: list[str],
    license_id: str,
) -> str:
    config = loaded.config
    training = config.get("training") or {}
    description = (training.get("config") or {}).get("description")
    lines = _header(fmt, loaded, license_id)
    lines += [f"# {name} ({fmt})", ""]
    if description:
        lines += [description, ""]
    hyper = ", ".join(f"{k}={v}" for k, v in config["model"].items() if k != "vocab_size")
    lines += [
        f"A {config['model_type'].upper()} language model of {config['parameters']:,} parameters ({hyper}) with a "
        f"{config['tokenizer']['kind']} tokenizer of {config['tokenizer']['vocab_size']} tokens, trained with "
        f"Scriptorium and exported as **{architecture}**.",
        "",
        "## Use it",
        "",
        usage.strip(),
        "",
        "## Where it came from",
        "",
        f"- **Source model:** `{name}` (a Scriptorium model directory)",
        f"- **Exported by:** Scriptorium {lm.__version__}, `{without_paths(command)}`",
    ]
    if training.get("command"):
        lines.append(f"- **Trained with:** `{without_paths(training['command'])}`")
    metrics = config.get("metrics") or {}
    if isinstance(metrics.get("val_bits_per_char"), (int, float)):
        lines.append(f"- **Validation during training:** {metrics['val_bits_per_char']:.4f} bits per character")
    evaluation = _evaluation(loaded.path)
    if evaluation:
        data = without_paths(str(evaluation.get("data", "its validation text")))
        lines.append(f"- **Evaluation:** {evaluation['bits_per_char']:.4f} bits per character, perplexity "
                     f"{evaluation['perplexity']:.3f} per token, on {data}")
    lines += ["", "## Checked against the source model", ""]
    if figures is None:
        lines += [f"Not checked: {not_checked}.", ""]
    else:
        lines += ["| figure | value |", "| --- | --- |"]
        shown = dict(figures)
        if "greedy_identical" in shown:
            shown["greedy_identical"] = f"{shown['greedy_identical']} of {shown['greedy_prompts']}"
        lines += [f"| {_FIGURE_LABELS.get(k, k)} | {_figure(v)} |" for k, v in shown.items()]
        lines.append("")
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def _evaluation(model_dir: Path) -> dict[str, Any] | None:
    """The model's figures on its own validation text (never another text's, nor an int8 evaluation's)."""
    own = own_evaluation(model_dir)
    if own is None:
        return None
    result = own[1]
    figures = (result.get("splits") or {}).get("valid") or result  # `--split all` keeps each split's figures
    if not isinstance(figures, dict) or not all(k in figures for k in ("bits_per_char", "perplexity")):
        return None
    return {**figures, "data": result.get("data")}
