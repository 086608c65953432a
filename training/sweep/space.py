"""What a sweep tries: `--grid KEY=V1,V2` lists (their Cartesian product) and `--range KEY=LO:HI[:log]` spans
(`--random N` seeded draws), crossed: every draw of the ranges is tried at every grid point.

Values stay the text they are written as (`3e-3`, `[0.9, 0.95]`) and reach the config exactly as `--set KEY=TEXT`
would, so a trial's settings mean what `train --set` means. Every trial's config is built and validated before
anything runs; a problem is a `ConfigError` that names the option (`--grid training.lr: ...`).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

import yaml

from training.config import Config, ConfigError, apply_override, config_from_dict, number_kind

SCALES = ("linear", "log")
MAX_TRIALS = 1000  # a bound on the product, refused before a list of millions is built
# keys the sweep's own options set for every trial: a grid over them would be overridden
RESERVED = {"training.max_time": "--trial-time", "data.source": "--data"}


@dataclass(frozen=True)
class Range:
    """A span to draw from: uniform (`linear`) or log-uniform (`log`); whole numbers for an integer key."""

    key: str
    low: float
    high: float
    scale: str
    integer: bool

    def draw(self, rng: random.Random) -> str:
        """One value, as the text that goes into `--set` (floats to 3 significant digits)."""
        if self.scale == "log":
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        if self.integer:
            return str(min(int(self.high), max(int(self.low), round(value))))
        return f"{value:.3g}"

    def spec(self) -> str:
        """The range as it is written on the command line (for the manifest and messages)."""
        bound = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:g}")
        return f"{bound(self.low)}:{bound(self.high)}:{self.scale}"


@dataclass
class Space:
    grid: dict[str, list[str]] = field(default_factory=dict)
    ranges: dict[str, Range] = field(default_factory=dict)
    draws: int = 0  # --random N: draws of the ranges
    seed: int = 0

    def trials(self) -> list[dict[str, str]]:
        """Every trial's settings ({key: value text}), in order: grid points in the order of the product of the
        lists as given, each with every draw of the ranges (the same draws at every grid point, seeded)."""
        rng = random.Random(self.seed)
        draws = [{key: r.draw(rng) for key, r in self.ranges.items()} for _ in range(self.draws)] or [{}]
        points = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        return [{**point, **draw} for point in points for draw in draws]

    def to_json(self) -> dict[str, Any]:
        return {"grid": self.grid, "ranges": {k: r.spec() for k, r in self.ranges.items()}, "random": self.draws,
                "seed": self.seed}


def parse_space(base: Config, grid: list[str], ranges: list[str], draws: int | None, seed: int,
                overrides: list[str] = ()) -> Space:
    """The space from `--grid`, `--range` and `--random` as given, each key checked against `base` (the config
    with the `overrides`, --set, applied; a key they fix cannot be swept); ConfigError on the first problem."""
    space = Space(draws=draws or 0, seed=seed)
    fixed = {item.partition("=")[0].strip() for item in overrides}
    for item in grid:
        key, values = _split(item, "--grid", "KEY=V1,V2,...")
        _check_key(base, key, "--grid", space, fixed)
        space.grid[key] = _values(values, key)
    for item in ranges:
        key, spec = _split(item, "--range", "KEY=LOW:HIGH[:log]")
        _check_key(base, key, "--range", space, fixed)
        space.ranges[key] = _range(base, key, spec)
    if space.ranges and not space.draws:
        raise ConfigError("--range", next(iter(space.ranges)), "needs --random N: how many draws to try")
    if space.draws and not space.ranges:
        raise ConfigError("--random", "", "needs at least one --range KEY=LOW:HIGH[:log] to draw from")
    if not space.grid and not space.ranges:
        raise ConfigError("sweep", "", "nothing to sweep: give --grid KEY=V1,V2 and/or --random N with --range")
    count = math.prod(len(values) for values in space.grid.values()) * max(space.draws, 1)
    if count > MAX_TRIALS:
        raise ConfigError("sweep", "", f"{count:,} trials is more than {MAX_TRIALS:,}; sweep fewer values, or draw "
                                       f"--random N over --range spans instead of a grid")
    return space


def trial_configs(raw: dict[str, Any], overrides: list[str], space: Space, source: str
                  ) -> list[tuple[dict[str, str], Config]]:
    """Each trial's settings and validated config: `raw` (the config file's mapping) with `overrides` (--set) and
    the trial's settings applied. A value the config refuses is named by the option that swept it."""
    built = []
    for number, settings in enumerate(space.trials()):
        try:
            built.append((settings, trial_config(raw, overrides, settings, source)))
        except ConfigError as error:
            swept = error.key.split("[")[0]
            if swept in space.grid or swept in space.ranges:
                option = "--grid" if swept in space.grid else "--range"
                value = settings[swept]
                shown = error.problem if value in error.problem else f"{error.problem} (value {value})"
                raise ConfigError(option, error.key, shown) from None
            shown = ", ".join(f"{k}={v}" for k, v in settings.items())
            raise ConfigError(f"trial {number} ({shown})", error.key, error.problem) from None
    return built


