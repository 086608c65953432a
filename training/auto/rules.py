"""`--auto`'s rules: corpus statistics, measured speeds and a time budget in; a config's sections and the reasons out.

Pure apart from the speed function it is given (tests pass one that returns numbers). Every threshold below comes
from a measurement in docs/benchmarks.md or is marked as a guess; docs/training.md ("Automatic configuration")
explains them, and bench/auto.py measures the whole rule set against the hand-tuned presets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from lm.models import MODEL_TYPES, build_model

# The smallest text --auto trains on: a validation part of at least MIN_VALID_CHARS (the default split holds out
# the last 10%) and a training part of at least MIN_TRAIN_CHARS.
MIN_TRAIN_CHARS, MIN_VALID_CHARS = 18_000, 2_000
MIN_BUDGET_S = 30.0  # below this, measuring and setting up leave nothing worth training
MIN_STEPS = 30  # the smallest model must get at least this many optimizer steps in what is left of the budget

# Tokenizer. A byte-level BPE of 512 tokens packed TinyShakespeare's text into 1.88 characters a token and beat the
# character tokenizer for both families at 5 to 60 minutes (docs/benchmarks.md, "Curves tried"). BPE is kept where
# the trial vocabulary packs at least BPE_MIN_CHARS_PER_TOKEN characters into a token (below it, a token is barely
# more than a character and the char model's smaller output layer is cheaper) and where the training text has at
# least CHARS_PER_VOCAB_ENTRY characters per vocabulary entry. That floor was first a guess of 1,000, which gave the
# 81K-character tiny corpus of bench/auto.py a char model; there the BPE-512 preset did better (2.205 against
# 2.319 nats/char for the char preset, 2 minutes each, docs/benchmarks.md), so it is now 100.
TRIAL_VOCAB = 512
BPE_MIN_CHARS_PER_TOKEN = 1.4
CHARS_PER_VOCAB_ENTRY = 100
# Larger vocabularies for larger corpora (extrapolated, not measured here): (training characters below, size).
BPE_SIZES = ((20_000_000, 512), (200_000_000, 1024), (math.inf, 2048))
# More common characters than bytes (CJK, many scripts): a byte-level BPE spends its first merges on putting
# characters together from their bytes, so it gets a larger vocabulary (a guess, not measured here).
RICH_CHARSET = 256
COMMON_SHARE = 10_000

# Family. On the 2-core CPU the BPE AWD-LSTM overtook the BPE GPT at about 7 minutes of training and stayed ahead
# to 60 (12 min: 1.511 against 1.592 nats/char; 60 min: 1.390 against 1.412). Shorter budgets get a GPT, and so
# does a GPU (its parallel attention step; the LSTM steps through time).
LSTM_FROM_S = 8 * 60

# Size. Of the presets that did well, the shipped 60-minute GPT read 4.6 training tokens per parameter, the
# shipped LSTM 3.0 and gpt-small at 224 s (which beat nanoGPT's recipe) 2.2: the largest shape of the ladder that
# reads at least TOKENS_PER_PARAMETER tokens per parameter in the budget is chosen. On TinyShakespeare the 3 x 96
# GPT beat a 4 x 128 reading 1.4 per parameter by 4.6% at 2 minutes, and one reading 2.0 by 1.2% at 224 s (batches
# of 8; a floor of 2 had chosen that 4 x 128), so the floor is 3. A text the budget would
# read MANY_PASSES times or more gets a larger shape still, the largest that reads it at least that often: a pass
# more over the same text is worth less than a larger model. On two tiny corpora (81K characters, 2 minutes) the
# GPTs that read them 16-50 times were within 2-3% of each other, and those at 115 and 10 passes 3-16% worse;
# 20 picks 4 x 128 (25 passes) on both, within 1.5% of the best on each (bench/measurements/auto-sizes.md). A
# model also stays below PARAMETERS_PER_TRAIN_TOKEN parameters per training token: the LSTM 8 (at 60 minutes on
# TinyShakespeare its 2 x 384, 5 per token, beat 2 x 512, 8.7 per token), the GPT 24 (that 4 x 128 has 18; a 4 x
# 192, 40, was the best on one tiny corpus and 2.5% behind on the other).
TOKENS_PER_PARAMETER = 3.0
MANY_PASSES = 20.0
PARAMETERS_PER_TRAIN_TOKEN = {"gpt": 24.0, "lstm": 8.0}
GPT_LADDER = ((2, 64, 2), (3, 96, 3), (4, 128, 4), (4, 192, 4), (6, 192, 6), (6, 256, 4), (8, 384, 6),
              (12, 512, 8), (12, 768, 12))  # (layers, width, heads): gpt-small is 4 x 128, the shipped GPT 6 x 192
LSTM_LADDER = ((2, 128), (2, 256), (2, 384), (2, 512), (3, 768), (3, 1150))  # (layers, hidden = tied embedding)

# Regularisation by the passes the budget makes over the training text. Measured: gpt-small (~1.7 passes in 224 s,
# dropout 0); --auto's 3 x 96 GPT at 224 s on TinyShakespeare (4.4 passes), where dropout 0 beat 0.1 by 0.057
# nats/char (1.5127 against 1.5692); the shipped models (~25 passes in an hour, 0.1-0.2). The rows between and
# beyond are guesses that grow with the passes, with early stopping behind them.
DROPOUT_BY_PASSES = ((8.0, 0.0), (16.0, 0.1), (30.0, 0.2), (100.0, 0.3), (math.inf, 0.4))
# Sequences a batch, by device and family. A GPT on a CPU takes small batches: at 224 s on TinyShakespeare the 3 x 96
# GPT (dropout 0) went from 1.5127 nats/char at 32 sequences to 1.4973 at 16, 1.4948 at 8 and 1.4869 at 4, the
# tokens/s about the same at one thread (more steps, each on less text). 8 keeps two threads busier than 4 would.
# The LSTM keeps the shipped preset's 32 (its batch pairs, benchmarks.md); a GPU takes 64.
BATCH_SIZE = {("cpu", "gpt"): 8, ("cpu", "lstm"): 32}
GPU_BATCH_SIZE = 64
# Peak learning rate by the model's width, the first row the width fits under: the GPT's from gpt-small,
# shakespeare-gpt and nanoGPT's 6 x 384; the LSTM's 3e-3 up to 384 from the shipped 2 x 384's hour pairs (3e-3 beat
# 2e-3 by 0.016-0.017 nats/char, benchmarks.md), the wider rates unmeasured.
LEARNING_RATE_BY_WIDTH = {"gpt": ((128, 3e-3), (256, 2e-3), (math.inf, 1e-3)),
                          "lstm": ((384, 3e-3), (512, 2e-3), (math.inf, 1e-3))}
# A GPT's attention dropout: off in a run that reads fewer tokens (a short run learns faster), = dropout from there.
# Measured in steps of the shipped GPT's 32 x 128 batches: it led without up to ~1,000 of them and trailed from ~1,200.
ATTENTION_DROPOUT_FROM_TOKENS = 1000 * 32 * 128
EARLY_STOPPING_FROM_PASSES = 2.0  # below, every batch is new text: validation cannot rise from memorising it
PATIENCE = 3
EVALUATIONS = 10  # validations in a run: enough for early stopping, few enough to cost ~5% of the steps


@dataclass(frozen=True)
class CorpusStats:
    """What `--auto` measured of the text (training/auto/survey.py)."""

    train_chars: int
    valid_chars: int
    charset: int  # distinct characters in the sample
    common_charset: int  # those that make up at least 1 in COMMON_SHARE of the sample (a rare emoji does not count)
    bpe_chars_per_token: float  # a TRIAL_VOCAB byte-level BPE learned on the sample, on text it did not learn from
    compressed_bits_per_char: float  # bzip2 on the sample: low for repetitive text (code, logs)
    sample_chars: int


@dataclass(frozen=True)
class Candidate:
    """A shape whose training speed is measured: the family, its model options, the vocabulary and the batch."""

    family: str
    model: tuple[tuple[str, Any], ...]  # model options without vocab_size, as sorted items (hashable)
    vocab_size: int
    batch_size: int
    seq_len: int

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model)

    def label(self) -> str:
        m = self.options
        if self.family == "gpt":
            return f"GPT {m['n_layer']} x {m['n_embd']}"
        return f"AWD-LSTM {m['n_layers']} x {m['hidden_size']}"


@dataclass(frozen=True)
class Speed:
    tokens_per_second: float  # whole training steps (forward, backward, optimizer)
    precision: str  # what ran fastest: fp32, bf16 or fp16
    how: str  # "measured", "cached" or "estimated from FLOPs"
    validation_tokens_per_second: float | None = None  # forward only; None: not timed, taken as 3x a training step's

    def validation_rate(self) -> float:
        # a forward pass is about a third of a training step's FLOPs (backward costs two forwards)
        return self.validation_tokens_per_second or 3 * self.tokens_per_second


SpeedOf = Callable[[Candidate], Speed]


@dataclass
class Plan:
    """The chosen config sections and one line per decision."""

    raw: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    params: int = 0
    expected_steps: int = 0
    passes: float = 0.0


class AutoError(ValueError):
    """The text or the budget cannot be trained on; one line saying what is needed."""


def parameters_and_flops(candidate: Candidate) -> tuple[int, float]:
    """The candidate's parameter count and training FLOPs per token, from a model built without memory."""
    with torch.device("meta"):
        model = build_model(candidate.family, {**candidate.options, "vocab_size": candidate.vocab_size})
    return model.num_parameters(), model.training_flops_per_token(candidate.seq_len)


