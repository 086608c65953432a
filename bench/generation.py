"""Decode speed of the generation engine: batch-1 and batch-8 tokens/s and peak memory per model, next to a
full-recompute baseline (the whole sequence re-run for every new token, as simple demo apps do).

    python bench/generation.py                      # every model directory in models/
    python bench/generation.py models/shakespeare-gpt --tokens 256
    python bench/generation.py --preset configs/shakespeare-gpt.yaml   # random weights, same shapes
    python bench/generation.py --quantize none,int8 --backend torch,onnxruntime   # every combination
    python bench/generation.py --against ../other-checkout --threads 1   # this tree's engine against another's

Each model and variant is measured in a fresh subprocess so that its memory is its own: the resident set after
the runs (RSS, what serving keeps) and its peak. Each figure is the median of --repeat interleaved runs.
`--backend onnxruntime` exports the model to ONNX first (in this process, so the export's memory is not counted)
and decodes with the same engine and sampling code through `training.export.onnx.OnnxModel`; with `--quantize
int8` it uses onnxruntime's dynamic int8 quantization of that graph, with torch it uses `lm.quantize`.
With --against, each run alternates between this tree's engine and the other checkout's (its own
bench/generation.py, on the same model directories and variants), so that a noisy spell on a shared machine hits
both alike, and the table adds the median of the paired ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "ROMEO:\nWhat light through yonder window breaks?\n"


def _random_model_dir(preset: Path, out: Path) -> Path:
    """A model directory with the preset's architecture and random weights (a char vocabulary of 65)."""
    import yaml

    from lm import save_model_dir, train_tokenizer
    from lm.models import build_model

    spec = dict(yaml.safe_load(preset.read_text())["model"])
    model_type = spec.pop("type")
    alphabet = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    tokenizer = train_tokenizer("char", alphabet)
    spec["vocab_size"] = tokenizer.vocab_size
    target = out / preset.stem
    save_model_dir(target, build_model(model_type, spec), tokenizer)
    return target


def _full_recompute_tokens_per_second(generator, tokens: int) -> float:
    """Greedy decoding that re-runs the whole (context-cropped) sequence for every token, with no state."""
    import torch

    ids = generator.tokenizer.encode(PROMPT)
    context = generator.context_length
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(tokens):
            window = ids if context is None else ids[-context:]
            logits = generator.model(torch.tensor([window])).logits[0, -1]
            ids.append(int(logits.argmax()))
    return tokens / (time.perf_counter() - start)


def _engine_tokens_per_second(generator, tokens: int, batch: int) -> float:
    generator.generate(PROMPT, max_new_tokens=8, num_return_sequences=batch, seed=0)  # warm-up
    result = generator.generate(PROMPT, max_new_tokens=tokens, num_return_sequences=batch, seed=0,
                                temperature=0.8, stop_at_eos=False)
    produced = sum(len(choice.tokens) for choice in result.choices)
    return produced / result.elapsed


def _onnx_file(model_dir: Path, quantize: str | None, out: Path) -> Path:
    """The model's ONNX graph (int8: onnxruntime's dynamic quantization of it), written under `out`."""
    from lm.checkpoint import load_model_dir
    from training.export.onnx import write_onnx

    folder = out / f"{model_dir.name}-onnx"
    if not (folder / "model.onnx").is_file():
        folder.mkdir(parents=True)
        write_onnx(load_model_dir(model_dir, dtype="float32"), folder, model_dir.name)
    if quantize is None:
        return folder / "model.onnx"
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / "model-int8.onnx"
    quantize_dynamic(str(folder / "model.onnx"), str(target), weight_type=QuantType.QInt8)
    return target


def _generator(model_dir: str, backend: str, quantize: str | None, onnx_file: str | None, threads: int):
    from lm import load

    if backend == "torch":
        return load(model_dir, quantize=quantize)
    from lm.checkpoint import load_model_dir
    from lm.generation import Generator
    from training.export.onnx import OnnxModel

    loaded = load_model_dir(model_dir, dtype="float32")
    loaded.model = OnnxModel(onnx_file, loaded, threads=threads)
    return Generator(loaded)


