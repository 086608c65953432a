"""`python -m training export`: each format loaded in its real runtime and compared with our model.

transformers and onnxruntime are dev requirements; llama-cpp-python too (built from source once per venv by
`make test`): a test skips, saying why, only where one of them is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import lm
from lm import load, save_model_dir, train_tokenizer
from lm.checkpoint import load_model_dir
from lm.generation import Generator
from lm.models import build_model
from lm.models.gpt import apply_rotary, rotary_table
from training.export import CheckFailed, ExportError, export_model
from training.export.check import GREEDY_TOKENS, LOGIT_TOLERANCE
from training.export.decoder import _to_half_split, half_split_order
from training.export.support import check_exportable

from .conftest import ROOT, run_cli

MISSING = "{} is not installed here (a dev requirement: make test installs it)"

# loading transformers or llama.cpp and comparing takes a minute or two when the 2-core machine is shared
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the tiny models gain nothing from two, and on a busy machine every parallel region of a
    small operation can wait a whole time slice for its second thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _require(module: str, package: str):
    return pytest.importorskip(module, reason=MISSING.format(package))


def _no_machine_paths(folder: Path, *paths: Path) -> None:
    """No file of an export names a folder of this machine."""
    for file in folder.iterdir():
        if file.suffix in (".md", ".json", "") or file.name == "Modelfile":
            text = file.read_text(encoding="utf-8")
            for path in (*paths, ROOT):
                assert str(path) not in text, f"{file.name} names {path}"


# --- what each format can express -----------------------------------------------------------------------------

def _config(model_type="gpt", kind="bpe", **model):
    defaults = {"gpt": {"vocab_size": 300, "context_length": 96, "n_layer": 2, "n_head": 2, "n_embd": 32,
                        "dropout": 0.0, "bias": False, "positions": "rotary", "rope_base": 10000.0},
                "lstm": {"vocab_size": 300, "emb_size": 8, "hidden_size": 8, "n_layers": 1, "dropout": 0.1,
                         "dropout_hidden": 0.1, "dropout_input": 0.1, "dropout_embedding": 0.1, "weight_drop": 0.1,
                         "tie_weights": True}}
    return {"model_type": model_type, "model": {**defaults[model_type], **model}, "tokenizer": {"kind": kind}}


def test_every_format_takes_the_options_it_maps():
    for fmt in ("hf", "gguf", "onnx"):
        check_exportable(fmt, _config())
        check_exportable(fmt, _config(positions="learned", bias=True))
    check_exportable("onnx", _config("lstm", "word"))
    check_exportable("hf", _config(kind="char"))
    quality_defaults = {"attn_dropout": None, "qk_norm": False, "mlp": "gelu", "zero_init_proj": True}
    for fmt in ("hf", "gguf", "onnx"):  # what a GPT records since the quality options, and training-only ones
        check_exportable(fmt, _config(**quality_defaults))
    for mlp in ("relu2", "swiglu"):  # the ONNX graph runs the model's own MLP
        check_exportable("onnx", _config(**{**quality_defaults, "mlp": mlp}))
    check_exportable("onnx", _config("lstm", "word", mogrifier_rounds=0, mogrifier_rank=0))


@pytest.mark.parametrize("fmt", ["hf", "gguf", "onnx"])
def test_an_option_an_exporter_does_not_know_is_refused_in_one_line(fmt):
    # a feature added to GPTConfig later (here a made-up sliding window) must not export silently wrong
    with pytest.raises(ExportError, match=r"option sliding_window=64 is not one the .* exporter maps") as caught:
        check_exportable(fmt, _config(sliding_window=64))
    assert "\n" not in str(caught.value)
    with pytest.raises(ExportError, match=r"positions='alibi' \(supported: 'learned', 'rotary'\)"):
        check_exportable(fmt, _config(positions="alibi"))


@pytest.mark.parametrize("fmt, model_type, option, value", [
    *[(fmt, "gpt", "qk_norm", True) for fmt in ("hf", "gguf", "onnx")],
    *[(fmt, "gpt", "mlp", mlp) for fmt, mlp in (("hf", "swiglu"), ("gguf", "relu2"), ("gguf", "swiglu"))],
    ("onnx", "lstm", "mogrifier_rounds", 2),
])
def test_a_quality_option_a_format_cannot_express_is_refused_in_one_line(fmt, model_type, option, value):
    with pytest.raises(ExportError, match=rf"option {option}={value!r} \(supported: ") as caught:
        check_exportable(fmt, _config(model_type, **{option: value}))
    assert "\n" not in str(caught.value)


def test_a_refused_option_names_the_formats_that_take_it():
    with pytest.raises(ExportError, match=r"mlp='relu2' \(supported: 'gelu'\); export it with --format hf or onnx$"):
        check_exportable("gguf", _config(mlp="relu2"))
    with pytest.raises(ExportError, match=r"qk_norm=True \(supported: False\)$"):  # no format takes it
        check_exportable("gguf", _config(qk_norm=True))


@pytest.mark.parametrize("fmt, model_type, kind, hint", [
    ("hf", "lstm", "bpe", "no native transformers architecture; export it with --format onnx"),
    ("gguf", "lstm", "bpe", "no AWD-LSTM architecture; export it with --format onnx"),
    ("gguf", "gpt", "char", "byte-level BPE vocabularies only"),
    ("gguf", "gpt", "word", "byte-level BPE vocabularies only"),
    ("hf", "gpt", "word", "line breaks into <eos>"),
])
def test_what_a_format_cannot_express_gets_one_line_and_a_way_out(fmt, model_type, kind, hint):
    with pytest.raises(ExportError, match=re.escape(hint)):
        check_exportable(fmt, _config(model_type, kind))


def test_the_cli_refuses_an_lstm_for_hf_in_one_line(tmp_path, char_tokenizer_dir):
    result = run_cli("export", str(char_tokenizer_dir["lstm"]), "--format", "hf", "--output", str(tmp_path / "x"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: cannot export a lstm model to hf: an AWD-LSTM has no native transformers architecture; "
        "export it with --format onnx"]
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def char_tokenizer_dir(tmp_path_factory):
    """Random-weight models of both families with a char tokenizer, and an LSTM with a word tokenizer."""
    text = "First Speaker:\nWhat light through yonder window breaks? It is the east.\n" * 10
    root = tmp_path_factory.mktemp("random-models")
    dirs = {}
    for name, kind, model_type, spec in (
        ("lstm", "char", "lstm", {"emb_size": 16, "hidden_size": 24, "n_layers": 2}),
        ("word-lstm", "word", "lstm", {"emb_size": 16, "hidden_size": 24, "n_layers": 2, "tie_weights": False}),
        ("short-gpt", "char", "gpt", {"context_length": 24, "n_layer": 2, "n_head": 2, "n_embd": 16}),
        ("swiglu-gpt", "char", "gpt", {"context_length": 24, "n_layer": 2, "n_head": 2, "n_embd": 16,
                                       "mlp": "swiglu"}),
        ("relu2-gpt", "char", "gpt", {"context_length": 24, "n_layer": 1, "n_head": 2, "n_embd": 16,
                                      "mlp": "relu2"}),
    ):
        tokenizer = train_tokenizer(kind, text)
        torch.manual_seed(0)
        dirs[name] = save_model_dir(root / name, build_model(model_type, {"vocab_size": tokenizer.vocab_size, **spec}),
                                    tokenizer)
    return dirs


# --- the rotary mapping, without any runtime --------------------------------------------------------------------

def test_half_split_order_turns_adjacent_pair_rotary_into_neox_rotary():
    torch.manual_seed(0)
    hs, T = 8, 5
    x = torch.randn(T, hs)
    rope = rotary_table(T, hs, 10000.0)  # (T, hs/2) complex
    ours = apply_rotary(x, rope)  # pairs (2i, 2i+1)
    order = half_split_order(hs)
    cos, sin = torch.cat([rope.real, rope.real], -1), torch.cat([rope.imag, rope.imag], -1)
    y = x[:, order]
    neox = y * cos + torch.cat([-y[:, hs // 2:], y[:, : hs // 2]], -1) * sin  # transformers' rotate_half
    torch.testing.assert_close(neox, ours[:, order])
    qkv = torch.arange(3 * 2 * hs, dtype=torch.float32)  # 2 heads: values keep their order
    permuted = _to_half_split(qkv, n_head=2)
    assert torch.equal(permuted[2 * 2 * hs:], qkv[2 * 2 * hs:])
    assert torch.equal(permuted[:hs], qkv[:hs][order])


# --- hf: transformers ------------------------------------------------------------------------------------------

def _hf_greedy_text(folder: Path, prompt: str, n: int) -> str:
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=n, min_new_tokens=n)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:])


@pytest.mark.parametrize("fixture, architecture", [("rotary_bpe_gpt", "GPTNeoXForCausalLM"),
                                                   ("learned_bpe_gpt", "GPT2LMHeadModel"),
                                                   ("relu2_bpe_gpt", "GPTNeoXForCausalLM"),
                                                   ("trained_gpt", "GPTNeoXForCausalLM")])  # char tokenizer
def test_hf_export_loads_natively_and_computes_what_we_compute(fixture, architecture, request, tmp_path):
    _require("transformers", "transformers")
    model_dir = request.getfixturevalue(fixture)
    out = tmp_path / "hf"
    result = export_model(model_dir, "hf", out, license_id="mit")
    figures = result.figures
    assert result.architecture == architecture
    assert figures["tokenization_identical"] is True
    assert figures["texts"] >= 4 and figures["max_abs_logit_diff"] <= LOGIT_TOLERANCE
    assert figures["greedy_identical"] == figures["greedy_prompts"] == 3
    expected_greedy = GREEDY_TOKENS if fixture != "trained_gpt" else 32 - 6  # context 32, longest prompt 6 tokens
    assert figures["greedy_tokens"] == expected_greedy
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [architecture] and "auto_map" not in config  # native: no remote code
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] is None
    # the user's path, text in and text out, against Scriptorium's own greedy generation
    n = 20
    ours = load(model_dir).generate("ANNA:\n", max_new_tokens=n, temperature=0).text
    assert _hf_greedy_text(out, "ANNA:\n", n) == ours


def test_hf_card_is_ready_for_the_hub_and_names_no_machine_folder(rotary_bpe_gpt, tmp_path):
    result = export_model(rotary_bpe_gpt, "hf", tmp_path / "hf", check=False, license_id="apache-2.0",
                          command=f"python -m training export rotary-gpt --format hf --output {tmp_path / 'hf'}")
    card = (tmp_path / "hf" / "README.md").read_text()
    header = card.split("---\n")[1]
    for line in ("license: apache-2.0", "library_name: transformers", "pipeline_tag: text-generation",
                 "  - scriptorium", "  - gpt_neox"):
        assert line + "\n" in header
    assert "Not checked: the export was run with --no-check." in card
    assert f"Scriptorium {lm.__version__}" in card and "`rotary-gpt`" in card
    assert "--output hf`" in card  # the command, with only the folder's name
    assert result.not_checked and result.figures is None
    _no_machine_paths(tmp_path / "hf", tmp_path, rotary_bpe_gpt.parent)


def test_the_card_shows_the_models_own_validation_figures_not_another_texts(rotary_bpe_gpt, tmp_path):
    model_dir = tmp_path / "rotary-gpt"
    shutil.copytree(rotary_bpe_gpt, model_dir)
    (model_dir / "evaluations").mkdir(exist_ok=True)
    own = {"data": "book.txt (valid split)", "own_validation": True,
           "splits": {"valid": {"bits_per_char": 1.2345, "perplexity": 3.5}}}
    other = {"data": "poems.txt (whole)", "own_validation": False, "bits_per_char": 9.876, "perplexity": 99.0}
    (model_dir / "evaluations" / "book-all.json").write_text(json.dumps(own))
    (model_dir / "evaluations" / "poems-whole.json").write_text(json.dumps(other))
    export_model(model_dir, "hf", tmp_path / "hf", check=False, command="python -m training export rotary-gpt")
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "**Evaluation:** 1.2345 bits per character, perplexity 3.500 per token, on book.txt (valid split)" in card
    assert "9.876" not in card


def test_a_wrong_mapping_is_caught_and_nothing_is_written(rotary_bpe_gpt, tmp_path, monkeypatch):
    _require("transformers", "transformers")
    import training.export.decoder as decoder

    # forget to permute the query/key rows into GPT-NeoX's rotary order: the check must notice
    monkeypatch.setattr(decoder, "half_split_order", lambda head_size: torch.arange(head_size))
    with pytest.raises(CheckFailed, match=r"does not compute what .* computes \(max_abs_logit_diff .* > 1e-04"):
        export_model(rotary_bpe_gpt, "hf", tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder left behind


def test_output_folders_that_are_not_exports_are_left_alone(rotary_bpe_gpt, tmp_path):
    with pytest.raises(ExportError, match="is the model directory itself"):
        export_model(rotary_bpe_gpt, "hf", rotary_bpe_gpt, check=False)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(ExportError, match="exists and is not an earlier export"):
        export_model(rotary_bpe_gpt, "hf", other, check=False)
    assert (other / "todo.txt").read_text() == "mine"
    out = tmp_path / "hf"
    export_model(rotary_bpe_gpt, "hf", out, check=False)
    export_model(rotary_bpe_gpt, "onnx", out, check=False)  # an earlier export is replaced as a whole
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.onnx", "tokenizer.json"]


# --- onnx: onnxruntime -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture, name", [("rotary_bpe_gpt", None), ("learned_bpe_gpt", None),
                                           ("char_tokenizer_dir", "word-lstm"), ("char_tokenizer_dir", "lstm"),
                                           ("char_tokenizer_dir", "short-gpt"), ("char_tokenizer_dir", "swiglu-gpt"),
                                           ("char_tokenizer_dir", "relu2-gpt")])
def test_onnx_decodes_incrementally_like_our_model(fixture, name, request, tmp_path):
    _require("onnxruntime", "onnxruntime")
    model_dir = request.getfixturevalue(fixture)
    model_dir = model_dir[name] if name else model_dir
    result = export_model(model_dir, "onnx", tmp_path / "onnx")
    figures = result.figures
    # 64 tokens one at a time (short-gpt's cache, context 24, slides on the way), then a whole prompt at once
    assert figures["decode_steps"] == 64
    assert figures["max_abs_logit_diff"] <= LOGIT_TOLERANCE
    assert figures["prompt_max_abs_logit_diff"] <= LOGIT_TOLERANCE
    import onnx

    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    metadata = {p.key: p.value for p in graph.metadata_props}
    assert metadata["producer"] == "scriptorium" and metadata["source_model"] == model_dir.name


@pytest.mark.parametrize("fixture", ["rotary_bpe_gpt", "learned_bpe_gpt", "lstm"])
def test_the_engine_generates_the_same_text_through_onnxruntime(fixture, request, char_tokenizer_dir, tmp_path):
    """The engine's scheduler batches an OnnxModel's state as it does the torch model's (GPTs slide past 96)."""
    _require("onnxruntime", "onnxruntime")
    from training.export.onnx import OnnxModel

    model_dir = char_tokenizer_dir["lstm"] if fixture == "lstm" else request.getfixturevalue(fixture)
    export_model(model_dir, "onnx", tmp_path / "onnx", check=False)
    loaded = load_model_dir(model_dir, dtype="float32")
    ours = Generator(loaded).generate("ANNA:\n", max_new_tokens=120, temperature=0).text  # slides past 96
    loaded.model = OnnxModel(tmp_path / "onnx" / "model.onnx", loaded)
    theirs = Generator(loaded)
    assert theirs.generate("ANNA:\n", max_new_tokens=120, temperature=0).text == ours
    batch = theirs.generate("ANNA:\n", max_new_tokens=10, num_return_sequences=3, seed=1, temperature=0.8)
    assert len(batch.choices) == 3


