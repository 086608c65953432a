"""How closely each export of a GPT reproduces it on real text: perplexity on a validation split, scored in
windows of the context length, by our model, by llama.cpp (f32, f16, q8_0 GGUF files) and by onnxruntime.

    python bench/export_fidelity.py models/shakespeare-gpt --data tinyshakespeare.txt --split valid

Each window of `context` tokens is scored from its first token on (no overlap), identically for every runtime,
so the figures compare with each other (not with `training evaluate`, which overlaps its windows).
Needs the dev requirements (gguf, llama-cpp-python, onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--data", required=True, help="file, directory or corpus name")
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, help="score only the first N tokens of the split")
    args = parser.parse_args()

    import numpy as np
    import torch

    from lm.checkpoint import load_model_dir
    from training.data.token_cache import encode_part
    from training.evaluation.evaluate import evaluation_part
    from training.export.check import our_logits, perplexity
    from training.export.gguf import write_gguf
    from training.export.onnx import OnnxModel, write_onnx

    torch.set_num_threads(args.threads)
    loaded = load_model_dir(args.model_dir, dtype="float32")
    if loaded.model_type != "gpt":
        print("bench/export_fidelity.py: GPT models only (llama.cpp has no LSTM)", file=sys.stderr)
        return 1
    part, about = evaluation_part(loaded.config, args.data, args.split)
    description = about["data"]
    ids = [int(i) for i in encode_part(part, loaded.tokenizer)[: args.max_tokens]]
    context = loaded.model.context_length
    rows = []

    def measure(name: str, logit_fn) -> None:
        start = time.perf_counter()
        rows.append((name, perplexity(logit_fn, ids, context), time.perf_counter() - start))

    measure("torch (ours), fp32", lambda window: our_logits(loaded, window))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        import llama_cpp

        V = loaded.tokenizer.vocab_size
        for weight_type in ("f32", "f16", "q8_0"):
            (file_name, _modelfile) = write_gguf(loaded, folder, "bench", weight_type)
            llm = llama_cpp.Llama(model_path=str(folder / file_name), n_ctx=context, n_batch=context,
                                  logits_all=True, verbose=False, n_threads=args.threads)

            def llama_logits(window, llm=llm):
                llm.reset()
                llm.eval(window)
                return np.array(llm.scores[: len(window), :V])

            measure(f"llama.cpp {llama_cpp.__version__}, {weight_type}", llama_logits)
            llm.close()
        write_onnx(loaded, folder, "bench")
        runtime = OnnxModel(folder / "model.onnx", loaded, threads=args.threads)
        measure("onnxruntime, fp32", lambda window: runtime(torch.tensor([window])).logits[0].numpy())

    print(f"command: python {shlex.join(['bench/export_fidelity.py'] + sys.argv[1:])}")
    print(f"machine: {platform.machine()}, {args.threads} threads; text: {description}; {len(ids):,} tokens "
          f"in windows of {context}")
    reference = rows[0][1]
    print(f"{'runtime':<34}{'perplexity':>12}{'vs ours':>10}{'seconds':>10}")
    for name, value, seconds in rows:
        print(f"{name:<34}{value:>12.4f}{(value - reference) / reference:>+10.3%}{seconds:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
