"""The model directory: `config.json`, `model.safetensors` and `tokenizer.json` (plus optional card, metrics, plots).

Loading never unpickles: weights are safetensors, everything else JSON. Every problem with a directory is a
`CheckpointError` whose one-line message names the file and what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lm.atomic import make_staging_dir, replace_directory
from lm.models import MODEL_TYPES, Family, config_from_dict, family_of
from lm.precision import MatmulProbe, default_probe
from lm.tokenizers import Tokenizer

FORMAT = "scriptorium-model"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"
# What the trainer, `evaluate` and `card` add beside them (save_model_dir keeps these when it replaces a directory).
CARD_FILE = "card.md"
EVALUATIONS_DIR = "evaluations"  # evaluate's results, one file per data set and split: <source>-<split>.json
EVALUATION_FILE = "evaluation.json"  # the one result file of model directories evaluated before EVALUATIONS_DIR
BASELINES_FILE = "baselines.json"  # evaluate's cache of the baseline ladder
METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "training_curve.png"
TRAIN_CONFIG_FILE = "train_config.yaml"
RESUME_DIR = "resume"
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class CheckpointError(ValueError):
    """A model directory that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedModel:
    path: Path
    model: nn.Module
    tokenizer: Tokenizer
    config: dict[str, Any]

    @property
    def model_type(self) -> str:
        return self.config["model_type"]

    @property
    def family(self) -> Family:
        return MODEL_TYPES[self.model_type]