def test_export_command_line(char_tokenizer_dir, tmp_path):
    _require("onnxruntime", "onnxruntime")
    out = tmp_path / "lstm-onnx"
    result = run_cli("export", str(char_tokenizer_dir["lstm"]), "--format", "onnx", "--output", str(out),
                     "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert f"{out}: ONNX graph with LSTM state inputs and outputs" in result.stdout
    assert "checked with onnxruntime" in result.stdout
    card = (out / "README.md").read_text()
    assert "`python -m training export lstm --format onnx --output lstm-onnx --threads 1`" in card
    _no_machine_paths(out, tmp_path)


# --- gguf: llama.cpp through llama-cpp-python ------------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["rotary_bpe_gpt", "learned_bpe_gpt"])
def test_gguf_f32_continues_greedily_token_for_token(fixture, request, tmp_path):
    _require("llama_cpp", "llama-cpp-python")
    model_dir = request.getfixturevalue(fixture)
    result = export_model(model_dir, "gguf", tmp_path / "gguf", gguf_type="f32", threads=1)
    figures = result.figures
    assert result.architecture == ("llama.cpp gptneox" if fixture == "rotary_bpe_gpt" else "llama.cpp gpt2")
    assert figures["tokenization_identical"] is True
    assert figures["greedy_identical"] == figures["greedy_prompts"] == 3
    assert figures["greedy_tokens"] == GREEDY_TOKENS
    assert figures["perplexity_relative_diff"] <= 0.01
    assert figures["max_abs_logit_diff"] <= 0.05  # llama.cpp's tanh GELU: close, not equal
    assert figures["max_end_of_text_probability"] < 1e-3
    assert [p.name for p in sorted((tmp_path / "gguf").iterdir())] == [
        "Modelfile", "README.md", f"{model_dir.name}-f32.gguf"]


@pytest.mark.parametrize("gguf_type, limit", [("f16", 0.01), ("q8_0", 0.02)])
def test_gguf_smaller_weights_keep_the_perplexity(gguf_type, limit, rotary_bpe_gpt, tmp_path):
    _require("llama_cpp", "llama-cpp-python")
    result = export_model(rotary_bpe_gpt, "gguf", tmp_path / "gguf", gguf_type=gguf_type, threads=1)
    assert result.figures["perplexity_relative_diff"] <= limit
    assert result.figures["tokenization_identical"] is True
    f32_size = 4 * load(rotary_bpe_gpt).num_parameters
    size = (tmp_path / "gguf" / f"{rotary_bpe_gpt.name}-{gguf_type}.gguf").stat().st_size
    assert size < (0.6 if gguf_type == "f16" else 0.4) * f32_size + 64 * 1024


def test_gguf_file_and_modelfile(rotary_bpe_gpt, tmp_path):
    gguf = _require("gguf", "gguf")
    export_model(rotary_bpe_gpt, "gguf", tmp_path / "g", gguf_type="q8_0", check=False)
    reader = gguf.GGUFReader(str(tmp_path / "g" / "rotary-gpt-q8_0.gguf"))
    fields = reader.fields

    def value(key):
        field = fields[key]
        return field.contents()

    tokens = value("tokenizer.ggml.tokens")
    assert value("general.architecture") == "gptneox" and value("gptneox.use_parallel_residual") is False
    assert value("gptneox.rope.dimension_count") == 16 and value("tokenizer.ggml.pre") == "gpt-2"
    assert len(tokens) == 301 and tokens[-1] == "<|endoftext|>" and value("tokenizer.ggml.eos_token_id") == 300
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_qkv.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    modelfile = (tmp_path / "g" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./rotary-gpt-q8_0.gguf\n")
    assert 'TEMPLATE """{{ .Prompt }}"""' in modelfile and "PARAMETER num_ctx 96" in modelfile


@pytest.mark.slow
def test_gguf_of_the_shipped_gpt(tmp_path):
    """The shipped GPT (6 x 192, BPE 512), on 513 tokens it sampled: greedy and perplexity through llama.cpp in f32
    (q8_0 and f16 on the tiny trained GPT above). bench/export_fidelity.py measures every type on the validation
    text (docs/benchmarks.md)."""
    _require("llama_cpp", "llama-cpp-python")
    model_dir = ROOT / "models" / "shakespeare-gpt"
    if not (model_dir / "model.safetensors").is_file():
        pytest.skip("models/shakespeare-gpt is not in this checkout (make train builds it)")
    figures = export_model(model_dir, "gguf", tmp_path / "g", gguf_type="f32", threads=1).figures
    assert figures["perplexity_relative_diff"] <= 0.01
    assert figures["greedy_identical"] == figures["greedy_prompts"] == 3
    assert figures["greedy_tokens"] == GREEDY_TOKENS


def test_cards_record_the_projects_version():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE).group(1) == lm.__version__