def trial_config(raw: dict[str, Any], overrides: list[str], settings: dict[str, str], source: str) -> Config:
    """The config of one trial: a copy of `raw` with the --set overrides, then the trial's settings, applied."""
    mapping = copy.deepcopy(raw)
    for item in overrides + [f"{key}={value}" for key, value in settings.items()]:
        apply_override(mapping, item, source)
    return config_from_dict(mapping, source)


def _split(item: str, option: str, form: str) -> tuple[str, str]:
    key, sep, rest = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(option, item, f"expected {form}")
    return key, rest


def _check_key(base: Config, key: str, option: str, space: Space, fixed: set[str]) -> None:
    if key in space.grid or key in space.ranges:
        raise ConfigError(option, key, "is swept twice; give each key once, in --grid or in --range")
    if key in fixed:
        raise ConfigError(option, key, "is also fixed for every trial (--set, --threads, --include, --exclude)")
    if key in RESERVED:
        raise ConfigError(option, key, f"is set for every trial by the sweep's {RESERVED[key]}")
    try:
        number_kind(base, key)  # ConfigError for a key that does not exist
    except ConfigError as error:
        raise ConfigError(option, key, error.problem) from None


def _values(text: str, key: str) -> list[str]:
    """`1e-3,3e-3` or `[0.9, 0.95],[0.9, 0.99]`: the values' texts, split where YAML's flow syntax splits them
    (commas inside brackets or quotes stay)."""
    try:
        nodes = yaml.compose(f"[{text}]").value
    except yaml.YAMLError:
        raise ConfigError("--grid", key, f"cannot read the values {text!r}; expected V1,V2,...") from None
    values = [text[node.start_mark.index - 1: node.end_mark.index - 1].strip() for node in nodes]
    if not values:
        raise ConfigError("--grid", key, "no values given; expected KEY=V1,V2,...")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError("--grid", key, f"the value {repeated[0]} is given twice")
    return values


def _range(base: Config, key: str, spec: str) -> Range:
    kind = number_kind(base, key)
    if kind is None:
        raise ConfigError("--range", key, "is not a number; list its values with --grid instead")
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError("--range", key, f"expected LOW:HIGH or LOW:HIGH:log, got {spec!r}")
    scale = parts[2].strip() if len(parts) == 3 else "linear"
    scale = "linear" if scale == "lin" else scale
    if scale not in SCALES:
        raise ConfigError("--range", key, f"the scale must be linear or log, got {scale!r}")
    try:
        low, high = (float(p) for p in parts[:2])
    except ValueError:
        raise ConfigError("--range", key, f"expected two numbers LOW:HIGH, got {spec!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ConfigError("--range", key, f"expected finite LOW < HIGH, got {spec!r}")
    if scale == "log" and low <= 0:
        raise ConfigError("--range", key, f"a log range needs LOW > 0, got {spec!r}")
    integer = kind is int
    if integer and not (low.is_integer() and high.is_integer()):
        raise ConfigError("--range", key, f"is an integer: give whole-number bounds, got {spec!r}")
    return Range(key, low, high, scale, integer)
