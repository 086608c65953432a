"""Logits processors: small steps applied in a fixed order, each checking its own argument.

Order: suppress tokens that must never be produced (`<unk>`), repetition penalty, temperature, top-k, top-p.
Temperature 0 is not a processor: it means greedy decoding (argmax), see `choose_next`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from lm.checks import OptionError
from lm.options import REPETITION_PENALTY, TEMPERATURE, TOP_K, TOP_P


class SuppressTokens:
    """Tokens that are never sampled (e.g. `<unk>`): their logits become -inf."""

    def __init__(self, token_ids: Iterable[int]) -> None:
        self.token_ids = sorted(set(int(i) for i in token_ids))

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        if self.token_ids:
            logits[:, self.token_ids] = float("-inf")
        return logits


class RepetitionPenalty:
    """CTRL's penalty (Keskar et al. 2019): logits of tokens already in the sequence are divided by `penalty`
    when positive and multiplied by it when negative. 1.0 leaves logits unchanged."""

    def __init__(self, penalty: float) -> None:
        self.penalty = REPETITION_PENALTY.check(penalty)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        if self.penalty == 1.0 or history.shape[1] == 0:
            return logits
        seen = logits.gather(1, history)  # (B, T)
        seen = torch.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits.scatter(1, history, seen)


class Temperature:
    """Divides the logits by the temperature. Temperature 0 (greedy decoding) is `ProcessorChain`'s, not this."""

    def __init__(self, temperature: float) -> None:
        self.temperature = TEMPERATURE.check(temperature)
        if self.temperature == 0:
            raise OptionError("temperature", "0 is greedy decoding, which ProcessorChain does without this processor")

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return logits if self.temperature == 1.0 else logits / self.temperature


class TopK:
    """Keep the k most likely tokens; 0 turns the filter off."""

    def __init__(self, top_k: int) -> None:
        self.top_k = TOP_K.check(top_k)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        if self.top_k == 0 or self.top_k >= logits.shape[-1]:
            return logits
        kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]  # (B, 1)
        return logits.masked_fill(logits < kth, float("-inf"))


class TopP:
    """Nucleus sampling (Holtzman et al. 2019): the smallest set of tokens whose probability reaches p."""

    def __init__(self, top_p: float) -> None:
        self.top_p = TOP_P.check(top_p)

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        if self.top_p >= 1.0:
            return logits
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the ones before it already reach p; the most likely token always stays
        drop = (probs.cumsum(dim=-1) - probs) >= self.top_p
        drop[:, 0] = False
        return logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))


class ProcessorChain:
    """The fixed-order chain for one set of options. `view` is the distribution shown to people (after the
    penalty and temperature, before truncation); `sampling` is the truncated one tokens are drawn from. Each
    processor checks its own argument (lm.options has the definitions)."""

    def __init__(
        self,
        temperature: float = TEMPERATURE.default,
        top_k: int = TOP_K.default,
        top_p: float = TOP_P.default,
        repetition_penalty: float = REPETITION_PENALTY.default,
        suppress_ids: Sequence[int] = (),
    ) -> None:
        self.greedy = TEMPERATURE.check(temperature) == 0
        # equal for chains that process logits alike, so that rows of several requests can share one pass
        self.key = (temperature, top_k, top_p, repetition_penalty, tuple(sorted(set(suppress_ids))))
        self.shaping = [SuppressTokens(suppress_ids), RepetitionPenalty(repetition_penalty)]
        if not self.greedy:
            self.shaping.append(Temperature(temperature))
        self.truncation = [TopK(top_k), TopP(top_p)]

    def __call__(self, logits: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V) logits -> (view logits, sampling logits)."""
        if logits.dtype != torch.float32:
            logits = logits.float()
        for step in self.shaping:
            logits = step(logits, history)
        view = logits
        for step in self.truncation:
            logits = step(logits, history)
        return view, logits

    @property
    def reads_history(self) -> bool:
        """Whether a step looks at the tokens already in the sequence (the repetition penalty)."""
        return self.shaping[1].penalty != 1.0

    def choose_next(self, sampling_logits: torch.Tensor, generator: torch.Generator | None = None,
                    uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """(B, V) -> (B, 1) token ids, a column ready to feed back to the model: argmax when greedy, else a draw
        from the softmax (at `uniforms`, one point per row, when given; else drawn from `generator`)."""
        if self.greedy:
            return sampling_logits.argmax(dim=-1, keepdim=True)
        return sample_rows(sampling_logits.softmax(dim=-1), generator, uniforms)


def sample_rows(probs: torch.Tensor, generator: torch.Generator | None = None,
                uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """One token id per row of probs (B, V) -> (B, 1), drawn by inverting the cumulative distribution at a uniform
    point: `uniforms` (B, 1) in [0, 1) when given (each row's own draw, as the scheduler makes them, so that a row
    samples alike in any batch), else drawn from `generator`.

    Exact like torch.multinomial, and several times faster on a few rows, where a decode step has a fraction of a
    millisecond to spend (bench/generation.py). In float64 the point u * total (u < 1) always falls below the last
    cumulative sum, and the first sum strictly above it belongs to a token of non-zero probability, so filtered
    tokens are never drawn.
    """
    device = probs.device
    cdf = probs.cpu().cumsum(dim=-1, dtype=torch.float64)  # (B, V); the generator lives on the CPU
    if uniforms is None:
        uniforms = torch.rand(cdf.shape[0], 1, dtype=torch.float64, generator=generator)
    points = uniforms.to(torch.float64) * cdf[:, -1:]  # (B, 1)
    ids = torch.searchsorted(cdf, points, right=True)
    return ids if device.type == "cpu" else ids.to(device)
