"""The training loop: config in, model directory out.

The output directory is itself a model directory holding the best weights so far (by validation loss), saved with
lm.checkpoint.save_model_dir. Beside them: `metrics.jsonl`, `training_curve.png`, `train_config.yaml`, and
`resume/` with everything `--resume` needs to continue exactly (weights, optimizer, schedule, the `TrainState`, RNG
states, data position, a recurrent model's carried state, the NT-ASGD or EMA/SWA average), saved at every evaluation
and on Ctrl-C. Batches are a function of (seed, step), so a resumed run sees the data an uninterrupted run would.

What differs between model families (batches, carried state, extra loss terms, how validation reads the text) comes
from the family's hooks (lm.models.family); nothing here asks which family it trains.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
import random
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lm.atomic import atomic_write_text
from lm.batches import Batch
from lm.cache import cache_dir
from lm.checks import OptionError
from lm.checkpoint import CONFIG_FILE, CURVE_FILE, RESUME_DIR, TOKENIZER_FILE, TRAIN_CONFIG_FILE, load_model_dir, save_model_dir
from lm.models import build_model, family_of
from lm.tokenizers import Tokenizer
from training import distributed, resume
from training.averaging import WeightAverage
from training.config import Config
from training.data.corpus import Corpus, load_corpus
from training.data.token_cache import encode_part, encode_parts
from training.data.tokenizer_training import tokenizer_for
from training.distillation import TargetStore, Teacher, TeacherTargets
from training.evaluation import plots
from training.evaluation.metrics import TokenStats, bits_per_char, perplexity, unigram_loss
from training.hardware import PrecisionChoice, autocast_factory, describe, peak_flops, pick_device, resolve_precision
from training.loggers import MetricsLog
from training.optim import NTASGD, PlateauScale, build_optimizer, scheduled_lr
from training.progress import ProgressBar
from training.step_trial import StepTrial
from training.resume import TrainState

# What the processes agree on after each step (the largest wins): go on, out of time, interrupted.
_GO_ON, _OUT_OF_TIME, _INTERRUPTED = 0, 1, 2


class TrainingError(ValueError):
    """The run cannot go on (diverged, bad data); the message is one line and the last good checkpoint stays."""


class Interrupted(Exception):
    """Ctrl-C: the state was saved; `--resume` continues."""


@dataclass
class TrainResult:
    output: Path
    steps: int
    best_val_loss: float
    val_bits_per_char: float
    stop_reason: str  # "max_steps" | "max_time" | "early_stopping"
    unigram_val_loss: float


@dataclass
class RunOptions:
    output: Path
    data: str | None = None
    max_steps: int | None = None
    max_time: float | None = None
    device: str = "auto"
    resume: bool = False
    init_from: str | None = None
    command: str = ""
    progress: bool = True
    label: str = ""  # the progress bar's name for the run (default: the preset's name); a sweep names its trial


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """One run: everything is set up here, then `run()` trains, validates and saves until a limit is reached."""

    def __init__(self, config: Config, options: RunOptions) -> None:
        self.cfg, self.opts = config, options
        t = config.training
        if options.max_steps is not None:
            t.max_steps = options.max_steps
        if options.max_time is not None:
            t.max_time = options.max_time
        if options.data is not None:  # so the config as run (train_config.yaml) names the data that was used
            config.data.source = options.data
        self.output = Path(options.output)
        if t.threads:
            torch.set_num_threads(t.threads)
        device_kind = "cuda" if options.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        self.dist = distributed.setup(device_kind)
        self.device = pick_device(options.device, self.dist.local_rank)
        seed_everything(t.seed + self.dist.rank)

        self.corpus, self.tokenizer, self.model = self._load_data_and_model()
        # rank 0 measures (precision: auto, the matmul peak); every process then uses its answer
        self.precision, peak = distributed.from_main(self.dist, self._measure_precision() if self.dist.is_main
                                                     else None)
        self.autocast = autocast_factory(self.device, self.precision.precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.grad_scaler else None
        # model FLOPs utilisation: achieved training FLOPs/s over the measured matmul peak of every process
        self.flops_per_token = self.model.training_flops_per_token(t.seq_len)
        self.peak_flops = peak * self.dist.world_size
        self.family = family_of(self.model)
        self.settings = dataclasses.asdict(t)  # what the family's hooks read
        try:  # the config was checked, but --init-from brings a model of its own
            self.family.check_training(self.settings, self.model.config)
        except OptionError as error:
            raise TrainingError(f"training.{error.option} {error.problem}") from None
        self.model.to(self.device)
        self.train_ids, self.valid_ids = self._encode("train"), self._encode("valid")
        self.teacher_names, self.teacher, teacher_seconds = self._read_teacher() if t.teacher else ([], None, 0.0)
        if len(self.valid_ids) < 2:
            raise TrainingError("the validation split is empty; give it more text (data.split) or a valid file")
        self.chars_per_token = self.corpus.characters("valid") / len(self.valid_ids)
        self.unigram = unigram_loss(self.train_ids, self.valid_ids, self.tokenizer.vocab_size)

        self.optimizer = build_optimizer(self.model, t)
        self.plateau = PlateauScale(t.plateau_factor, t.plateau_patience)
        self.ntasgd = NTASGD(self.model, t.nonmono) if t.optimizer == "ntasgd" else None
        self.average = WeightAverage(self.model, t) if t.averaging != "none" else None
        self.sampler = self.family.batches(self.train_ids, t.batch_size, t.seq_len, t.seed, self.dist.rank,
                                           self.dist.world_size, variable_length=t.variable_bptt)
        self.train_model = self._wrapped(self.model)

        self.state = TrainState(last_lr=t.lr)  # how far the run has got; `resume` saves and restores it
        self.carried = None  # the model state the family carries from one batch to the next, if any
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.metrics = MetricsLog(self.output, enabled=self.dist.is_main)
        self._interrupted = False
        if options.resume:
            self._restore()
        self.state.elapsed += teacher_seconds  # reading the teacher is part of the run, and of its max_time

    # ---------------------------------------------------------------- setup
    def _load_data_and_model(self) -> tuple[Corpus, Tokenizer, torch.nn.Module]:
        cfg, opts = self.cfg, self.opts
        # rank 0 downloads (and fills the token cache) first; the others then find everything on disk
        if not self.dist.is_main:
            distributed.barrier(self.dist)
        corpus = load_corpus(cfg.data, opts.data, seed=cfg.training.seed)
        if opts.init_from:
            loaded = load_model_dir(opts.init_from, device="cpu")
            tokenizer, model = loaded.tokenizer, loaded.model
            # the architecture is the loaded model's, whatever the config's model section said
            cfg.model = {"type": loaded.model_type,
                         **{k: v for k, v in loaded.config["model"].items() if k != "vocab_size"}}
        else:
            saved = resume.resume_dir(self.output) / TOKENIZER_FILE
            if opts.resume and resume.exists(self.output) and saved.is_file():
                tokenizer = Tokenizer.from_file(saved)
            else:
                teachers = cfg.training.teacher_paths()
                for path in teachers:
                    if not (Path(path) / CONFIG_FILE).is_file():
                        raise TrainingError(f"training.teacher: no model directory at {path}")
                if teachers and not cfg.data.tokenizer_path:  # the teacher's tokens are the run's
                    cfg.data.tokenizer_path = teachers[0]
                tokenizer = tokenizer_for(corpus.part("train"), cfg.data, log=self._log)
            if cfg.data.tokenizer_path:  # the file decides the kind and size; the config as run says which
                cfg.data.tokenizer, cfg.data.vocab_size = tokenizer.kind, tokenizer.vocab_size
            model = build_model(cfg.model_type, cfg.model_options(tokenizer.vocab_size))
        corpus.check_not_empty()
        self._log(corpus.summary())
        if not corpus.characters("train") or not corpus.characters("valid"):
            raise TrainingError(f"data source {corpus.source}: the train or valid split is empty")
        if self.dist.is_main:
            encode_parts([corpus.part("train"), corpus.part("valid")], tokenizer, log=self._log)
            distributed.barrier(self.dist)
        return corpus, tokenizer, model

    def _log(self, line: str) -> None:
        """A line about the run's data on stderr (rank 0, unless --quiet), beside the progress bar."""
        if self.dist.is_main and self.opts.progress:
            tqdm.write(line, file=sys.stderr)

    def _config_as_run(self) -> str:
        """The config as it ran: the precision `auto` resolved to and the thread count, with a note of why."""
        ran = copy.deepcopy(self.cfg)
        ran.training.precision = self.precision.precision
        ran.training.threads = torch.get_num_threads() if self.device.type == "cpu" else ran.training.threads
        again = "python -m training train --config OUTPUT/train_config.yaml" + (
            f" --init-from {self.opts.init_from}" if self.opts.init_from else "")
        return (f"# As run on {describe(self.device)}, device {self.device}.\n"
                f"# training.precision: {self.precision.requested} asked; {self.precision.reason}.\n"
                f"# The data, limits and overrides given on the command line are in it: {again} repeats the run.\n"
                + ran.to_yaml())

    def _read_teacher(self) -> tuple[list[str], TeacherTargets, float]:
        """The teachers' names, their (mean) predictions over the training text (training/distillation.py) and the
        seconds reading took."""
        t = self.cfg.training
        store = TargetStore(cache_dir() / "teachers")
        started = time.perf_counter()
        names, read = [], []
        if not self.dist.is_main:  # rank 0 reads into the cache first; the others then find it there
            distributed.barrier(self.dist)
        try:
            for path in t.teacher_paths():  # one at a time: a teacher's weights go once it has read
                teacher = Teacher(path, self.device, self.tokenizer)
                names.append(teacher.name)
                read.append(teacher.read(self.train_ids, t.teacher_top_k, store))
        except ValueError as error:  # TeacherError among them
            raise TrainingError(str(error)) from None
        finally:
            if self.dist.is_main:
                distributed.barrier(self.dist)
        targets = TeacherTargets.mean(read, t.teacher_top_k, self.tokenizer.vocab_size, store)
        seconds = time.perf_counter() - started
        how = ("found in the cache" if all(r.cached for r in read) else
               f"read {len(self.train_ids):,} training tokens")
        self._log(f"teacher {' + '.join(names)}{' (their mean)' if len(names) > 1 else ''}: {how} in {seconds:.0f} s, "
                  f"the top {t.teacher_top_k} kept at each")
        return names, targets, seconds

    def _measure_precision(self) -> tuple[PrecisionChoice, float]:
        """The precision `training.precision` resolves to here (one warning line for a forced slow bf16) and the
        machine's matmul peak in it."""
        t, trial = self.cfg.training, None
        if self.device.type == "cpu" and t.precision == "auto":  # the model's own steps decide (step_trial.py)
            trial = partial(StepTrial().speedup, self.model, self.tokenizer.vocab_size, t.batch_size, t.seq_len)
        choice = resolve_precision(t.precision, self.device, self.model.width, step_trial=trial)
        if choice.warning:
            print(choice.warning, file=sys.stderr)
        return choice, peak_flops(self.device, choice.precision)

    def _encode(self, split: str) -> np.ndarray:
        return encode_part(self.corpus.part(split), self.tokenizer)

    def _wrapped(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training steps call: DDP under torchrun, compiled when asked."""
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.cfg.training.compile else model

    def _eval_model(self) -> torch.nn.Module:
        """The weights validation and checkpoints use: the NT-ASGD average once it is on."""
        return self.ntasgd.eval_model() if self.ntasgd else self.model

    # ---------------------------------------------------------------- the run
    def run(self) -> TrainResult:
        try:
            stop_reason = self._loop()
            self._finish(stop_reason)
        except Interrupted:  # every process agreed to stop here; rank 0 may still be saving the state
            self._leave_process_group(together=True)
            raise
        except BaseException:
            self._leave_process_group(together=False)  # the others may be stuck in a collective: do not wait
            raise
        self._leave_process_group(together=True)
        s = self.state
        return TrainResult(self.output, s.step, s.best_val_loss, self._bpc(s.best_val_loss), stop_reason, self.unigram)

    def _leave_process_group(self, together: bool) -> None:
        """Drop the DDP wrapper, then the process group. Left for the interpreter's exit, DDP (kept alive by
        reference cycles) takes gloo's threads down mid-finalization and the process aborts
        ("terminate called without an active exception"), failing a finished run."""
        if not self.dist.enabled:
            return
        self.train_model = self.model
        gc.collect()
        distributed.teardown(self.dist, wait_for_others=together)

    def _loop(self) -> str:
        """Train until max_steps, max_time or early stopping; the reason it stopped."""
        t, s = self.cfg.training, self.state
        self._prepare_output()
        previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        bar = ProgressBar(t.max_steps, t.max_time, s.step, s.elapsed, enabled=self.dist.is_main and self.opts.progress,
                          desc=self.opts.label or self.cfg.name or "train")
        self.train_model.train()
        session_start = time.perf_counter() - s.elapsed
        window_start, window_tokens = time.perf_counter(), 0  # for the tokens/s of each logged row
        try:
            while s.step < t.max_steps:
                loss, tokens = self._train_step()
                s.step += 1
                s.tokens_seen += tokens
                s.elapsed = time.perf_counter() - session_start
                window_tokens += tokens
                if s.step % t.log_interval == 0 or s.step == t.max_steps:
                    rate = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                    window_start, window_tokens = time.perf_counter(), 0
                    self._log_progress(loss, rate, bar)
                bar.advance(s.step, s.elapsed)
                code = self._agreed_code(out_of_time=t.max_time is not None and s.elapsed >= t.max_time)
                if code == _INTERRUPTED:
                    self._stop_interrupted()
                if s.step % t.eval_interval == 0 or s.step == t.max_steps or code == _OUT_OF_TIME:
                    if not self._evaluate_and_save(loss):
                        return "early_stopping"
                if code == _OUT_OF_TIME:
                    return "max_time"
            return "max_steps"
        finally:
            bar.close()
            self.metrics.close()
            if previous_handler is not None:  # None: the handler was set outside Python and cannot be put back
                signal.signal(signal.SIGINT, previous_handler)

    def _prepare_output(self) -> None:
        """Rank 0: the output folder with the resolved config; a fresh run clears an earlier run's state and
        metrics there (nothing of it may be resumed or plotted)."""
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.output / TRAIN_CONFIG_FILE, self._config_as_run())
            for stale in self.output.glob(f".{RESUME_DIR}.*.tmp"):  # staging left by a killed run
                shutil.rmtree(stale, ignore_errors=True)
            if not self.opts.resume:
                shutil.rmtree(resume.resume_dir(self.output), ignore_errors=True)
        self.metrics.start(fresh=not self.opts.resume, loggers=self.cfg.training.loggers,
                           config=self.cfg.to_dict(), run_name=self.cfg.name)

    def _log_progress(self, loss: float, tokens_per_second: float, bar: ProgressBar) -> None:
        s = self.state
        mfu = tokens_per_second * self.flops_per_token / self.peak_flops
        self.metrics.log({"step": s.step, "train_loss": loss, "lr": s.last_lr, "tokens_per_second": tokens_per_second,
                          "mfu": mfu, "elapsed": s.elapsed})
        bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{perplexity(loss):.1f}", lr=f"{s.last_lr:.2e}",
                        tok_s=f"{tokens_per_second:,.0f}", mfu=f"{mfu:.0%}")

    def _agreed_code(self, out_of_time: bool) -> int:
        """What to do after this step, the same on every process: whichever of them was interrupted or ran out
        of time decides for all."""
        code = _INTERRUPTED if self._interrupted else _OUT_OF_TIME if out_of_time else _GO_ON
        return distributed.most_urgent_code(self.dist, code, self.device)

    def _on_sigint(self, signum, frame) -> None:
        if self._interrupted:  # a second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        self._interrupted = True

    def _stop_interrupted(self) -> None:
        self._save_resume()
        if not self.dist.is_main:
            raise Interrupted("")  # rank 0 says so, once
        raise Interrupted(f"interrupted at step {self.state.step}: state saved in {resume.resume_dir(self.output)}; "
                          "continue with --resume")

    # ---------------------------------------------------------------- one step
    def _train_step(self) -> tuple[float, int]:
        """One optimizer step over `grad_accum` micro-batches: (mean loss, tokens seen by all processes)."""
        t = self.cfg.training
        self.optimizer.zero_grad(set_to_none=True)
        total, tokens, lengths = 0.0, 0, []
        for micro in range(t.grad_accum):
            batch = self.sampler.batch(self.state.step, micro)
            total += self._forward_backward(batch, last=micro == t.grad_accum - 1) / t.grad_accum
            tokens += batch.y.numel() * self.dist.world_size
            lengths.append(batch.seq_len)
        if not math.isfinite(total):
            self._diverged(f"loss became {total} at step {self.state.step + 1}")
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if t.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            if not torch.isfinite(norm) and self.scaler is None:
                self._diverged(f"the gradient norm became {float(norm)} at step {self.state.step + 1}")
        self._set_lr(sum(lengths) / len(lengths))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ntasgd is not None:
            self.ntasgd.update()
        if self.average is not None:
            self.average.update(self.state.step + 1)
        return total, tokens

    def _forward_backward(self, batch: Batch, last: bool) -> float:
        """Loss and gradients of one micro-batch (DDP syncs gradients on the last one only); its loss."""
        x, y = batch.x.to(self.device), batch.y.to(self.device)
        sync = nullcontext() if (last or not self.dist.enabled) else self.train_model.no_sync()
        with sync:
            with self.autocast():
                out = self.train_model(x, None if batch.reset_state else self.carried)
                self.carried = self.family.carry(out.state)
                logits = out.logits.float()
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
                objective = loss
                if self.teacher is not None:
                    if batch.starts is None:
                        raise TrainingError("this model family's batches do not say where they are in the text, "
                                            "so it cannot learn from a teacher")
                    weight = self.cfg.training.teacher_weight
                    distance = self.teacher.loss(batch.starts, out.logits, self.cfg.training.teacher_temperature)
                    objective = (1 - weight) * loss + weight * distance
                for term in self.family.loss_terms(out, self.settings):
                    objective = objective + term
            objective = objective / self.cfg.training.grad_accum
            (self.scaler.scale(objective) if self.scaler is not None else objective).backward()
        return loss.item()

    def _progress(self) -> float:
        """How far the run is: the larger of steps / max_steps and elapsed / max_time."""
        t, s = self.cfg.training, self.state
        progress = s.step / t.max_steps
        return max(progress, s.elapsed / t.max_time) if t.max_time else progress

    def _set_lr(self, seq_len: float) -> None:
        t = self.cfg.training
        lr = scheduled_lr(t, self.state.step, self._progress()) * self.plateau.scale
        if t.variable_bptt:  # AWD: a shorter window gets a proportionally smaller step
            lr *= seq_len / t.seq_len
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's own peak lr (training.muon_lr)
        self.state.last_lr = lr

    def _diverged(self, what: str) -> None:
        kept = f"the last good checkpoint in {self.output} is kept" if self.state.best_step else "no checkpoint was saved"
        raise TrainingError(f"training diverged: {what}; {kept} (try a lower training.lr, or training.grad_clip)")

    # ---------------------------------------------------------------- evaluation and checkpoints
    def validate(self, model: torch.nn.Module | None = None) -> float:
        """Validation loss (nats/token) of `model`, by default the current weights (the NT-ASGD average once it
        is on)."""
        t = self.cfg.training
        model = self._eval_model() if model is None else model
        model.eval()
        stats = TokenStats(detailed=False)
        self.family.score_batches(model, self.valid_ids, stats.update, self.device, t.seq_len,
                                  t.eval_batch_size or t.batch_size, t.eval_batches, self.dist.rank,
                                  self.dist.world_size, self.autocast)
        model.train()
        total, count = distributed.all_reduce_sum(self.dist, [stats.nll_sum, float(stats.count)], self.device)
        return total / max(count, 1.0)

    def _bpc(self, loss: float) -> float:
        # validation figures cover whole tokens; characters per token of the validation text converts them
        return bits_per_char(loss, 1, self.chars_per_token)

    def _evaluate_and_save(self, train_loss: float) -> bool:
        """Validate, keep the best weights, update NT-ASGD / plateau / patience, save the resume state.
        False when early stopping says to end the run."""
        t, s = self.cfg.training, self.state
        self._start_swa_if_due()
        val_loss = self.validate()
        if not math.isfinite(val_loss):
            self._diverged(f"the validation loss became {val_loss} at step {s.step}")
        s.val_history.append(val_loss)
        source, best_now, averaged_row = self._best_candidate(val_loss)
        improved = best_now < s.best_val_loss
        if improved:
            s.best_val_loss, s.best_step, s.bad_evals = best_now, s.step, 0
        else:
            s.bad_evals += 1
        if self.dist.is_main:
            self._record_evaluation(train_loss, val_loss, averaged_row, source if improved else None)
        if self.ntasgd is not None and self.ntasgd.after_eval(s.val_history, s.step):
            tqdm.write(f"step {s.step}: validation stopped improving, switching to averaged SGD", file=sys.stderr)
        if t.schedule == "plateau":
            self.plateau.step(val_loss)
        self._save_resume()
        return t.patience is None or s.bad_evals < t.patience

    def _start_swa_if_due(self) -> None:
        """SWA starts at the first validation past `swa_start` of the run; every process agrees on it (elapsed
        times differ)."""
        due = self.average is not None and self.average.due(self._progress())
        if self.average is not None and distributed.all_reduce_sum(self.dist, [float(due)], self.device)[0]:
            self.average.start(self.state.step + 1)

    def _best_candidate(self, val_loss: float) -> tuple[torch.nn.Module, float, dict]:
        """The weights that compete for the best checkpoint at this validation: the EMA/SWA average where it
        validates better than the trained weights (or the NT-ASGD average), else those; with their loss and the
        averaged weights' figures for the metrics row."""
        source = self._eval_model()
        if self.average is None or not self.average.active:
            return source, val_loss, {}
        averaged_loss = self.validate(self.average.eval_model())
        row = {"val_loss_averaged": averaged_loss, "val_bits_per_char_averaged": self._bpc(averaged_loss)}
        if averaged_loss < val_loss:
            return self.average.eval_model(), averaged_loss, row
        return source, val_loss, row

    def _record_evaluation(self, train_loss: float, val_loss: float, averaged_row: dict,
                           new_best: torch.nn.Module | None) -> None:
        """Rank 0: the metrics row, the new best weights (if any) as the model directory, the training curve."""
        s = self.state
        self.metrics.log({"step": s.step, "train_loss": train_loss, "lr": s.last_lr, "tokens_per_second": None,
                          "elapsed": s.elapsed, "val_loss": val_loss, "val_perplexity": perplexity(val_loss),
                          "val_bits_per_char": self._bpc(val_loss), **averaged_row})
        if new_best is not None:
            self.best_weights = {k: v.detach().to("cpu").clone() for k, v in new_best.state_dict().items()}
            self._save_model(new_best, finished=False)
        plots.training_curve(self.metrics.rows, self.output / CURVE_FILE, title=self.cfg.name)

    def _metadata(self, finished: bool) -> dict:
        cfg, corpus, s = self.cfg, self.corpus, self.state
        return {
            "name": self.output.name,
            "training": {
                "preset": cfg.name,
                "config_file": cfg.source,
                "config": cfg.to_dict(),
                "command": self.opts.command,
                "steps": s.step,
                "best_step": s.best_step,
                "finished": finished,
                "tokens_seen": s.tokens_seen,
                "wall_time_s": round(s.elapsed, 2),
                "hardware": describe(self.device),
                "device": str(self.device),
                "threads": torch.get_num_threads(),
                "precision": {"requested": self.precision.requested, "used": self.precision.precision,
                              "reason": self.precision.reason},
                "world_size": self.dist.world_size,
                "init_from": self.opts.init_from,
                "teacher": ({"names": self.teacher_names, "weight": cfg.training.teacher_weight,
                             "top_k": cfg.training.teacher_top_k, "temperature": cfg.training.teacher_temperature}
                            if self.teacher else None),
                "data": {
                    "source": corpus.source,
                    "content_hash": corpus.content_hash,
                    "split": corpus.split,
                    "cleaner": cfg.data.cleaner,
                    "train_characters": corpus.characters("train"),
                    "valid_characters": corpus.characters("valid"),
                    "train_tokens": int(len(self.train_ids)),
                    "valid_tokens": int(len(self.valid_ids)),
                },
                "unigram_val_loss": self.unigram,
            },
            "metrics": {
                "val_loss": s.best_val_loss,
                "val_perplexity": perplexity(s.best_val_loss),
                "val_bits_per_char": self._bpc(s.best_val_loss),
            },
        }

    def _save_model(self, model: torch.nn.Module, finished: bool, stop_reason: str | None = None) -> None:
        metadata = self._metadata(finished)
        if stop_reason is not None:
            metadata["training"]["stop_reason"] = stop_reason
        save_model_dir(self.output, model, self.tokenizer, metadata=metadata, dtype=self.cfg.training.weights_dtype)

    def _finish(self, stop_reason: str) -> None:
        """Re-save the best weights with the final record (steps, wall time, stop reason)."""
        if not self.dist.is_main or self.best_weights is None:
            return
        model = self._eval_model()
        model.load_state_dict(self.best_weights)
        self._save_model(model, finished=True, stop_reason=stop_reason)

    # ---------------------------------------------------------------- resume
    def _process_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """What differs between the processes of a torchrun run: random generators, the carried model state."""
        tensors, rng_meta = resume.rng_state()
        tensors.update(self.family.state_tensors(self.carried))
        return tensors, rng_meta

    def _save_resume(self) -> None:
        """Every process calls this (it gathers their own state); rank 0 writes."""
        processes = distributed.gather_to_main(self.dist, self._process_state())
        if not self.dist.is_main:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        optim_tensors, optim_meta = resume.flatten_optimizer(self.optimizer)
        tensors.update(optim_tensors)
        # rank 0's at the top level (the layout of a one-process run), the others' under "rank<N>."
        rng_meta = {}
        for rank, (process_tensors, process_rng) in enumerate(processes):
            prefix = "" if rank == 0 else f"rank{rank}."
            tensors.update({prefix + k: v for k, v in process_tensors.items()})
            rng_meta[prefix + "rng"] = process_rng
        if self.ntasgd is not None and self.ntasgd.active:
            tensors.update({f"averaged.{k}": v for k, v in self.ntasgd.averaged.state_dict().items()})
        average_tensors, average_meta = self.average.state() if self.average is not None else ({}, None)
        tensors.update(average_tensors)
        if self.best_weights is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_weights.items()})
        meta = {
            **self.state.to_json(),
            "sampler": self.sampler.state_dict(),
            "plateau": self.plateau.state_dict(),
            "ntasgd_started_at": self.ntasgd.started_at if self.ntasgd else None,
            "average": average_meta,
            "optimizer": optim_meta,
            "world_size": self.dist.world_size,
            **rng_meta,
            "model_type": self.family.name,
        }
        resume.save(self.output, tensors, meta, {TOKENIZER_FILE: self.tokenizer.to_str()})

    def _restore(self) -> None:
        if not resume.exists(self.output):
            if self.dist.is_main:
                tqdm.write(f"note: {self.output} has no resume state; starting from step 0", file=sys.stderr)
            return
        tensors, meta = resume.load(self.output)
        if meta.get("model_type") != self.family.name:
            raise TrainingError(f"{resume.resume_dir(self.output)}: saved for a {meta.get('model_type')} model, "
                                f"the config builds a {self.family.name}")
        try:
            self.model.load_state_dict(resume.prefixed(tensors, "model"))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise TrainingError(f"{resume.resume_dir(self.output)}: the saved weights do not fit this config's "
                                f"model ({first[1].strip() if len(first) > 1 else first[0]})") from None
        resume.restore_optimizer(self.optimizer, tensors, meta["optimizer"])
        self.state = TrainState.from_json(meta, default_lr=self.cfg.training.lr)
        self.sampler.load_state_dict(meta["sampler"])
        self.plateau.load_state_dict(meta["plateau"])
        if self.ntasgd is not None and meta.get("ntasgd_started_at") is not None:
            self.ntasgd.start(int(meta["ntasgd_started_at"]))
            self.ntasgd.averaged.load_state_dict(resume.prefixed(tensors, "averaged"))
        if self.average is not None:
            self.average.load_state(tensors, meta.get("average"))
        self.best_weights = resume.prefixed(tensors, "best") or None
        self._restore_process_state(tensors, meta)
        self.metrics.keep_until(self.state.step)

    def _restore_process_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        rank = self.dist.rank
        if rank > 0 and meta.get("world_size", 1) != self.dist.world_size:
            # saved by a run with another number of processes: this one's streams start afresh (not bit-exact)
            seed_everything(self.cfg.training.seed + rank + 7919 * self.state.step)
            self.carried = None
            return
        own = tensors if rank == 0 else resume.prefixed(tensors, f"rank{rank}")
        resume.set_rng_state(own, meta["rng" if rank == 0 else f"rank{rank}.rng"])
        self.carried = self.family.state_from_tensors(own, self.device)


def train(config: Config, options: RunOptions) -> TrainResult:
    return Trainer(config, options).run()
