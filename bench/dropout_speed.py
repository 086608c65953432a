"""A GPT preset's CPU training step with dropout masks from random bits (lm.models.dropout) against torch's own.

    python bench/dropout_speed.py                                   # shakespeare-gpt, one torch thread
    python bench/dropout_speed.py shakespeare-gpt-small --precision fp32 --steps 12 --repeat 5

"before" is the step as it was: `F.dropout` on the residual stream and `scaled_dot_product_attention(dropout_p=...)`,
whose CPU path with dropout is unfused and draws its mask one number per attention weight. "now" is the model as it
is. Both run in this process on the same random batch of the preset's shape (batch 32 x its context, vocabulary 512),
alternating, and the bench prints the median milliseconds per step (forward, backward, AdamW) and the ratio; then
the mask alone at the attention weights' size. Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lm.models.gpt as gpt_module  # noqa: E402
from lm.models import build_model  # noqa: E402
from lm.models.dropout import keep_mask  # noqa: E402
from lm.precision import cpu_name, vector_extensions  # noqa: E402

VOCAB = 512


@contextmanager
def torch_dropout():
    """The model's dropout as it was before lm.models.dropout: torch's own, in both places."""
    saved = gpt_module.dropout, gpt_module.causal_attention_with_dropout

    def old_dropout(x, p, training):
        return F.dropout(x, p, training=True) if training and p > 0 else x

    def old_attention(q, k, v, p):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)

    gpt_module.dropout, gpt_module.causal_attention_with_dropout = old_dropout, old_attention
    try:
        yield
    finally:
        gpt_module.dropout, gpt_module.causal_attention_with_dropout = saved


def step_ms(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor, bf16: bool,
            steps: int) -> float:
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1000


def median_ms(call, repeat: int = 9) -> float:
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", nargs="?", default="shakespeare-gpt", help="a GPT preset in configs/")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="default: bf16 where the CPU has AMX or AVX512-BF16, else fp32")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements of each, alternating")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    path = ROOT / "configs" / f"{args.preset}.yaml"
    if not path.is_file():
        parser.error(f"no preset {args.preset!r} in configs/")
    preset = yaml.safe_load(path.read_text())
    values = {key: value for key, value in preset["model"].items() if key != "type"}
    if preset["model"]["type"] != "gpt":
        parser.error(f"{args.preset} is not a GPT preset")
    torch.set_num_threads(args.threads)
    extensions = vector_extensions()
    bf16 = (args.precision or ("bf16" if {"amx_bf16", "avx512_bf16"} & set(extensions) else "fp32")) == "bf16"
    torch.manual_seed(0)
    model = build_model("gpt", {"vocab_size": VOCAB, **values}).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch_size, window = preset["training"].get("batch_size", 32), preset["training"].get("seq_len", 128)
    batch = torch.randint(0, VOCAB, (batch_size, window + 1))

    before, now = [], []
    for _ in range(args.repeat):
        with torch_dropout():
            before.append(step_ms(model, optimizer, batch, bf16, args.steps))
        now.append(step_ms(model, optimizer, batch, bf16, args.steps))
    print("python bench/" + Path(__file__).name + " " + shlex.join(sys.argv[1:]))
    print(f"# {cpu_name()} ({', '.join(extensions) or 'no vector extensions found'}), {args.threads} torch thread(s), "
          f"torch {torch.__version__}, {'bf16 autocast' if bf16 else 'fp32'}")
    print(f"{args.preset}: dropout {values.get('dropout')}, attention dropout "
          f"{values.get('attn_dropout', values.get('dropout'))}, batch {batch_size} x {window}")
    b, n = statistics.median(before), statistics.median(now)
    print("| step | ms/step (median) | tokens/s | against before |")
    print("| --- | --- | --- | --- |")
    print(f"| before (torch's dropout) | {b:,.0f} | {batch_size * window / b * 1000:,.0f} | 1.00x |")
    print(f"| now (lm.models.dropout) | {n:,.0f} | {batch_size * window / n * 1000:,.0f} | {b / n:.2f}x |")

    heads = values.get("n_head", 6)
    weights = torch.randn(batch_size, heads, window, window)
    torch_mask = median_ms(lambda: F.dropout(weights, 0.2, training=True))
    bits_mask = median_ms(lambda: weights * keep_mask(weights.shape, 0.2)[0])
    print(f"dropout of the attention weights ({batch_size} x {heads} x {window} x {window}, fp32): "
          f"F.dropout {torch_mask:.1f} ms, from random bits {bits_mask:.1f} ms ({torch_mask / bits_mask:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
