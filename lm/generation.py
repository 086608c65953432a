"""The generation engine: prompt in, continuation out, one token at a time with the model's state carried along.

`Generator.stream` yields a `TokenEvent` per token as it is produced; `Generator.generate` runs the same loop to the
end. Both decode incrementally: the LSTM carries its (h, c), the GPT its KV cache, so each new token costs one
position, never a recompute of the whole sequence.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lm.checkpoint import LoadedModel, load_model_dir
from lm.checks import OptionError
from lm.options import (
    FINISHED_BY_EOS,
    FINISHED_BY_LENGTH,
    FINISHED_BY_STOP,
    FINISHED_BY_TIME_LIMIT,
    MAX_NEW_TOKENS,
    NUM_RETURN_SEQUENCES,
    OPTIONS,
    PROMPT,
    REPETITION_PENALTY,
    SEED,
    STOP,
    STOP_AT_EOS,
    TEMPERATURE,
    TIME_LIMIT,
    TOP_ALTERNATIVES,
    TOP_K,
    TOP_P,
)
from lm.quantize import check_quantize, quantize_model
from lm.sampling import ProcessorChain
from lm.tokenizers import Tokenizer

DRAWN_SEED_LIMIT = 2**53  # drawn seeds stay exact in JavaScript numbers (the browser UI shows and reuses them)


@dataclass
class Alternative:
    id: int
    text: str
    prob: float


@dataclass
class TokenEvent:
    index: int  # which returned sequence
    id: int
    text: str  # visible text this token adds ("" while a possible stop string is held back)
    logprob: float
    alternatives: list[Alternative] | None = None  # with top_alternatives: the most likely tokens at this step
    rank: int | None = None  # with top_alternatives: 1 + how many tokens were more likely (GLTR's measure)


@dataclass
class Choice:
    text: str
    finish_reason: str
    tokens: list[TokenEvent] = field(default_factory=list)


@dataclass
class GenerationResult:
    choices: list[Choice]
    prompt_tokens: int
    seed: int
    elapsed: float  # seconds

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    @property
    def tokens(self) -> list[TokenEvent]:
        return self.choices[0].tokens


@dataclass
class GenerationOptions:
    """The options of one generation, checked against their definitions in lm.options (defaults from there too)."""

    max_new_tokens: int = MAX_NEW_TOKENS.default
    temperature: float = TEMPERATURE.default
    top_k: int = TOP_K.default
    top_p: float = TOP_P.default
    repetition_penalty: float = REPETITION_PENALTY.default
    seed: int | None = SEED.default
    stop: Sequence[str] = STOP.default
    num_return_sequences: int = NUM_RETURN_SEQUENCES.default
    stop_at_eos: bool = STOP_AT_EOS.default
    top_alternatives: int = TOP_ALTERNATIVES.default
    time_limit: float | None = TIME_LIMIT.default

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # one stop string given on its own
            self.stop = [self.stop]
        for option in OPTIONS:
            setattr(self, option.name, option.check(getattr(self, option.name)))


class _TextTracker:
    """Turns one sequence's token ids into visible text: incremental decoding (see `StreamDecoder`) and stop
    strings that may span tokens, held back until they can no longer begin one."""

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str]) -> None:
        self.decoder = tokenizer.stream_decoder()
        self.stop = list(stop)
        self.longest_stop = max((len(s) for s in self.stop), default=0)
        self.raw = ""  # everything decoded so far
        self.emitted = 0  # characters of `raw` handed out in events

    def push(self, token_id: int, last: bool) -> tuple[str, bool]:
        """Add a token; returns (text to emit now, whether a stop string was reached)."""
        piece = self.decoder.step(token_id)
        if piece:
            search_from = max(0, len(self.raw) - self.longest_stop)
            self.raw += piece
            hits = [i for i in (self.raw.find(s, search_from) for s in self.stop) if i >= 0]
            if hits:
                end = min(hits)
                self.raw = self.raw[:end]
                return self._emit_until(max(end, self.emitted)), True
        if last:
            return self.flush(), False
        return self._emit_until(len(self.raw) - self._held_back()), False

    def flush(self) -> str:
        """Everything not yet emitted, held-back text included (the sequence has ended)."""
        return self._emit_until(len(self.raw))

    def _held_back(self) -> int:
        """Length of the longest tail of `raw` that could still grow into a stop string."""
        longest = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.raw)), longest, -1):
                if self.raw.endswith(s[:k]):
                    longest = k
                    break
        return longest

    def _emit_until(self, end: int) -> str:
        end = max(end, self.emitted)
        text, self.emitted = self.raw[self.emitted : end], end
        return text


class GenerationStream:
    """Iterate for `TokenEvent`s; `result` holds the `GenerationResult` once iteration has ended."""

    def __init__(self, run: Callable[[GenerationStream], Iterator[TokenEvent]]) -> None:
        self.result: GenerationResult | None = None
        self._events = run(self)  # a generator: nothing runs until the first next()

    def __iter__(self) -> Iterator[TokenEvent]:
        return self._events

    def __next__(self) -> TokenEvent:
        return next(self._events)

    def close(self) -> None:
        """Stop generating; no more tokens are computed."""
        self._events.close()


class Generator:
    """A loaded model directory, ready to continue prompts. Safe to share between threads."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu", quantize: str | None = None) -> None:
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.config = loaded.config
        self.path = loaded.path
        self.name = loaded.path.resolve().name
        self.model_type = loaded.model_type
        self.family = loaded.family
        self.num_parameters = self.model.num_parameters()  # counted before int8 layers hide their weights
        self.context_length: int | None = self.model.context_length
        self.device = torch.device(device)
        self.quantize = check_quantize(quantize)
        if quantize is not None:
            quantize_model(self.model, quantize)

    def generate(self, prompt: str = "", **options: Any) -> GenerationResult:
        stream = self.stream(prompt, **options)
        for _ in stream:
            pass
        return stream.result

    def stream(self, prompt: str = "", **options: Any) -> GenerationStream:
        """Validates the options at once (ValueError), then generates lazily as the stream is iterated."""
        PROMPT.check(prompt)
        try:
            opts = GenerationOptions(**options)
        except TypeError:
            allowed = [option.name for option in OPTIONS]
            unknown = sorted(set(options) - set(allowed))
            raise OptionError(unknown[0], f"is an unknown option; allowed: {', '.join(allowed)}") from None
        if opts.top_alternatives > self.tokenizer.vocab_size:
            raise OptionError(
                "top_alternatives", f"must be at most the vocabulary size {self.tokenizer.vocab_size}, got "
                f"{opts.top_alternatives}"
            )
        suppress = [self.tokenizer.unk_id] if self.tokenizer.unk_id is not None else []
        chain = ProcessorChain(opts.temperature, opts.top_k, opts.top_p, opts.repetition_penalty, suppress)
        seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(8), "little") % DRAWN_SEED_LIMIT
        return GenerationStream(lambda stream: self._run(prompt, opts, chain, seed, stream))

    def _run(self, prompt: str, opts: GenerationOptions, chain: ProcessorChain, seed: int, stream: GenerationStream):
        started = time.perf_counter()
        prompt_ids = self.tokenizer.encode(prompt)
        batch = opts.num_return_sequences
        trackers = [_TextTracker(self.tokenizer, opts.stop) for _ in range(batch)]
        choices = [Choice(text="", finish_reason=FINISHED_BY_LENGTH) for _ in range(batch)]
        rng = torch.Generator().manual_seed(seed)
        window = self.family.prompt_window(self.model, prompt_ids or [self.tokenizer.start_id])
        with torch.inference_mode():
            history = torch.tensor([window] * batch, dtype=torch.long, device=self.device)  # (B, T)
            state = self.model.init_state(batch, self.device)
            output = self.model(history, state)
            state = output.state
            logits = output.logits[:, -1]  # (B, V)
            active = list(range(batch))
            for step in range(opts.max_new_tokens):
                # each tensor operation here costs microseconds, several times its cost in isolation because the
                # model step has just flushed the CPU caches: keep them few (docs/benchmarks.md)
                view, sampling = chain(logits, history)
                next_ids = chain.choose_next(sampling, rng)  # (B, 1)
                log_probs = view.log_softmax(dim=-1)
                # one conversion per step, not one tensor index per sequence: it adds up at batch 8
                chosen_ids = next_ids.view(-1).tolist()
                chosen_logprobs = log_probs.gather(1, next_ids).view(-1).tolist()
                out_of_time = opts.time_limit is not None and time.perf_counter() - started >= opts.time_limit
                last_step = step == opts.max_new_tokens - 1
                for b in list(active):
                    token_id = chosen_ids[b]
                    reason = None
                    if opts.stop_at_eos and token_id == self.tokenizer.eos_id:
                        reason = FINISHED_BY_EOS
                    elif out_of_time:
                        reason = FINISHED_BY_TIME_LIMIT
                    elif last_step:
                        reason = FINISHED_BY_LENGTH
                    if reason == FINISHED_BY_EOS:
                        text, stopped = trackers[b].flush(), False
                    else:
                        text, stopped = trackers[b].push(token_id, last=reason is not None)
                    if stopped:
                        reason = FINISHED_BY_STOP
                    event = TokenEvent(b, token_id, text, chosen_logprobs[b])
                    if opts.top_alternatives:
                        event.alternatives = self._alternatives(log_probs[b], opts.top_alternatives)
                        event.rank = int((log_probs[b] > chosen_logprobs[b]).sum()) + 1
                    choices[b].tokens.append(event)
                    choices[b].text += text
                    if reason is not None:
                        choices[b].finish_reason = reason
                        active.remove(b)
                    yield event
                if not active:
                    break
                history = torch.cat([history, next_ids], dim=1)
                output = self.model(next_ids, self.family.make_room(self.model, state, history, self.device))
                state, logits = output.state, output.logits[:, -1]
        stream.result = GenerationResult(choices, len(prompt_ids), seed, time.perf_counter() - started)

    def _alternatives(self, log_probs: torch.Tensor, n: int) -> list[Alternative]:
        top = torch.topk(log_probs, n)
        return [
            Alternative(int(i), self.tokenizer.token_text(int(i)), float(lp.exp()))
            for lp, i in zip(top.values, top.indices)
            if lp > float("-inf")
        ]


def load(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: str = "auto",
         quantize: str | None = None) -> Generator:
    """Load any model directory for generation. `dtype`: what the model computes in; `auto` keeps half-precision
    weights only where they are measured faster than float32 on `device` (lm.checkpoint.compute_dtype).
    `quantize="int8"` runs the linear layers in int8 (CPU only, from float32 weights: see lm.quantize)."""
    if check_quantize(quantize) is not None:
        if dtype not in ("auto", "float32"):
            raise OptionError("quantize", f"int8 is made from float32 weights; it cannot go with dtype {dtype!r}")
        dtype = "float32"
    return Generator(load_model_dir(Path(path), device=device, dtype=dtype), device=device, quantize=quantize)
