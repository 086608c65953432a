"""Checks of an export against our own model, run in the export's real runtime (transformers, llama-cpp-python,
onnxruntime). Each returns the figures that go into the export's card; `export_model` refuses an export whose
figures are outside the limits below, and the tests hold the same limits.

The material is the model's own: the card's sample prompts, and a text the model sampled itself (so the check
needs no corpus and reads text in the model's own domain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lm.checkpoint import LoadedModel
from lm.generation import Generator
from training.card import SAMPLE_PROMPTS

# limits (the issue's): logits of the hf and onnx exports, greedy tokens, and llama.cpp's perplexity
LOGIT_TOLERANCE = 1e-4
GREEDY_TOKENS = 50
ONNX_DECODE_STEPS = 64
PERPLEXITY_TOLERANCE = {"f32": 0.01, "f16": 0.01, "q8_0": 0.02}
SAMPLE_SEED = 0


class CheckFailed(ValueError):
    """The export computes something other than our model; the message gives the figure and its limit."""


@dataclass
class Material:
    prompts: list[list[int]]  # token ids of short prompts, for greedy continuations
    texts: list[list[int]]  # token ids of texts (each at most a context), for logits
    sample: list[int]  # a longer text the model sampled, for perplexity and incremental decoding


def material(loaded: LoadedModel, sample_tokens: int = 512) -> Material:
    context = loaded.model.context_length or sample_tokens
    with Generator(loaded) as generator:
        result = generator.generate("\n", max_new_tokens=sample_tokens, temperature=1.0, seed=SAMPLE_SEED,
                                    stop_at_eos=False)
    sample = loaded.tokenizer.encode("\n") + [event.id for event in result.tokens]
    prompts = [loaded.tokenizer.encode(p) or [loaded.tokenizer.start_id] for p in SAMPLE_PROMPTS]
    texts = [p[:context] for p in prompts] + [sample[:context]]
    return Material(prompts=prompts, texts=texts, sample=sample)


def greedy_length(loaded: LoadedModel, prompt: list[int]) -> int:
    """50 tokens, or fewer where the prompt and continuation would pass the context (runtimes differ there)."""
    context = loaded.model.context_length
    return GREEDY_TOKENS if context is None else max(0, min(GREEDY_TOKENS, context - len(prompt)))


def our_logits(loaded: LoadedModel, ids: list[int]) -> np.ndarray:
    """(T, V) logits of one text, a single forward pass."""
    with torch.inference_mode():
        return loaded.model(torch.tensor([ids])).logits[0].float().numpy()


def our_greedy(loaded: LoadedModel, prompt: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        state = loaded.model.init_state(1)
        output = loaded.model(torch.tensor([prompt]), state)
        ids = []
        for _ in range(n):
            ids.append(int(output.logits[0, -1].argmax()))
            output = loaded.model(torch.tensor([[ids[-1]]]), output.state)
    return ids


def windows(ids: list[int], size: int) -> list[list[int]]:
    """Consecutive non-overlapping windows of `size` tokens (the last may be shorter, but not below 2)."""
    return [ids[i : i + size] for i in range(0, len(ids), size) if len(ids[i : i + size]) >= 2]


def perplexity(logit_fn, ids: list[int], window: int) -> float:
    """exp(mean NLL) of each window's tokens after its first, scored by `logit_fn(window_ids) -> (T, V)`."""
    total, count = 0.0, 0
    for part in windows(ids, window):
        logits = torch.from_numpy(np.asarray(logit_fn(part), dtype=np.float64))
        log_probs = torch.log_softmax(logits[:-1], dim=-1)
        total -= float(log_probs.gather(1, torch.tensor(part[1:])[:, None]).sum())
        count += len(part) - 1
    return math.exp(total / count)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _greedy_figures(loaded: LoadedModel, stuff: Material, runtime_greedy) -> dict[str, Any]:
    lengths, identical = [], 0
    for prompt in stuff.prompts:
        n = greedy_length(loaded, prompt)
        lengths.append(n)
        identical += runtime_greedy(prompt, n) == our_greedy(loaded, prompt, n)
    return {"greedy_prompts": len(stuff.prompts), "greedy_tokens": max(lengths), "greedy_identical": identical}


def check_hf(loaded: LoadedModel, folder: Path) -> dict[str, Any]:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    stuff = material(loaded)
    tokenization_identical = all(
        tokenizer(loaded.tokenizer.decode(ids), add_special_tokens=False)["input_ids"] == ids for ids in stuff.texts
    )

    def hf_logits(ids: list[int]) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.tensor([ids])).logits[0].float().numpy()

    def hf_greedy(prompt: list[int], n: int) -> list[int]:
        with torch.inference_mode():
            out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
        return out[0, len(prompt):].tolist()

    return {
        "runtime": f"transformers {transformers.__version__}",
        "texts": len(stuff.texts),
        "tokenization_identical": tokenization_identical,
        "max_abs_logit_diff": max(_max_abs(hf_logits(ids), our_logits(loaded, ids)) for ids in stuff.texts),
        **_greedy_figures(loaded, stuff, hf_greedy),
    }


