"""Choose dynamic evaluation's learning rate on a part of the training text, never on the text it will report.

    python bench/dynamic_search.py models/shakespeare-lstm --data /path/to/tinyshakespeare.txt \
        --chars 30000 --lrs 0,1e-3,3e-3,1e-2,3e-2

Scores the last `--chars` characters of the model's training split (cut as its run cut its data) statically and
with dynamic evaluation at each learning rate, and prints nats/char and bits/char for each; the best learning rate
is the one to pass to `python -m training evaluate --dynamic --dynamic-lr LR`. The model has trained on this text,
so its gains here understate those on unseen text; that is the price of never tuning on the reported split. Not a
test: figures depend on the machine only through time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lm.checkpoint import load_model_dir  # noqa: E402
from training.evaluation.dynamic_eval import RULES, DynamicOptions, dynamic_figures  # noqa: E402
from training.evaluation.evaluate import evaluation_part  # noqa: E402
from training.evaluation.metrics import LN2  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--data", required=True, help="the corpus the model was trained on")
    parser.add_argument("--chars", type=int, default=30_000, help="characters at the end of the training split")
    parser.add_argument("--lrs", default="0,1e-3,3e-3,1e-2,3e-2", help="comma-separated learning rates")
    parser.add_argument("--rule", choices=RULES, default="sgd")
    parser.add_argument("--decay", type=float, default=0.0)
    parser.add_argument("--segment", type=int)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model_dir(args.model_dir)
    train_part = evaluation_part(loaded.config, args.data, "train")[0]
    train_text = train_part.read()
    text = train_text[-args.chars:]
    ids = loaded.tokenizer.encode_corpus(text)
    print(f"{args.model_dir}: last {len(text):,} characters of the training split ({len(ids):,} tokens), "
          f"rule {args.rule}, decay {args.decay:g}")
    print(f"{'lr':>10}  {'nats/char':>9}  {'bits/char':>9}  seconds")
    best = None
    for lr in (float(x) for x in args.lrs.split(",")):
        started = time.perf_counter()
        options = DynamicOptions(lr=lr, decay=args.decay, segment=args.segment, rule=args.rule)
        figures = dynamic_figures(loaded.model, ids, len(text), "cpu", options,
                                  lambda: loaded.tokenizer.encode_corpus(train_text))
        nats = figures["nats_per_char"]
        print(f"{lr:>10g}  {nats:9.4f}  {nats / LN2:9.4f}  {time.perf_counter() - started:7.1f}", flush=True)
        best = min(best or (nats, lr), (nats, lr))
    print(f"best lr: {best[1]:g} ({best[0]:.4f} nats/char)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