def check_corpus(stats: CorpusStats, source: str) -> None:
    if stats.train_chars < MIN_TRAIN_CHARS or stats.valid_chars < MIN_VALID_CHARS:
        total = stats.train_chars + stats.valid_chars
        raise AutoError(f"data source {source}: {total:,} characters ({stats.train_chars:,} to train on, "
                        f"{stats.valid_chars:,} to validate with) is too little text for --auto: it needs at least "
                        f"{MIN_TRAIN_CHARS:,} to train on and {MIN_VALID_CHARS:,} held out to validate with "
                        f"(about {MIN_TRAIN_CHARS + MIN_VALID_CHARS:,} characters with the default 90/10 split)")


def check_budget(budget_s: float) -> None:
    if budget_s < MIN_BUDGET_S:
        raise AutoError(f"--max-time {budget_s:g}s is too short to train anything with --auto: give at least "
                        f"{MIN_BUDGET_S:g}s (it measures the text and this machine first, inside the budget)")


def choose_tokenizer(stats: CorpusStats, given: Mapping[str, Any]) -> tuple[str, int | None, str]:
    """(kind, vocab_size or None for char, reason)."""
    if given.get("tokenizer_path") is not None:
        return given.get("tokenizer", "char"), given.get("vocab_size"), "the given tokenizer file"
    kind, size = given.get("tokenizer"), given.get("vocab_size")
    if kind is not None:
        if kind == "bpe" and size is None:
            size = _bpe_size(stats)
        return kind, size if kind == "bpe" else size, f"tokenizer {kind} as given"
    size = _bpe_size(stats)
    packs = f"a trial {TRIAL_VOCAB}-token BPE packs {stats.bpe_chars_per_token:.2f} characters/token"
    if stats.bpe_chars_per_token < BPE_MIN_CHARS_PER_TOKEN:
        return "char", None, f"char: {packs} (< {BPE_MIN_CHARS_PER_TOKEN}), not worth a larger output layer"
    if stats.train_chars < CHARS_PER_VOCAB_ENTRY * size:
        return "char", None, (f"char: {stats.train_chars:,} training characters are too few to learn a {size}-token "
                              f"BPE (< {CHARS_PER_VOCAB_ENTRY:,} per token); {packs}")
    return "bpe", size, f"BPE {size}: {packs} (a step reads that many times more text than a char model's)"