def measure_one(model_dir: str, tokens: int, threads: int, repeat: int, backend: str = "torch",
                quantize: str | None = None, onnx_file: str | None = None) -> dict:
    import statistics

    import torch

    torch.set_num_threads(threads)
    generator = _generator(model_dir, backend, quantize, onnx_file, threads)
    runs = {"batch1": [], "batch8": [], "full": []}
    for _ in range(repeat):  # interleaved, so a noisy spell on a shared machine hits every figure alike
        runs["batch1"].append(_engine_tokens_per_second(generator, tokens, 1))
        runs["batch8"].append(_engine_tokens_per_second(generator, tokens, 8))
        runs["full"].append(_full_recompute_tokens_per_second(generator, tokens))
    figures = {
        "model": generator.name,
        "backend": backend,
        "quantize": quantize or "none",
        "type": generator.model_type,
        "parameters": generator.num_parameters,
        "tokens": tokens,
        "repeat": repeat,
        "batch1_tokens_per_s": statistics.median(runs["batch1"]),
        "batch8_tokens_per_s": statistics.median(runs["batch8"]),
        "full_recompute_tokens_per_s": statistics.median(runs["full"]),
    }
    figures["speedup_vs_full_recompute"] = figures["batch1_tokens_per_s"] / figures["full_recompute_tokens_per_s"]
    figures["batch8_over_batch1"] = figures["batch8_tokens_per_s"] / figures["batch1_tokens_per_s"]
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["rss_mib"] = _resident_mib()  # now, after loading (and quantizing): what serving keeps
    return figures


