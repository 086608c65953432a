"""`evaluate --custom-prompts FILE`: the model's continuations of the user's own prompts, saved with the figures.

The file holds one prompt a line. A line break inside a prompt is written `\\n` (a tab `\\t`, a backslash `\\\\`);
blank lines are skipped, and every other character of a line, spaces included, belongs to its prompt. Prompt i
(from 0) is continued with seed `seed + i`, `num_samples` times in one batch, so a run with the same seed and
settings repeats exactly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lm.generation import Generator
from training.data.sources import PROBE_BYTES, not_text
from training.evaluation.sampling import SamplingSettings

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}
_ESCAPE = re.compile(r"\\(.)")


class PromptFileError(ValueError):
    """A prompts file that cannot be used (missing, empty, not text)."""


def unescape(line: str) -> str:
    """A line of a prompts file as the prompt it writes: `\\n` a line break, `\\t` a tab, `\\\\` a backslash (any
    other backslash stays as it is)."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), line)


def read_prompts(path: str | Path) -> list[str]:
    """The prompts of a file, one a line (see the module's docstring); PromptFileError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "is not a file" if path.exists() else "no such file"
        raise PromptFileError(f"prompts file {path}: {problem}")
    reason = not_text(path)
    if reason:
        raise PromptFileError(f"prompts file {path}: not UTF-8 text ({reason} in its first {PROBE_BYTES // 1024} "
                              "KB); write one prompt a line")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a BOM (Notepad writes one) is no prompt
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"prompts file {path}: cannot read it ({exc})") from None
    prompts = [unescape(line) for line in lines if line.strip()]
    if not prompts:
        raise PromptFileError(f"prompts file {path}: no prompts in it; write one prompt a line (a line break inside "
                              "a prompt as \\n)")
    return prompts


def continue_prompts(generator: Generator, prompts: list[str], settings: SamplingSettings,
                     source: str | None = None) -> dict[str, Any]:
    """Each prompt with its `settings.num_samples` continuations (text and finish reason), and the settings, as
    `evaluate` saves them under `custom_prompts`."""
    results = []
    for i, prompt in enumerate(prompts):
        result = generator.generate(prompt, **settings.options(i))
        results.append({"prompt": prompt, "seed": result.seed,
                        "continuations": [{"text": c.text, "finish_reason": c.finish_reason, "tokens": len(c.tokens)}
                                          for c in result.choices]})
    return {"file": source, **settings.model_dump(), "prompts": results}


def format_continuations(custom: dict[str, Any]) -> str:
    """The prompts and their continuations for a terminal: each prompt once, then each continuation after it, every
    line of text indented so that where the prompt ends and the model's text begins stays visible."""
    settings = (f"{custom['num_samples']} sample(s) each, temperature {custom['temperature']}, up to "
                f"{custom['max_new_tokens']} new tokens")
    lines = [f"custom prompts{' from ' + Path(custom['file']).name if custom.get('file') else ''} ({settings}):"]
    for i, item in enumerate(custom["prompts"], 1):
        lines.append(f"[{i}] seed {item['seed']}, prompt {item['prompt']!r}")
        for j, continuation in enumerate(item["continuations"], 1):
            text = (item["prompt"] + "|" + continuation["text"]).replace("\n", "\n      ")
            lines.append(f"  {j}.  {text}")
    lines.append("('|' marks where each prompt ends and the model's text begins)")
    return "\n".join(lines)
