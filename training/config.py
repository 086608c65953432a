"""Training configuration: YAML presets validated into dataclasses.

A config file has three sections, `data`, `model` and `training` (plus an optional `name` and `description`).
Every problem (an unknown key, a wrong type, an impossible combination) raises `ConfigError`, whose one-line message
names the file and the dotted key, e.g. ``configs/x.yaml: training.lr: expected a number, got 'fast'``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, NewType, Union

import yaml

from lm import checks
from lm.checks import OptionError
from lm.tokenizers import TOKENIZER_KINDS


# A time in seconds, written in a config as a number or as a duration ("90s", "30m", "2h", "1h30m").
Seconds = NewType("Seconds", float)


class ConfigError(ValueError):
    """A configuration problem, reported as `file: key: problem` on one line."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


@dataclass
class DataConfig:
    # A path (file, directory, WikiText-style directory), a known corpus name (tinyshakespeare, wikitext2,
    # wikitext103), "synthetic", or "hf:NAME[:CONFIG]" for a Hugging Face dataset.
    source: str = "tinyshakespeare"
    # A directory source's files: those matching an include pattern ("*.py"; default *.txt) and no exclude one
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    cleaner: str = "default"
    split: list[float] = field(default_factory=lambda: [0.9, 0.1, 0.0])  # train, valid, test fractions
    tokenizer: Literal[TOKENIZER_KINDS] = "char"
    # a tokenizer.json made by `train-tokenizer` (or a model directory's): used as it is instead of learning one;
    # it decides the kind and the vocabulary size
    tokenizer_path: Union[str, None] = None
    vocab_size: Union[int, None] = None
    min_freq: int = 1
    # characters of the training part the tokenizer learns from, in blocks spread evenly across it
    tokenizer_sample: int = 10_000_000
    synthetic_chars: int = 200_000  # size of the generated corpus when source is "synthetic"


@dataclass
class TrainingConfig:
    # muon: torch's Muon for the hidden weight matrices, AdamW for embeddings, output layer, norms and biases
    optimizer: Literal["adamw", "adam", "sgd", "ntasgd", "muon"] = "adamw"
    lr: float = 1e-3
    min_lr: Union[float, None] = None  # end of the cosine schedule; lr / 10 when not given
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0
    schedule: Literal["warmup_cosine", "constant", "plateau"] = "warmup_cosine"
    warmup_steps: int = 100
    plateau_factor: float = 0.5
    plateau_patience: int = 2  # evaluations without improvement before the plateau schedule cuts the lr
    batch_size: int = 32
    seq_len: int = 128  # GPT: window length; LSTM: BPTT length
    variable_bptt: bool = False  # AWD-LSTM's randomised BPTT length (LSTM only)
    max_steps: int = 5000
    # wall time: seconds or a duration ("90s", "30m", "1h30m"); the run stops at whichever limit comes first
    max_time: Union[Seconds, None] = None
    eval_interval: int = 250
    eval_batches: Union[int, None] = None  # batches per validation; None = the whole validation split
    eval_batch_size: Union[int, None] = None  # defaults to batch_size
    log_interval: int = 10
    grad_clip: float = 1.0  # 0 disables clipping
    grad_accum: int = 1
    patience: Union[int, None] = None  # early stopping: evaluations without improvement; None disables
    nonmono: int = 5  # NT-ASGD: switch to averaging when validation is worse than `nonmono` evaluations ago
    alpha: float = 0.0  # AR: activation regularisation (LSTM)
    beta: float = 0.0  # TAR: temporal activation regularisation (LSTM)
    # auto: measured on CPU (bf16 autocast only where it multiplies faster than fp32), bf16 or fp16 on CUDA
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: Union[int, None] = None  # CPU threads for torch; None = torch's default (one per core)
    compile: bool = False
    seed: int = 1337
    weights_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    loggers: list[str] = field(default_factory=list)  # optional mirrors of metrics.jsonl: tensorboard, wandb
    muon_lr: Union[float, None] = None  # muon: the hidden matrices' peak lr (scheduled like lr); None = lr
    # weight averaging (training/averaging.py), validated beside the raw weights; the better one is kept
    averaging: Literal["none", "ema", "swa"] = "none"
    ema_decay: float = 0.999  # ema: avg <- decay * avg + (1 - decay) * weights, after every step
    swa_start: float = 0.75  # swa: the plain mean of the weights from this fraction of the run on
    # distillation (training/distillation.py): a model directory whose next-token distributions are learned too
    teacher: Union[str, list[str], None] = None  # or several model directories: their mean distribution is learnt
    teacher_weight: float = 0.5  # the KL term's share of the objective; the cross-entropy gets the rest
    teacher_top_k: int = 32  # the teacher's most likely next tokens kept at each position of the training text
    teacher_temperature: float = 1.0  # both distributions softened by it in the KL term, which is scaled by its square

    def teacher_paths(self) -> list[str]:
        """`teacher` as a list: one model directory, or several whose mean distribution is learnt."""
        if self.teacher is None:
            return []
        return [self.teacher] if isinstance(self.teacher, str) else list(self.teacher)


