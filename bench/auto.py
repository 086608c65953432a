"""`train --auto` against the hand-tuned presets, run unchanged, on corpora of different nature and size, at equal
wall time, all in one run; validation nats/char and bits/char on each corpus's held-out last 10%.

    python bench/auto.py --budget 2m --jobs 2 --threads 1 --scratch $SCRATCH
    python bench/auto.py --budget 5m --corpora shakespeare wikitext2 --json auto.json
    python bench/auto.py --corpora-only --scratch $SCRATCH     # just write the assembled corpora

Corpora (the shared ones read where they are; the two assembled ones written to --scratch, never the repository):
- `shakespeare`: ../shared/data/tinyshakespeare.txt (1.1 MB, 65 characters);
- `wikitext2`: ../shared/data/wikitext-2/valid.txt (1.1 MB of tokenized Wikipedia: `@-@`, `<unk>`, headings);
- `code`: the `.py` files of a fixed list of packages in this Python environment's site-packages (CODE_PACKAGES),
  in sorted path order, joined by line breaks, cut at a line break after --code-chars characters (default 2M);
- `tiny`: the descriptions in the `*.dist-info/METADATA` files of the same site-packages (package READMEs:
  prose, Markdown, reStructuredText), in sorted order, cut at a line break after 90,000 characters.
The assembled corpora depend on the installed package versions (requirements*.txt pin their ranges); the script
prints each corpus's size and SHA-256 so a rerun can tell whether it read the same text.

Each run is `python -m training train` in its own process with `--max-time BUDGET` (and `--threads`): `--auto`,
and each preset of PRESETS with `--config` and `--data`, nothing else changed. A preset's `--max-time` bounds its
training loop (its tokenizer and encoding come before); `--auto`'s budget also pays for looking at the text and
timing shapes, so the comparison gives the presets the edge; each run's whole wall time is reported beside it. Then
`evaluate --split valid` (the project's own figures: every token of the last 10% scored with context) gives
nats/char. Not a test: the figures depend on the machine and its load, printed with them.
"""

from __future__ import annotations

import argparse
import email
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.cli import duration_argument  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
PRESETS = ("shakespeare-gpt-small", "shakespeare-gpt", "shakespeare-lstm")
CODE_PACKAGES = ("flask", "werkzeug", "jinja2", "click", "itsdangerous", "blinker", "httpx", "h11", "anyio",
                 "yaml", "tqdm", "gunicorn")
TINY_CHARS = 90_000
CORPORA = ("shakespeare", "wikitext2", "code", "tiny")


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _joined_until(texts, limit: int) -> str:
    """The texts joined by line breaks, cut at the last line break before `limit` characters."""
    parts, size = [], 0
    for text in texts:
        parts.append(text)
        size += len(text) + 1
        if size >= limit:
            break
    joined = "\n".join(parts)
    return joined[: joined.rfind("\n", 0, limit) + 1] if len(joined) > limit else joined


def code_texts():
    site = _site_packages()
    for package in CODE_PACKAGES:
        for path in sorted((site / package).rglob("*.py")):
            yield path.read_text(encoding="utf-8", errors="replace")


def tiny_texts():
    for path in sorted(_site_packages().glob("*.dist-info/METADATA")):
        body = email.message_from_string(path.read_text(encoding="utf-8", errors="replace")).get_payload()
        if isinstance(body, str) and body.strip():
            yield body.strip()


def corpus_file(name: str, scratch: Path, code_chars: int) -> Path:
    if name == "shakespeare":
        return SHARED / "tinyshakespeare.txt"
    if name == "wikitext2":
        return SHARED / "wikitext-2" / "valid.txt"
    path = scratch / f"{name}.txt"
    text = _joined_until(code_texts(), code_chars) if name == "code" else _joined_until(tiny_texts(), TINY_CHARS)
    path.write_text(text, encoding="utf-8")
    return path


def describe_corpus(path: Path) -> dict:
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    return {"file": path.name, "characters": len(text), "distinct": len(set(text)),
            "sha256": hashlib.sha256(data).hexdigest()[:16]}


