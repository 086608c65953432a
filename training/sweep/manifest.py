"""A sweep on disk: `OUTPUT/sweep.json` records what was asked (the config as resolved with --set, the data, the
grid, the ranges and their seed, the trial time) and every trial's name and settings, so that `--resume` with other
arguments is refused rather than mixing two sweeps in one table. Each trial is a model directory `OUTPUT/trial-NNN`;
its `sweep_result.json`, written last, marks it finished."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm.atomic import atomic_write_text
from training.config import ConfigError, read_config_mapping
from training.sweep.space import parse_space, trial_config, trial_configs

MANIFEST_FILE = "sweep.json"
RESULT_FILE = "sweep_result.json"


@dataclass(frozen=True)
class Trial:
    name: str
    settings: dict[str, str]  # key -> value text, as given to --set

    def describe(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.settings.items())


@dataclass
class SweepPlan:
    output: Path
    config_file: str
    data: str | None
    overrides: list[str]  # --set (and --threads, --include, --exclude), the same for every trial
    trial_time: float
    identity: dict[str, Any]  # what a --resume must match: the resolved config, data, space, trial time
    trials: list[Trial]
    command: str = ""

    def trial_dir(self, trial: Trial) -> Path:
        return self.output / trial.name

    def train_command(self, trial: Trial) -> str:
        """The `train` command line that runs this trial on its own (recorded in its config.json)."""
        args = ["python", "-m", "training", "train", "--config", self.config_file]
        args += ["--data", self.data] if self.data else []
        items = self.overrides + [f"{key}={value}" for key, value in trial.settings.items()]
        args += [arg for item in items for arg in ("--set", item)]
        args += ["--max-time", f"{self.trial_time:g}", "--output", str(self.trial_dir(trial))]
        return shlex.join(args)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "command": self.command, "config_file": self.config_file, "data": self.data,
                "set": self.overrides, "trial_time": self.trial_time, "identity": self.identity,
                "trials": [{"name": t.name, "settings": t.settings} for t in self.trials]}

    @classmethod
    def from_json(cls, output: Path, raw: dict[str, Any]) -> SweepPlan:
        return cls(Path(output), raw["config_file"], raw["data"], raw["set"], float(raw["trial_time"]),
                   raw["identity"], [Trial(t["name"], dict(t["settings"])) for t in raw["trials"]],
                   raw.get("command", ""))


def plan_sweep(config_file: str, overrides: list[str], grid: list[str], ranges: list[str], draws: int | None,
               seed: int, trial_time: float, data: str | None = None, output: str | Path | None = None,
               command: str = "") -> SweepPlan:
    """The sweep the options ask for, every trial's config built and checked (ConfigError on the first problem);
    `output` defaults to sweeps/<preset name>. Nothing is written."""
    raw = read_config_mapping(config_file)
    base = trial_config(raw, overrides, {}, config_file)
    space = parse_space(base, grid, ranges, draws, seed, overrides)
    settings = [trial_settings for trial_settings, _ in trial_configs(raw, overrides, space, config_file)]
    trials = [Trial(name, s) for name, s in zip(trial_names(len(settings)), settings)]
    output = Path(output) if output else Path("sweeps") / (base.name or Path(config_file).stem)
    identity = {"config": base.to_dict(), "data": data, "space": space.to_json(), "trial_time": trial_time}
    return SweepPlan(output, config_file, data, list(overrides), trial_time, identity, trials, command)


def trial_names(count: int) -> list[str]:
    width = max(3, len(str(count - 1)))
    return [f"trial-{i:0{width}d}" for i in range(count)]


def check_output(plan: SweepPlan, resume: bool) -> None:
    """Whether the sweep may write to its output: a new or empty folder, or with `resume` one that holds this
    same sweep. ConfigError (nothing written) otherwise."""
    out = plan.output
    if out.exists() and not out.is_dir():
        raise ConfigError("--output", str(out), "is a file, not a folder")
    manifest = out / MANIFEST_FILE
    if not resume:
        if out.is_dir() and any(out.iterdir()):
            what = "holds a sweep: continue it with --resume" if manifest.is_file() else "is not empty"
            raise ConfigError("--output", str(out), f"{what}, or choose another folder")
        return
    if not manifest.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError("--resume", str(out), f"has no {MANIFEST_FILE}: it holds no sweep to continue")
        return
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["identity"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("--resume", str(manifest), f"cannot read it ({exc})") from None
    difference = first_difference(recorded, json.loads(json.dumps(plan.identity)))  # as JSON reads it back
    if difference:
        raise ConfigError("--resume", str(out), f"was started with other arguments ({difference}); rerun it with "
                                                f"the arguments in {MANIFEST_FILE}, or sweep into a new --output")


def first_difference(then: Any, now: Any, path: str = "") -> str | None:
    """Where two JSON values first differ, in a few words: `space.grid.training.lr: ["1e-3"] then, ["3e-3"] now`."""
    if isinstance(then, dict) and isinstance(now, dict):
        for key in list(then) + [k for k in now if k not in then]:
            found = first_difference(then.get(key), now.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if then == now:
        return None
    return f"{path}: {_short(then)} then, {_short(now)} now"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_manifest(plan: SweepPlan) -> None:
    plan.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.output / MANIFEST_FILE, json.dumps(plan.to_json(), indent=2) + "\n")


def read_manifest(output: Path) -> SweepPlan:
    return SweepPlan.from_json(output, json.loads((Path(output) / MANIFEST_FILE).read_text(encoding="utf-8")))


def read_result(plan: SweepPlan, trial: Trial) -> dict[str, Any] | None:
    """A finished trial's result (None while it is not finished)."""
    try:
        return json.loads((plan.trial_dir(trial) / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_result(plan: SweepPlan, trial: Trial, result: dict[str, Any]) -> None:
    atomic_write_text(plan.trial_dir(trial) / RESULT_FILE, json.dumps(result, indent=2) + "\n")
