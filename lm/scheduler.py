"""Continuous batching: one loop per loaded model advances every active sequence by one token per step, in one
batched forward pass, while requests join and leave between steps (as Hugging Face text-generation-inference, vLLM
and llama.cpp's server do).

- Requests start in arrival order, as soon as their sequences fit in the batch (`max_batch_size` rows). Past
  `max_queued` waiting requests a new one is refused at once, and one that waited `max_wait` seconds is refused
  then: both with `Overloaded`.
- A prompt is read on its own, at most `prefill_chunk` tokens per step so that a long prompt does not stall the
  others' tokens, then its rows join the batch's state (the family's `join_rows`); a request for n sequences reads
  its prompt once and joins as n rows.
- Each step processes every row's logits with its own request's options (the rows of requests with equal options
  in one pass) and draws each row's token with the row's own generator, so that a seeded request samples the same
  text alone or in any batch; then it feeds all the new tokens in one forward pass. Each row keeps its own position
  and length in the state (GPT: a per-row KV cache that slides per row; LSTM: per-row (h, c)).
- A row leaves as soon as its sequence ends (its request decides: length, eos, stop string, time limit) or its
  client goes away (the request is `done`); the state drops it (`keep_rows`).
- A request that fails gets its error and leaves; the others go on. `stop()` ends the loop cleanly; what is still
  waiting or running gets `SchedulerClosed`.

- The loop runs on the scheduler's own thread, except while a caller waits for a whole result (`run_here`, what
  `Generator.generate` uses): that caller's thread then runs the steps itself, for the whole batch, until its own
  request ends. Decoding on the caller's thread keeps a library user's lone request as fast as before batching: a
  second thread running torch's OpenMP team beside the caller's made each small operation wait for the other team
  (libgomp stops spinning when it manages more threads than cores), 0.67x at 2 torch threads (docs/benchmarks.md).
  One thread steps at a time (`_driver`), so requests from other threads simply ride along.

The scheduler knows rows and tokens; what a token means to its request (text, stop strings, events, the result) is
the request's business: `Request`, which lm.generation implements.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn as nn

from lm.checks import OptionError
from lm.models.family import Family
from lm.sampling import ProcessorChain

log = logging.getLogger(__name__)

UNIFORMS_PER_DRAW = 64  # each row draws its uniform numbers from its generator in blocks of this many


@dataclass(frozen=True)
class SchedulerLimits:
    """How much one model's scheduler takes on."""

    max_batch_size: int = 16  # sequences (rows) decoded together
    max_queued: int = 64  # requests waiting for room; one more is refused at once
    max_wait: float | None = None  # seconds a request may wait for room before it is refused; None: no limit
    prefill_chunk: int = 64  # prompt tokens read per step

    def __post_init__(self) -> None:
        from lm import checks

        checks.integer("max_batch_size", self.max_batch_size, minimum=1)
        checks.integer("max_queued", self.max_queued, minimum=0)
        checks.integer("prefill_chunk", self.prefill_chunk, minimum=1)
        if self.max_wait is not None:
            checks.number("max_wait", self.max_wait, exclusive_minimum=0)


class Overloaded(RuntimeError):
    """No room for a request now: too many are waiting, or it waited too long. It may be sent again later."""


class SchedulerClosed(RuntimeError):
    """The scheduler has stopped (the process is shutting down)."""


class Draw(NamedTuple):
    """A row's token at one step."""

    id: int
    logprob: float  # under the processed distribution (after penalty and temperature, before truncation)
    rank: int | None  # 1 + how many tokens were more likely (when the request asks for alternatives)
    alternatives: list[tuple[int, float]] | None  # the most likely (id, logprob) pairs, when asked for


class Request(ABC):
    """One request's side of the scheduler: a prompt, how many sequences, how to process their logits, and what to
    do with each token. `done` once it has its result or error (or its client has gone)."""

    ids: list[int]  # the prompt's token ids the model reads (the family's prompt window), at least one
    sequences: int
    chain: ProcessorChain
    top_alternatives: int
    seed: int

    @property
    @abstractmethod
    def done(self) -> bool: ...

    @abstractmethod
    def admitted(self) -> None:
        """Room is reserved; reading the prompt begins."""

    @abstractmethod
    def accept(self, sequence: int, draw: Draw, now: float) -> bool:
        """A token of `sequence`; True when that sequence has ended."""

    @abstractmethod
    def finish(self, error: BaseException | None = None) -> None:
        """End the request (with `error`, when it failed or was refused). Called at most once by the scheduler for a
        request that has not ended by itself."""