def run(label: str, args: list[str], out: Path, threads: int) -> dict:
    """One training run and its evaluation on the held-out last 10%."""
    command = [sys.executable, "-m", "training", "train", *args, "--output", str(out), "--threads", str(threads),
               "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    result = {"run": label, "wall_s": round(wall, 1), "returncode": done.returncode,
              "auto": [line[6:] for line in done.stderr.splitlines() if line.startswith("auto: ")]}
    if done.returncode != 0:
        result["error"] = done.stderr.strip().splitlines()[-1:] or ["?"]
        return result
    data = args[args.index("--data") + 1]
    figures = out / "evaluation-valid.json"
    evaluated = subprocess.run([sys.executable, "-m", "training", "evaluate", str(out), "--data", data, "--split",
                                "valid", "--no-baselines", "--samples", "1", "--output", str(figures)],
                               cwd=ROOT, env=env, capture_output=True, text=True)
    if evaluated.returncode != 0:
        result["error"] = evaluated.stderr.strip().splitlines()[-1:] or ["?"]
        return result
    saved = json.loads((out / "config.json").read_text())
    bits = json.loads(figures.read_text())["bits_per_char"]
    model = saved["training"]["config"]["model"]
    data_cfg = saved["training"]["config"]["data"]
    shape = (f"GPT {model['n_layer']}x{model['n_embd']}" if model["type"] == "gpt"
             else f"LSTM {model['n_layers']}x{model['hidden_size']}")
    result.update(steps=saved["training"]["steps"], stop=saved["training"].get("stop_reason"),
                  train_s=saved["training"]["wall_time_s"], parameters=saved.get("parameters"),
                  model=f"{shape}, {data_cfg['tokenizer']}{data_cfg.get('vocab_size') or ''}",
                  precision=saved["training"]["precision"]["used"],
                  bits_per_char=round(bits, 4), nats_per_char=round(bits * math.log(2), 4))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=duration_argument, default=120.0, help="wall time per run (default 2m)")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), help="presets in configs/ to compare with")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default 1; 2 runs pairs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--code-chars", type=int, default=2_000_000, help="size of the code corpus")
    parser.add_argument("--scratch", help="folder for the assembled corpora and the runs (default: a temporary one)")
    parser.add_argument("--corpora-only", action="store_true", help="write the assembled corpora and stop")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="auto-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    corpora = {name: corpus_file(name, scratch, args.code_chars) for name in args.corpora}
    described = {name: describe_corpus(path) for name, path in corpora.items()}
    for name, about in described.items():
        print(f"{name}: {about}", flush=True)
    if args.corpora_only:
        return 0
    from training.hardware import describe
    import torch

    torch.set_num_threads(args.threads)  # the runs' own thread count, which `describe` names below
    load_before = os.getloadavg()
    jobs = []
    for name, path in corpora.items():
        jobs.append((name, "auto", ["--data", str(path), "--auto", "--max-time", str(args.budget)]))
        for preset in args.presets:
            jobs.append((name, preset, ["--config", str(ROOT / "configs" / f"{preset}.yaml"), "--data", str(path),
                                        "--max-time", str(args.budget)]))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [(name, pool.submit(run, label, job_args, scratch / "runs" / name / label, args.threads))
                   for name, label, job_args in jobs]
        results = []
        for name, future in futures:
            result = {"corpus": name, **future.result()}
            results.append(result)
            print(json.dumps(result), flush=True)
    load_after = os.getloadavg()

    print(f"\n| corpus | run | model | steps | training s / wall s | nats/char | bits/char | auto against it |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in corpora:
        rows = [r for r in results if r["corpus"] == name]
        auto = next((r for r in rows if r["run"] == "auto" and "nats_per_char" in r), None)
        for r in rows:
            if "nats_per_char" not in r:
                print(f"| {name} | {r['run']} | failed: {r.get('error')} | | | | | |")
                continue
            versus = "" if r["run"] == "auto" or auto is None else \
                f"{(auto['nats_per_char'] - r['nats_per_char']) / r['nats_per_char']:+.1%}"
            print(f"| {name} | {r['run']} | {r['model']} | {r['steps']:,} | {r['train_s']:.0f} / {r['wall_s']:.0f} "
                  f"| {r['nats_per_char']:.4f} | {r['bits_per_char']:.4f} | {versus} |")
    machine = describe(torch.device("cpu"))
    print(f"\nmachine: {machine}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print("command: python bench/auto.py " + shlex.join(sys.argv[1:]))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "machine": machine, "budget_s": args.budget,
                                               "corpora": described,
                                               "load": [load_before[0], load_after[0]]}, indent=2) + "\n")
    return 0 if all("nats_per_char" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
