"""Knowledge distillation: a trained model (the teacher) whose next-token distributions the run's model also learns.

With `training.teacher` set to a model directory, the teacher first reads the whole training text once, in order,
with the context it can use (an LSTM its carried state along 16 streams read side by side, a GPT its sliding
window), and its `teacher_top_k` most likely next tokens at every position are kept, with their probabilities. Each
training step then looks up the positions of its windows, and the objective becomes

    (1 - teacher_weight) * cross_entropy(student, next tokens) + teacher_weight * KL(teacher_top_k || student)

at temperature 1 (Hinton et al. 2015; the teacher's top k renormalised, as in sparse distillation). The teacher's
full distribution says which other tokens were plausible where the text has one, which regularises a model that
passes over a small corpus many times; reading the text once costs about one pass of the teacher's inference and
nothing per step after. The two must share a tokenizer: a run with a teacher and no `data.tokenizer_path` takes the
teacher's. The logged training loss stays the plain cross-entropy, so curves compare with runs without a teacher.

What a teacher read is kept in the cache (`$SCRIPTORIUM_CACHE/teachers/`, `TargetStore`), keyed by the teacher's
weights, the training ids and k, as numpy files that are memory-mapped rather than loaded (about 6 x k bytes per
training token: 100 MB at k = 32 for TinyShakespeare, gigabytes for a large corpus). A resumed run, or a second run
with the same teacher and data, starts at once instead of reading again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lm.atomic import make_staging_dir
from lm.checkpoint import WEIGHTS_FILE, CheckpointError, load_model_dir
from lm.models.family import PREDICT_CHUNK, PREDICT_STREAMS
from lm.tokenizers import Tokenizer


MERGE_ROWS = 65_536  # positions merged at a time when several teachers are averaged (a dense (rows, V) block)
TARGETS_VERSION = 1  # part of every cache key: raise it when what a reading keeps changes
TOKENS_FILE, LOG_PROBS_FILE = "tokens.npy", "log_probs.npy"


class TeacherError(ValueError):
    """The teacher cannot be used for this run (unreadable, or another tokenizer)."""


class Teacher:
    """A frozen model directory, checked to tokenize as the run's `tokenizer` does."""

    def __init__(self, path: str | Path, device: torch.device, tokenizer: Tokenizer) -> None:
        try:
            loaded = load_model_dir(path, device=device)
        except CheckpointError as error:
            raise TeacherError(f"training.teacher: {error}") from None
        if loaded.tokenizer.to_str() != tokenizer.to_str():
            raise TeacherError(f"training.teacher: {path} has another tokenizer than this run; leave "
                               f"data.tokenizer_path unset (the run then takes the teacher's) or point it at {path}")
        self.name = loaded.config.get("name") or Path(path).name
        self.model, self.family, self.device = loaded.model.requires_grad_(False), loaded.family, device
        self.path, self.model_config = Path(path), loaded.config.get("model")

    def fingerprint(self) -> str:
        """What decides its predictions: the weights and the model section of config.json, and how it reads (the
        family, and the streams and chunks a recurrent model reads in)."""
        digest = hashlib.sha256(f"{TARGETS_VERSION}\0{self.family.name}\0{PREDICT_STREAMS}\0{PREDICT_CHUNK}".encode())
        digest.update(json.dumps(self.model_config, sort_keys=True).encode())
        with open(self.path / WEIGHTS_FILE, "rb") as weights:
            for block in iter(lambda: weights.read(1 << 22), b""):
                digest.update(block)
        return digest.hexdigest()

    @torch.no_grad()
    def read(self, ids: np.ndarray, top_k: int, store: TargetStore | None = None) -> TeacherTargets:
        """The teacher's `top_k` next-token predictions at every position of `ids` but the last; from `store` when
        it has them, else read and put there."""
        if not 1 <= top_k <= self.model.config.vocab_size:
            raise ValueError(f"training.teacher_top_k must be in 1..{self.model.config.vocab_size}, got {top_k}")
        ids = np.asarray(ids)
        store = store or TargetStore(None)
        key = ""
        if store.root:  # hashed as they are: no copy of a large memmap
            text = hashlib.sha256(np.ascontiguousarray(ids)).hexdigest()
            key = store.key(self.fingerprint(), text, ids.dtype.str, len(ids), top_k)
        if (kept := store.load(key)) is not None:
            return kept
        seen = np.zeros(len(ids) - 1, dtype=bool)
        with store.create(key, len(ids) - 1, top_k) as targets:
            tokens, log_probs = targets.tokens, targets.log_probs

            def keep(rows: np.ndarray, logits: torch.Tensor) -> None:  # rows (n,) positions, logits (n, V)
                best = torch.topk(F.log_softmax(logits.float(), dim=-1), top_k, dim=-1)
                tokens[rows], log_probs[rows] = best.indices.cpu().numpy(), best.values.cpu().numpy()
                seen[rows] = True

            self.family.predict_all(self.model, ids, self.device, keep)
            if not seen.all():  # every position is read once; anything else is a bug, said plainly
                raise RuntimeError(f"the teacher read {int(seen.sum())} positions of {len(seen)}")
        return store.reopen(key, targets)


