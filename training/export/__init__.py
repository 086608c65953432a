"""`python -m training export MODEL_DIR --format hf|gguf|onnx --output DIR`: a model directory in a form other
runtimes load, checked in that runtime against our own model before it is written.

| format | families | tokenizers | runtime |
| --- | --- | --- | --- |
| hf   | GPT (rotary -> GPT-NeoX, learned positions -> GPT-2) | char, bpe | transformers |
| gguf | GPT (rotary -> gptneox, learned positions -> gpt2); f32, f16, q8_0 | bpe | llama.cpp, Ollama |
| onnx | GPT and AWD-LSTM, state as inputs and outputs | char, word, bpe | onnxruntime |

Anything else is refused with one line (`training.export.support`). The output folder appears complete or not at
all: it is written beside the target, checked there, and renamed into place only when the check passes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm.atomic import make_staging_dir, replace_directory
from lm.checkpoint import LoadedModel, load_model_dir
from training.export.card import MARKER, render_export_card
from training.export.check import CheckFailed, check_gguf, check_hf, check_onnx, failures
from training.export.support import ExportError, check_exportable

FORMATS = ("hf", "gguf", "onnx")
CARD_FILE = "README.md"
# what each format's writer and check import, and where it comes from
_WRITER_NEEDS = {"hf": [], "gguf": ["gguf"], "onnx": ["onnx"]}
_CHECK_NEEDS = {"hf": "transformers", "gguf": "llama_cpp", "onnx": "onnxruntime"}
_PIP_NAMES = {"llama_cpp": "llama-cpp-python"}

__all__ = ["FORMATS", "CheckFailed", "ExportError", "ExportResult", "export_model"]


@dataclass
class ExportResult:
    path: Path
    files: list[str]
    architecture: str
    figures: dict[str, Any] | None
    not_checked: str | None = None
    notes: list[str] = field(default_factory=list)


def _require(module: str, purpose: str) -> None:
    try:
        __import__(module)
    except ImportError:
        package = _PIP_NAMES.get(module, module)
        raise ExportError(f"{purpose} needs the {package} package: pip install -r requirements-export.txt") from None


def _check_output(output: Path, model_dir: Path) -> None:
    if output.resolve() == model_dir.resolve():
        raise ExportError(f"--output {output} is the model directory itself; choose a new folder")
    if output.exists():
        card = output / CARD_FILE
        is_export = card.is_file() and MARKER in card.read_text(encoding="utf-8", errors="replace")
        if not output.is_dir() or (any(output.iterdir()) and not is_export):
            raise ExportError(f"--output {output} exists and is not an earlier export; choose a new or empty folder")


def _architecture(fmt: str, loaded: LoadedModel) -> str:
    if fmt == "onnx":
        return "ONNX graph with " + ("KV cache" if loaded.model_type == "gpt" else "LSTM state") + " inputs and outputs"
    rotary = loaded.model.config.positions == "rotary"
    if fmt == "hf":
        return "GPTNeoXForCausalLM" if rotary else "GPT2LMHeadModel"
    return "llama.cpp " + ("gptneox" if rotary else "gpt2")


def _usage(fmt: str, files: list[str], loaded: LoadedModel) -> str:
    if fmt == "hf":
        return (
            "```python\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER_OR_HUB_ID")\n'
            'model = AutoModelForCausalLM.from_pretrained("THIS_FOLDER_OR_HUB_ID")\n'
            'inputs = tokenizer("ROMEO:", return_tensors="pt")\n'
            "out = model.generate(**inputs, max_new_tokens=100)  # sampling settings: generation_config.json\n"
            "print(tokenizer.decode(out[0]))\n"
            "```"
        )
    if fmt == "gguf":
        gguf_file = files[0]
        return (
            "```bash\n"
            f'llama-cli -m {gguf_file} -p "ROMEO:" -n 100 --temp 0.8 --top-p 0.95 -no-cnv\n'
            f"ollama create my-model -f Modelfile && ollama run my-model \"ROMEO:\"\n"
            "```\n\n"
            "```python\n"
            "from llama_cpp import Llama\n\n"
            f'llm = Llama(model_path="{gguf_file}")\n'
            'print(llm("ROMEO:", max_tokens=100, temperature=0.8, top_p=0.95)["choices"][0]["text"])\n'
            "```"
        )
    if loaded.model_type == "gpt":
        c = loaded.model.config
        shape = f"(1, {c.n_head}, 0, {c.n_embd // c.n_head})"
        state = (f"state = {{f\"past.{{i}}.{{kind}}\": np.zeros({shape}, np.float32)\n"
                 f"         for i in range({c.n_layer}) for kind in (\"key\", \"value\")}}  # empty cache")
        positions = '    feed["position_ids"] = np.arange(position, len(ids))[None]\n'
        limit = f"(Keep the cache within the context of {c.context_length} tokens.)"
    else:
        sizes = [lstm.hidden_size for lstm in loaded.model.layers]
        state = (f"sizes = {sizes}\n"
                 "state = {f\"state.{i}.{kind}\": np.zeros((1, size), np.float32)\n"
                 "         for i, size in enumerate(sizes) for kind in (\"h\", \"c\")}")
        positions = ""
        limit = "(The LSTM carries its state: no context limit.)"
    return (
        "Inputs: `input_ids` (batch, new tokens) int64; a GPT also takes `position_ids` (absolute position of each "
        "new token) and `past.{i}.key` / `past.{i}.value` (batch, heads, cached tokens, head size); an LSTM "
        "`state.{i}.h` / `state.{i}.c` (batch, hidden). Outputs: `logits`, then the next state "
        "(`present.{i}.*` / `state_out.{i}.*`) in the order of the state inputs. `tokenizer.json` is read by "
        "Hugging Face `tokenizers`.\n\n"
        "```python\n"
        "import numpy as np, onnxruntime\n"
        "from tokenizers import Tokenizer\n\n"
        'session = onnxruntime.InferenceSession("model.onnx")\n'
        'tokenizer = Tokenizer.from_file("tokenizer.json")\n'
        f"{state}\n"
        'ids = tokenizer.encode("ROMEO:").ids\n'
        "position = 0\n"
        "for _ in range(100):  # greedy\n"
        '    feed = {"input_ids": np.array([ids[position:]]), **state}\n'
        f"{positions}"
        "    logits, *rest = session.run(None, feed)\n"
        "    state, position = dict(zip(state, rest)), len(ids)\n"
        "    ids.append(int(logits[0, -1].argmax()))\n"
        "print(tokenizer.decode(ids))\n"
        "```\n\n"
        f"{limit}"
    )


def _notes(fmt: str, loaded: LoadedModel) -> list[str]:
    notes = []
    if loaded.model_type == "gpt":
        notes.append(f"The model attends to at most {loaded.model.context_length} tokens.")
    if fmt == "onnx" and loaded.tokenizer.kind == "word":
        notes.append("Word tokenizer: Scriptorium also turns each line break into <eos> and spaces words by its own "
                     "rules when decoding (lm/tokenizers.py); tokenizer.json alone only splits and joins words.")
    if fmt == "hf":
        notes.append("There is no end-of-text token: generation runs to max_new_tokens, as in Scriptorium.")
    if fmt == "gguf":
        notes += [
            "llama.cpp computes GELU by its tanh approximation (Scriptorium: the exact GELU), so logits differ "
            "slightly; see the figures above.",
            "The vocabulary has one extra token, <|endoftext|>, which llama.cpp and Ollama need as end of "
            "generation; its embedding and output rows are zeros (logit always 0), so it is rarely chosen.",
        ]
    return notes


def export_model(
    model_dir: str | Path,
    fmt: str,
    output: str | Path,
    gguf_type: str = "f16",
    check: bool = True,
    license_id: str = "unknown",
    command: str | None = None,
    threads: int | None = None,
) -> ExportResult:
    """Write the export of `model_dir` to `output`; with `check`, run it in its runtime and refuse to write an
    export whose figures are outside the limits (`training.export.check`)."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    model_dir, output = Path(model_dir), Path(output)
    loaded = load_model_dir(model_dir, dtype="float32")  # exports and their checks are float32
    check_exportable(fmt, loaded.config)
    _check_output(output, model_dir)
    for module in _WRITER_NEEDS[fmt]:
        _require(module, f"the {fmt} export")
    name = str(loaded.config.get("name") or model_dir.resolve().name)
    command = command or f"python -m training export {name} --format {fmt}"

    staging = make_staging_dir(output)
    try:
        if fmt == "hf":
            from training.export.hf import write_hf

            files = write_hf(loaded, staging)
        elif fmt == "gguf":
            from training.export.gguf import write_gguf

            files = write_gguf(loaded, staging, name, gguf_type)
        else:
            from training.export.onnx import write_onnx

            files = write_onnx(loaded, staging, name)
        result = ExportResult(output, files, _architecture(fmt, loaded), None, notes=_notes(fmt, loaded))
        if not check:
            result.not_checked = "the export was run with --no-check"
        else:
            try:
                __import__(_CHECK_NEEDS[fmt])
            except ImportError:
                package = _PIP_NAMES.get(_CHECK_NEEDS[fmt], _CHECK_NEEDS[fmt])
                result.not_checked = f"{package} was not installed where it was exported"
            else:
                result.figures = _run_check(fmt, loaded, staging, files, gguf_type, threads)
                problems = failures(fmt, result.figures)
                if problems:
                    raise CheckFailed(f"the {fmt} export does not compute what {name} computes "
                                      f"({'; '.join(problems)}); nothing was written")
        card = render_export_card(fmt, loaded, name, result.architecture, _usage(fmt, files, loaded), command,
                                  result.figures, result.not_checked, result.notes, license_id)
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        result.files.append(CARD_FILE)
        replace_directory(staging, output, keep=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _run_check(fmt: str, loaded: LoadedModel, folder: Path, files: list[str], gguf_type: str,
               threads: int | None) -> dict[str, Any]:
    if fmt == "hf":
        return check_hf(loaded, folder)
    if fmt == "gguf":
        return check_gguf(loaded, folder / files[0], gguf_type, threads)
    return check_onnx(loaded, folder / files[0])
