"""`train --auto`: a config sized from the text, this device's measured speed and the time budget.

- survey.py: what the text is like (size, a trial BPE's packing, alphabet, repetition), from a bounded sample;
- speed.py: how fast this device trains candidate shapes (timed steps, cached);
- rules.py: the pure rules from those figures and the budget to the config (tests give them numbers).

Here they are put together: the keys the user's config (and `--set`) gives stay as given, `--auto` fills the rest,
and everything it spent looking (reading the sample, the trial tokenizer, the timed steps) comes out of the budget,
so the run's schedule ends at it. The resolved config is written as OUTPUT/resolved.yaml.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lm.atomic import atomic_write_text
from training.auto.rules import AutoError, Plan, check_budget, plan_run
from training.config import Config, config_from_dict, data_config_from
from training.hardware import describe, pick_device

__all__ = ["AutoError", "AutoChoice", "configure", "RESOLVED_FILE"]

RESOLVED_FILE = "resolved.yaml"
MEASURE_SHARE, MEASURE_MIN_S = 0.04, 3.0  # of the budget spent timing shapes (at least 3 s; cached shapes are free)
# Set-up the trainer does before its clock starts: learning the tokenizer and encoding the text (BPE: 2-4 MB/s on
# this project's 2-core CPU, docs/training.md), reserved from the budget.
SETUP_S, SETUP_CHARS_PER_S = 2.0, 2_000_000


@dataclass
class AutoChoice:
    config: Config
    plan: Plan
    budget_s: float
    train_s: float
    looked_s: float  # the time spent looking, from `started`


def fill_missing(given: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """`chosen`'s keys where `given` has none, section by section; `given`'s own keys are kept as they are."""
    merged = copy.deepcopy(chosen)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **copy.deepcopy(value)}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def configure(given: dict[str, Any], data: str | None, budget_s: float, device: str, output: Path,
              started: float, source: str = "--auto", log: Callable[[str], None] = print) -> AutoChoice:
    """Measure, decide and validate. `given`: the raw config the user gave (a preset with --set applied, or {});
    `started`: time.perf_counter() when the command began, the budget's start."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise AutoError("--auto measures with one process: run it once without torchrun (a short --max-time will do), "
                        "then torchrun ... train --config OUTPUT/resolved.yaml")
    check_budget(budget_s)  # before the survey: a budget too short fails at once
    from training.auto.speed import SpeedMeter
    from training.auto.survey import survey
    from training.data.corpus import load_corpus

    threads = (given.get("training") or {}).get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    data_config = data_config_from(given.get("data"), source)
    if data is not None:
        data_config.source = data
    corpus = load_corpus(data_config, data)
    stats = survey(corpus)
    target = pick_device(device)
    measure_limit = max(MEASURE_MIN_S, MEASURE_SHARE * budget_s)
    reserve = SETUP_S + stats.train_chars / SETUP_CHARS_PER_S
    planned_s = budget_s - (time.perf_counter() - started) - measure_limit - reserve
    plan = plan_run(stats, budget_s, planned_s, SpeedMeter(target, measure_limit), given, target.type,
                    corpus.source)
    looked = time.perf_counter() - started
    train_s = budget_s - looked - reserve
    plan.raw["training"]["max_time"] = round(train_s, 1)  # what is left now: at least what was planned
    plan.raw["name"] = given.get("name") or output.name
    plan.raw["description"] = given.get("description") or f"--auto's choice for {Path(corpus.source).name}"
    if data is not None:
        plan.raw["data"]["source"] = data
    merged = fill_missing(given, plan.raw)
    merged["training"]["max_time"] = plan.raw["training"]["max_time"]  # the budget decides, not a preset's default
    config = config_from_dict(merged, source)
    for line in plan.reasons:
        log(f"auto: {line}")
    log(f"auto: looked for {looked:.1f}s (text, trial tokenizer, timed steps on {describe(target)}); training gets "
        f"{train_s:.0f}s of the {budget_s:g}s budget, {reserve:.0f}s kept for the tokenizer and encoding")
    return AutoChoice(config, plan, budget_s, train_s, looked)


def write_resolved(choice: AutoChoice, output: Path) -> Path:
    """OUTPUT/resolved.yaml: the whole config as chosen, with why, so `--config` repeats the run without --auto."""
    output.mkdir(parents=True, exist_ok=True)
    header = ["# Chosen by `python -m training train --auto` (training/auto/): the keys the given config or --set",
              "# named are as given; the rest was sized from the text, this machine's measured speed and a",
              f"# {choice.budget_s:g}s budget ({choice.looked_s:.1f}s of it spent looking). Why:"]
    header += [f"#   {line}" for line in choice.plan.reasons]
    header.append(f"# Repeat the run: python -m training train --config {output.name}/{RESOLVED_FILE} "
                  f"--output {output.name}")
    path = output / RESOLVED_FILE
    atomic_write_text(path, "\n".join(header) + "\n" + choice.config.to_yaml())
    return path