def _state_for_saving(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    # Tied weights are one tensor under two names; safetensors refuses shared storage, so store it once.
    seen: dict[int, str] = {}
    tensors = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in seen:
            continue
        seen[key] = name
        tensor = tensor.detach().to("cpu")
        tensors[name] = (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous()
    return tensors


def save_model_dir(
    path: str | os.PathLike,
    model: nn.Module,
    tokenizer: Tokenizer,
    metadata: dict[str, Any] | None = None,
    dtype: str = "float32",
) -> Path:
    """Write a complete model directory at `path`, atomically.

    `metadata` keys (e.g. "training", "metrics", "name") go into config.json beside the model's own fields.
    Files already in `path` that this function does not write (card, metrics, plots, the resume folder) are kept.
    """
    dtype = _DTYPE_ALIASES.get(dtype, dtype)
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(WEIGHT_DTYPES)} (or fp32/fp16/bf16), got {dtype!r}")
    model_type = family_of(model).name
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"model vocab_size {model.config.vocab_size} does not match the tokenizer's {tokenizer.vocab_size}"
        )
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": model_type,
        "model": dataclasses.asdict(model.config),
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
        "weights_dtype": dtype,
        "parameters": model.num_parameters(),
        **(metadata or {}),
    }
    path = Path(path)
    staging = make_staging_dir(path)
    try:
        save_file(_state_for_saving(model, WEIGHT_DTYPES[dtype]), str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        (staging / TOKENIZER_FILE).write_text(tokenizer.to_str(), encoding="utf-8")
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        replace_directory(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """config.json of a model directory, checked for the fields every reader relies on."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a model directory (it does not exist or is not a folder)")
    file = path / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (every model directory needs config.json)")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: not valid JSON ({exc}); the file may be truncated") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not a Scriptorium model config (format is {config.get('format')!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{file}: format_version {config['format_version']} is newer than this code supports")
    if config.get("model_type") not in MODEL_TYPES:
        raise CheckpointError(f"{file}: model_type must be one of {', '.join(MODEL_TYPES)}, got {config.get('model_type')!r}")
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{file}: 'model' must be an object of hyperparameters")
    return config


def evaluations(path: str | os.PathLike, max_bytes: int | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Every evaluation recorded in a model directory, oldest file first: evaluations/*.json, then the older
    evaluation.json; a file that is not a JSON object (or is larger than `max_bytes`) is left out."""
    path = Path(path)
    files = sorted((path / EVALUATIONS_DIR).glob("*.json"), key=lambda f: (f.stat().st_mtime, f.name))
    found = []
    for file in files + [path / EVALUATION_FILE]:
        try:
            if max_bytes is not None and file.stat().st_size > max_bytes:
                continue
            result = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(result, dict):
            found.append((file, result))
    return found


def own_evaluation(path: str | os.PathLike, max_bytes: int | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The figures of the model on its own validation text, as `evaluate` recorded them (the latest), or the older
    evaluation.json of a directory evaluated before results were kept per data set; None if neither is there."""
    found = evaluations(path, max_bytes)
    own = [(file, result) for file, result in found if result.get("own_validation")]
    legacy = [(file, result) for file, result in found if file.name == EVALUATION_FILE]
    return (own or legacy or [None])[-1]


# Inference compute dtypes by name; "auto" decides from the stored dtype and a measurement (`compute_dtype`).
COMPUTE_DTYPES = ("auto", *WEIGHT_DTYPES)
_PROBE_PRECISION = {"bfloat16": "bf16", "float16": "fp16"}
_DECODE_ROWS = 8  # a decode step multiplies a few rows (one per sequence) by each weight matrix


def compute_dtype(stored: str, requested: str, device: torch.device, width: int,
                  probe: MatmulProbe | None = None) -> torch.dtype:
    """The dtype a loaded model computes in.

    `auto`: float32 weights stay float32 (no precision is given away). Weights stored as float16 or bfloat16 stay
    in that dtype only where the matmul probe measures it faster than float32 for a decode step's product on this
    device (a GPU, a CPU with AMX); elsewhere they are upcast to float32, because a CPU without native half
    precision emulates it tens of times slower. Any other `requested` name is used as it is.
    """
    if requested not in COMPUTE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {requested!r}")
    if requested != "auto":
        return WEIGHT_DTYPES[requested]
    if stored not in _PROBE_PRECISION:
        return torch.float32
    probe = probe or default_probe()
    faster = probe.speedup(_PROBE_PRECISION[stored], width, _DECODE_ROWS, device, autocast=False) > 1.0
    return WEIGHT_DTYPES[stored] if faster else torch.float32


def load_model_dir(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: str = "auto",
                   probe: MatmulProbe | None = None) -> LoadedModel:
    """Load a model directory for inference (eval mode, on `device`, computing in the dtype `compute_dtype`
    chooses; `probe` replaces the machine's measured matmul speeds, for tests)."""
    path = Path(path)
    config = read_config(path)
    try:
        model_config = config_from_dict(config["model_type"], config["model"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: {exc}") from None
    tokenizer_file = path / TOKENIZER_FILE
    if not tokenizer_file.is_file():
        raise CheckpointError(f"{tokenizer_file}: missing")
    try:
        tokenizer = Tokenizer.from_file(tokenizer_file)
    except Exception as exc:  # tokenizers raises plain Exception subclasses for malformed JSON
        raise CheckpointError(f"{tokenizer_file}: cannot be read ({str(exc).splitlines()[0]})") from None
    if tokenizer.vocab_size != model_config.vocab_size:
        raise CheckpointError(
            f"{tokenizer_file}: vocabulary of {tokenizer.vocab_size} tokens does not match the model's "
            f"vocab_size {model_config.vocab_size} in config.json"
        )
    weights_file = path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise CheckpointError(f"{weights_file}: missing")
    try:
        tensors = load_file(str(weights_file), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_file}: unreadable ({str(exc).splitlines()[0]}); the file may be truncated") from None
    model = MODEL_TYPES[config["model_type"]].build(model_config)
    _load_weights(model, tensors, weights_file)
    device = torch.device(device)
    stored = config.get("weights_dtype", "float32")
    model.to(device=device, dtype=compute_dtype(stored, dtype, device, model.width, probe)).eval()
    return LoadedModel(path=path, model=model, tokenizer=tokenizer, config=config)


def _load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], weights_file: Path) -> None:
    expected = model.state_dict()
    # a tied weight is stored under one of its names; fill in the other
    aliases = {}
    by_ptr: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        by_ptr.setdefault(tensor.data_ptr(), []).append(name)
    for names in by_ptr.values():
        for name in names:
            aliases[name] = names
    missing = []
    for name, tensor in expected.items():
        stored = next((tensors[n] for n in aliases[name] if n in tensors), None)
        if stored is None:
            missing.append(name)
            continue
        if stored.shape != tensor.shape:
            raise CheckpointError(
                f"{weights_file}: tensor {name} has shape {tuple(stored.shape)}, config.json implies {tuple(tensor.shape)}"
            )
        with torch.no_grad():
            tensor.copy_(stored.to(tensor.dtype))
    if missing:
        raise CheckpointError(f"{weights_file}: missing tensors {', '.join(missing[:5])} (does not match config.json)")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise CheckpointError(f"{weights_file}: unexpected tensors {', '.join(unexpected[:5])} (does not match config.json)")
