"""Running a sweep's trials: one after another in this process, or, when several GPUs are visible, one process per
GPU, each GPU taking the next trial as soon as it is free.

A trial is a normal training run (training.trainer) in its own model directory with the sweep's time budget, then
`evaluate --split valid` of its best weights (training.evaluation.evaluate, the same figures the model card shows).
Rerun with `--resume`, a finished trial is skipped, an interrupted one resumes from its resume state (or starts
again cleanly when it has none), and one whose training finished but not its evaluation is evaluated.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import queue
import shutil
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from lm.checkpoint import read_config
from training import resume
from training.config import read_config_mapping
from training.sweep.manifest import SweepPlan, Trial, read_manifest, read_result, write_manifest, write_result
from training.sweep.space import trial_config

MIN_TRIAL_SECONDS = 10.0  # below this a trial measures its start-up more than its settings
Launch = Callable[[Trial, str], dict[str, Any]]


def sweep_devices(requested: str, gpu_count: int) -> list[str]:
    """Where the trials run: `cuda:0` ... `cuda:N-1`, one process each, when `requested` allows CUDA and more than
    one GPU is visible; otherwise `[requested]`, the trials one after another in this process."""
    if requested in ("auto", "cuda") and gpu_count > 1:
        return [f"cuda:{index}" for index in range(gpu_count)]
    return [requested]


def run_trial(plan: SweepPlan, trial: Trial, device: str, progress: bool = True) -> dict[str, Any]:
    """Train (or resume, or only evaluate) one trial, record its result in its folder and return it. A run that
    diverges is a failed trial, not a failed sweep."""
    from training.trainer import RunOptions, TrainingError, train

    trial_dir = plan.trial_dir(trial)
    config = trial_config(read_config_mapping(plan.config_file), plan.overrides, trial.settings, plan.config_file)
    if not _training_finished(trial_dir):
        resuming = resume.exists(trial_dir)
        if not resuming:  # a trial killed before its first validation: nothing to keep
            shutil.rmtree(trial_dir, ignore_errors=True)
        options = RunOptions(output=trial_dir, data=plan.data, max_time=plan.trial_time, device=device,
                             resume=resuming, command=plan.train_command(trial), progress=progress,
                             label=trial.name)
        try:
            train(config, options)
        except TrainingError as error:
            result = {"trial": trial.name, "settings": trial.settings, "status": "failed", "error": str(error)}
            write_result(plan, trial, result)
            return result
        finally:
            _free_memory()
    result = _evaluate(plan, trial, plan.data or config.data.source, device)
    write_result(plan, trial, result)
    return result


def _training_finished(trial_dir: Path) -> bool:
    """Whether the trial's model directory records a run that ended (its best weights re-saved as final)."""
    try:
        return bool((read_config(trial_dir).get("training") or {}).get("finished"))
    except (OSError, ValueError):  # no model directory yet, or one cut short by a kill
        return False


def _evaluate(plan: SweepPlan, trial: Trial, data: str, device: str) -> dict[str, Any]:
    """The trial's figures on its validation text, saved in its evaluations/ as `evaluate` saves them."""
    from training.evaluation.evaluate import evaluate_model, save_evaluation
    from training.hardware import pick_device

    trial_dir = plan.trial_dir(trial)
    evaluation = evaluate_model(str(trial_dir), data, split="valid", device=str(pick_device(device)),
                                baselines=False)
    evaluation["command"] = f"python -m training evaluate {trial_dir} --data {data} --split valid --no-baselines"
    saved = save_evaluation(evaluation, trial_dir)
    record = read_config(trial_dir)["training"]
    nats = evaluation["bits_per_char"] * math.log(2)
    return {"trial": trial.name, "settings": trial.settings, "status": "finished",
            "nats_per_char": nats, "bits_per_char": nats / math.log(2), "loss": evaluation["loss"],
            "tokens": evaluation["tokens"], "characters": evaluation["characters"], "steps": record["steps"],
            "best_step": record["best_step"], "stop_reason": record.get("stop_reason"),
            "train_seconds": record["wall_time_s"], "evaluation": str(saved.relative_to(trial_dir))}


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_on_devices(trials: list[Trial], devices: list[str], launch: Launch,
                   on_result: Callable[[Trial, dict[str, Any]], None]) -> None:
    """Run `trials` on `devices` at once, one trial per device at a time, each device taking the next pending trial
    when its last one ends (`launch(trial, device)` blocks until the trial is done and returns its result).
    `on_result` is called for each, one at a time. The first error stops new trials from starting and is raised
    once the running ones have ended; so does Ctrl-C (the trials' processes get it too, save and exit)."""
    from training.trainer import Interrupted

    pending: queue.SimpleQueue[Trial] = queue.SimpleQueue()
    for trial in trials:
        pending.put(trial)
    stop, lock, errors = threading.Event(), threading.Lock(), []

    def work(device: str) -> None:
        while not stop.is_set():
            try:
                trial = pending.get_nowait()
            except queue.Empty:
                return
            try:
                result = launch(trial, device)
            except BaseException as error:  # noqa: BLE001  (raised in the calling thread below)
                with lock:
                    errors.append(error)
                stop.set()
                return
            with lock:
                on_result(trial, result)

    threads = [threading.Thread(target=work, args=(device,), name=f"sweep-{device}", daemon=True)
               for device in devices]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # a timeout, so Ctrl-C reaches this thread
    except KeyboardInterrupt:
        stop.set()
        for thread in threads:
            thread.join()
        raise Interrupted("sweep interrupted: the running trials saved their state; rerun with --resume") from None
    if errors:
        raise next((e for e in errors if isinstance(e, Interrupted)), errors[0])


