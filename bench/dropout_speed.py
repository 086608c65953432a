"""A GPT preset's CPU training step with dropout masks from random bits (lm.models.dropout) against torch's own.

    python bench/dropout_speed.py                                   # shakespeare-gpt, one torch thread
    python bench/dropout_speed.py shakespeare-gpt-small --precision fp32 --steps 12 --repeat 5

The precision resolves as training.precision does (`auto`: the cached matmul probe).

"before" is the step as it was: `F.dropout` on the residual stream and `scaled_dot_product_attention(dropout_p=...)`,
whose CPU path with dropout is unfused and draws its mask one number per attention weight. "now" is the model as it
is. Both run in this process on the same random batch of the preset's shape (its batch_size x seq_len, vocabulary 512),
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lm.models.gpt as gpt_module  # noqa: E402
from lm.models import build_model  # noqa: E402
from lm.models.dropout import keep_mask  # noqa: E402
from lm.precision import cpu_name, vector_extensions  # noqa: E402
from training.config import load_config  # noqa: E402
from training.hardware import autocast_factory, resolve_precision  # noqa: E402

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


def step_ms(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor, autocast,
            steps: int) -> float:
    def step() -> None:
        with autocast():
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
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="as training.precision; auto: bf16 where this CPU multiplies faster in it (measured)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements of each, alternating")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    path = ROOT / "configs" / f"{args.preset}.yaml"
    if not path.is_file():
        parser.error(f"no preset {args.preset!r} in configs/")
    config = load_config(path)
    if config.model_type != "gpt":
        parser.error(f"{args.preset} is not a GPT preset")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("gpt", config.model_options(VOCAB)).train()
    cpu = torch.device("cpu")
    precision = resolve_precision(args.precision, cpu, model.width).precision
    autocast = autocast_factory(cpu, precision)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch_size, window = config.training.batch_size, config.training.seq_len
    batch = torch.randint(0, VOCAB, (batch_size, window + 1))

    before, now = [], []
    for _ in range(args.repeat):
        with torch_dropout():
            before.append(step_ms(model, optimizer, batch, autocast, args.steps))
        now.append(step_ms(model, optimizer, batch, autocast, args.steps))
    print("python bench/" + Path(__file__).name + " " + shlex.join(sys.argv[1:]))
    print(f"# {cpu_name()} ({', '.join(vector_extensions()) or 'no vector extensions found'}), "
          f"{args.threads} torch thread(s), torch {torch.__version__}, {precision}")
    attention = model.blocks[0].attn
    print(f"{args.preset}: dropout {attention.dropout}, attention dropout {attention.attn_dropout}, "
          f"batch {batch_size} x {window}")
    b, n = statistics.median(before), statistics.median(now)
    print("| step | ms/step (median) | tokens/s | against before |")
    print("| --- | --- | --- | --- |")
    print(f"| before (torch's dropout) | {b:,.0f} | {batch_size * window / b * 1000:,.0f} | 1.00x |")
    print(f"| now (lm.models.dropout) | {n:,.0f} | {batch_size * window / n * 1000:,.0f} | {b / n:.2f}x |")

    heads = attention.n_head
    weights = torch.randn(batch_size, heads, window, window)
    torch_mask = median_ms(lambda: F.dropout(weights, 0.2, training=True))
    bits_mask = median_ms(lambda: weights * keep_mask(weights.shape, 0.2)[0])
    print(f"dropout of the attention weights ({batch_size} x {heads} x {window} x {window}, fp32): "
          f"F.dropout {torch_mask:.1f} ms, from random bits {bits_mask:.1f} ms ({torch_mask / bits_mask:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
