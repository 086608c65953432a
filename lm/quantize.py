"""int8 inference for CPU serving: `lm.load(path, quantize="int8")`.

The linear layers (GPT: attention, MLP of any kind and output projection; LSTM: the LSTM layers, a Mogrifier's
gating matrices and the decoder) keep their weights as int8 with a scale per tensor, and each call quantizes its
input on the fly (PyTorch's dynamic quantization, run by fbgemm/oneDNN int8 kernels). Embeddings, LayerNorms and
QK-norm gains stay float32. A Mogrifier LSTM steps its int8 LSTM modules one token at a time.

Measured here (docs/benchmarks.md, "int8 inference"): within 0.1 % of float32 in bits per character; faster for
the LSTM and for a 6 x 384 GPT, slower for the shipped 6 x 192 GPT at batch 1. onnxruntime's int8 was faster still
for GPTs; this route is the one served because it keeps `lm` and the server on torch alone (no graph export at
start-up, no second runtime). A quantized model is for inference only: training, saving and exporting use the
float32 weights.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from lm import checks

if TYPE_CHECKING:
    import torch.nn as nn

# torch is imported where a model is quantized, so that the app's settings can check QUANTIZE without it
QUANTIZE_MODES = ("int8",)


def check_quantize(mode: str | None, name: str = "quantize") -> str | None:
    """`mode` if it is a known quantization (None = float32), else OptionError naming `name`."""
    return None if mode is None else checks.one_of(name, mode, QUANTIZE_MODES)


def quantize_model(model: nn.Module, mode: str) -> nn.Module:
    """Replace the model's linear and LSTM layers, in place, by int8 ones; returns the model, in eval mode."""
    import torch
    import torch.nn as nn
    from torch.ao.quantization import quantize_dynamic

    check_quantize(mode)
    weight = next(model.parameters())
    if weight.device.type != "cpu":
        raise ValueError("int8 quantization runs on the CPU only; load the model with device='cpu'")
    if weight.dtype != torch.float32:
        raise ValueError(f"int8 is made from float32 weights, not {weight.dtype}; load the model with "
                         "dtype='float32'")
    model.eval()
    with warnings.catch_warnings():
        # torch marks its eager quantization API as deprecated in favour of torchao, which did not run int8 kernels
        # against this torch here (docs/benchmarks.md); tests/lm/test_quantize.py holds this one to its figures
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(model, {nn.Linear, nn.LSTM}, dtype=torch.qint8, inplace=True)
    model.flat_decode = False  # the hand-written decode steps read float weights; go through the modules
    return model