def row_seed(seed: int, sequence: int) -> int:
    """The seed of a request's `sequence`-th row: the request's own for the first, a mix for the others."""
    if sequence == 0:
        return seed
    mixed = (seed + sequence * 0x9E3779B97F4A7C15) % 2**64  # splitmix64's step and finaliser
    mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) % 2**64
    return mixed ^ (mixed >> 31)


class _Row:
    """One sequence in the batch: its request, its generator and the tokens it has read."""

    def __init__(self, request: Request, sequence: int) -> None:
        self.request = request
        self.sequence = sequence
        self.history = list(request.ids)
        self.generator = None if request.chain.greedy else torch.Generator().manual_seed(
            row_seed(request.seed, sequence))
        self._uniforms: list[float] = []

    def uniform(self) -> float:
        if not self._uniforms:
            block = torch.rand(UNIFORMS_PER_DRAW, dtype=torch.float64, generator=self.generator).tolist()
            self._uniforms = block[::-1]
        return self._uniforms.pop()


class _Prefill:
    """A request whose prompt is being read: its own state and how far it got."""

    def __init__(self, request: Request, state: Any) -> None:
        self.request = request
        self.state = state
        self.read = 0
        self.logits: torch.Tensor | None = None  # (V,) after the last prompt token


@dataclass(frozen=True)
class Load:
    """What a scheduler is doing now."""

    requests: int  # admitted and not finished (reading their prompt or decoding)
    rows: int  # sequences in the batch
    queued: int  # requests waiting for room


def fill_holes(count: int, gone: set[int]) -> list[int]:
    """The `keep_rows` order after the rows `gone` leave a batch of `count`: rows from the end move into the holes,
    so at most one copy per hole."""
    kept = [i for i in range(count) if i not in gone]
    size = len(kept)
    keep = list(range(size))
    holes = [i for i in range(size) if i in gone]
    for hole, mover in zip(holes, (i for i in kept if i >= size)):
        keep[hole] = mover
    return keep