@dataclass
class Config:
    data: DataConfig
    model: dict[str, Any]  # `type` plus the family's hyperparameters (lm.models.config_from_dict checks them)
    training: TrainingConfig
    name: str = ""
    description: str = ""
    source: str = "<config>"  # where it was read from, for messages

    @property
    def model_type(self) -> str:
        return self.model.get("type")

    def model_options(self, vocab_size: int) -> dict[str, Any]:
        """The hyperparameters for lm.models.build_model, with the tokenizer's vocabulary size."""
        options = {k: v for k, v in self.model.items() if k != "type"}
        options["vocab_size"] = vocab_size
        return options

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "data": dataclasses.asdict(self.data),
            "model": copy.deepcopy(self.model),
            "training": dataclasses.asdict(self.training),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_SECTIONS = {"data": DataConfig, "training": TrainingConfig}
_TOP_LEVEL = ("name", "description", "data", "model", "training")


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply `key.path=value` overrides, and validate everything."""
    raw = read_config_mapping(path)
    for item in overrides or []:
        apply_override(raw, item, str(path))
    return config_from_dict(raw, str(path))


def read_config_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML config file as its raw mapping, before overrides and validation (a sweep applies each trial's
    overrides to a copy)."""
    source = str(path)
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, "", "expected a mapping with data, model and training sections")
    return raw


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content (None for an empty file); ConfigError naming the file when it is missing, unreadable
    or not YAML (with the line of the first problem)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, "", f"invalid YAML{where}: {problem}") from None


