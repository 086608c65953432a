"""How large a GPT `--auto` should train on a text in a budget: shapes of its ladder, each given to `--auto` (which
sizes everything else around it: dropout by the passes it plans, learning rate by the width, the schedule), and
`--auto`'s own choice, one run after another at the same `--max-time` on one corpus; validation nats/char beside the
passes over the text and the tokens per parameter each run planned.

    python bench/auto_sizes.py --corpus tiny --budget 2m --scratch $SCRATCH
    python bench/auto_sizes.py --corpus shakespeare --budget 2m --shapes 3x96 4x128 4x192

The size rule of training/auto/rules.py (TOKENS_PER_PARAMETER, MANY_PASSES, PARAMETERS_PER_TRAIN_TOKEN) was fitted
on runs like these; their figures are in bench/measurements/auto-sizes.md. The corpora are bench/auto.py's. Not a
test: the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from auto import CORPORA, corpus_file, describe_corpus, run  # noqa: E402  (bench/auto.py)
from training.auto.rules import GPT_LADDER  # noqa: E402
from training.cli import duration_argument  # noqa: E402

SHAPES = {f"{layers}x{width}": (layers, width, heads) for layers, width, heads in GPT_LADDER}
DEFAULT_SHAPES = ("2x64", "3x96", "4x128", "4x192", "6x192")


def planned(auto_lines: list[str]) -> dict:
    """The passes and tokens per parameter `--auto` planned, from its `auto:` lines."""
    text = "\n".join(auto_lines)
    passes = re.search(r"regularisation: ([\d.]+) passes", text)
    per_parameter = re.search(r"= ([\d.]+) per parameter", text)
    steps = re.search(r"~([\d,]+) steps", text)
    return {"planned_passes": float(passes.group(1)) if passes else None,
            "planned_tokens_per_parameter": float(per_parameter.group(1)) if per_parameter else None,
            "planned_steps": int(steps.group(1).replace(",", "")) if steps else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=CORPORA, default="tiny")
    parser.add_argument("--budget", type=duration_argument, default=120.0, help="wall time per run (default 2m)")
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(DEFAULT_SHAPES),
                        help="GPT shapes (layers x width) to give --auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--code-chars", type=int, default=2_000_000, help="size of the code corpus")
    parser.add_argument("--scratch", help="folder for the assembled corpora and the runs (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="auto-sizes-"))
    scratch.mkdir(parents=True, exist_ok=True)
    path = corpus_file(args.corpus, scratch, args.code_chars)
    about = describe_corpus(path)
    print(f"{args.corpus}: {about}", flush=True)
    base = ["--data", str(path), "--auto", "--max-time", str(args.budget)]
    jobs = [("auto", base)]
    for name in args.shapes:
        layers, width, heads = SHAPES[name]
        jobs.append((name, [*base, "--set", f"model.n_layer={layers}", "--set", f"model.n_embd={width}",
                            "--set", f"model.n_head={heads}"]))
    results = []
    for label, job_args in jobs:  # one at a time: every run gets the same machine
        result = {"run": label, **run(label, job_args, scratch / "sizes" / args.corpus / label, args.threads)}
        result.update(planned(result.get("auto", [])))
        results.append(result)
        print(json.dumps(result), flush=True)

    best = min((r for r in results if "nats_per_char" in r), key=lambda r: r["nats_per_char"], default=None)
    print("\n| run | model | planned passes | planned tokens/parameter | steps (planned) | nats/char | bits/char |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        if "nats_per_char" not in r:
            print(f"| {r['run']} | failed: {r.get('error')} | | | | | |")
            continue
        mark = "**" if r is best else ""
        print(f"| {r['run']} | {r['model']}, {r['parameters'] / 1e6:.2f}M | {r['planned_passes']} | "
              f"{r['planned_tokens_per_parameter']} | {r['steps']:,} ({r['planned_steps']:,}) | "
              f"{mark}{r['nats_per_char']:.4f}{mark} | {r['bits_per_char']:.4f} |")
    print(f"\ncorpus: {about}")
    print("command: python bench/auto_sizes.py " + shlex.join(sys.argv[1:]))
    if args.json:
        Path(args.json).write_text(json.dumps({"corpus": about, "budget_s": args.budget, "results": results},
                                              indent=2) + "\n")
    return 0 if all("nats_per_char" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
