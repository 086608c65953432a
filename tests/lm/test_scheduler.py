"""The scheduler (lm/scheduler.py): requests decoded together, one batched forward pass per token, each row with its
own position, options and generator; limits, failures, cancellation and shutdown."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from lm import load, save_model_dir
from lm.checks import OptionError
from lm.scheduler import Overloaded, SchedulerClosed, SchedulerLimits, fill_holes, row_seed

from .conftest import CORPUS, tiny_model

# Requests that differ in every way a row can: prompt length, options, sequences, length, seed or none.
REQUESTS = [
    ("First", dict(max_new_tokens=90, temperature=0.9, seed=1)),
    ("What light through yonder window", dict(max_new_tokens=70, temperature=1.3, top_k=5, seed=2)),
    ("", dict(max_new_tokens=60, temperature=0, repetition_penalty=1.3)),
    ("The quality of mercy is not strained, it droppeth",
     dict(max_new_tokens=80, top_p=0.8, repetition_penalty=1.2, seed=3, num_return_sequences=3)),
    ("It", dict(max_new_tokens=40, temperature=0.7, stop=["e"], seed=4, top_alternatives=3)),
    ("It is", dict(max_new_tokens=50, stop=["e"], seed=6, num_return_sequences=3)),  # sequences ending apart
]


@pytest.fixture(params=["gpt-rotary", "gpt-learned", "lstm"])
def generator(request, tmp_path, char_tokenizer):
    kind, _, positions = request.param.partition("-")
    model = tiny_model(kind, char_tokenizer.vocab_size, **({"positions": positions} if positions else {}))
    save_model_dir(tmp_path / request.param, model, char_tokenizer)
    generator = load(tmp_path / request.param)
    yield generator
    generator.close()


def outcome(result):
    return [(choice.text, choice.finish_reason, [t.id for t in choice.tokens]) for choice in result.choices]


def run_staggered(generator):
    """REQUESTS run to the end, batched: the first three start together, the others join while those are half-way
    (rows at different positions, the GPT's sliding past its context of 32 at different steps). Their streams."""
    peaks = []
    generator.scheduler.on_step = lambda load, drawn: peaks.append(load.rows)
    streams = [generator.stream(prompt, **options) for prompt, options in REQUESTS[:3]]
    for _ in range(20):
        next(streams[0])
    streams += [generator.stream(prompt, **options) for prompt, options in REQUESTS[3:]]
    for stream in streams:
        for _ in stream:
            pass
    assert max(peaks) >= 4, peaks  # they did share steps
    return streams


def test_a_seeded_request_gives_the_same_text_alone_or_batched(generator):
    alone = [outcome(generator.generate(prompt, **options)) for prompt, options in REQUESTS]

    streams = run_staggered(generator)
    assert [outcome(stream.result) for stream in streams] == alone


@pytest.mark.parametrize("kind,options", [("gpt", {"qk_norm": True, "mlp": "swiglu"}),
                                          ("gpt", {"mlp": "relu2", "positions": "learned"}),
                                          ("lstm", {"mogrifier_rounds": 3})])
def test_the_quality_options_batch_rows_at_different_positions_exactly(kind, options, tmp_path, char_tokenizer):
    """QK-norm and the MLP kinds in the GPT's per-row decode step, a Mogrifier LSTM's cells on per-row state."""
    model = tiny_model(kind, char_tokenizer.vocab_size, **options)
    with torch.no_grad():  # away from the initial unit gains, so QK-norm's gains count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_model_dir(tmp_path / kind, model, char_tokenizer)
    generator = load(tmp_path / kind)
    try:
        alone = [outcome(generator.generate(prompt, **options)) for prompt, options in REQUESTS]
        assert [outcome(stream.result) for stream in run_staggered(generator)] == alone
    finally:
        generator.close()


@pytest.mark.parametrize("kind", ["gpt-rotary", "gpt-learned", "lstm"])
def test_int8_models_batch_rows_at_different_positions(kind, tmp_path, char_tokenizer):
    """QUANTIZE=int8 models go through the same scheduler. Their int8 layers scale each step's input as a whole, so
    a row's text may differ batched or alone by rounding; each request still gets all it asked for."""
    model_type, _, positions = kind.partition("-")
    model = tiny_model(model_type, char_tokenizer.vocab_size, **({"positions": positions} if positions else {}))
    save_model_dir(tmp_path / kind, model, char_tokenizer)
    generator = load(tmp_path / kind, quantize="int8")
    try:
        for stream, (_, options) in zip(run_staggered(generator), REQUESTS):
            choices = stream.result.choices
            assert len(choices) == options.get("num_return_sequences", 1)
            for choice in choices:
                assert choice.finish_reason in ("length", "stop")
                if choice.finish_reason == "length":
                    assert len(choice.tokens) == options["max_new_tokens"]
    finally:
        generator.close()


def test_row_zero_of_several_sequences_is_the_single_sequence(generator):
    one = generator.generate("It is", max_new_tokens=30, seed=11)
    three = generator.generate("It is", max_new_tokens=30, seed=11, num_return_sequences=3)
    assert three.choices[0].text == one.text
    assert len({choice.text for choice in three.choices}) > 1
    assert len({row_seed(11, i) for i in range(100)}) == 100


def test_requests_start_in_arrival_order_and_the_queue_has_limits(tmp_path, char_tokenizer):
    save_model_dir(tmp_path / "m", tiny_model("lstm", char_tokenizer.vocab_size), char_tokenizer)
    generator = load(tmp_path / "m", limits=SchedulerLimits(max_batch_size=2, max_queued=2))
    try:
        started = []
        first = generator.stream("A", max_new_tokens=10_000, seed=1)  # the batch's two rows, for a long while
        second = generator.stream("B", max_new_tokens=10_000, seed=1)
        next(first), next(second)
        waiting = [generator.stream(p, max_new_tokens=3, seed=1) for p in ("C", "D")]
        with pytest.raises(Overloaded):
            generator.stream("E", max_new_tokens=3)
        assert generator.scheduler.load.queued == 2 and generator.scheduler.load.rows == 2

        def read(name, stream):
            for _ in stream:
                pass
            started.append(name)

        readers = [threading.Thread(target=read, args=(n, s)) for n, s in zip("CD", waiting)]
        for reader in readers:
            reader.start()
        first.close()  # one row frees: C starts first, then D
        for reader in readers:
            reader.join(30)
        assert started == ["C", "D"]
        with pytest.raises(OptionError, match="num_return_sequences"):
            generator.stream("F", num_return_sequences=3)
        second.close()
    finally:
        generator.close()


def test_a_request_that_waits_too_long_is_refused(tmp_path, char_tokenizer):
    save_model_dir(tmp_path / "m", tiny_model("lstm", char_tokenizer.vocab_size), char_tokenizer)
    # half a second: time for the closed stream below to leave before "C" asks, on a busy machine too
    generator = load(tmp_path / "m", limits=SchedulerLimits(max_batch_size=1, max_wait=0.5))
    try:
        busy = generator.stream("A", max_new_tokens=100_000)
        next(busy)
        late = generator.stream("B", max_new_tokens=3)
        with pytest.raises(Overloaded):
            next(late)
        busy.close()
        assert generator.generate("C", max_new_tokens=3).choices[0].tokens  # room again
    finally:
        generator.close()


def test_a_failing_request_gets_its_error_and_the_others_go_on(generator, monkeypatch):
    marker = generator.tokenizer.encode("Z")[0]
    alone = outcome(generator.generate("First", max_new_tokens=60, seed=5))
    real_forward = generator.model.forward

    def forward(tokens, state=None):
        if tokens.shape[1] > 1 and bool((tokens == marker).any()):
            raise RuntimeError("this prompt breaks the model")
        return real_forward(tokens, state)

    monkeypatch.setattr(generator.model, "forward", forward)
    good = generator.stream("First", max_new_tokens=60, seed=5)
    bad = generator.stream("Zebra", max_new_tokens=60, seed=5)
    with pytest.raises(RuntimeError, match="breaks the model"):
        list(bad)
    list(good)
    assert outcome(good.result) == alone
    assert outcome(generator.generate("First", max_new_tokens=60, seed=5)) == alone  # the loop lives on


def test_a_failing_step_fails_its_batch_and_the_loop_goes_on(generator, monkeypatch):
    real_forward = generator.model.forward
    calls = {"steps": 0}

    def forward(tokens, state=None):
        if tokens.shape[1] == 1:  # a decoding step ("First" is read as one piece of 5 tokens)
            calls["steps"] += 1
            if calls["steps"] == 5:
                raise RuntimeError("out of memory, say")
        return real_forward(tokens, state)

    monkeypatch.setattr(generator.model, "forward", forward)
    stream = generator.stream("First", max_new_tokens=50, seed=1)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(stream)
    monkeypatch.setattr(generator.model, "forward", real_forward)
    assert len(generator.generate("First", max_new_tokens=10, seed=1).choices[0].tokens) == 10


def test_closing_a_stream_frees_its_rows(generator):
    stream = generator.stream("It", max_new_tokens=100_000, seed=1)
    next(stream)
    assert generator.scheduler.load.rows == 1
    stream.close()
    deadline = time.monotonic() + 10
    while generator.scheduler.load.rows or generator.scheduler.load.requests:
        assert time.monotonic() < deadline, generator.scheduler.load
        time.sleep(0.01)
    with pytest.raises(StopIteration):
        next(stream)
    assert stream.result is None


def test_stop_refuses_what_is_running_and_what_comes(generator):
    stream = generator.stream("It", max_new_tokens=100_000, seed=1)
    next(stream)
    generator.close()
    with pytest.raises(SchedulerClosed):
        list(stream)
    with pytest.raises(SchedulerClosed):
        generator.generate("It", max_new_tokens=2)


def test_a_long_prompt_is_read_in_chunks_between_other_rows_steps(tmp_path, char_tokenizer):
    save_model_dir(tmp_path / "m", tiny_model("lstm", char_tokenizer.vocab_size), char_tokenizer)
    generator = load(tmp_path / "m", limits=SchedulerLimits(prefill_chunk=16))
    try:
        reading = []
        real_forward = generator.model.forward
        def forward(tokens, state=None):
            reading.append(tokens.shape)
            return real_forward(tokens, state)

        generator.model.forward = forward
        running = generator.stream("It", max_new_tokens=400, seed=1)
        next(running)
        long = generator.generate(CORPUS[:200], max_new_tokens=1, seed=1)
        assert long.prompt_tokens == 200
        chunks = [shape for shape in reading if shape[1] > 1]
        assert chunks[-13:] == [torch.Size([1, 16])] * 12 + [torch.Size([1, 8])]
        # the running row kept getting its tokens between the chunks
        assert [shape[1] for shape in reading[-26:]].count(1) >= 12
        running.close()
    finally:
        generator.close()


def test_fill_holes_moves_rows_from_the_end_into_the_holes():
    assert fill_holes(6, {1, 3}) == [0, 4, 2, 5]
    assert fill_holes(3, {2}) == [0, 1]
    assert fill_holes(3, {0, 1, 2}) == []
    keep = fill_holes(10, {0, 4, 5, 9})
    assert sorted(keep) == [1, 2, 3, 6, 7, 8] and all(old == new or new not in keep for new, old in enumerate(keep))


def test_generate_runs_the_steps_on_its_own_thread_and_other_requests_ride_along(generator):
    prompt, options = REQUESTS[1]
    # long enough that the stream is still running when this thread's request has finished, however the two
    # threads are scheduled before it joins
    options = dict(options, max_new_tokens=200)
    alone_stream = outcome(generator.generate(prompt, **options))
    alone_generate = outcome(generator.generate("First", max_new_tokens=60, seed=5))
    threads = []
    generator.scheduler.on_step = lambda load, drawn: threads.append((threading.current_thread(), load.rows))
    stream = generator.stream(prompt, **options)
    next(stream)  # the loop's thread is stepping it
    assert outcome(generator.generate("First", max_new_tokens=60, seed=5)) == alone_generate
    during = [(thread, rows) for thread, rows in threads if thread is threading.current_thread()]
    assert during and max(rows for _, rows in during) == 2  # this thread stepped both rows
    list(stream)  # the loop's thread finishes the stream afterwards
    assert outcome(stream.result) == alone_stream
    assert threads[-1][0] is not threading.current_thread()


def test_generate_from_several_threads_at_once(generator):
    expected = [outcome(generator.generate(prompt, **options)) for prompt, options in REQUESTS]
    results: dict[int, list] = {}

    def run(index):
        prompt, options = REQUESTS[index]
        results[index] = outcome(generator.generate(prompt, **options))

    callers = [threading.Thread(target=run, args=(i,)) for i in range(len(REQUESTS))]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert [results.get(i) for i in range(len(REQUESTS))] == expected


def test_a_refused_generate_leaves_the_loop_stepping(tmp_path, char_tokenizer):
    save_model_dir(tmp_path / "m", tiny_model("lstm", char_tokenizer.vocab_size), char_tokenizer)
    generator = load(tmp_path / "m", limits=SchedulerLimits(max_batch_size=1, max_queued=0))
    try:
        busy = generator.stream("A", max_new_tokens=100_000, seed=1)
        next(busy)
        with pytest.raises(Overloaded):
            generator.generate("B", max_new_tokens=3)
        for _ in range(20):  # still stepped by the loop's thread: the refused caller is not counted as driving
            next(busy)
        busy.close()
    finally:
        generator.close()