def apply_override(raw: dict[str, Any], item: str, source: str = "--set") -> None:
    """Set `section.key=value` in the raw mapping; the value is read as a YAML scalar (3e-4, true, [1, 2])."""
    key, sep, value_text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", item, "expected key.path=value")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError:
        value = value_text
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError("--set", ".".join(parts[: depth + 1]), "is not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> Config:
    unknown = [k for k in raw if k not in _TOP_LEVEL]
    if unknown:
        raise ConfigError(source, str(unknown[0]), f"unknown section; allowed: {', '.join(_TOP_LEVEL)}")
    sections = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(source, name, "expected a mapping")
        sections[name] = _build_section(cls, values, name, source)
    model = raw.get("model")
    if not isinstance(model, dict):
        raise ConfigError(source, "model", "expected a mapping with a `type` (the model family) and its hyperparameters")
    # PyYAML reads 1e-4 (no dot) as a string; the core's checker wants numbers, so convert such strings here
    model = {k: _number_or_text(v) for k, v in model.items()}
    for key in ("name", "description"):
        if raw.get(key) is not None and not isinstance(raw.get(key), str):
            raise ConfigError(source, key, "expected a string")
    config = Config(
        data=sections["data"],
        model=model,
        training=sections["training"],
        name=raw.get("name") or Path(source).stem,
        description=raw.get("description") or "",
        source=source,
    )
    validate(config)
    return config


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _number_or_text(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    return value


def data_config_from(values: dict[str, Any] | None, source: str = "<config>") -> DataConfig:
    """The `data` section of a raw mapping, checked key by key (the rest of the config may not exist yet)."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(source, "data", "expected a mapping")
    return _build_section(DataConfig, values or {}, "data", source)


def _build_section(cls: type, values: dict[str, Any], section: str, source: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(source, f"{section}.{key}", f"unknown key; allowed: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], source, f"{section}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, expected: Any, source: str, key: str) -> Any:
    """Check `value` against a type hint; numbers written as strings (PyYAML reads 3e-4 as one) become numbers."""
    origin = typing.get_origin(expected)
    if origin in (Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        inner = [t for t in options if t is not type(None)]
        if len(inner) > 1:  # a value or a list of them (training.teacher): the value's shape says which
            inner = [t for t in inner if (typing.get_origin(t) is list) == isinstance(value, (list, tuple))]
        (inner,) = inner
        return _coerce(value, inner, source, key)
    if origin is Literal:
        return _checked(partial(checks.one_of, choices=typing.get_args(expected)), value, source, key)
    if origin is list:
        (inner,) = typing.get_args(expected)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, f"expected a list, got {value!r}")
        return [_coerce(v, inner, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if expected is bool:
        return _checked(checks.boolean, value, source, key)
    if expected is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return _checked(checks.integer_from, value, source, key)
    if expected is Seconds:
        return _checked(partial(checks.duration_from, exclusive_minimum=0), value, source, key)
    if expected is float:
        return _checked(checks.number_from, value, source, key)
    if expected is str:
        return _checked(checks.text, value, source, key)
    return value


def _checked(check: Callable[[str, Any], Any], value: Any, source: str, key: str) -> Any:
    try:
        return check(key, value)
    except OptionError as error:
        raise ConfigError(source, key, error.problem) from None


def validate(config: Config) -> None:
    """Ranges and combinations a type check cannot see."""
    src, d, t = config.source, config.data, config.training

    def need(condition: bool, key: str, problem: str) -> None:
        if not condition:
            raise ConfigError(src, key, problem)

    from training.data.cleaners import CLEANERS  # late import: the cleaners module is independent of the config

    need(d.cleaner in CLEANERS, "data.cleaner", f"must be one of {', '.join(CLEANERS)}, got {d.cleaner!r}")
    need(len(d.split) in (2, 3), "data.split", "expected [train, valid] or [train, valid, test] fractions")
    need(all(0.0 <= f <= 1.0 for f in d.split), "data.split", "fractions must be between 0 and 1")
    need(d.split[0] > 0 and d.split[1] > 0, "data.split", "train and valid fractions must be > 0")
    need(sum(d.split) <= 1.0 + 1e-9, "data.split", f"fractions add up to {sum(d.split):g} > 1")
    need(d.min_freq >= 1, "data.min_freq", "must be >= 1")
    need(d.synthetic_chars >= 1000, "data.synthetic_chars", "must be >= 1000")
    need(d.tokenizer_sample >= 100_000, "data.tokenizer_sample", "must be >= 100000 characters")
    need(all(d.include) and all(d.exclude), "data.include", "patterns must not be empty")
    need(d.tokenizer_path is None or bool(d.tokenizer_path.strip()), "data.tokenizer_path", "must not be empty")
    if d.tokenizer == "bpe" and d.tokenizer_path is None:
        need(d.vocab_size is not None and d.vocab_size >= 257, "data.vocab_size", "bpe needs vocab_size >= 257")
    elif d.vocab_size is not None:
        need(d.vocab_size >= 2, "data.vocab_size", "must be >= 2")

    for key in ("lr", "batch_size", "seq_len", "max_steps", "eval_interval", "log_interval", "grad_accum"):
        need(getattr(t, key) > 0, f"training.{key}", "must be > 0")
    for key in ("warmup_steps", "weight_decay", "grad_clip", "momentum", "alpha", "beta"):
        need(getattr(t, key) >= 0, f"training.{key}", "must be >= 0")
    need(t.min_lr is None or 0 <= t.min_lr <= t.lr, "training.min_lr", "must be between 0 and training.lr")
    need(t.muon_lr is None or t.muon_lr > 0, "training.muon_lr", "must be > 0")
    need(t.muon_lr is None or t.optimizer == "muon", "training.muon_lr", "applies to optimizer: muon only")
    need(t.max_time is None or t.max_time > 0, "training.max_time", "must be > 0 seconds")
    need(t.eval_batches is None or t.eval_batches > 0, "training.eval_batches", "must be > 0")
    need(t.eval_batch_size is None or t.eval_batch_size > 0, "training.eval_batch_size", "must be > 0")
    need(t.patience is None or t.patience > 0, "training.patience", "must be > 0")
    need(t.nonmono >= 1, "training.nonmono", "must be >= 1")
    need(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "training.betas", "expected two values in [0, 1)")
    need(0 < t.plateau_factor < 1, "training.plateau_factor", "must be in (0, 1)")
    need(t.plateau_patience >= 0, "training.plateau_patience", "must be >= 0")
    need(t.seed >= 0, "training.seed", "must be >= 0")
    need(t.threads is None or t.threads >= 1, "training.threads", "must be >= 1")
    need(0 < t.ema_decay < 1, "training.ema_decay", "must be in (0, 1)")
    need(0 <= t.swa_start < 1, "training.swa_start", "must be in [0, 1)")
    teachers = t.teacher_paths()
    need(t.teacher is None or (bool(teachers) and all(path.strip() for path in teachers)), "training.teacher",
         "must name a model directory, or a list of them")
    need(0 < t.teacher_weight <= 1, "training.teacher_weight", "must be in (0, 1]")
    need(t.teacher_top_k >= 1, "training.teacher_top_k", "must be >= 1")
    need(t.teacher_temperature > 0, "training.teacher_temperature", "must be > 0")
    need(t.averaging == "none" or t.optimizer != "ntasgd", "training.averaging",
         "ntasgd averages the weights itself; use averaging: none with it")
    from training.loggers import LOGGER_NAMES

    unknown = [name for name in t.loggers if name not in LOGGER_NAMES]
    need(not unknown, "training.loggers", f"unknown {unknown[:1]}; choose from {', '.join(LOGGER_NAMES)}")

    if t.variable_bptt:
        need(t.seq_len >= 10, "training.seq_len", "variable BPTT needs seq_len >= 10")

    # The model section: the core checks names and values, then what its family can train with.
    from lm.models import check_training, config_from_dict as model_config_from_dict

    vocab = d.vocab_size or 256
    try:
        model_config = model_config_from_dict(config.model_type, config.model_options(vocab))
    except OptionError as error:
        raise ConfigError(src, f"model.{error.option}", error.problem) from None
    try:
        check_training(config.model_type, dataclasses.asdict(t), model_config)
    except OptionError as error:
        raise ConfigError(src, f"training.{error.option}", error.problem) from None


def number_kind(config: Config, key: str) -> type | None:
    """`int` or `float` for a numeric key of `config` (`training.lr`, `model.n_layer`, `data.vocab_size`), None for
    a key of any other kind; ConfigError for a key that does not exist. What a sweep's `--range` may span."""
    section, _, name = key.partition(".")
    if section == "model" and name and "." not in name:
        from lm.models import family_named

        fields = {f.name: f.type for f in dataclasses.fields(family_named(config.model_type).config_class)}
        if name not in fields or name == "vocab_size":
            allowed = ", ".join(f for f in fields if f != "vocab_size")
            raise ConfigError(config.source, key, f"unknown {config.model_type} option; allowed: {allowed}")
        # annotations are strings under `from __future__ import annotations`: "int", "float | None"
        kinds = {part.strip() for part in str(fields[name]).split("|")} - {"None"}
        return {"int": int, "float": float}.get(kinds.pop()) if len(kinds) == 1 else None
    if section in _SECTIONS and name and "." not in name:
        hints = typing.get_type_hints(_SECTIONS[section])
        if name not in hints:
            names = ", ".join(f.name for f in dataclasses.fields(_SECTIONS[section]))
            raise ConfigError(config.source, key, f"unknown key; allowed: {names}")
        expected = hints[name]
        if typing.get_origin(expected) in (Union, types.UnionType):
            options = [t for t in typing.get_args(expected) if t is not type(None)]
            expected = options[0] if len(options) == 1 else None
        return float if expected is Seconds else expected if expected in (int, float) else None
    raise ConfigError(config.source, key, "expected section.key with a section among data, model, training")
