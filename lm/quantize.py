"""int8 inference for CPU serving: `lm.load(path, quantize="int8")`.

The linear layers (GPT: attention, MLP and output projection; LSTM: the LSTM layers and the decoder) keep their
weights as int8 with a scale per tensor, and each call quantizes its input on the fly (PyTorch's dynamic
quantization, run by fbgemm/oneDNN int8 kernels). Embeddings and LayerNorms stay float32. It is the route that
measured best here among those tried (docs/benchmarks.md: PyTorch dynamic quantization, torchao's int8 configs,
onnxruntime's dynamic int8): it needs nothing beyond torch, and it pays off for larger models only; at the
shipped models' sizes it is slower than float32 at batch 1 (the figures are in docs/benchmarks.md).

A quantized model is for inference only: training, saving and exporting use the float32 weights.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

QUANTIZE_MODES = ("int8",)


def check_quantize(mode: str | None) -> str | None:
    """`mode` if it is a known quantization (None = float32), else ValueError."""
    if mode is not None and mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)} (or None for float32), got {mode!r}")
    return mode


def quantize_model(model: nn.Module, mode: str) -> nn.Module:
    """Replace the model's linear and LSTM layers, in place, by int8 ones; returns the model, in eval mode."""
    check_quantize(mode)
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 quantization runs on the CPU only; load the model with device='cpu'")
    from torch.ao.quantization import quantize_dynamic

    model.eval()
    with warnings.catch_warnings():
        # torch marks its eager quantization API as deprecated in favour of torchao, whose int8 path was several
        # times slower here (docs/benchmarks.md); the tests hold this one to its figures
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(model, {nn.Linear, nn.LSTM}, dtype=torch.qint8, inplace=True)
    model.flat_decode = False  # the hand-written decode steps read float weights; go through the modules
    return model
