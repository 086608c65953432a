"""What a sweep tells: every trial's settings and validation figures as `results.md` and `results.csv` (the best
marked), the validation curves of all trials in `validation_curves.png`, and `--promote`: the best trial's model
directory copied, atomically, to where it is wanted."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

from lm.atomic import atomic_write_text, make_staging_dir, replace_directory
from lm.checkpoint import METRICS_FILE, RESUME_DIR
from training.config import ConfigError
from training.evaluation import plots
from training.sweep.manifest import RESULT_FILE, SweepPlan, Trial

TABLE_FILE, CSV_FILE, CURVES_FILE = "results.md", "results.csv", "validation_curves.png"


def best_trial(plan: SweepPlan, results: dict[str, dict[str, Any]]) -> Trial | None:
    """The finished trial with the lowest validation nats/char (the first of equals), None before any."""
    scored = [t for t in plan.trials if (results.get(t.name) or {}).get("nats_per_char") is not None]
    return min(scored, key=lambda t: results[t.name]["nats_per_char"], default=None)


def rows(plan: SweepPlan, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trial, in trial order: name, settings, figures, rank (1 = best) and whether it is the best."""
    scored = sorted((results[t.name]["nats_per_char"], i) for i, t in enumerate(plan.trials)
                    if (results.get(t.name) or {}).get("nats_per_char") is not None)
    rank = {i: r + 1 for r, (_, i) in enumerate(scored)}
    table = []
    for i, trial in enumerate(plan.trials):
        result = results.get(trial.name) or {}
        status = result.get("status", "not run")
        if status == "failed":
            status = f"failed: {result.get('error', '')}"
        table.append({"trial": trial.name, **trial.settings, "val_nats_per_char": result.get("nats_per_char"),
                      "val_bits_per_char": result.get("bits_per_char"),
                      "steps": result.get("steps"), "train_seconds": result.get("train_seconds"),
                      "stop": result.get("stop_reason"), "status": status, "rank": rank.get(i),
                      "best": rank.get(i) == 1})  # ranked by (nats/char, trial order): best_trial's choice
    return table


def markdown_table(table: list[dict[str, Any]]) -> str:
    if not table:
        return ""
    columns = [c for c in table[0] if c != "best"]
    header = ["", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        cells = ["**best**" if row["best"] else ""] + [_cell(c, row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if column.endswith("per_char") else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def csv_text(table: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if table:
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in table)
    return buffer.getvalue()


def validation_curve(trial_dir: Path) -> list[tuple[float, float]]:
    """(training seconds, validation nats/char) at each validation of a trial, from its metrics.jsonl."""
    try:
        lines = (trial_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    points = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if row.get("val_bits_per_char") is not None:
            points.append((float(row["elapsed"]), float(row["val_bits_per_char"]) * math.log(2)))
    return points


def write_report(plan: SweepPlan, results: dict[str, dict[str, Any]]) -> str:
    """results.md, results.csv and validation_curves.png in the sweep's folder; the Markdown table."""
    table = rows(plan, results)
    best = best_trial(plan, results)
    text = markdown_table(table)
    intro = (f"Sweep: {plan.command or plan.output.name}\n\nValidation nats/char and bits/char: "
             f"`evaluate --split valid` of each trial's best weights; {plan.trial_time:g} s of training per trial.\n\n")
    atomic_write_text(plan.output / TABLE_FILE, intro + text + "\n")
    atomic_write_text(plan.output / CSV_FILE, csv_text(table))
    labels = {trial.name: " ".join([trial.name] + [f"{k.rpartition('.')[2]}={v}" for k, v in trial.settings.items()])
              for trial in plan.trials}
    curves = {labels[trial.name]: validation_curve(plan.trial_dir(trial)) for trial in plan.trials}
    plots.sweep_curves(curves, plan.output / CURVES_FILE, best=labels[best.name] if best else None,
                       title=f"sweep {plan.output.name}: validation")
    return text


def check_promote_target(target: Path, force: bool) -> None:
    """ConfigError (before anything runs) for a --promote folder that may not be written."""
    if target.exists() and not target.is_dir():
        raise ConfigError("--promote", str(target), "is a file, not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ConfigError("--promote", str(target), "is not empty; add --force to replace it")


def promote(trial_dir: Path, target: Path) -> None:
    """Copy a trial's model directory (without its resume state and sweep record) to `target`: written beside it,
    then swapped in whole, so `target` is never half a model."""
    staging = make_staging_dir(target)
    try:
        shutil.copytree(trial_dir, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(RESUME_DIR, RESULT_FILE, ".*.tmp"))
        replace_directory(staging, target, keep=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
