"""Knowledge distillation: a trained model (the teacher) whose next-token distributions the run's model also learns.

With `training.teacher` set to a model directory, each training step runs the teacher, without gradients, on the
same batch, and the objective becomes

    (1 - teacher_weight) * cross_entropy(student, next tokens) + teacher_weight * KL(teacher || student)

at temperature 1 (Hinton et al. 2015). The teacher's full distribution says which other tokens were plausible where
the text has one, which regularises a model that passes over a small corpus many times. The two must share a
tokenizer: a run with a teacher and no `data.tokenizer_path` takes the teacher's. The logged training loss stays the
plain cross-entropy, so curves compare with runs without a teacher.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lm.checkpoint import CheckpointError, load_model_dir
from lm.tokenizers import Tokenizer


class TeacherError(ValueError):
    """The teacher cannot be used for this run (unreadable, or another tokenizer)."""


class Teacher:
    """A frozen model directory on `device`, checked to tokenize as the run's `tokenizer` does."""

    def __init__(self, path: str | Path, device: torch.device, tokenizer: Tokenizer) -> None:
        try:
            loaded = load_model_dir(path, device=device)
        except CheckpointError as error:
            raise TeacherError(f"training.teacher: {error}") from None
        if loaded.tokenizer.to_str() != tokenizer.to_str():
            raise TeacherError(f"training.teacher: {path} has another tokenizer than this run; leave "
                               f"data.tokenizer_path unset (the run then takes the teacher's) or point it at {path}")
        self.name = loaded.config.get("name") or Path(path).name
        self.model = loaded.model.requires_grad_(False)

    @torch.no_grad()
    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, V) float32 log-probabilities of each next token, each window read from an
        empty state (the teacher sees what the student sees)."""
        return F.log_softmax(self.model(x, None).logits.float(), dim=-1)

    def loss(self, x: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        """KL(teacher || student) in nats per token, averaged over the batch's tokens."""
        teacher = self.log_probs(x)
        student = F.log_softmax(student_logits.float(), dim=-1)
        return F.kl_div(student.reshape(-1, student.shape[-1]), teacher.reshape(-1, teacher.shape[-1]),
                        reduction="batchmean", log_target=True)