class TeacherTargets:
    """The teacher's top-k predictions for every position of the training text (row j predicts token j + 1)."""

    def __init__(self, tokens: np.ndarray, log_probs: np.ndarray, key: str = "", cached: bool = False) -> None:
        self.tokens, self.log_probs = tokens, log_probs
        self.key = key  # its name in a TargetStore ("" when it is in memory only)
        self.cached = cached  # found in the store, not read by this run

    @classmethod
    def mean(cls, teachers: list[TeacherTargets], top_k: int, vocab_size: int,
             store: TargetStore | None = None) -> TeacherTargets:
        """The top k of the teachers' mean distribution (an ensemble), each teacher's probability outside its own
        top k counted as 0; positions are merged in blocks, so memory stays at one (MERGE_ROWS, V) block."""
        if len(teachers) == 1:
            return teachers[0]
        store = store or TargetStore(None)
        keys = sorted(t.key for t in teachers)
        key = store.key("mean", *keys, top_k) if store.root and all(keys) else ""
        if (kept := store.load(key)) is not None:
            return kept
        rows = teachers[0].tokens.shape[0]
        with store.create(key, rows, top_k) as merged:
            for first in range(0, rows, MERGE_ROWS):
                block = slice(first, first + MERGE_ROWS)
                mean = torch.zeros(min(MERGE_ROWS, rows - first), vocab_size)
                for t in teachers:
                    probs = torch.softmax(torch.from_numpy(t.log_probs[block].astype(np.float32)), dim=-1)
                    mean.scatter_add_(1, torch.from_numpy(t.tokens[block].astype(np.int64)), probs / len(teachers))
                best = torch.topk(mean, top_k, dim=-1)
                merged.tokens[block] = best.indices.numpy()
                merged.log_probs[block] = best.values.clamp_min(1e-30).log().numpy()
        return store.reopen(key, merged)

    def lookup(self, starts: np.ndarray, seq_len: int, device: torch.device,
               temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, k) token ids and renormalised probabilities (softened by `temperature`) for windows beginning at
        `starts`."""
        rows = np.asarray(starts)[:, None] + np.arange(seq_len)[None, :]  # (B, T)
        tokens = torch.from_numpy(self.tokens[rows].astype(np.int64)).to(device)
        log_probs = torch.from_numpy(self.log_probs[rows].astype(np.float32))
        return tokens, torch.softmax(log_probs / temperature, dim=-1).to(device)

    def loss(self, starts: np.ndarray, student_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """KL(teacher's renormalised top k || student) in nats, averaged over the batch's tokens. Above temperature
        1 both are softened by it and the divergence is scaled by its square (Hinton et al.), so that its gradients
        keep their size beside the cross-entropy's."""
        B, T, _ = student_logits.shape
        tokens, probs = self.lookup(starts, T, student_logits.device, temperature)
        student = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, tokens)  # (B, T, k)
        return (probs * (probs.clamp_min(1e-12).log() - student)).sum(-1).mean() * temperature ** 2


class TargetStore:
    """Teacher targets on disk, a directory per reading (`<key>/tokens.npy` and `log_probs.npy`) opened as read-only
    memmaps. A reading is written into a staging directory and renamed into place once complete, so an interrupted
    run leaves nothing behind that a later one could take for whole. `root` None, or a cache that cannot be written,
    keeps the targets in memory instead."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None

    @staticmethod
    def key(*parts: str | bytes | int) -> str:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part if isinstance(part, bytes) else str(part).encode())
            digest.update(b"\0")
        return digest.hexdigest()[:32]

    def load(self, key: str) -> TeacherTargets | None:
        if not (self.root and key and (self.root / key / TOKENS_FILE).is_file()):
            return None
        directory = self.root / key
        try:
            return TeacherTargets(np.load(directory / TOKENS_FILE, mmap_mode="r"),
                                  np.load(directory / LOG_PROBS_FILE, mmap_mode="r"), key, cached=True)
        except (OSError, ValueError):  # damaged by hand: read again rather than fail
            return None

    def reopen(self, key: str, written: TeacherTargets) -> TeacherTargets:
        """What `create` just wrote, opened read-only (or `written` itself where it stayed in memory)."""
        kept = self.load(key)
        if kept is None:
            return written
        kept.cached = False
        return kept

    @contextlib.contextmanager
    def create(self, key: str, rows: int, top_k: int) -> Iterator[TeacherTargets]:
        """Empty (rows, top_k) targets to fill in the block; kept under `key` when it ends without an error."""
        staging = None
        if self.root and key:
            with contextlib.suppress(OSError):  # a read-only cache: read into memory
                staging = make_staging_dir(self.root / key)
        if staging is None:
            yield TeacherTargets(np.empty((rows, top_k), np.int32), np.empty((rows, top_k), np.float16))
            return
        try:
            shape = (rows, top_k)
            targets = TeacherTargets(np.lib.format.open_memmap(staging / TOKENS_FILE, "w+", np.int32, shape),
                                     np.lib.format.open_memmap(staging / LOG_PROBS_FILE, "w+", np.float16, shape))
            yield targets
            targets.tokens.flush()
            targets.log_probs.flush()
            del targets
            try:
                os.rename(staging, self.root / key)
            except OSError:  # another process (a DDP rank) put the same reading there first
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
