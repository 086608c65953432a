"""The trainer's resume state in `<output>/resume/`: tensors in safetensors, everything else in JSON (the
`TrainState` and the state of the sampler, schedule and optimizer).

Written to a staging directory and swapped in with lm.atomic.replace_directory, so a crash at any instant leaves
either the previous complete state or the new one. Nothing is unpickled on load.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lm.atomic import make_staging_dir, replace_directory
from lm.checkpoint import RESUME_DIR
TENSORS, STATE = "state.safetensors", "state.json"


@dataclass
class TrainState:
    """How far a run has got: the numbers `--resume` restores, saved in state.json beside the tensors (weights,
    optimizer, generators) and the components' own state (sampler, schedule, NT-ASGD)."""

    step: int = 0
    elapsed: float = 0.0  # seconds of training, over every session of the run
    tokens_seen: int = 0
    best_val_loss: float = math.inf
    best_step: int = 0
    val_history: list[float] = field(default_factory=list)
    bad_evals: int = 0  # evaluations since the best one (early stopping's patience)
    last_lr: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, meta: dict[str, Any], default_lr: float | None = None) -> TrainState:
        """The state from a state.json (whose other keys belong to other components)."""
        return cls(
            step=int(meta["step"]),
            elapsed=float(meta["elapsed"]),
            tokens_seen=int(meta["tokens_seen"]),
            best_val_loss=float(meta["best_val_loss"]),
            best_step=int(meta["best_step"]),
            val_history=[float(v) for v in meta["val_history"]],
            bad_evals=int(meta["bad_evals"]),
            last_lr=meta.get("last_lr") or default_lr,
        )

def resume_dir(output: Path) -> Path:
    return Path(output) / RESUME_DIR


def exists(output: Path) -> bool:
    d = resume_dir(output)
    return (d / TENSORS).is_file() and (d / STATE).is_file()


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Python, numpy and torch generators (tensors for torch's, JSON for the rest)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    meta = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save(output: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], extra_files: dict[str, str]) -> None:
    """Atomically replace `<output>/resume/` with these tensors, this JSON state and these text files."""
    target = resume_dir(output)
    staging = make_staging_dir(target)
    try:
        # safetensors wants contiguous tensors that share no memory (tied weights are two names for one tensor)
        owned = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
        save_file(owned, str(staging / TENSORS))
        (staging / STATE).write_text(json.dumps(meta), encoding="utf-8")
        for name, text in extra_files.items():
            (staging / name).write_text(text, encoding="utf-8")
        replace_directory(staging, target, keep=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load(output: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    d = resume_dir(output)
    try:
        tensors = load_file(str(d / TENSORS), device="cpu")
        meta = json.loads((d / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{d}: cannot read the resume state ({exc}); start again without --resume") from None
    except Exception as exc:  # safetensors raises its own error type on a damaged file
        raise ValueError(f"{d / TENSORS}: damaged resume state ({exc}); start again without --resume") from None
    return tensors, meta


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors saved under `prefix.` with the prefix removed (a model's state_dict, say)."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