class Scheduler:
    """The batching loop of one loaded model. Thread-safe: `submit` from any thread; the loop runs on its own
    thread, started with the first request."""

    def __init__(self, model: nn.Module, family: Family, device: torch.device, limits: SchedulerLimits | None = None,
                 name: str = "model", on_step: Callable[[Load, int], None] | None = None) -> None:
        self.model = model
        self.family = family
        self.device = device
        self.limits = limits or SchedulerLimits()
        self.name = name
        # called after each step, on the loop's thread, with the load and the number of tokens the step drew
        self.on_step = on_step
        self._lock = threading.Condition()
        self._waiting: deque[tuple[Request, float]] = deque()  # (request, when it came)
        self._prefills: list[_Prefill] = []
        self._rows: list[_Row] = []
        self._state: Any = None
        self._logits: torch.Tensor | None = None  # (rows, V): each row's next-token logits
        self._thread: threading.Thread | None = None
        self._closed = False
        self._driver = threading.Lock()  # held by the thread running steps: the loop's, or a caller's in run_here
        self._callers = 0  # callers in run_here: while there are any, they run the steps and the loop waits

    # --- any thread ----------------------------------------------------------------------------------------------
    def submit(self, request: Request, driven_here: bool = False) -> None:
        """Queue `request`; Overloaded at once when it cannot start now and `max_queued` are already waiting.
        `driven_here`: the caller will run the steps itself (`run_here`)."""
        if request.sequences > self.limits.max_batch_size:
            raise OptionError("num_return_sequences", f"must be at most the batch size {self.limits.max_batch_size}, "
                              f"got {request.sequences}")
        with self._lock:
            if self._closed:
                raise SchedulerClosed(f"{self.name}: the scheduler has stopped")
            reserved = (len(self._rows) + sum(p.request.sequences for p in self._prefills)
                        + sum(waiting.sequences for waiting, _came in self._waiting))
            fits = reserved + request.sequences <= self.limits.max_batch_size
            if not fits and len(self._waiting) >= self.limits.max_queued:
                raise Overloaded(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append((request, time.monotonic()))
            self._callers += driven_here
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"scheduler-{self.name}", daemon=True)
                self._thread.start()
                _running.add(self)
            self._lock.notify()

    def run_here(self, request: Request) -> None:
        """Submit `request` and run the steps on this thread (for every row in the batch) until it has ended; the
        loop's thread steps only while no caller does. Overloaded or SchedulerClosed as `submit` raises them."""
        self.submit(request, driven_here=True)  # raises before counting this caller
        try:
            with self._driver, torch.inference_mode():
                while not request.done:
                    if not self._turn():
                        with self._lock:
                            if self._closed:
                                break
                            self._lock.wait(timeout=0.01)
        finally:
            with self._lock:
                self._callers -= 1
                self._lock.notify()
        if not request.done:  # the scheduler was closed under it
            request.finish(SchedulerClosed(f"{self.name}: the scheduler has stopped"))

    def wake(self) -> None:
        """Look at the requests again now (one has been cancelled)."""
        with self._lock:
            self._lock.notify()

    @property
    def load(self) -> Load:
        with self._lock:
            return Load(len(self._prefills) + len({id(row.request) for row in self._rows}), len(self._rows),
                        len(self._waiting))

    def stop(self, timeout: float = 10.0) -> None:
        """End the loop; what is waiting or running gets SchedulerClosed. Idempotent."""
        with self._lock:
            self._closed = True
            self._lock.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        _running.discard(self)

    # --- the loop's thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._lock:
                    if self._closed:
                        break
                    if self._callers or (not self._rows and not self._prefills and not self._waiting):
                        self._lock.wait(timeout=1.0)
                        continue
                with self._driver:
                    self._turn()
        with self._driver:
            self._close_all()

    def _turn(self) -> bool:
        """With the driver held: admit what fits, then one step when there is anything to step. False when there was
        nothing to do (or the scheduler is closed)."""
        with self._lock:
            if self._closed:
                return False
            self._admit()
            if not self._rows and not self._prefills:
                return False
        drawn = 0
        try:
            drawn = self._step()
        except Exception as error:  # noqa: BLE001 - the batch as a whole failed; the loop goes on
            log.exception("%s: a decoding step failed; its requests get the error", self.name)
            self._fail_batch(error)
        self._report(drawn)
        return True

    def _close_all(self) -> None:
        closed = SchedulerClosed(f"{self.name}: the scheduler has stopped")
        self._fail_batch(closed)
        with self._lock:
            for request, _came in self._waiting:
                request.finish(closed)
            self._waiting.clear()

    def _admit(self) -> None:
        """Under the lock: refuse what waited too long, forget what was cancelled, and start the requests that fit,
        in arrival order."""
        now = time.monotonic()
        limit = self.limits.max_wait
        for entry in list(self._waiting):
            request, came = entry
            if request.done:
                self._waiting.remove(entry)
            elif limit is not None and now - came > limit:
                self._waiting.remove(entry)
                request.finish(Overloaded(f"no room for {now - came:.1f} s"))
        reserved = len(self._rows) + sum(p.request.sequences for p in self._prefills)
        while self._waiting and reserved + self._waiting[0][0].sequences <= self.limits.max_batch_size:
            request, _came = self._waiting.popleft()
            reserved += request.sequences
            self._prefills.append(_Prefill(request, self.model.init_state(1, self.device)))
            request.admitted()

    def _step(self) -> int:
        """One step: prompts read, a token drawn for every row, rows that ended gone, the rest fed their token.
        Returns the number of tokens drawn."""
        self._prefill()
        if not self._rows:
            return 0
        chosen, ended, column = self._sample()
        drawn = len(chosen)
        gone = ended | {i for i, row in enumerate(self._rows) if row.request.done}
        if gone:
            column = None
            keep = fill_holes(len(self._rows), gone)
            self._rows = [self._rows[i] for i in keep]
            chosen = [chosen[i] for i in keep]
            if not self._rows:
                self._state, self._logits = None, None
                return drawn
            self._state = self.family.keep_rows(self.model, self._state, keep)
        for row, token in zip(self._rows, chosen):
            row.history.append(token)
        tokens = column if column is not None else torch.tensor(chosen, device=self.device).view(-1, 1)  # (rows, 1)
        self._state = self.family.make_room(self.model, self._state, [row.history for row in self._rows],
                                            self.device)
        output = self.model(tokens, self._state)
        self._state, self._logits = output.state, output.logits[:, -1]
        return drawn

    def _prefill(self) -> None:
        """Read up to `prefill_chunk` prompt tokens of the admitted requests; those whose prompt is read join."""
        budget = self.limits.prefill_chunk
        for prefill in list(self._prefills):
            if budget <= 0:
                break
            request = prefill.request
            if request.done:
                self._prefills.remove(prefill)
                continue
            try:
                ids = request.ids[prefill.read: prefill.read + budget]
                output = self.model(torch.tensor([ids], device=self.device), prefill.state)
                prefill.state, prefill.logits = output.state, output.logits[0, -1]
                prefill.read += len(ids)
                budget -= len(ids)
                if prefill.read == len(request.ids):
                    self._prefills.remove(prefill)
                    self._join(prefill)
            except Exception as error:  # noqa: BLE001 - this request fails; the others go on
                log.exception("%s: reading a prompt failed", self.name)
                if prefill in self._prefills:
                    self._prefills.remove(prefill)
                request.finish(error)

    def _join(self, prefill: _Prefill) -> None:
        request = prefill.request
        copies = request.sequences
        if self._state is None:
            self._state = self.model.init_state(0, self.device)
        self._state = self.family.join_rows(self.model, self._state, prefill.state, copies)
        logits = prefill.logits.expand(copies, -1)
        self._logits = logits.clone() if self._logits is None else torch.cat([self._logits, logits])
        self._rows += [_Row(request, sequence) for sequence in range(copies)]

    def _sample(self) -> tuple[list[int], set[int], torch.Tensor | None]:
        """Each row's next token, the rows whose sequence has ended, and the tokens as a (rows, 1) column when one
        pass drew them all (else None)."""
        rows, logits = self._rows, self._logits
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault((row.request.chain.key, row.request.top_alternatives), []).append(i)
        chosen = [0] * len(rows)
        ended: set[int] = set()
        column = None
        now = time.perf_counter()
        for members in groups.values():
            first = rows[members[0]].request
            try:
                draws, ids = self._draw(first.chain, first.top_alternatives, members,
                                        logits if len(members) == len(rows) else logits[members])
                if len(members) == len(rows):
                    column = ids
            except Exception as error:  # noqa: BLE001 - these requests fail; the other groups go on
                log.exception("%s: sampling failed", self.name)
                for i in members:
                    if not rows[i].request.done:
                        rows[i].request.finish(error)
                continue
            for i, draw in zip(members, draws):
                chosen[i] = draw.id
                request = rows[i].request
                if request.done:
                    continue
                try:
                    if request.accept(rows[i].sequence, draw, now):
                        ended.add(i)
                except Exception as error:  # noqa: BLE001 - this request fails; the others go on
                    log.exception("%s: a request failed on its token", self.name)
                    request.finish(error)
        return chosen, ended, column

    def _draw(self, chain: ProcessorChain, top_alternatives: int, members: list[int],
              logits: torch.Tensor) -> tuple[list[Draw], torch.Tensor]:
        """The tokens of the rows `members`, whose logits (B, V) one chain processes, as draws and as a (B, 1)
        column."""
        rows = self._rows
        if chain.reads_history:
            longest = max(len(rows[i].history) for i in members)
            # padded with each row's own first token, which the penalty has seen already: no effect
            history = torch.tensor([rows[i].history + rows[i].history[:1] * (longest - len(rows[i].history))
                                    for i in members], device=logits.device)
        else:
            history = logits.new_empty(len(members), 0, dtype=torch.long)
        view, sampling = chain(logits, history)
        uniforms = None if chain.greedy else torch.tensor([[rows[i].uniform()] for i in members], dtype=torch.float64)
        ids = chain.choose_next(sampling, uniforms=uniforms)  # (B, 1)
        # one conversion per step, not one tensor index per row: it adds up at batch 16
        log_probs = view.log_softmax(dim=-1)
        chosen_logprobs = log_probs.gather(1, ids)
        id_list, logprob_list = ids.view(-1).tolist(), chosen_logprobs.view(-1).tolist()
        if not top_alternatives:
            return [Draw(i, lp, None, None) for i, lp in zip(id_list, logprob_list)], ids
        ranks = ((log_probs > chosen_logprobs).sum(dim=-1) + 1).tolist()
        top = torch.topk(log_probs, min(top_alternatives, log_probs.shape[-1]))
        alternatives = [list(zip(i, lp)) for i, lp in zip(top.indices.tolist(), top.values.tolist())]
        return [Draw(*parts) for parts in zip(id_list, logprob_list, ranks, alternatives)], ids

    def _fail_batch(self, error: BaseException) -> None:
        """Every admitted request gets `error`; the batch starts afresh."""
        requests = {id(row.request): row.request for row in self._rows}
        requests.update((id(prefill.request), prefill.request) for prefill in self._prefills)
        for request in requests.values():
            if not request.done:
                request.finish(error)
        self._rows, self._prefills = [], []
        self._state, self._logits = None, None

    def _report(self, drawn: int) -> None:
        if self.on_step is not None:
            try:
                self.on_step(self.load, drawn)
            except Exception:  # noqa: BLE001 - a metrics hook must not stop generation
                log.exception("%s: the on_step hook failed", self.name)


_running: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """At interpreter exit, end every loop between steps rather than in the middle of one."""
    for scheduler in list(_running):
        scheduler.stop(timeout=2.0)
