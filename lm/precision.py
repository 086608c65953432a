"""How fast this machine multiplies matrices in each precision, measured rather than assumed.

bf16 is 3x faster than fp32 on a Xeon with AMX and some 200x slower on a CPU without native bf16 (AVX2 only), where
PyTorch emulates it. Names cannot tell the two apart, so precision choices (the trainer's `precision: auto`,
`lm.load`'s weight dtype) ask `MatmulProbe`: it times one matrix product of the shape that matters in each
precision (well under a second) and remembers the answer per machine, thread count and torch version in the
user's cache directory (`$SCRIPTORIUM_CACHE`, default `~/.cache/scriptorium`), never in the repository.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lm.cache import cache_dir, read_measurements, record_measurements

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CACHE_FILE = "matmul-probe.json"

# One timed product costs about this many FLOPs: ~1 ms in fp32 on a 2-core CPU, so even a precision that is 200x
# slower (emulated bf16) keeps the whole probe well under a second.
_PROBE_FLOPS = 1e8
_REPEATS = 10
_TOTAL_BOX = 0.5  # seconds: the whole comparison stops after this, however busy the machine
_TIME_BOX = 0.25  # seconds: stop repeating a slow precision once one product took this long
_PEAK_WIDTH = 1024
_STABLE = 1.25  # two rounds of a probe within this factor of each other are cached


def cpu_name() -> str:
    """The CPU's marketing name, e.g. 'Intel(R) Xeon(R) Processor' or 'AMD EPYC 7B13'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_fp16", "avx512_fp16")


def vector_extensions() -> list[str]:
    """The CPU's vector extensions that decide matmul speed per precision (x86 Linux; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [flag for flag in _VECTOR_FLAGS if flag in flags]


def machine_key(device: torch.device) -> str:
    """What a measurement depends on besides the shape: the chip, the thread count and torch's build."""
    if device.type == "cuda":
        chip = torch.cuda.get_device_name(device)
    else:
        chip = f"{cpu_name()} [{' '.join(vector_extensions())}] x{torch.get_num_threads()} threads"
    return f"{device.type}|{chip}|torch {torch.__version__}"


def _product(precision: str, width: int, rows: int, device: torch.device, autocast: bool) -> Callable[[], object]:
    """A (rows x width) @ (width x 4 width) product, the shape of a model's widest layer, in `precision`.

    `autocast`: inputs in fp32 under torch.autocast (what training does); otherwise the operands are stored in
    the precision itself (what inference with half-precision weights does).
    """
    dtype = DTYPES[precision]
    x = torch.randn(rows, width, device=device)
    w = torch.randn(width, 4 * width, device=device)
    if precision != "fp32" and autocast:
        def run() -> object:
            with torch.autocast(device_type=device.type, dtype=dtype):
                return x @ w
        return run
    x, w = x.to(dtype), w.to(dtype)
    return lambda: x @ w


def measure_flops(precisions: Sequence[str], width: int, rows: int, device: torch.device,
                  autocast: bool) -> dict[str, float]:
    """FLOPs per second of each precision at this shape, timed in turns so that a machine busy with other work
    slows them alike; the fastest of a few turns counts, and a precision whose one product takes longer than
    `_TIME_BOX` is not repeated."""
    runs = {p: _product(p, width, rows, device, autocast) for p in precisions}
    best = {p: float("inf") for p in precisions}
    started = time.perf_counter()
    with torch.inference_mode():
        for turn in range(_REPEATS + 1):  # the first turn warms up and still counts for a slow precision
            if turn > 2 and time.perf_counter() - started > _TOTAL_BOX:
                break
            for precision, run in runs.items():
                if turn > 0 and best[precision] > _TIME_BOX:
                    continue
                start = time.perf_counter()
                run()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best[precision] = min(best[precision], time.perf_counter() - start)
    return {p: 2.0 * rows * width * 4 * width / max(seconds, 1e-9) for p, seconds in best.items()}