def check_gguf(loaded: LoadedModel, gguf_path: Path, weight_type: str, threads: int | None = None) -> dict[str, Any]:
    import llama_cpp

    context = loaded.model.context_length
    V = loaded.tokenizer.vocab_size
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=context, n_batch=context, logits_all=True, verbose=False,
                          n_threads=threads or torch.get_num_threads())
    stuff = material(loaded)
    tokenization_identical = all(
        llm.tokenize(loaded.tokenizer.decode(ids).encode("utf-8"), add_bos=False, special=False) == ids
        for ids in stuff.texts
    )

    def llama_logits(ids: list[int], columns: int = V) -> np.ndarray:
        llm.reset()
        llm.eval(ids)
        return np.array(llm.scores[: len(ids), :columns])

    def llama_greedy(prompt: list[int], n: int) -> list[int]:
        out = []
        llm.reset()
        for token in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if len(out) == n:
                break
            out.append(int(token))
        return out

    ours_ppl = perplexity(lambda ids: our_logits(loaded, ids), stuff.sample, context)
    llama_ppl = perplexity(llama_logits, stuff.sample, context)
    with_eot = [llama_logits(ids, V + 1) for ids in stuff.texts]
    eot_probability = max(float(torch.softmax(torch.from_numpy(x).double(), -1)[:, V].max()) for x in with_eot)
    figures = {
        "runtime": f"llama-cpp-python {llama_cpp.__version__}",
        "weight_type": weight_type,
        "texts": len(stuff.texts),
        "tokenization_identical": tokenization_identical,
        "max_abs_logit_diff": max(_max_abs(x[:, :V], our_logits(loaded, ids)) for x, ids in zip(with_eot, stuff.texts)),
        "perplexity_tokens": len(stuff.sample),
        "perplexity_ours": ours_ppl,
        "perplexity_llama_cpp": llama_ppl,
        "perplexity_relative_diff": abs(llama_ppl - ours_ppl) / ours_ppl,
        "max_end_of_text_probability": eot_probability,
        **_greedy_figures(loaded, stuff, llama_greedy),
    }
    llm.close()
    return figures


def check_onnx(loaded: LoadedModel, onnx_path: Path) -> dict[str, Any]:
    """64 tokens decoded one at a time, by onnxruntime and by our model with its own state; and a prompt at once."""
    import onnxruntime

    from training.export.onnx import OnnxModel

    runtime = OnnxModel(onnx_path, loaded)
    stuff = material(loaded)
    steps = ONNX_DECODE_STEPS
    if loaded.model_type == "gpt" and loaded.model.config.positions == "learned":
        steps = min(steps, loaded.model.context_length)  # learned positions end there; the caller re-encodes
    ids = stuff.sample[:steps]
    worst = 0.0
    with torch.inference_mode():
        ours, theirs = loaded.model.init_state(1), runtime.init_state(1)
        for token in ids:
            a, b = loaded.model(torch.tensor([[token]]), ours), runtime(torch.tensor([[token]]), theirs)
            ours, theirs = a.state, b.state
            worst = max(worst, _max_abs(a.logits.numpy(), b.logits.numpy()))
    prompt_logits = runtime(torch.tensor([stuff.texts[-1]])).logits[0].numpy()
    return {
        "runtime": f"onnxruntime {onnxruntime.__version__}",
        "decode_steps": len(ids),
        "max_abs_logit_diff": worst,
        "prompt_max_abs_logit_diff": _max_abs(prompt_logits, our_logits(loaded, stuff.texts[-1])),
    }


def failures(fmt: str, figures: dict[str, Any]) -> list[str]:
    """The figures outside their limits, as phrases; empty when the export passes."""
    problems = []
    if figures.get("tokenization_identical") is False:
        problems.append("the runtime tokenizes the check texts differently")
    if fmt in ("hf", "onnx"):
        for key in ("max_abs_logit_diff", "prompt_max_abs_logit_diff"):
            if key in figures and not figures[key] <= LOGIT_TOLERANCE:
                problems.append(f"{key} {figures[key]:.2e} > {LOGIT_TOLERANCE:.0e}")
    if fmt == "gguf":
        limit = PERPLEXITY_TOLERANCE[figures["weight_type"]]
        if not figures["perplexity_relative_diff"] <= limit:
            problems.append(f"perplexity differs by {figures['perplexity_relative_diff']:.2%} > {limit:.0%}")
    if "greedy_identical" in figures and (fmt != "gguf" or figures["weight_type"] == "f32"):
        if figures["greedy_identical"] != figures["greedy_prompts"]:
            problems.append(f"greedy continuations identical for {figures['greedy_identical']} of "
                            f"{figures['greedy_prompts']} prompts")
    return problems
