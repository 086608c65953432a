"""Evaluation maths: loss, perplexity, bits per character, confidence and calibration, generation diversity."""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

LN2 = math.log(2.0)
LOW_CONFIDENCE = 0.5  # a prediction whose top token has less probability than this counts as low-confidence
ECE_BINS = 15


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")


def bits_per_char(loss: float, tokens: int, characters: int) -> float:
    """Nats per token -> bits per character of the text: comparable across char, word and BPE tokenizers."""
    if characters <= 0:
        return float("nan")
    return loss * tokens / (characters * LN2)


_COUNT_CHUNK = 1 << 24  # ids counted at a time: a corpus's ids stay on disk (memory-mapped), a chunk in memory


def token_counts(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """How often each id occurs in `ids` (a memmap is read a chunk at a time)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(ids), _COUNT_CHUNK):
        counts += np.bincount(np.asarray(ids[start: start + _COUNT_CHUNK], dtype=np.int64), minlength=vocab_size)
    return counts


def unigram_loss(train_ids: np.ndarray, valid_ids: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) on `valid_ids` of the add-one-smoothed unigram distribution of `train_ids`:
    the loss a model that ignores context entirely would reach; any trained model should beat it."""
    counts = token_counts(train_ids, vocab_size).astype(np.float64) + 1.0
    log_probs = np.log(counts / counts.sum())
    if not len(valid_ids):
        return float("nan")
    return float(-(token_counts(valid_ids, vocab_size) * log_probs).sum() / len(valid_ids))


class TokenStats:
    """Accumulates per-token figures over batches of (logits, targets)."""

    def __init__(self, detailed: bool = True) -> None:
        self.detailed = detailed
        self.nll_sum = 0.0
        self.nll_sq_sum = 0.0
        self.count = 0
        self.top_prob_sum = 0.0
        self.entropy_sum = 0.0
        self.low_confidence = 0
        self.bin_count = np.zeros(ECE_BINS, dtype=np.int64)
        self.bin_confidence = np.zeros(ECE_BINS)
        self.bin_correct = np.zeros(ECE_BINS)
        self.nll_samples: list[np.ndarray] = []  # kept for the loss histogram
        self.top_prob_samples: list[np.ndarray] = []

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """logits (..., V), targets (...) for the positions to score."""
        logits = logits.reshape(-1, logits.shape[-1]).float()
        targets = targets.reshape(-1)
        log_probs = F.log_softmax(logits, dim=-1)
        nll = -log_probs.gather(1, targets[:, None]).squeeze(1).double()
        self.nll_sum += float(nll.sum())
        self.nll_sq_sum += float((nll * nll).sum())
        self.count += targets.numel()
        if not self.detailed:
            return
        probs = log_probs.exp()
        top_prob, top_id = probs.max(dim=-1)
        entropy = -(probs * log_probs).sum(-1)
        self.top_prob_sum += float(top_prob.double().sum())
        self.entropy_sum += float(entropy.double().sum())
        self.low_confidence += int((top_prob < LOW_CONFIDENCE).sum())
        confidence = top_prob.double().cpu().numpy()
        correct = (top_id == targets).double().cpu().numpy()
        bins = np.minimum((confidence * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        self.bin_count += np.bincount(bins, minlength=ECE_BINS)
        self.bin_confidence += np.bincount(bins, weights=confidence, minlength=ECE_BINS)
        self.bin_correct += np.bincount(bins, weights=correct, minlength=ECE_BINS)
        self.nll_samples.append(nll.float().cpu().numpy())
        self.top_prob_samples.append(confidence.astype(np.float32))

    @property
    def loss(self) -> float:
        return self.nll_sum / self.count if self.count else float("nan")

    def summary(self, characters: int) -> dict[str, float | int]:
        """The figures `evaluate` reports, for a text of `characters` characters."""
        n = self.count
        loss = self.loss
        variance = max(0.0, self.nll_sq_sum / n - loss * loss) if n else float("nan")
        out: dict[str, float | int] = {
            "loss": loss,
            "perplexity": perplexity(loss),
            "bits_per_char": bits_per_char(loss, n, characters),
            "tokens": n,
            "characters": characters,
            "loss_std": math.sqrt(variance),
        }
        if self.detailed and n:
            out["avg_top_token_prob"] = self.top_prob_sum / n
            out["avg_entropy"] = self.entropy_sum / n
            out["low_confidence_ratio"] = self.low_confidence / n
            out["ece"] = self.ece()
        return out

    def ece(self) -> float:
        """Expected calibration error of the top-1 probability: sum over bins of |accuracy - confidence|,
        weighted by the share of tokens in the bin."""
        n = self.bin_count.sum()
        if n == 0:
            return float("nan")
        filled = self.bin_count > 0
        gap = np.abs(self.bin_correct[filled] - self.bin_confidence[filled])  # both are sums over the bin
        return float(gap.sum() / n)

    def reliability(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per bin: mean confidence, accuracy, token count (for the calibration plot)."""
        count = np.maximum(self.bin_count, 1)
        return self.bin_confidence / count, self.bin_correct / count, self.bin_count


def distinct_n(sequences: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams / all n-grams over the sequences (Li et al. 2016); 1.0 means no n-gram repeats."""
    grams: Counter = Counter()
    for seq in sequences:
        grams.update(tuple(seq[i: i + n]) for i in range(len(seq) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def repetition_rate(sequences: Sequence[Sequence[int]], n: int = 4) -> float:
    """Share of n-grams (default 4 tokens) that already occurred earlier in the same sequence: looping output."""
    repeated = total = 0
    for seq in sequences:
        seen: set = set()
        for i in range(len(seq) - n + 1):
            gram = tuple(seq[i: i + n])
            repeated += gram in seen
            seen.add(gram)
            total += 1
    return repeated / total if total else 0.0
