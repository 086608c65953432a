"""`python -m training <command>`: train, sweep, evaluate, benchmark, prepare-data, train-tokenizer, generate, card,
export.

Bad input is one line on stderr and a non-zero exit status, never a traceback: 2 for usage and configuration
errors, 1 for everything else that goes wrong (data, checkpoints, a diverged run), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from lm import checks
from lm.checks import OptionError
from lm.options import MAX_NEW_TOKENS, SEED, TEMPERATURE, TOP_K, TOP_P, Option
from lm.tokenizers import TOKENIZER_KINDS
from training.config import DataConfig

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class UsageError(ValueError):
    """A bad command line; reported like a configuration error (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (and no usage dump) like every other error here."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse `type` from a check: a refused value is argparse's one-line usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except OptionError as error:
            raise argparse.ArgumentTypeError(error.problem) from None

    return convert


_positive_int = _argument(partial(checks.integer_from, "value", minimum=1))
# Any time taken on a command line (here and in bench/): seconds or a duration ("90s", "30m", "2h", "1h30m").
duration_argument = _argument(partial(checks.duration_from, "value", exclusive_minimum=0))


def _add_option(parser: argparse.ArgumentParser, option: Option, default: Any = None) -> None:
    """A generation option as a flag (--top-p), with its definition's check, default and description."""
    default = option.default if default is None else default
    shown = "" if default is None else f" (default: {default})"
    parser.add_argument("--" + option.name.replace("_", "-"), type=_argument(option.parse), default=default,
                        help=option.description + shown)


def _add_file_choice(parser: argparse.ArgumentParser, default_help: str) -> None:
    """--include / --exclude: which files of a directory source are read."""
    parser.add_argument("--include", action="append", metavar="PATTERN",
                        help=f'read the files of a directory that match, e.g. --include "*.py" --include "*.md" '
                             f"(repeatable; matched against the path below the directory and the file name; "
                             f"{default_help})")
    parser.add_argument("--exclude", action="append", metavar="PATTERN",
                        help='leave out the files that match, e.g. --exclude "tests/*" (repeatable)')


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m training", description="Train, evaluate and compare small language models.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    p = commands.add_parser("train", help="train a model from a YAML config",
                            description="Train a model; --output becomes a model directory with the best weights.")
    p.add_argument("--config", help="YAML preset, e.g. configs/shakespeare-gpt.yaml (required without --auto)")
    p.add_argument("--auto", action="store_true",
                   help="size the run from the text, this machine's measured speed and --max-time: tokenizer, "
                        "family, width and depth, batch, regularisation, schedule; with --config, only the keys "
                        "it leaves out (docs/training.md); writes OUTPUT/resolved.yaml")
    p.add_argument("--data", help="data source replacing data.source: a file, a directory, or a corpus name")
    _add_file_choice(p, "replaces data.include; default *.txt")
    p.add_argument("--output", help="model directory to write (default: runs/<preset name>)")
    p.add_argument("--max-steps", type=_positive_int, help="replaces training.max_steps")
    p.add_argument("--max-time", type=duration_argument, metavar="DURATION",
                   help="wall-clock budget: seconds (90) or 90s, 30m, 2h, 1h30m; replaces training.max_time")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--resume", action="store_true", help="continue the run saved in OUTPUT/resume")
    p.add_argument("--init-from", metavar="MODEL_DIR", help="fine-tune this model (keeps its tokenizer)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set training.lr=3e-4 (repeatable)")
    p.add_argument("--threads", type=_positive_int,
                   help="CPU threads for torch, replaces training.threads (default: one per core; 1 copes best "
                        "with a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no lines about the data read")
    p.set_defaults(handler=cmd_train)

    p = commands.add_parser("sweep", help="train one config over a grid or random ranges of its keys; compare",
                            description="Hyperparameter sweep: a training run per trial in OUTPUT/trial-NNN, each "
                                        "with --trial-time of training, scored on the validation split; a table "
                                        "(results.md, results.csv) with the best marked and validation_curves.png.")
    p.add_argument("--config", required=True, help="YAML preset every trial starts from")
    p.add_argument("--data", help="data source replacing data.source: a file, a directory, or a corpus name")
    _add_file_choice(p, "replaces data.include; default *.txt")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="values to try for a config key, e.g. --grid training.lr=1e-3,3e-3 (repeatable: every "
                        "combination is a trial)")
    p.add_argument("--random", type=_positive_int, metavar="N", help="N random draws of the --range keys (at every "
                                                                     "grid point)")
    p.add_argument("--range", action="append", default=[], metavar="KEY=LOW:HIGH[:log]",
                   help="a span to draw from, uniform or log-uniform, e.g. --range training.lr=1e-4:1e-2:log; whole "
                        "numbers for an integer key (repeatable; needs --random)")
    p.add_argument("--seed", type=_argument(partial(checks.integer_from, "value", minimum=0)), default=0,
                   help="seed of the random draws (default 0): the same seed draws the same trials")
    p.add_argument("--trial-time", required=True, type=duration_argument, metavar="DURATION",
                   help="training time of each trial: seconds or 90s, 5m, 1h (at least 10 s); the config's "
                        "training.max_steps still ends a trial first if reached")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a config key for every trial, e.g. --set training.max_steps=100000 (repeatable)")
    p.add_argument("--output", help="sweep folder to write (default: sweeps/<preset name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in OUTPUT: skip finished trials, resume an interrupted one")
    p.add_argument("--promote", metavar="DIR", help="copy the best trial's model directory to DIR at the end")
    p.add_argument("--force", action="store_true", help="with --promote: replace DIR even if it is not empty")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="auto and cuda run one trial per GPU at a time when several are visible")
    p.add_argument("--threads", type=_positive_int, help="CPU threads for torch, replaces training.threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no lines about the trials")
    p.set_defaults(handler=cmd_sweep)

    p = commands.add_parser("evaluate", help="loss, perplexity, bits/char, calibration and diversity of a model",
                            description="Evaluate a model directory on a text.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--data", help="file, directory or corpus name to evaluate on (needed unless --custom-prompts "
                                  "is given)")
    p.add_argument("--split", choices=("train", "valid", "test", "all"),
                   help="evaluate only this part (cut as in the model's training), or all three in one table; "
                        "default: the whole text")
    p.add_argument("--cleaner", help="cleaner for the text (default: the one the model was trained with)")
    _add_file_choice(p, "default: the patterns the model was trained with")
    p.add_argument("--output", help="JSON results file (default: MODEL_DIR/evaluations/<data>-<split>.json, one "
                                    "file per data set and split; with --ensemble, none unless given)")
    p.add_argument("--ensemble", nargs="+", metavar="MODEL_DIR",
                   help="score MODEL_DIR with these models as one ensemble (mean of their probabilities); "
                        "they must share its tokenizer")
    p.add_argument("--ensemble-weights", nargs="+", type=float, metavar="W",
                   help="one weight per model of the ensemble, MODEL_DIR's first (default: equal)")
    p.add_argument("--plots", metavar="DIR", help="also write loss, confidence and calibration plots here")
    p.add_argument("--samples", type=_positive_int, default=4, help="continuations sampled for diversity figures")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-baselines", dest="baselines", action="store_false",
                   help="skip the baseline ladder (unigram, Kneser-Ney n-gram, bzip2, xz; only with --split "
                        "valid or test, cached in MODEL_DIR/baselines.json)")
    p.add_argument("--dynamic", action="store_true",
                   help="also report dynamic evaluation: a gradient step on each segment after scoring it")
    p.add_argument("--dynamic-rule", choices=("sgd", "rms"), default="sgd", help="update rule (default sgd)")
    p.add_argument("--dynamic-lr", type=float,
                   help="learning rate (default: sgd 0.03 for a GPT, 0.2 for an LSTM; rms 1e-5 and 3e-5)")
    p.add_argument("--dynamic-decay", type=float, default=0.0,
                   help="pull back toward the trained weights per step, in [0, 1) (default 0)")
    p.add_argument("--dynamic-segment", type=_positive_int, metavar="TOKENS",
                   help="tokens per step (default: the GPT's half context, 32 for the LSTM)")
    p.add_argument("--quantize", choices=("int8",), help="evaluate with int8 linear layers, as QUANTIZE=int8 serves")
    p.add_argument("--custom-prompts", metavar="FILE",
                   help="also continue these prompts, one a line (a line break inside a prompt written \\n), and "
                        "save the continuations with the figures (without --data: in "
                        "MODEL_DIR/evaluations/prompts-<FILE name>.json)")
    p.add_argument("--num-samples", type=_positive_int, default=1, help="continuations per custom prompt (default 1)")
    _add_option(p, MAX_NEW_TOKENS)
    for option in (TEMPERATURE, TOP_K, TOP_P):
        _add_option(p, option)
    # the continuations are saved to be repeated: a fixed seed unless told
    _add_option(p, SEED.narrowed(description="Random seed of the first custom prompt; prompt i uses seed + i, so "
                                             "the same command gives the same continuations."), default=0)
    p.set_defaults(handler=cmd_evaluate)

    p = commands.add_parser("benchmark", help="compare models: completion, consistency, repetition, speed",
                            description="Benchmark one or more model directories side by side.")
    p.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR")
    p.add_argument("--output", help="JSON file for the comparison")
    p.add_argument("--new-tokens", type=_positive_int,
                   help="tokens per generation (default 64; with --benchmark-config, replaces the suite's "
                        "sampling.max_new_tokens)")
    p.add_argument("--benchmark-config", metavar="SUITE_YAML",
                   help="run this suite instead (prompts with expected completions or keywords, and which "
                        "measures to run; e.g. configs/benchmarks/shakespeare.yaml) and print one Markdown table")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=cmd_benchmark)

    p = commands.add_parser("prepare-data", help="download or read a corpus, clean and split it",
                            description="Write train.txt / valid.txt / test.txt for a corpus.")
    p.add_argument("--source", required=True, help="tinyshakespeare, wikitext2, wikitext103, or a PATH")
    p.add_argument("--cleaner", help="default, wikipedia, subtitles, dialogue, gutenberg, none")
    _add_file_choice(p, "default *.txt")
    p.add_argument("--split", help="train,valid[,test] fractions, e.g. 0.9,0.1 (default: 90/10 for "
                                   "tinyshakespeare, 70/15/15 otherwise; WikiText keeps its own files)")
    p.add_argument("--out", required=True, help="directory to write")
    p.set_defaults(handler=cmd_prepare_data)

    p = commands.add_parser("train-tokenizer", help="learn a char, word or BPE vocabulary",
                            description="Train a tokenizer on a text and save it as tokenizer.json.")
    p.add_argument("--data", required=True, help="file, directory or corpus name")
    p.add_argument("--kind", required=True, choices=TOKENIZER_KINDS)
    p.add_argument("--vocab-size", type=_positive_int)
    p.add_argument("--min-freq", type=_positive_int, default=1)
    p.add_argument("--cleaner", default="default")
    _add_file_choice(p, "default *.txt")
    p.add_argument("--sample", type=_positive_int, default=DataConfig.tokenizer_sample, metavar="CHARACTERS",
                   help="characters learned from, spread evenly across the text (default %(default)s)")
    p.add_argument("--output", required=True, help="tokenizer.json to write")
    p.set_defaults(handler=cmd_train_tokenizer)

    p = commands.add_parser("generate", help="stream a continuation of a prompt to the terminal",
                            description="Continue a prompt with a model directory, printing tokens as they come.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--prompt", default="", help="text to continue (default: empty)")
    _add_option(p, MAX_NEW_TOKENS, default=200)  # a terminal shows more text than an API answer: twice the default
    for option in (TEMPERATURE, TOP_K, TOP_P, SEED):
        _add_option(p, option)
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=cmd_generate)

    p = commands.add_parser("card", help="write a model card (card.md) from what a model directory records",
                            description="Write MODEL_DIR/card.md: architecture, data, the training command, "
                                        "time and hardware, the figures of evaluation.json, and samples.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.set_defaults(handler=cmd_card)

    p = commands.add_parser("export", help="export a model for transformers (hf), llama.cpp / Ollama (gguf) or onnx",
                            description="Write MODEL_DIR in another runtime's format, check it in that runtime "
                                        "against the model (when the runtime is installed) and write a card. "
                                        "hf and gguf: GPT models; onnx: GPT and LSTM. See docs/export.md.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--format", required=True, choices=("hf", "gguf", "onnx"), dest="export_format")
    p.add_argument("--output", required=True, metavar="DIR", help="folder to write (new, empty or an earlier export)")
    p.add_argument("--gguf-type", default="f16", choices=("f32", "f16", "q8_0"),
                   help="gguf weights: f32, f16 (default) or q8_0 (8-bit)")
    p.add_argument("--license", default="unknown", dest="license_id",
                   help="license id for the card's Hub metadata, e.g. mit or apache-2.0 (default: unknown)")
    p.add_argument("--no-check", action="store_true", help="do not run the export in its runtime to compare")
    p.add_argument("--threads", type=_positive_int, help="CPU threads for the check (default: torch's)")
    p.set_defaults(handler=cmd_export)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from training.config import load_config
    from training.trainer import RunOptions, train

    started = time.perf_counter()  # --auto's budget counts from here
    if args.auto:
        config, output = _auto_config(args, _overrides(args), started)
        max_time = None  # the resolved config's max_time: what measuring left of --max-time
    else:
        if not args.config:
            raise UsageError("train: give --config PRESET.yaml, or --auto with --data and --max-time")
        config = load_config(args.config, _overrides(args))
        output = Path(args.output) if args.output else Path("runs") / (config.name or Path(args.config).stem)
        max_time = args.max_time
    command = "python -m training " + shlex.join(args.argv)
    options = RunOptions(output=output, data=args.data, max_steps=args.max_steps, max_time=max_time,
                         device=args.device, resume=args.resume, init_from=args.init_from, command=command,
                         progress=not args.quiet)
    result = train(config, options)
    if _is_main_process():
        print(f"{output}: {result.steps} steps ({result.stop_reason}), best validation loss "
              f"{result.best_val_loss:.4f} nats/token = {result.val_bits_per_char:.4f} bits/char "
              f"(unigram baseline {result.unigram_val_loss:.4f})")
    return 0


def _overrides(args: argparse.Namespace) -> list[str]:
    """The config overrides of a command line: --set, then --threads, --include and --exclude as keys."""
    overrides = list(args.set) + ([f"training.threads={args.threads}"] if args.threads else [])
    return overrides + [f"data.{key}={json.dumps(patterns)}" for key, patterns in
                        (("include", args.include), ("exclude", args.exclude)) if patterns]


def cmd_sweep(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.data.corpus import load_corpus
    from training.sweep.manifest import check_output, plan_sweep
    from training.sweep.report import (CSV_FILE, CURVES_FILE, TABLE_FILE, best_trial, check_promote_target,
                                       markdown_table, promote, rows)
    from training.sweep.runner import MIN_TRIAL_SECONDS, run_sweep

    # everything is checked before anything is written: the options, every trial's config, the folders, the data
    if args.trial_time < MIN_TRIAL_SECONDS:
        raise UsageError(f"sweep: --trial-time {args.trial_time:g} s is too short to compare settings; give at "
                         f"least {MIN_TRIAL_SECONDS:g} s (e.g. 5m)")
    if args.force and not args.promote:
        raise UsageError("sweep: --force replaces a non-empty --promote folder; it needs --promote DIR")
    plan = plan_sweep(args.config, _overrides(args), args.grid, args.range, args.random, args.seed, args.trial_time,
                      data=args.data, output=args.output, command="python -m training " + shlex.join(args.argv))
    output, trials = plan.output, plan.trials
    check_output(plan, args.resume)
    if args.promote:
        check_promote_target(Path(args.promote), args.force)
    base = load_config(args.config, plan.overrides)
    load_corpus(base.data, args.data, seed=base.training.seed).check_not_empty()
    if not args.quiet:
        print(f"sweep of {len(trials)} trials, {args.trial_time:g} s of training each, into {output}",
              file=sys.stderr)

    results = run_sweep(plan, device=args.device, progress=not args.quiet,
                        log=(lambda line: None) if args.quiet else partial(print, file=sys.stderr))
    print(markdown_table(rows(plan, results)))
    best = best_trial(plan, results)
    if best is None:
        raise ValueError(f"{output}: no trial finished with a validation figure (see the table)")
    print(f"best: {best.name} ({best.describe()}): {results[best.name]['nats_per_char']:.4f} nats/char = "
          f"{results[best.name]['bits_per_char']:.4f} bits/char")
    print(f"written to {output / TABLE_FILE}, {output / CSV_FILE}, {output / CURVES_FILE}")
    if args.promote:
        promote(plan.trial_dir(best), Path(args.promote))
        print(f"promoted {best.name} to {args.promote}")
    return 0


def _auto_config(args: argparse.Namespace, overrides: list[str], started: float):
    """`train --auto`: the config sized for the data and budget (the preset's and --set's keys kept), written to
    OUTPUT/resolved.yaml; (config, output)."""
    from training.auto import configure, write_resolved
    from training.config import apply_override, read_config_mapping

    if args.resume or args.init_from:
        raise UsageError("train: --auto sizes a new model; to continue or fine-tune, give --config "
                         "OUTPUT/resolved.yaml instead")
    given = read_config_mapping(args.config) if args.config else {}
    for item in overrides:
        apply_override(given, item, args.config or "--set")
    if not args.config:
        if args.data is None:
            raise UsageError("train: --auto needs --data PATH (or a --config that names its data)")
    budget = args.max_time if args.max_time is not None else (given.get("training") or {}).get("max_time")
    if budget is None:
        raise UsageError("train: --auto needs a time budget to size the run for: give --max-time (e.g. 30m)")
    budget = checks.duration_from("training.max_time", budget, exclusive_minimum=0)
    output = Path(args.output) if args.output else Path("runs") / (given.get("name") or "auto")
    choice = configure(given, args.data, budget, args.device, output, started, source=args.config or "--auto",
                       log=partial(print, file=sys.stderr))
    print(f"auto: config written to {write_resolved(choice, output)}", file=sys.stderr)
    return choice.config, output


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluation.dynamic_eval import DynamicOptions
    from training.evaluation.evaluate import format_evaluation, run_evaluation, save_evaluation
    from training.evaluation.prompts import PromptFileError, read_prompts
    from training.evaluation.sampling import SamplingSettings, validated

    if args.ensemble or args.ensemble_weights:
        return _evaluate_ensemble(args)
    if not args.data and not args.custom_prompts:
        raise UsageError("evaluate: give --data PATH, --custom-prompts FILE, or both")
    try:
        dynamic = DynamicOptions(lr=args.dynamic_lr, decay=args.dynamic_decay, segment=args.dynamic_segment,
                                 rule=args.dynamic_rule) if args.dynamic else None
    except ValueError as exc:
        raise UsageError(f"evaluate: {exc}") from None
    if args.split == "all" and dynamic:
        raise UsageError("evaluate: --dynamic reads one text: give --split valid, test or train, or none")
    sampling = validated(SamplingSettings, {"num_samples": args.num_samples, "temperature": args.temperature,
                                            "max_new_tokens": args.max_new_tokens, "top_k": args.top_k,
                                            "top_p": args.top_p, "seed": args.seed}, "evaluate --custom-prompts")
    try:
        prompts = read_prompts(args.custom_prompts) if args.custom_prompts else None
    except PromptFileError as exc:
        raise UsageError(f"evaluate: --custom-prompts: {exc}") from None
    result = run_evaluation(args.model_dir, args.data, args.split, prompts=prompts, prompts_source=args.custom_prompts,
                            sampling=sampling, cleaner=args.cleaner, device=args.device, samples=args.samples,
                            plots_dir=args.plots, baselines=args.baselines, dynamic=dynamic, include=args.include,
                            exclude=args.exclude, quantize=args.quantize)
    result["command"] = "python -m training " + shlex.join(args.argv)
    if "read" in result:
        print(f"read {result['read']}", file=sys.stderr)
    output = save_evaluation(result, args.model_dir, args.output)
    print(format_evaluation(result))
    print(f"written to {output}")
    return 0


def _evaluate_ensemble(args: argparse.Namespace) -> int:
    """`evaluate --ensemble`: the models' mixture on one text; its figures go to --output only, never beside the
    model's own evaluations."""
    from training.evaluation.ensemble import evaluate_ensemble, format_ensemble
    from training.evaluation.evaluate import write_json

    if not args.ensemble:
        raise UsageError("evaluate: --ensemble-weights needs --ensemble MODEL_DIR ...")
    if args.ensemble_weights is not None and len(args.ensemble_weights) != 1 + len(args.ensemble):
        raise UsageError(f"evaluate: --ensemble-weights: expected {1 + len(args.ensemble)} weights (MODEL_DIR's "
                         f"first), got {len(args.ensemble_weights)}")
    if not args.data:
        raise UsageError("evaluate: --ensemble scores a text: give --data PATH")
    unsupported = [flag for flag, given in (("--split all", args.split == "all"), ("--dynamic", args.dynamic),
                                            ("--quantize", args.quantize), ("--plots", args.plots),
                                            ("--custom-prompts", args.custom_prompts)) if given]
    if unsupported:
        raise UsageError(f"evaluate: --ensemble scores one text with float weights; drop {unsupported[0]}")
    result = evaluate_ensemble([args.model_dir, *args.ensemble], args.data, split=args.split, cleaner=args.cleaner,
                               device=args.device, weights=args.ensemble_weights, include=args.include,
                               exclude=args.exclude)
    result["command"] = "python -m training " + shlex.join(args.argv)
    print(f"read {result['read']}", file=sys.stderr)
    print(format_ensemble(result))
    if args.output:
        write_json(result, args.output)
        print(f"written to {args.output}")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from training.card import write_card

    print(f"written to {write_card(args.model_dir)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import export_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    # recorded in the card with the model's name for its folder (the card never names this machine's folders)
    argv = [Path(a).name if a == args.model_dir else a for a in args.argv]
    command = "python -m training " + shlex.join(argv)
    result = export_model(args.model_dir, args.export_format, args.output, gguf_type=args.gguf_type,
                          check=not args.no_check, license_id=args.license_id, command=command, threads=args.threads)
    print(f"{result.path}: {result.architecture} ({', '.join(result.files)})")
    if result.figures is None:
        print(f"not checked: {result.not_checked}")
    else:
        shown = {k: v for k, v in result.figures.items() if k != "runtime"}
        print(f"checked with {result.figures['runtime']}: " + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from lm.atomic import atomic_write_text
    from training.evaluation.benchmark import benchmark_model, format_side_by_side

    if args.benchmark_config:
        return _benchmark_suite(args)
    results = [benchmark_model(d, device=args.device, new_tokens=args.new_tokens or 64) for d in args.model_dirs]
    print(format_side_by_side(results))
    if args.output:
        atomic_write_text(args.output, json.dumps({"models": results}, indent=2) + "\n")
        print(f"written to {args.output}")
    return 0


def _benchmark_suite(args: argparse.Namespace) -> int:
    """`benchmark --benchmark-config SUITE`: the suite's measures on every model, one Markdown table."""
    from training.evaluation.suites import BenchmarkSuite

    suite = BenchmarkSuite.from_yaml(args.benchmark_config)  # a bad suite is refused before any model loads
    result = suite.run(args.model_dirs, device=args.device, max_new_tokens=args.new_tokens)
    print(result.markdown())
    if args.output:
        result.save(args.output)
        print(f"written to {args.output}")
    return 0


def cmd_prepare_data(args: argparse.Namespace) -> int:
    from training.data.prepare import prepare_data

    split = None
    if args.split:
        try:
            split = [float(x) for x in args.split.split(",")]
        except ValueError:
            raise UsageError(f"--split: expected fractions like 0.9,0.1, got {args.split!r}") from None
        if len(split) not in (2, 3) or sum(split) > 1 + 1e-9 or min(split) < 0 or split[0] <= 0 or split[1] <= 0:
            raise UsageError(f"--split: expected 2 or 3 fractions > 0 adding up to at most 1, got {args.split!r}")
    summary = prepare_data(args.source, args.out, cleaner=args.cleaner, split=split, include=args.include,
                           exclude=args.exclude)
    print(f"read {summary['read']}", file=sys.stderr)
    for name, info in summary["files"].items():
        print(f"{Path(args.out) / name}: {info['characters']:,} characters, {info['lines']:,} lines")
    return 0


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from training.data.corpus import load_whole
    from training.data.tokenizer_training import learn_tokenizer

    part = load_whole(args.data, args.cleaner, args.include or (), args.exclude or ())
    print(f"read {part.description}", file=sys.stderr)
    settings = DataConfig(source=args.data, tokenizer=args.kind, vocab_size=args.vocab_size, min_freq=args.min_freq,
                          tokenizer_sample=args.sample)
    tokenizer = learn_tokenizer(part, settings, log=partial(print, file=sys.stderr))
    tokenizer.save(args.output)
    print(f"{args.output}: {args.kind} tokenizer, {tokenizer.vocab_size:,} tokens")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from lm import load

    with load(args.model_dir, device=args.device) as generator:
        stream = generator.stream(args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        sys.stdout.write(args.prompt)
        sys.stdout.flush()
        try:
            for event in stream:
                sys.stdout.write(event.text)
                sys.stdout.flush()
        finally:
            stream.close()
    sys.stdout.write("\n")
    return 0


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split("\n")[0].split()) if "\n" in text else text


def main(argv: list[str] | None = None) -> int:
    from training.config import ConfigError

    parser = build_parser()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(argv)
        args.argv = argv  # recorded in the model's training metadata
        return args.handler(args)
    except (ConfigError, UsageError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001  (the contract is one line, never a traceback)
        from training.trainer import Interrupted

        if isinstance(exc, Interrupted):
            if str(exc):  # empty on the other processes of a torchrun run: rank 0 speaks for them
                print(str(exc), file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(exc, (ValueError, OSError, RuntimeError)):
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_ERROR
        raise