def _bpe_size(stats: CorpusStats) -> int:
    size = next(s for limit, s in BPE_SIZES if stats.train_chars < limit)
    return max(size, 1024) if stats.common_charset > RICH_CHARSET else size


def choose_family(budget_s: float, device: str, given_model: Mapping[str, Any]) -> tuple[str, str]:
    if given_model.get("type"):
        return given_model["type"], f"{given_model['type']} as given"
    keys = [k for k in given_model if k != "type"]
    only = {family: [k for k in keys if k in _fields(family) and not any(k in _fields(other) for other in MODEL_TYPES
                                                                            if other != family)]
            for family in MODEL_TYPES}
    decided = [family for family, names in only.items() if names]
    if len(decided) == 1:
        return decided[0], f"{decided[0]}: the given model keys {', '.join(only[decided[0]])} are its own"
    if device != "cpu":
        return "gpt", f"GPT: on {device} its parallel attention step trains faster than an LSTM's steps through time"
    if budget_s >= LSTM_FROM_S:
        return "lstm", (f"AWD-LSTM: {budget_s / 60:.0f} min on a CPU (measured there: the BPE LSTM leads the GPT "
                        f"from ~7 min on, 1.511 against 1.592 nats/char at 12 min, 1.390 against 1.412 at 60)")
    return "gpt", f"GPT: {budget_s / 60:.1f} min on a CPU (the LSTM overtook the GPT only after ~7 min, measured)"


