"""Device choice, mixed precision and a short description of the hardware for the training record.

`precision: auto` is decided by measurement, not by the CPU's name: on a CPU, lm.precision's matmul probe first
(bf16 emulated, far slower: fp32 at once), then a few timed training steps of the model itself in each
(training/step_trial.py): bf16 autocast only where the model trains faster in it. On CUDA: bf16 where the GPU supports it, else fp16
with a gradient scaler. MPS trains in fp32 (autocast there is not measured by this project).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch

from lm.precision import MatmulProbe, cpu_name, default_probe, rows_for, vector_extensions

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


# A forced low precision slower than fp32 by more than this earns a warning (timing noise stays below it).
SLOW_FACTOR = 0.8
# A matmul probe this much slower in bf16 than fp32 means bf16 is emulated (no native bf16: some 200x slower, an AVX2
# CPU); `auto` then takes fp32 without timing training steps.
EMULATED_FACTOR = 0.25


@dataclass(frozen=True)
class PrecisionChoice:
    """What `training.precision` resolved to on this device, and why."""

    precision: str  # fp32 | bf16 | fp16: what runs
    requested: str  # what the config asked for (auto, or a forced precision)
    reason: str  # one line for the log and the training record
    speedup: float | None = None  # measured speed of bf16 over fp32 (CPU): the model's step, else the matmul
    warning: str | None = None  # a forced precision measured slower than fp32

    @property
    def grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none."""
        return self.precision == "fp16"


def bf16_speedup(device: torch.device, width: int, probe: MatmulProbe | None = None) -> float:
    """bf16 autocast's matmul speed over fp32's at `width` on this CPU (the cached probe); below EMULATED_FACTOR
    bf16 is emulated and not worth timing further."""
    return (probe or default_probe()).speedup("bf16", width, rows_for(width), device, autocast=True)


def resolve_precision(requested: str, device: torch.device, width: int, probe: MatmulProbe | None = None,
                      cuda_bf16: bool | None = None, step_trial: Callable[[], float] | None = None) -> PrecisionChoice:
    """The precision to train in. `width`: the model's widest input dimension (the probe's matmul shape).
    `probe` and `cuda_bf16` (the GPU supports bf16) are measured here when not given. `step_trial`: bf16's
    training-step speed over fp32's for the model itself (training/step_trial.py); on a CPU, `auto` follows it
    unless the matmul probe already shows bf16 emulated (far slower), and follows the probe when it is not given."""
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"training.precision must be auto, fp32, bf16 or fp16, got {requested!r}")
    if requested == "fp16" and device.type != "cuda":
        raise ValueError(f"training.precision fp16 needs a CUDA GPU (device is {device.type}); use auto, bf16 or fp32")
    if device.type == "mps":
        if requested in ("auto", "fp32"):
            return PrecisionChoice("fp32", requested, "mps: fp32 (mixed precision on mps is not supported here)")
        raise ValueError("training.precision: mixed precision is not supported on mps here; use auto or fp32")
    if device.type == "cuda":
        if cuda_bf16 is None:
            cuda_bf16 = torch.cuda.is_bf16_supported()
        if requested != "auto":
            return PrecisionChoice(requested, requested, f"cuda: {requested} as configured")
        if cuda_bf16:
            return PrecisionChoice("bf16", requested, "cuda: bf16 autocast (the GPU supports bf16)")
        return PrecisionChoice("fp16", requested, "cuda: fp16 autocast with a gradient scaler (no bf16 on this GPU)")
    if requested == "fp32":
        return PrecisionChoice("fp32", requested, "cpu: fp32 as configured")
    speedup = bf16_speedup(device, width, probe)
    measured = f"bf16 autocast multiplies at {speedup:.2g}x the speed of fp32 at width {width} on this CPU"
    if requested == "bf16":
        warning = None
        if speedup < SLOW_FACTOR:
            warning = (f"warning: training.precision bf16 is {1 / speedup:.1f}x slower than fp32 on this CPU "
                       f"(measured); precision: auto would train in fp32")
        return PrecisionChoice("bf16", requested, f"cpu: bf16 as configured ({measured})", speedup, warning)
    if step_trial is not None and speedup >= EMULATED_FACTOR:
        step = step_trial()
        chosen = "bf16" if step > 1.0 else "fp32"
        return PrecisionChoice(chosen, requested, f"cpu: auto -> {chosen} (a training step of this model in bf16 "
                               f"autocast runs at {step:.2f}x the speed of fp32; {measured})", step)
    chosen = "bf16" if speedup > 1.0 else "fp32"
    return PrecisionChoice(chosen, requested, f"cpu: auto -> {chosen} ({measured})", speedup)


def autocast_factory(device: torch.device, precision: str) -> Callable[[], ContextManager]:
    """A no-argument factory of the autocast context for a resolved `precision` (fp32 = no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def peak_flops(device: torch.device, precision: str, probe: MatmulProbe | None = None) -> float:
    """This machine's measured matmul peak (FLOPs/s) in `precision`, the denominator of model FLOPs
    utilisation. A reduced precision that multiplies slower than fp32 (bf16 emulated on a CPU without AVX512-BF16 or
    AMX) is measured against fp32's peak: the machine could do that work at fp32's speed, and its own emulated
    "peak" would put utilisation far above 100%."""
    probe = probe or default_probe()
    peak = probe.peak_flops(precision, device, autocast=precision != "fp32")
    if precision == "fp32":
        return peak
    return max(peak, probe.peak_flops("fp32", device, autocast=False))


def describe(device: torch.device) -> str:
    """The hardware in one line, for the training record and the model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}"
    extensions = ", ".join(vector_extensions())
    chip = f"{cpu_name()} ({extensions})" if extensions else cpu_name()
    return (f"{device.type}: {chip}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}")