def _resident_mib() -> float:
    import gc

    gc.collect()
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # not Linux: the peak is all there is
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="*", help="model directories (default: every one in models/)")
    parser.add_argument("--preset", action="append", default=[], help="YAML preset: measure random weights")
    parser.add_argument("--tokens", type=int, default=256, help="new tokens per generation (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the median is reported (default 5)")
    parser.add_argument("--quantize", default="none",
                        help="comma-separated: none (float32), int8; each is measured (default none)")
    parser.add_argument("--backend", default="torch",
                        help="comma-separated: torch, onnxruntime; each is measured (default torch)")
    parser.add_argument("--against", type=Path, help="another checkout whose engine to measure in the same run")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--onnx-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    quantizations = [None if q == "none" else q for q in args.quantize.split(",")]
    backends = args.backend.split(",")
    for q in quantizations:
        if q not in (None, "int8"):
            parser.error(f"--quantize: expected none or int8, got {q!r}")
    for b in backends:
        if b not in ("torch", "onnxruntime"):
            parser.error(f"--backend: expected torch or onnxruntime, got {b!r}")

    if args.one:
        print(json.dumps(measure_one(args.one, args.tokens, args.threads, args.repeat, backends[0],
                                     quantizations[0], args.onnx_file)))
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        dirs = [Path(d) for d in args.model_dirs]
        dirs += [_random_model_dir(Path(p), Path(scratch)) for p in args.preset]
        if not dirs:
            from lm.checkpoint import CONFIG_FILE

            dirs = sorted(p for p in (ROOT / "models").iterdir() if (p / CONFIG_FILE).is_file())
        if not dirs:
            presets = [ROOT / "configs/shakespeare-gpt.yaml", ROOT / "configs/shakespeare-lstm.yaml"]
            dirs = [_random_model_dir(p, Path(scratch)) for p in presets if p.is_file()]
        if not dirs:
            print("bench/generation.py: no model directories and no presets found", file=sys.stderr)
            return 1
        rows, against = [], []
        for d in dirs:
            for backend in backends:
                for q in quantizations:
                    extra = ["--backend", backend, "--quantize", q or "none"]
                    if backend == "onnxruntime":
                        extra += ["--onnx-file", str(_onnx_file(d, q, Path(scratch)))]
                    if args.against is None:
                        rows.append(_measure(ROOT, d.resolve(), args.tokens, args.threads, args.repeat, extra))
                        continue
                    runs = [(_measure(ROOT, d.resolve(), args.tokens, args.threads, 1, extra),
                             _measure(args.against.resolve(), d.resolve(), args.tokens, args.threads, 1, extra))
                            for _ in range(args.repeat)]
                    rows.append(_medians([mine for mine, _ in runs]))
                    against.append((_medians([theirs for _, theirs in runs]), runs))

    print(f"command: python {shlex.join(['bench/generation.py'] + sys.argv[1:])}")
    print(f"machine: {platform.machine()}, {args.threads} torch threads, python {platform.python_version()}; "
          f"medians of {args.repeat} runs")
    header = f"{'model':<22}{'type':<6}{'backend':<12}{'weights':<8}{'params':>9}{'batch1 tok/s':>14}"
    header += f"{'batch8 tok/s':>14}{'full-recompute':>16}{'speedup':>9}{'b8/b1':>7}{'RSS':>9}{'peak RSS':>10}"
    print(header)
    for r in rows:
        weights = "int8" if r["quantize"] == "int8" else "fp32"
        print(
            f"{r['model']:<22}{r['type']:<6}{r['backend']:<12}{weights:<8}{r['parameters'] / 1e6:>8.2f}M"
            f"{r['batch1_tokens_per_s']:>14.1f}"
            f"{r['batch8_tokens_per_s']:>14.1f}{r['full_recompute_tokens_per_s']:>16.1f}"
            f"{r['speedup_vs_full_recompute']:>8.1f}x{r['batch8_over_batch1']:>6.1f}x{r['rss_mib']:>5.0f} MiB"
            f"{r['peak_rss_mib']:>6.0f} MiB"
        )
    for (theirs, runs), mine in zip(against, rows):
        ratios = {key: statistics.median(m[key] / t[key] for m, t in runs)
                  for key in ("batch1_tokens_per_s", "batch8_tokens_per_s")}
        print(f"{mine['model']} ({mine['backend']}, {mine['quantize']}): {args.against}: batch 1 "
              f"{theirs['batch1_tokens_per_s']:.1f} tok/s, batch 8 {theirs['batch8_tokens_per_s']:.1f} tok/s; "
              f"this tree / that one, median of {len(runs)} paired runs: "
              f"batch 1 {ratios['batch1_tokens_per_s']:.3f}, batch 8 {ratios['batch8_tokens_per_s']:.3f}")
    return 0


def _measure(tree: Path, model_dir: Path, tokens: int, threads: int, repeat: int, extra: list[str]) -> dict:
    """One model and variant (`extra`: --backend, --quantize...) measured by `tree`'s bench/generation.py, in a
    fresh process."""
    child = subprocess.run(
        [sys.executable, str(tree / "bench" / "generation.py"), "--one", str(model_dir), "--tokens", str(tokens),
         "--threads", str(threads), "--repeat", str(repeat), *extra],
        capture_output=True, text=True, cwd=tree,
    )
    if child.returncode:
        sys.exit(f"bench/generation.py: {model_dir}: {child.stderr.strip().splitlines()[-1]}")
    return json.loads(child.stdout)


def _medians(runs: list[dict]) -> dict:
    """The figures of several runs of one model: medians, and the ratios recomputed from them."""
    figures = dict(runs[0])
    for key in ("batch1_tokens_per_s", "batch8_tokens_per_s", "full_recompute_tokens_per_s", "peak_rss_mib",
                "rss_mib"):
        figures[key] = statistics.median(run[key] for run in runs)
    figures["repeat"] = len(runs)
    figures["speedup_vs_full_recompute"] = figures["batch1_tokens_per_s"] / figures["full_recompute_tokens_per_s"]
    figures["batch8_over_batch1"] = figures["batch8_tokens_per_s"] / figures["batch1_tokens_per_s"]
    return figures


if __name__ == "__main__":
    sys.exit(main())
