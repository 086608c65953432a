"""The generation engine: prompt in, continuation out, one token at a time with the model's state carried along.

`Generator.stream` yields a `TokenEvent` per token as it is produced; `Generator.generate` returns the finished
result. Both hand the request to the model's scheduler (lm/scheduler.py), which decodes it together with every other
request in flight, one batched forward pass per token, each row carrying its own state: the LSTM its (h, c), the GPT
its rows of the KV cache, so each new token costs one position, never a recompute of the whole sequence. This module
says what a token means to its request: text (incremental decoding, stop strings), events, the finish reason and the
result.
"""

from __future__ import annotations

import math
import os
import queue
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
from lm.scheduler import Draw, Request, Scheduler, SchedulerLimits
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
class TokenScore:
    """A token of a scored text: its log-probability given the text before it (None for the first token, which
    nothing predicts) and the most likely tokens at its place, as (id, logprob)."""

    id: int
    text: str
    logprob: float | None
    alternatives: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class GenerationResult:
    choices: list[Choice]
    prompt_tokens: int
    seed: int
    elapsed: float  # seconds, from the request to its last token
    queued: float = 0.0  # seconds it waited for room in the batch
    time_to_first_token: float | None = None  # seconds from the request to its first token (None: no token)

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


_END = object()  # the last item of a request's event queue: its result or its error is ready