def _fields(family: str) -> set[str]:
    return {f.name for f in dataclasses.fields(MODEL_TYPES[family].config_class)}


def ladder(family: str, given_model: Mapping[str, Any], batch_size: int, seq_len: int,
           vocab_size: int) -> list[Candidate]:
    """The shapes to choose from, smallest first, with what the config gives laid over each (a config that fixes
    the size leaves one)."""
    shapes = []
    if family == "gpt":
        for layers, width, heads in GPT_LADDER:  # ReLU squared, zero-init: -0.046 nats/char at 12 min (benchmarks.md)
            shapes.append({"type": "gpt", "n_layer": layers, "n_embd": width, "n_head": heads,
                           "context_length": seq_len, "positions": "rotary", "mlp": "relu2", "zero_init_proj": True})
    else:
        for layers, hidden in LSTM_LADDER:
            shapes.append({"type": "lstm", "n_layers": layers, "hidden_size": hidden, "emb_size": hidden,
                           "tie_weights": True})
    seen, candidates = set(), []
    for shape in shapes:
        options = {**shape, **given_model}
        options.pop("type")
        key = tuple(sorted(options.items()))
        if key not in seen:
            seen.add(key)
            candidates.append(Candidate(family, key, vocab_size, batch_size, seq_len))
    return candidates


def loop_tokens(speed: Speed, train_s: float, batch_size: int, seq_len: int,
                eval_rows: int) -> tuple[float, int, float]:
    """(training tokens the loop reads in `train_s` once its EVALUATIONS validations are paid for, validation batches
    per validation, the seconds all validations take): the trainer's clock runs through its validations."""
    for eval_batches in (16, 8):  # 16 batches where the run makes 1,000 steps or more
        validation_s = EVALUATIONS * eval_batches * eval_rows * seq_len / speed.validation_rate()
        tokens = max(0.0, train_s - validation_s) * speed.tokens_per_second
        if tokens >= 1000 * batch_size * seq_len:
            break
    return tokens, eval_batches, validation_s


def dropout_for(passes: float) -> float:
    return next(p for limit, p in DROPOUT_BY_PASSES if passes < limit)


def learning_rate_for(family: str, width: int) -> float:
    return next(lr for limit, lr in LEARNING_RATE_BY_WIDTH[family] if width <= limit)


