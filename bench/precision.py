"""Training speed of the shipped presets in each precision on this machine: fp32, bf16 autocast, and `auto`.

    python bench/precision.py --data /path/to/tinyshakespeare.txt             # both presets, 2 torch threads
    python bench/precision.py shakespeare-gpt --steps 40 --threads 1
    python bench/precision.py --precisions fp32,auto      # where bf16 is emulated (no AMX/AVX512-BF16): 100x slower

Each (preset, precision) is a real `python -m training train` run of a few dozen steps in its own process; the
figures are the median training tokens/s and model FLOPs utilisation (the trainer's `mfu`: achieved training FLOPs/s
over this machine's measured matmul peak in that precision) of its logged windows after the first. Runs alternate
between precisions and repeat, so a machine that gets busier slows them alike. Also prints what `auto` picked and
the matmul probe's bf16 / fp32 ratio at the model's width. Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lm.checkpoint import CONFIG_FILE, METRICS_FILE  # noqa: E402
from lm.precision import cpu_name, vector_extensions  # noqa: E402

PRESETS = ("shakespeare-gpt", "shakespeare-lstm")
PRECISIONS = ("fp32", "bf16", "auto")


def one_run(preset: str, precision: str, steps: int, threads: int, data: str | None, output: Path) -> dict:
    command = [sys.executable, "-m", "training", "train", "--config", str(ROOT / "configs" / f"{preset}.yaml"),
               "--output", str(output), "--max-steps", str(steps), "--threads", str(threads), "--quiet",
               "--set", f"training.precision={precision}", "--set", "training.log_interval=5",
               "--set", "training.eval_interval=1000000", "--set", "training.eval_batches=1"]
    if data:
        command += ["--data", data]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"{preset} {precision}: training failed: {done.stderr.strip().splitlines()[-1]}")
    rows = [json.loads(line) for line in (output / METRICS_FILE).read_text().splitlines()]
    windows = [row for row in rows if row.get("tokens_per_second")][1:]  # the first window warms up
    record = json.loads((output / CONFIG_FILE).read_text())["training"]
    return {
        "tokens_per_second": statistics.median(row["tokens_per_second"] for row in windows),
        "mfu": statistics.median(row["mfu"] for row in windows),
        "used": record["precision"]["used"],
        "reason": record["precision"]["reason"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*", default=list(PRESETS), help="presets in configs/ (default: both)")
    parser.add_argument("--data", help="TinyShakespeare file (default: the preset's source, downloaded/cached)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (default 40)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per (preset, precision), interleaved")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help="comma-separated, from fp32, bf16, auto (default all; fp32 first: the ratios' base)")
    args = parser.parse_args()
    precisions = [name.strip() for name in args.precisions.split(",") if name.strip()]
    if not precisions or precisions[0] != "fp32" or not set(precisions) <= set(PRECISIONS):
        parser.error(f"--precisions: fp32 first, then any of {', '.join(PRECISIONS[1:])}")

    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        for turn in range(args.repeat):
            for preset in args.presets:
                for precision in precisions:
                    run = one_run(preset, precision, args.steps, args.threads, args.data,
                                  Path(tmp) / f"{preset}-{precision}-{turn}")
                    results.setdefault((preset, precision), []).append(run)
                    print(f"  {preset} {precision}: {run['tokens_per_second']:,.0f} tokens/s, "
                          f"utilisation {run['mfu']:.1%}", file=sys.stderr)

    print(f"CPU: {cpu_name()} ({', '.join(vector_extensions()) or 'no vector flags read'}), "
          f"{args.threads} torch threads, {args.steps} steps per run, medians of {args.repeat}")
    print("| preset | precision | ran as | training tokens/s | x fp32 | model FLOPs utilisation |")
    print("| --- | --- | --- | --- | --- | --- |")
    for preset in args.presets:
        fp32 = statistics.median(r["tokens_per_second"] for r in results[(preset, "fp32")])
        for precision in precisions:
            runs = results[(preset, precision)]
            speed = statistics.median(r["tokens_per_second"] for r in runs)
            mfu = statistics.median(r["mfu"] for r in runs)
            print(f"| {preset} | {precision} | {runs[-1]['used']} | {speed:,.0f} | {speed / fp32:.2f}x | {mfu:.1%} |")
        if "auto" in precisions:
            print(f"auto on {preset}: {results[(preset, 'auto')][-1]['reason']}")
    print("command: python bench/precision.py " + shlex.join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