class _Generation(Request):
    """One call of `Generator.stream` or `Generator.generate`, as the scheduler sees it: its sequences' text,
    events and finish reasons, and the result once every sequence has ended."""

    def __init__(self, generator: Generator, prompt_ids: list[int], opts: GenerationOptions, chain: ProcessorChain,
                 seed: int, events: bool) -> None:
        tokenizer = generator.tokenizer
        self.ids = list(generator.family.prompt_window(generator.model, prompt_ids or [tokenizer.start_id]))
        self.sequences = opts.num_return_sequences
        self.chain = chain
        self.top_alternatives = opts.top_alternatives
        self.seed = seed
        self.opts = opts
        self.tokenizer = tokenizer
        self.prompt_tokens = len(prompt_ids)
        self.events: queue.SimpleQueue = queue.SimpleQueue()  # TokenEvents (when `events`), then _END
        self.send_events = events
        self.trackers = [_TextTracker(tokenizer, opts.stop) for _ in range(self.sequences)]
        self.choices = [Choice(text="", finish_reason=FINISHED_BY_LENGTH) for _ in range(self.sequences)]
        self.running = self.sequences
        self.submitted = time.perf_counter()
        self.started: float | None = None
        self.first_token: float | None = None
        self.result: GenerationResult | None = None
        self.error: BaseException | None = None
        self._done = False
        if opts.max_new_tokens == 0:
            self._complete()

    @property
    def done(self) -> bool:
        return self._done

    def admitted(self) -> None:
        self.started = time.perf_counter()

    def accept(self, sequence: int, draw: Draw, now: float) -> bool:
        opts, choice = self.opts, self.choices[sequence]
        reason = None
        if opts.stop_at_eos and draw.id == self.tokenizer.eos_id:
            reason = FINISHED_BY_EOS
        elif opts.time_limit is not None and now - self.started >= opts.time_limit:
            reason = FINISHED_BY_TIME_LIMIT
        elif len(choice.tokens) == opts.max_new_tokens - 1:
            reason = FINISHED_BY_LENGTH
        tracker = self.trackers[sequence]
        if reason == FINISHED_BY_EOS:
            text, stopped = tracker.flush(), False
        else:
            text, stopped = tracker.push(draw.id, last=reason is not None)
        if stopped:
            reason = FINISHED_BY_STOP
        event = TokenEvent(sequence, draw.id, text, draw.logprob)
        if draw.alternatives is not None:
            event.rank = draw.rank
            event.alternatives = [Alternative(i, self.tokenizer.token_text(i), math.exp(lp))
                                  for i, lp in draw.alternatives if lp > float("-inf")]
        choice.tokens.append(event)
        choice.text += text
        if self.first_token is None:
            self.first_token = now
        if self.send_events:
            self.events.put(event)
        if reason is not None:
            choice.finish_reason = reason
            self.running -= 1
            if self.running == 0:
                self._complete()
        return reason is not None

    def _complete(self) -> None:
        now = time.perf_counter()
        self.result = GenerationResult(
            self.choices, self.prompt_tokens, self.seed, now - self.submitted,
            queued=(self.started or now) - self.submitted,
            time_to_first_token=None if self.first_token is None else self.first_token - self.submitted,
        )
        self._done = True
        self.events.put(_END)

    def finish(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self.error = error
        self._done = True
        self.events.put(_END)

    def cancel(self) -> None:
        """The client has gone: no more tokens (the scheduler drops its rows at the next step)."""
        self._done = True

    def outcome(self) -> GenerationResult:
        """Waits for the end; the result, or the error raised."""
        while self.events.get() is not _END:
            pass
        if self.error is not None:
            raise self.error
        return self.result


class GenerationStream:
    """Iterate for `TokenEvent`s as the scheduler produces them; `result` holds the `GenerationResult` once
    iteration has ended. An error (Overloaded, a failure while generating) is raised by the iteration."""

    def __init__(self, request: _Generation, scheduler: Scheduler) -> None:
        self.result: GenerationResult | None = None
        self._request = request
        self._scheduler = scheduler
        self._ended = False

    def __iter__(self) -> Iterator[TokenEvent]:
        return self

    def __next__(self) -> TokenEvent:
        if self._ended:
            raise StopIteration
        item = self._request.events.get()
        if item is not _END:
            return item
        self._ended = True
        if self._request.error is not None:
            raise self._request.error
        self.result = self._request.result
        raise StopIteration

    def close(self) -> None:
        """Stop generating (e.g. the HTTP client went away): no more tokens are computed, and `result` stays None."""
        if not self._ended:
            self._ended = True
            self._request.cancel()
            self._scheduler.wake()


class Generator:
    """A loaded model directory, ready to continue prompts. Safe to share between threads: every call goes to the
    model's one scheduler, which batches them (`limits`: lm.scheduler.SchedulerLimits)."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu", quantize: str | None = None,
                 limits: SchedulerLimits | None = None) -> None:
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
            quantize_model(self.model, quantize)  # before the scheduler: it batches the int8 model too
        self.scheduler = Scheduler(self.model, self.family, self.device, limits, name=self.name)

    def generate(self, prompt: str | Sequence[int] = "", **options: Any) -> GenerationResult:
        """The finished generation (Overloaded when the scheduler has no room). The prompt is text, or token ids."""
        request = self._request(prompt, options, events=False)
        if not request.done:
            self.scheduler.run_here(request)  # this thread runs the steps while it waits (lm/scheduler.py)
        return request.outcome()

    def stream(self, prompt: str | Sequence[int] = "", **options: Any) -> GenerationStream:
        """Checks the options at once (ValueError) and queues the request (Overloaded when too many wait); tokens
        arrive as the stream is iterated."""
        request = self._request(prompt, options, events=True)
        if not request.done:
            self.scheduler.submit(request)
        return GenerationStream(request, self.scheduler)

    def close(self) -> None:
        """Stop the scheduler's loop (requests still waiting or running get SchedulerClosed)."""
        self.scheduler.stop()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        """A prompt's token ids: text is encoded; token ids are checked against the vocabulary (OptionError)."""
        if isinstance(prompt, str):
            return self.tokenizer.encode(PROMPT.check(prompt))
        ids = list(prompt)
        vocab = self.tokenizer.vocab_size
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab for i in ids):
            raise OptionError("prompt", f"token ids must be integers in [0, {vocab}), the model's vocabulary")
        return ids

    @torch.inference_mode()
    def score(self, prompt: str | Sequence[int], top: int = 0) -> list[TokenScore]:
        """Each token of `prompt` with its log-probability under the model given the tokens before it, and the `top`
        most likely tokens at its place: the family's faithful reading of a whole text (`Family.score_text`, as
        `evaluate` reads: the GPT in windows of its context, the LSTM as one stream), on the caller's thread."""
        ids = self.prompt_ids(prompt)
        scores = [TokenScore(i, self.tokenizer.token_text(i), None) for i in ids]
        found: list[tuple[list[float], list[list[tuple[int, float]]]]] = []

        def consume(logits: torch.Tensor, targets: torch.Tensor) -> None:
            log_probs = logits.reshape(-1, logits.shape[-1]).float().log_softmax(dim=-1)
            chosen = log_probs.gather(1, targets.reshape(-1, 1).to(log_probs.device)).view(-1).tolist()
            alternatives: list[list[tuple[int, float]]] = [[] for _ in chosen]
            if top:
                best = torch.topk(log_probs, min(top, log_probs.shape[-1]))
                alternatives = [list(zip(i, lp)) for i, lp in zip(best.indices.tolist(), best.values.tolist())]
            found.append((chosen, alternatives))

        if len(ids) > 1:
            self.family.score_text(self.model, np.asarray(ids, dtype=np.int64), consume, self.device)
        position = 1
        for chosen, alternatives in found:
            for logprob, best in zip(chosen, alternatives):
                scores[position].logprob, scores[position].alternatives = logprob, best
                position += 1
        return scores

    def _request(self, prompt: str | Sequence[int], options: dict[str, Any], events: bool) -> _Generation:
        ids = self.prompt_ids(prompt)
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
        return _Generation(self, ids, opts, chain, seed, events)


def load(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: str = "auto",
         quantize: str | None = None, limits: SchedulerLimits | None = None) -> Generator:
    """Load any model directory for generation. `dtype`: what the model computes in; `auto` keeps half-precision
    weights only where they are measured faster than float32 on `device` (lm.checkpoint.compute_dtype).
    `quantize="int8"` runs the linear layers in int8 (CPU only, from float32 weights: see lm.quantize). `limits`:
    how much its scheduler takes on at once."""
    if check_quantize(quantize) is not None:
        if dtype not in ("auto", "float32"):
            raise OptionError("quantize", f"int8 is made from float32 weights; it cannot go with dtype {dtype!r}")
        dtype = "float32"
    return Generator(load_model_dir(Path(path), device=device, dtype=dtype), device=device, quantize=quantize,
                     limits=limits)
