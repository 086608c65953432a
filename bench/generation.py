"""Decode speed of the generation engine: batch-1 and batch-8 tokens/s and peak memory per model, next to a
full-recompute baseline (the whole sequence re-run for every new token, as simple demo apps do).

    python bench/generation.py                      # every model directory in models/
    python bench/generation.py models/shakespeare-gpt --tokens 256
    python bench/generation.py --preset configs/shakespeare-gpt.yaml   # random weights, same shapes

Each model is measured in a fresh subprocess so that its peak resident memory is its own; each figure is the
median of --repeat interleaved runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
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


def measure_one(model_dir: str, tokens: int, threads: int, repeat: int) -> dict:
    import statistics

    import torch

    from lm import load

    torch.set_num_threads(threads)
    generator = load(model_dir)
    runs = {"batch1": [], "batch8": [], "full": []}
    for _ in range(repeat):  # interleaved, so a noisy spell on a shared machine hits every figure alike
        runs["batch1"].append(_engine_tokens_per_second(generator, tokens, 1))
        runs["batch8"].append(_engine_tokens_per_second(generator, tokens, 8))
        runs["full"].append(_full_recompute_tokens_per_second(generator, tokens))
    figures = {
        "model": generator.name,
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
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="*", help="model directories (default: every one in models/)")
    parser.add_argument("--preset", action="append", default=[], help="YAML preset: measure random weights")
    parser.add_argument("--tokens", type=int, default=256, help="new tokens per generation (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; the median is reported (default 5)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print(json.dumps(measure_one(args.one, args.tokens, args.threads, args.repeat)))
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
        rows = []
        for d in dirs:
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(d), "--tokens", str(args.tokens), "--threads", str(args.threads),
                 "--repeat", str(args.repeat)],
                capture_output=True, text=True,
            )
            if child.returncode:
                print(f"bench/generation.py: {d}: {child.stderr.strip().splitlines()[-1]}", file=sys.stderr)
                return 1
            rows.append(json.loads(child.stdout))

    print(f"command: python {shlex.join(['bench/generation.py'] + sys.argv[1:])}")
    print(f"machine: {platform.machine()}, {args.threads} torch threads, python {platform.python_version()}; "
          f"medians of {args.repeat} runs")
    header = f"{'model':<22}{'type':<6}{'params':>9}{'batch1 tok/s':>14}{'batch8 tok/s':>14}{'full-recompute':>16}"
    header += f"{'speedup':>9}{'b8/b1':>7}{'peak RSS':>10}"
    print(header)
    for r in rows:
        print(
            f"{r['model']:<22}{r['type']:<6}{r['parameters'] / 1e6:>8.2f}M{r['batch1_tokens_per_s']:>14.1f}"
            f"{r['batch8_tokens_per_s']:>14.1f}{r['full_recompute_tokens_per_s']:>16.1f}"
            f"{r['speedup_vs_full_recompute']:>8.1f}x{r['batch8_over_batch1']:>6.1f}x{r['peak_rss_mib']:>7.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
