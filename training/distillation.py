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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lm.checkpoint import CheckpointError, load_model_dir
from lm.tokenizers import Tokenizer


MERGE_ROWS = 65_536  # positions merged at a time when several teachers are averaged (a dense (rows, V) block)


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

    @torch.no_grad()
    def read(self, ids: np.ndarray, top_k: int) -> TeacherTargets:
        """The teacher's `top_k` next-token predictions at every position of `ids` but the last."""
        if not 1 <= top_k <= self.model.config.vocab_size:
            raise ValueError(f"training.teacher_top_k must be in 1..{self.model.config.vocab_size}, got {top_k}")
        ids = np.asarray(ids)
        tokens = np.empty((len(ids) - 1, top_k), dtype=np.int32)
        log_probs = np.empty((len(ids) - 1, top_k), dtype=np.float16)
        seen = np.zeros(len(ids) - 1, dtype=bool)

        def keep(rows: np.ndarray, logits: torch.Tensor) -> None:  # rows (n,) positions, logits (n, V)
            best = torch.topk(F.log_softmax(logits.float(), dim=-1), top_k, dim=-1)
            tokens[rows], log_probs[rows], seen[rows] = best.indices.cpu().numpy(), best.values.cpu().numpy(), True

        self.family.predict_all(self.model, ids, self.device, keep)
        if not seen.all():  # every position is read once; anything else is a bug, said plainly
            raise RuntimeError(f"the teacher read {int(seen.sum())} positions of {len(seen)}")
        return TeacherTargets(tokens, log_probs)


class TeacherTargets:
    """The teacher's top-k predictions for every position of the training text (row j predicts token j + 1)."""

    def __init__(self, tokens: np.ndarray, log_probs: np.ndarray) -> None:
        self.tokens, self.log_probs = tokens, log_probs

    @classmethod
    def mean(cls, teachers: list[TeacherTargets], top_k: int, vocab_size: int) -> TeacherTargets:
        """The top k of the teachers' mean distribution (an ensemble), each teacher's probability outside its own
        top k counted as 0; positions are merged in blocks, so memory stays at one (MERGE_ROWS, V) block."""
        if len(teachers) == 1:
            return teachers[0]
        rows = teachers[0].tokens.shape[0]
        tokens = np.empty((rows, top_k), dtype=np.int32)
        log_probs = np.empty((rows, top_k), dtype=np.float16)
        for first in range(0, rows, MERGE_ROWS):
            block = slice(first, first + MERGE_ROWS)
            mean = torch.zeros(min(MERGE_ROWS, rows - first), vocab_size)
            for t in teachers:
                probs = torch.softmax(torch.from_numpy(t.log_probs[block].astype(np.float32)), dim=-1)
                mean.scatter_add_(1, torch.from_numpy(t.tokens[block].astype(np.int64)), probs / len(teachers))
            best = torch.topk(mean, top_k, dim=-1)
            tokens[block], log_probs[block] = best.indices.numpy(), best.values.clamp_min(1e-30).log().numpy()
        return cls(tokens, log_probs)

    def lookup(self, starts: np.ndarray, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, k) token ids and renormalised probabilities for windows beginning at `starts`."""
        rows = np.asarray(starts)[:, None] + np.arange(seq_len)[None, :]  # (B, T)
        tokens = torch.from_numpy(self.tokens[rows].astype(np.int64)).to(device)
        probs = torch.softmax(torch.from_numpy(self.log_probs[rows].astype(np.float32)), dim=-1).to(device)
        return tokens, probs

    def loss(self, starts: np.ndarray, student_logits: torch.Tensor) -> torch.Tensor:
        """KL(teacher's renormalised top k || student) in nats, averaged over the batch's tokens."""
        B, T, _ = student_logits.shape
        tokens, probs = self.lookup(starts, T, student_logits.device)
        student = F.log_softmax(student_logits.float(), dim=-1).gather(-1, tokens)  # (B, T, k)
        return (probs * (probs.clamp_min(1e-12).log() - student)).sum(-1).mean()
