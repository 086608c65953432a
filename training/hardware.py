"""Device choice, mixed precision and a short description of the hardware for the training record."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Callable, ContextManager

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """cuda, then mps, then cpu for `auto`; an explicit device that is not there is a ValueError."""
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("mps") if has_mps else torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested, but torch sees no CUDA GPU (is a CUDA build of torch installed?)")
    if requested == "mps" and not has_mps:
        raise ValueError("device mps requested, but the MPS backend is not available")
    return torch.device("cuda", local_rank) if requested == "cuda" else torch.device(requested)


def autocast_factory(device: torch.device, precision: str) -> Callable[[], ContextManager]:
    """A no-argument factory of the autocast context for `precision` (fp32 = no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"training.precision fp16 needs a CUDA GPU (device is {device.type}); use bf16 or fp32")
    if device.type == "mps":
        raise ValueError("training.precision: mixed precision is not supported on mps here; use fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"{device.type}: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"