def plan_run(stats: CorpusStats, budget_s: float, train_s: float, speed_of: SpeedOf, given: Mapping[str, Any],
             device: str = "cpu", source: str = "the data") -> Plan:
    """The config sections --auto fills. `budget_s`: the whole budget (decides the family); `train_s`: what is left
    of it for the training loop; `speed_of`: tokens/s of a candidate (measured, or injected by tests); `given`: the
    raw config the user gave (its keys decide what they name; the plan is sized around them)."""
    check_budget(budget_s)
    check_corpus(stats, source)
    given_data, given_model = dict(given.get("data") or {}), dict(given.get("model") or {})
    given_training = dict(given.get("training") or {})
    kind, vocab, why_tokenizer = choose_tokenizer(stats, given_data)
    chars_per_token = stats.bpe_chars_per_token if kind == "bpe" else 1.0
    vocab_for_model = vocab if vocab else stats.charset + 1  # char: every character of the text (+ <unk>)
    train_tokens = max(1, int(stats.train_chars / chars_per_token))
    family, why_family = choose_family(budget_s, device, given_model)
    batch_size = int(given_training.get("batch_size", BATCH_SIZE.get((device, family), GPU_BATCH_SIZE)))
    seq_len = int(given_training.get("seq_len", given_model.get("context_length", 128 if device == "cpu" else 256)))
    eval_rows = int(given_training.get("eval_batch_size") or (16 if family == "lstm" else batch_size))

    chosen = None
    for candidate in ladder(family, given_model, batch_size, seq_len, vocab_for_model):
        params, _ = parameters_and_flops(candidate)
        if chosen is not None and params > PARAMETERS_PER_TRAIN_TOKEN[family] * train_tokens:
            break
        speed = speed_of(candidate)
        tokens, eval_batches, validation_s = loop_tokens(speed, train_s, batch_size, seq_len, eval_rows)
        if chosen is None:
            if tokens / (batch_size * seq_len) < MIN_STEPS:
                raise AutoError(f"--max-time {budget_s:g}s is too short: the smallest {candidate.label()} would take "
                                f"{tokens / (batch_size * seq_len):.0f} steps in the {train_s:.0f}s left after "
                                f"measuring (it needs {MIN_STEPS}); give a longer --max-time")
        elif tokens < TOKENS_PER_PARAMETER * params and tokens / train_tokens < MANY_PASSES:
            break
        chosen = (candidate, params, speed, tokens, eval_batches, validation_s)
    candidate, params, speed, tokens, eval_batches, validation_s = chosen
    steps = int(tokens / (batch_size * seq_len))
    passes = tokens / train_tokens
    dropout = dropout_for(passes)
    width = candidate.options.get("n_embd", candidate.options.get("hidden_size"))
    lr = learning_rate_for(family, width)

    data = {"tokenizer": kind}
    if vocab:
        data["vocab_size"] = vocab
    model = {"type": family, **candidate.options}
    if family == "gpt":
        # attention dropout off for short runs: the shipped GPT led without it up to ~1,000 steps (-0.028 nats/char
        # at 12 minutes) and trailed from ~1,200 on (+0.023 at an hour's 3,100 steps, benchmarks.md); counted in
        # tokens, as the batch differs
        model.update(dropout=dropout, attn_dropout=0.0 if tokens < ATTENTION_DROPOUT_FROM_TOKENS else dropout)
        training = {"weight_decay": 0.1, "grad_clip": 1.0, "betas": [0.9, 0.99]}
    else:  # the shipped LSTM's proportions between its dropouts, scaled with the passes
        model.update(dropout=dropout, dropout_hidden=dropout, dropout_input=round(dropout / 2, 3),
                     dropout_embedding=round(dropout / 4, 3), weight_drop=dropout)
        training = {"weight_decay": 0.1 if passes >= 30 else 0.01, "grad_clip": 0.25, "alpha": 2.0, "beta": 1.0,
                    "variable_bptt": True, "eval_batch_size": 16}
    evaluations_every = max(10, steps // EVALUATIONS)
    training.update(
        optimizer="adamw", lr=lr, min_lr=round(lr / 20, 8), schedule="warmup_cosine", batch_size=batch_size,
        seq_len=seq_len, warmup_steps=int(min(100, max(10, steps // 20))), max_steps=1_000_000_000,
        max_time=round(train_s, 1), eval_interval=evaluations_every, eval_batches=eval_batches,
        log_interval=10, precision=speed.precision, patience=PATIENCE if passes >= EARLY_STOPPING_FROM_PASSES else None,
        seed=1337)
    raw = {"data": data, "model": model, "training": training}

    size_why = (f"{candidate.label()} ({params / 1e6:.2f}M parameters): {speed.tokens_per_second:,.0f} tokens/s "
                f"({speed.how}, {speed.precision}), ~{steps:,} steps, {tokens / 1e6:.1f}M tokens in {train_s:.0f}s "
                f"less ~{validation_s:.0f}s of validation = "
                f"{tokens / params:.1f} per parameter (the largest shape reading >= {TOKENS_PER_PARAMETER:g} tokens "
                f"per parameter or the text >= {MANY_PASSES:g} times, with <= {PARAMETERS_PER_TRAIN_TOKEN[family]:g} "
                f"parameters per training token)")
    stop = (f"early stopping after {PATIENCE} validations without improvement" if training["patience"]
            else "no early stopping (under 2 passes, each batch is new text)")
    reasons = [
        f"text: {stats.train_chars:,} training characters, {stats.charset} distinct ({stats.common_charset} "
        f"common), bzip2 {stats.compressed_bits_per_char:.2f} bits/char on a {stats.sample_chars:,}-character sample",
        f"tokenizer: {why_tokenizer}",
        f"family: {why_family}",
        f"size: {size_why}",
        f"regularisation: {passes:.1f} passes over ~{train_tokens:,} training tokens -> dropout {dropout:g}"
        + (f" (attention {model['attn_dropout']:g}: {tokens / 1e6:.1f}M tokens)" if family == "gpt" else "")
        + f", weight decay {training['weight_decay']:g}, {stop}",
        f"schedule: warmup {training['warmup_steps']} steps, cosine from lr {lr:g} to {training['min_lr']:g} ending "
        f"at {train_s:.0f}s, validation every {evaluations_every} steps",
    ]
    return Plan(raw, reasons, params, steps, passes)