def rows_for(width: int) -> int:
    """Rows that make one product cost about `_PROBE_FLOPS` (at least 16)."""
    return max(16, int(_PROBE_FLOPS / (2 * width * 4 * width)))


class MatmulProbe:
    """Measured matmul speed, cached per machine in `path` (a JSON file). `measure` is replaceable for tests.

    Each figure is measured in two rounds and written to the cache only when they agree (within 25%); on a machine
    busy with other work they do not, and the next process measures again rather than keep a bad decision.
    """

    def __init__(self, path: Path | None = None,
                 measure: Callable[..., dict[str, float]] = measure_flops) -> None:
        self.path = Path(path) if path is not None else cache_dir() / CACHE_FILE
        self.measure = measure
        self._memory: dict[str, float] = {}

    def flops(self, precision: str, width: int, rows: int, device: torch.device | str = "cpu",
              autocast: bool = True) -> float:
        """FLOPs/s of `precision` at this shape on `device`, measured once and then read from the cache."""
        device = _check(precision, device)
        return self._cached(precision, device, autocast, f"{width}x{rows}",
                            lambda wanted: self.measure(wanted, width, rows, device, autocast))

    def speedup(self, precision: str, width: int, rows: int, device: torch.device | str = "cpu",
                autocast: bool = True) -> float:
        """How many times faster than fp32 `precision` multiplies at this shape (below 1: slower)."""
        candidate = self.flops(precision, width, rows, device, autocast)  # measures fp32 beside it
        return candidate / max(self.flops("fp32", width, rows, device, autocast), 1e-9)

    def peak_flops(self, precision: str, device: torch.device | str = "cpu", autocast: bool = True) -> float:
        """The machine's matmul peak in `precision`: a 1024-wide product sized to take about 50 ms."""
        device = _check(precision, device)

        def measure(wanted: list[str]) -> dict[str, float]:
            rate = self.flops(precision, _PEAK_WIDTH, rows_for(_PEAK_WIDTH), device, autocast)
            rows = int(min(max(0.05 * rate / (8 * _PEAK_WIDTH**2), 16), 1024))
            return self.measure(wanted, _PEAK_WIDTH, rows, device, autocast)

        return self._cached(precision, device, autocast, "peak", measure)

    def _cached(self, precision: str, device: torch.device, autocast: bool, shape: str,
                measure: Callable[[list[str]], dict[str, float]]) -> float:
        """A figure from memory or the cache file, else measured; fp32 and the asked precision are measured
        together (in turns) so the two compare under the same load."""
        def key(p: str) -> str:
            mode = "autocast" if autocast and p != "fp32" else "native"
            return f"{machine_key(device)}|{p}|{mode}|{shape}"

        if key(precision) not in self._memory:
            stored = read_measurements(self.path).get(key(precision))
            if isinstance(stored, (int, float)) and stored > 0:
                self._memory[key(precision)] = float(stored)
            else:
                wanted = sorted({"fp32", precision}, key=PRECISIONS.index)
                first, second = measure(wanted), measure(wanted)
                for p in wanted:
                    self._memory[key(p)] = float(max(first[p], second[p]))
                # two rounds that disagree mean a busy machine: use the figures now, measure again next time
                if all(max(first[p], second[p]) <= _STABLE * min(first[p], second[p]) for p in wanted):
                    record_measurements(self.path, {key(p): self._memory[key(p)] for p in wanted})
        return self._memory[key(precision)]


_default_probe: MatmulProbe | None = None


def default_probe() -> MatmulProbe:
    """The process-wide probe over the user's cache."""
    global _default_probe
    if _default_probe is None or _default_probe.path != cache_dir() / CACHE_FILE:
        _default_probe = MatmulProbe()
    return _default_probe


def _check(precision: str, device: torch.device | str) -> torch.device:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.device(device)