def launch_process(plan: SweepPlan, trial: Trial, device: str) -> dict[str, Any]:
    """Run one trial in a new process on `device` (`cuda:N`: a process that sees only that GPU); its result."""
    from training.trainer import Interrupted

    process = multiprocessing.get_context("spawn").Process(
        target=trial_process, args=(str(plan.output), trial.name, device), name=f"{trial.name}-{device}")
    process.start()
    process.join()
    if process.exitcode == 130:
        raise Interrupted(f"sweep interrupted in {trial.name}: rerun with --resume")
    result = read_result(plan, trial)
    if process.exitcode != 0 or result is None:
        raise RuntimeError(f"{trial.name} on {device} ended with exit status {process.exitcode} (its message is "
                           f"above); rerun with --resume")
    return result


def trial_process(output: str, name: str, device: str) -> None:
    """The body of a trial's process: for `cuda:N` only GPU N visible (as `cuda`), the trial run, errors as one
    line and an exit status."""
    kind, _, index = device.partition(":")
    if kind == "cuda" and index:
        os.environ["CUDA_VISIBLE_DEVICES"] = index  # before CUDA starts in this process
        device = "cuda"
    from training.trainer import Interrupted

    plan = read_manifest(Path(output))
    trial = next(t for t in plan.trials if t.name == name)
    try:
        run_trial(plan, trial, device, progress=False)
    except (Interrupted, KeyboardInterrupt):
        sys.exit(130)
    except Exception as error:  # noqa: BLE001  (one line, as the CLI says every error)
        print(f"error: {name}: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(1)


def run_sweep(plan: SweepPlan, device: str = "auto", progress: bool = True,
              log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> dict[str, dict[str, Any]]:
    """Run every trial of `plan` not yet finished (its output checked by `manifest.check_output`), updating the
    report after each; every trial's result by name."""
    import torch

    from training.sweep.report import write_report

    write_manifest(plan)
    results = {t.name: r for t in plan.trials if (r := read_result(plan, t)) is not None}
    pending = [t for t in plan.trials if t.name not in results]
    if results:
        log(f"{plan.output}: {len(results)} of {len(plan.trials)} trials finished, {len(pending)} to run")

    def record(trial: Trial, result: dict[str, Any]) -> None:
        results[trial.name] = result
        write_report(plan, results)
        figure = (f"{result['nats_per_char']:.4f} nats/char" if result["status"] == "finished"
                  else result["status"] + ": " + result.get("error", ""))
        log(f"{trial.name}: {figure}")

    devices = sweep_devices(device, torch.cuda.device_count())
    if len(devices) > 1:
        log(f"{len(pending)} trials on {len(devices)} GPUs, one process per GPU")
        run_on_devices(pending, devices, partial(launch_process, plan), record)
    else:
        for number, trial in enumerate(pending, start=1):
            log(f"{trial.name} ({number}/{len(pending)}): {trial.describe()}")
            record(trial, run_trial(plan, trial, device, progress))
    if not pending:  # `record` has written it after each trial; a rerun with nothing left writes it once
        write_report(plan, results)
    return results
