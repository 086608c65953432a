"""Train a preset on TinyShakespeare for a fixed wall-clock budget; report validation loss and training speed.

    python bench/train_budget.py shakespeare-gpt-small --seconds 224 --data /path/to/tinyshakespeare.txt

The budget is the trainer's `max_time` (the learning-rate schedule anneals over it); the periodic validations
inside the run count against it, as they do in the nanoGPT CPU recipe this compares with (1.886 nats/char after
224 s on a 2-core machine). Afterwards the best weights are scored on the whole validation split (characters
[90%, 100%)) in non-overlapping windows of the training context, like nanoGPT's estimate, and, for the GPT, also
with the half-context stride `python -m training evaluate` uses. Losses are in nats per character of the
validation text (a BPE preset's nats per token times tokens / characters), so every preset compares with the
references: nanoGPT's recipe, and a character 8-gram with Kneser-Ney smoothing built from the training part
(1.526 nats/char, issue 12). Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lm.checkpoint import CONFIG_FILE, METRICS_FILE, load_model_dir  # noqa: E402
from training.cli import duration_argument  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data.corpus import load_corpus  # noqa: E402
from training.evaluation.metrics import TokenStats, bits_per_char  # noqa: E402
from training.trainer import RunOptions, train  # noqa: E402

NANOGPT_CPU_224S = 1.886  # nats/char, docs in /work/shared/data/README.md and docs/training.md
KNESER_NEY_8GRAM = 1.526  # nats/char: character 8-gram, interpolated Kneser-Ney, on the same split (issue 12)


def preset_path(preset: str) -> Path:
    path = Path(preset)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    return ROOT / "configs" / f"{preset}.yaml"


def validation_loss(model_dir: Path, valid_text: str, stride_fraction: float) -> tuple[float, int]:
    loaded = load_model_dir(model_dir, device="cpu")
    ids = loaded.tokenizer.encode_corpus(valid_text)
    stats = TokenStats(detailed=False)
    window = loaded.config["training"]["config"]["training"]["seq_len"]  # windowed families: the training context
    with torch.no_grad():
        loaded.family.score_text(loaded.model, ids, stats.update, "cpu", window=window,
                                 stride=max(1, int(window * stride_fraction)))
    return stats.loss, stats.count


def median_utilisation(model_dir: Path) -> float:
    """The median model FLOPs utilisation of the logged windows (the trainer's `mfu`, metrics.jsonl)."""
    rows = [json.loads(line) for line in (model_dir / METRICS_FILE).read_text().splitlines()]
    values = sorted(row["mfu"] for row in rows if row.get("mfu") is not None)
    return values[len(values) // 2] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", help="a name in configs/ (e.g. shakespeare-gpt-small) or a YAML path")
    parser.add_argument("--seconds", type=duration_argument, required=True,
                        help="wall-clock training budget: seconds or a duration (224, 90s, 30m, 1h30m)")
    parser.add_argument("--data", help="TinyShakespeare file (default: the preset's source, downloaded/cached)")
    parser.add_argument("--output", help="model directory to keep (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides = [*args.set, f"training.max_time={args.seconds}", "training.max_steps=1000000000"]
    config = load_config(preset_path(args.preset), overrides)
    corpus = load_corpus(config.data, args.data, seed=config.training.seed)
    with tempfile.TemporaryDirectory(prefix="train-budget-") as tmp:
        output = Path(args.output) if args.output else Path(tmp) / config.name
        started = time.perf_counter()
        result = train(config, RunOptions(output=output, data=args.data, progress=False,
                                          command="bench/train_budget.py"))
        wall = time.perf_counter() - started
        saved = json.loads((output / CONFIG_FILE).read_text())
        record = saved["training"]
        chars = corpus.characters("valid")
        loss, tokens = validation_loss(output, corpus.text("valid"), 1.0)
        figures = {
            "preset": config.name,
            "budget_s": args.seconds,
            "train_elapsed_s": round(record["wall_time_s"], 1),
            "wall_s_including_setup": round(wall, 1),
            "steps": result.steps,
            "tokens_per_second": round(record["tokens_seen"] / record["wall_time_s"]),
            "parameters": saved["parameters"],
            "val_loss_per_token": round(loss, 4),
            "val_nats_per_char": round(loss * tokens / chars, 4),
            "val_bits_per_char": round(bits_per_char(loss, tokens, chars), 4),
            "valid_characters": chars,
            "hardware": record["hardware"],
            "precision": record["precision"]["used"],
            "mfu": round(median_utilisation(output), 4),
        }
        if result.steps:  # (a family that reads one stream gives the same figure at any stride)
            half_stride, tokens = validation_loss(output, corpus.text("valid"), 0.5)
            figures["val_nats_per_char_half_stride"] = round(half_stride * tokens / chars, 4)
    command = "python bench/train_budget.py " + shlex.join(sys.argv[1:])
    print(f"{figures['preset']}: {figures['steps']} steps in {figures['train_elapsed_s']} s "
          f"({figures['tokens_per_second']:,} training tokens/s, {figures['parameters']:,} parameters, "
          f"{figures['precision']}, model FLOPs utilisation {figures['mfu']:.0%})")
    nats = figures["val_nats_per_char"]
    print(f"validation: {nats:.4f} nats/char = {figures['val_bits_per_char']:.4f} bits/char over "
          f"{figures['valid_characters']:,} characters")
    for name, reference in (("nanoGPT CPU recipe at 224 s", NANOGPT_CPU_224S),
                            ("character 8-gram, Kneser-Ney", KNESER_NEY_8GRAM)):
        print(f"  {name}: {reference} nats/char ({'beaten' if nats < reference else 'not beaten'})")
    if "val_nats_per_char_half_stride" in figures:
        print(f"validation with half-context stride (as `evaluate`): "
              f"{figures['val_nats_per_char_half_stride']:.4f} nats/char")
    print(f"hardware: {figures['hardware']}")
    print(f"command: {command}")
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "command": command}, indent=2) + "\n")
    return 0 if math.isfinite(nats) else 1


if __name__ == "__main__":
    sys.exit(main())
