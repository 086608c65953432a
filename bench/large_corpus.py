"""Preparing a corpus larger than memory: peak resident memory and speed, then how fast a run starts from the cache.

    python bench/large_corpus.py build --megabytes 1000 --out /tmp/corpus-1000mb.txt
    python bench/large_corpus.py prepare /tmp/corpus-1000mb.txt --tokenizer char
    python bench/large_corpus.py prepare /tmp/corpus-1000mb.txt --tokenizer bpe --vocab-size 512

`build` writes a text file of the given size from text already on the machine: the shared corpora
(../shared/data: TinyShakespeare, then the WikiText-2 validation text), then every `.py` file under the Python
environment's site-packages in sorted path order, the whole sequence repeated until the size is reached and cut
there at a line break. Keep it in /tmp, never in the repository.

`prepare` does, in a fresh process with an empty cache (a temporary `$SCRIPTORIUM_CACHE`), what `train` does before
its first step: hash the file, learn the tokenizer (from its bounded sample), count and cut the parts (90/10), encode
the train and valid parts into the token cache. It reports the wall time, the megabytes of text per second and the
peak resident memory of that process. Then, with the cache now full, it times what a second run and `evaluate`
do before their first step: the same preparation (cache hits), and the validation part's ids for evaluation. Not a
test: the figures depend on the machine and on what else runs on it (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"


def source_files() -> list[Path]:
    shared = [SHARED / "tinyshakespeare.txt", SHARED / "wikitext-2" / "valid.txt"]
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    return [p for p in shared if p.is_file()] + sorted(site.rglob("*.py"))


def build(megabytes: float, out: Path) -> None:
    target = int(megabytes * 1e6)
    files = source_files()
    written = 0
    with open(out, "wb") as f:
        while written < target:
            for path in files:
                data = path.read_bytes()
                if written + len(data) >= target:
                    cut = data.rfind(b"\n", 0, target - written) + 1
                    data = data[:cut] if cut > 0 else data[: target - written]
                f.write(data)
                written += len(data)
                if written >= target:
                    break
    print(f"{out}: {written:,} bytes from {len(files):,} files")


def prepare(path: Path, tokenizer: str, vocab_size: int | None, sample: int,
            apart: bool = False) -> tuple[dict, object]:
    """What `train` does with the data before its first step; the seconds each stage took."""
    from training.config import DataConfig
    from training.data.corpus import load_corpus
    from training.data.token_cache import encode_part, encode_parts
    from training.data.tokenizer_training import learn_tokenizer

    times, start = {}, time.perf_counter()
    config = DataConfig(source=str(path), split=[0.9, 0.1], tokenizer=tokenizer, vocab_size=vocab_size,
                        tokenizer_sample=sample)
    corpus = load_corpus(config)
    times["hash"] = time.perf_counter() - start
    tok = learn_tokenizer(corpus.part("train"), config, log=print)
    times["tokenizer (and counting)"] = time.perf_counter() - start - sum(times.values())
    if apart:  # as before the trainer encoded its parts together: the valid part reads through the train part's text
        ids = {split: len(encode_part(corpus.part(split), tok)) for split in ("train", "valid")}
    else:  # as the trainer does: both parts in one pass over the text
        ids = dict(zip(("train", "valid"), map(len, encode_parts([corpus.part("train"), corpus.part("valid")], tok))))
    times["encode train and valid"] = time.perf_counter() - start - sum(times.values())
    figures = {"seconds": time.perf_counter() - start, "stages": times, "tokens": ids,
               "characters": {s: corpus.characters(s) for s in ("train", "valid")}}
    return figures, tok


def evaluation_start(path: Path, tokenizer) -> float:
    """Seconds `evaluate --split valid` takes to have its ids (a model trained on `path`, its tokenizer)."""
    from training.data.token_cache import encode_part
    from training.evaluation.evaluate import evaluation_part

    recorded = {"training": {"config": {"data": {"split": [0.9, 0.1, 0.0], "cleaner": "default"}}}}
    start = time.perf_counter()
    part, _ = evaluation_part(recorded, str(path), "valid")
    encode_part(part, tokenizer)
    return time.perf_counter() - start


def child(args: argparse.Namespace) -> None:
    """One measured run in this process; prints a JSON line."""
    result, tokenizer = prepare(Path(args.path), args.tokenizer, args.vocab_size, args.sample, args.apart)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    if args.second:
        result["evaluation_start_s"] = evaluation_start(Path(args.path), tokenizer)
    print("RESULT " + json.dumps(result))


def measure(args: argparse.Namespace) -> None:
    size = Path(args.path).stat().st_size
    print(f"{args.path}: {size / 1e6:,.0f} MB, tokenizer {args.tokenizer}"
          f"{f' {args.vocab_size}' if args.vocab_size else ''}; load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="large-corpus-cache-") as cache:
        env = {**os.environ, "SCRIPTORIUM_CACHE": cache}
        runs = []
        for second in (False, True):
            command = [sys.executable, __file__, "child", args.path, "--tokenizer", args.tokenizer,
                       "--sample", str(args.sample)] + (["--vocab-size", str(args.vocab_size)] if args.vocab_size
                                                        else []) + (["--second"] if second else []) + (
                ["--apart"] if args.apart else [])
            started = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(done.stderr)
            result = json.loads(done.stdout.split("RESULT ", 1)[1])
            result["process_seconds"] = time.perf_counter() - started
            runs.append(result)
            print("\n".join(line for line in done.stdout.splitlines() if not line.startswith("RESULT")))
        train_seconds = time_one_step(args, env, Path(cache), args.path)
        small = SHARED / "tinyshakespeare.txt"
        baseline_seconds = time_one_step(args, env, Path(cache), str(small)) if small.is_file() else float("nan")
    first, again = runs
    print(f"first run (empty cache): {first['seconds']:.1f} s in the pipeline ({first['process_seconds']:.1f} s with "
          f"Python's start), {size / 1e6 / first['seconds']:.1f} MB/s, peak resident memory "
          f"{first['peak_rss_mb']:,.0f} MB; {first['cpu_seconds']:.1f} CPU-seconds "
          f"({size / 1e6 / first['cpu_seconds']:.1f} MB per CPU-second); stages: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in first["stages"].items()))
    print(f"second run (cache full): {again['seconds']:.1f} s, peak {again['peak_rss_mb']:,.0f} MB; evaluate's ids "
          f"in {again['evaluation_start_s']:.1f} s")
    print(f"`train --max-steps 1` on it from the cache: {train_seconds:.1f} s from the command to its end (imports, "
          f"data, model, one step, one validation batch, the saved model directory); the same on TinyShakespeare "
          f"(1 MB, first run): {baseline_seconds:.1f} s")
    print(f"tokens: {first['tokens']}; characters: {first['characters']}; load average after: {os.getloadavg()}")


def time_one_step(args: argparse.Namespace, env: dict, cache: Path, data: str) -> float:
    """Seconds a whole `python -m training train` run of one step takes on `data`."""
    tokenizer = ["--set", f"data.tokenizer={args.tokenizer}"] + (
        ["--set", f"data.vocab_size={args.vocab_size}"] if args.vocab_size else [])
    preset = ROOT / "configs" / "shakespeare-gpt-small.yaml"
    command = [sys.executable, "-m", "training", "train", "--config", str(preset),
               "--data", data, "--output", str(cache / "model"), "--max-steps", "1", "--quiet",
               "--set", f"data.tokenizer_sample={args.sample}", "--set", "training.eval_batches=1", *tokenizer]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(done.stderr)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="write a test corpus from text on this machine")
    b.add_argument("--megabytes", type=float, required=True)
    b.add_argument("--out", type=Path, required=True)
    for name in ("prepare", "child"):
        p = commands.add_parser(name, help="measure the preparation" if name == "prepare" else argparse.SUPPRESS)
        p.add_argument("path")
        p.add_argument("--tokenizer", default="char", choices=("char", "bpe", "word"))
        p.add_argument("--vocab-size", type=int)
        p.add_argument("--sample", type=int, default=10_000_000, help="data.tokenizer_sample")
        p.add_argument("--second", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("--apart", action="store_true",
                       help="encode the train and valid parts one after the other, each from the start of the text "
                            "(as before they shared one pass), to measure what the shared pass saves")
    args = parser.parse_args()
    if args.command == "build":
        build(args.megabytes, args.out)
    elif args.command == "child":
        child(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
