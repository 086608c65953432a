"""The models this process serves: every model directory under MODEL_DIR, loaded once at start-up, each with its
scheduler (lm/scheduler.py), which batches every generation of that model in this process.

A directory that cannot be loaded is skipped with its full reason logged and kept in `failures` (shown by /models
and /health, naming the model and the kind of problem, never a path of this machine), so one broken model never
takes the others down. With no usable model at all, `NoUsableModelError`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask, current_app

import lm
from lm.paths import without_paths

log = logging.getLogger(__name__)

EXTENSION = "scriptorium.models"


class NoUsableModelError(RuntimeError):
    """Not a single model could be loaded; the message says where the app looked and what to do."""


@dataclass(frozen=True)
class LoadFailure:
    name: str
    reason: str  # public: the kind of problem, files named relative to MODEL_DIR (the log has the full message)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "error": self.reason}


def _bits_per_char(generator: Any) -> float | None:
    metrics = (generator.config or {}).get("metrics") or {}
    value = metrics.get("val_bits_per_char") if isinstance(metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _public_reason(error: Exception, root: Path) -> str:
    """What /models and /health say about a model that failed to load: for a CheckpointError (a ValueError whose
    one line names the file and the problem), that line with files named relative to MODEL_DIR and any other path
    cut to its name; for anything else, only the kind of error."""
    if not isinstance(error, ValueError):
        return f"{type(error).__name__} while loading (see the server log)"
    return without_paths(_first_line(error).replace(f"{root.resolve()}{os.sep}", "").replace(f"{root}{os.sep}", ""))


class ModelRegistry:
    """Loaded generators by name, the load failures, and which model answers when a request names none."""

    def __init__(self, generators: dict[str, Any], failures: list[LoadFailure], default_name: str) -> None:
        self.generators = dict(sorted(generators.items()))
        self.failures = list(failures)
        self.default_name = default_name

    @classmethod
    def from_directory(
        cls,
        model_dir: str | Path,
        default_model: str | None = None,
        loader: Callable[[Path], Any] | None = None,
    ) -> ModelRegistry:
        loader = loader or partial(lm.load, device="cpu")
        root = Path(model_dir)
        if not root.is_dir():
            raise NoUsableModelError(
                f"no model directory at {root} (set MODEL_DIR, or train the shipped models with `make train`)"
            )
        generators: dict[str, Any] = {}
        failures: list[LoadFailure] = []
        # Hidden entries are skipped: they include checkpoint.save_model_dir's half-written staging folders.
        for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            try:
                generators[path.name] = loader(path)
            except Exception as error:  # noqa: BLE001 - any failure of one model must not stop the others
                log.warning("skipping model %s: %s", path, _first_line(error))
                failures.append(LoadFailure(path.name, _public_reason(error, root)))
        if not generators:
            detail = (
                "; ".join(f"{f.name}: {f.reason}" for f in failures) or "the folder has no model directories"
            )
            raise NoUsableModelError(f"no usable model in {root} ({detail})")
        return cls(generators, failures, cls._choose_default(generators, default_model))

    @staticmethod
    def _choose_default(generators: dict[str, Any], requested: str | None) -> str:
        if requested:
            if requested in generators:
                return requested
            log.warning(
                "DEFAULT_MODEL=%s is not a loaded model (%s); choosing one", requested, ", ".join(generators)
            )
        # The best model by validation bits per character, when the trainer recorded it; else the first
        # by name.
        scored = [(bpc, name) for name, g in generators.items() if (bpc := _bits_per_char(g)) is not None]
        return min(scored)[1] if scored else sorted(generators)[0]

    @property
    def names(self) -> list[str]:
        return list(self.generators)

    def get(self, name: str | None = None) -> Any:
        """The generator called `name` (the default when None); KeyError when there is none."""
        return self.generators[self.default_name if name is None else name]

    def load(self) -> tuple[int, int]:
        """(requests generating, requests waiting) in this process, over every model."""
        loads = [generator.scheduler.load for generator in self.generators.values()]
        return sum(load.requests for load in loads), sum(load.queued for load in loads)

    def close(self) -> None:
        """Stop every model's scheduler (at shutdown): what is still waiting or running gets SchedulerClosed."""
        for generator in self.generators.values():
            generator.close()

    def describe(self, name: str) -> dict[str, Any]:
        generator = self.generators[name]
        tokenizer = generator.tokenizer
        return {
            "name": name,
            "type": generator.model_type,
            "parameters": generator.num_parameters,
            "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
            "context_length": generator.context_length,
            "quantization": getattr(generator, "quantize", None),
            "metrics": (generator.config or {}).get("metrics") or {},
            "default": name == self.default_name,
        }


def get_registry() -> ModelRegistry:
    return current_app.extensions[EXTENSION]


def close_models(app: Flask) -> None:
    """At shutdown: end each model's scheduler between two steps (what still runs gets an error)."""
    registry = app.extensions.get(EXTENSION)
    if registry is not None:
        registry.close()


def scheduler_limits(config: Mapping[str, Any]) -> lm.SchedulerLimits:
    return lm.SchedulerLimits(max_batch_size=config["MAX_BATCH_SIZE"], max_queued=config["MAX_QUEUED_REQUESTS"],
                              max_wait=config["QUEUE_TIMEOUT"])


def init_app(app: Flask) -> None:
    loader = partial(lm.load, device="cpu", quantize=app.config["QUANTIZE"], limits=scheduler_limits(app.config))
    app.extensions[EXTENSION] = ModelRegistry.from_directory(
        app.config["MODEL_DIR"], app.config["DEFAULT_MODEL"], loader
    )
