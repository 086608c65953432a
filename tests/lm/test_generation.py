import math

import pytest
import torch

from lm import load, save_model_dir, train_tokenizer
from lm.generation import _TextTracker

from .conftest import CORPUS, tiny_model


def test_generate_returns_the_continuation_only(model_dir):
    generator = load(model_dir)
    result = generator.generate("First", max_new_tokens=20, seed=1)
    assert result.finish_reason == "length"
    assert len(result.tokens) == 20 and result.prompt_tokens == 5
    assert result.text == generator.tokenizer.decode([t.id for t in result.tokens])
    assert all(t.logprob <= 0 for t in result.tokens)


def test_same_seed_same_text_and_the_seed_is_reported(model_dir):
    generator = load(model_dir)
    a = generator.generate("What", max_new_tokens=40, temperature=1.2, seed=123)
    b = generator.generate("What", max_new_tokens=40, temperature=1.2, seed=123)
    c = generator.generate("What", max_new_tokens=40, temperature=1.2, seed=124)
    assert a.text == b.text and a.seed == 123
    assert a.text != c.text
    drawn = generator.generate("What", max_new_tokens=40, temperature=1.2)
    again = generator.generate("What", max_new_tokens=40, temperature=1.2, seed=drawn.seed)
    assert again.text == drawn.text


def test_temperature_zero_is_argmax_is_top_k_one(model_dir):
    generator = load(model_dir)
    greedy = generator.generate("The", max_new_tokens=30, temperature=0)
    top1 = generator.generate("The", max_new_tokens=30, temperature=1.5, top_k=1, seed=7)
    assert greedy.text == top1.text
    # and it is the argmax of the model's logits at every step
    model, tok = generator.model, generator.tokenizer
    ids = tok.encode("The")
    for event in greedy.tokens:
        logits = model(torch.tensor([ids]))
        assert event.id == int(logits.logits[0, -1].argmax())
        ids.append(event.id)


def test_streaming_yields_exactly_the_tokens_of_generate(model_dir):
    generator = load(model_dir)
    options = dict(max_new_tokens=25, temperature=0.9, top_p=0.9, seed=5, stop=["e t"])
    result = generator.generate("It is", **options)
    stream = generator.stream("It is", **options)
    events = list(stream)
    assert [e.id for e in events] == [t.id for t in result.tokens]
    assert "".join(e.text for e in events) == result.text == stream.result.text
    assert stream.result.finish_reason == result.finish_reason


def test_stream_close_stops_generation(model_dir):
    stream = load(model_dir).stream("It", max_new_tokens=500, seed=1)
    first = [next(stream) for _ in range(3)]
    stream.close()
    assert len(first) == 3
    with pytest.raises(StopIteration):
        next(stream)
    assert stream.result is None


def test_a_generator_used_as_a_context_manager_stops_its_scheduler(model_dir):
    from lm.scheduler import SchedulerClosed

    with load(model_dir) as generator:
        assert len(generator.generate("It", max_new_tokens=5, seed=1).tokens) == 5
    with pytest.raises(SchedulerClosed):
        generator.generate("It", max_new_tokens=5, seed=1)


def test_num_return_sequences_are_decoded_as_one_batch(model_dir):
    result = load(model_dir).generate("It", max_new_tokens=15, num_return_sequences=3, seed=2)
    assert len(result.choices) == 3
    assert len({c.text for c in result.choices}) > 1
    assert result.text == result.choices[0].text


def test_empty_prompt_and_top_alternatives(model_dir):
    result = load(model_dir).generate("", max_new_tokens=5, top_alternatives=3, seed=0)
    assert result.prompt_tokens == 0 and len(result.tokens) == 5
    for event in result.tokens:
        probs = [a.prob for a in event.alternatives]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        # the rank is 1 + how many tokens were more likely: among the top 3, it is the token's place there
        more_likely = sum(a.prob > math.exp(event.logprob) * (1 + 1e-6) for a in event.alternatives)
        assert event.rank >= 1 + more_likely and (more_likely == 3 or event.rank == 1 + more_likely)


def test_unk_is_never_sampled_even_when_the_model_prefers_it(tmp_path, char_tokenizer):
    model = tiny_model("lstm", char_tokenizer.vocab_size).eval()
    with torch.no_grad():
        model.decoder.bias[char_tokenizer.unk_id] = 100.0
    save_model_dir(tmp_path / "m", model, char_tokenizer)
    result = load(tmp_path / "m").generate("Zebra€", max_new_tokens=30, temperature=1.0, seed=0)
    assert char_tokenizer.unk_id not in [t.id for t in result.tokens]


def test_prompt_longer_than_the_context_keeps_its_last_window_and_decoding_slides(tmp_path, char_tokenizer):
    for positions in ("rotary", "learned"):
        model = tiny_model("gpt", char_tokenizer.vocab_size, positions=positions)
        save_model_dir(tmp_path / positions, model, char_tokenizer)
        generator = load(tmp_path / positions)
        long_prompt = CORPUS[:200]
        result = generator.generate(long_prompt, max_new_tokens=80, temperature=0)
        assert len(result.tokens) == 80 and result.prompt_tokens == 200
        same_window = generator.generate(long_prompt[-32:], max_new_tokens=1, temperature=0)
        assert result.tokens[0].id == same_window.tokens[0].id


def test_eos_ends_a_word_level_generation(tmp_path):
    tok = train_tokenizer("word", "a b c\n" * 10)
    model = tiny_model("lstm", tok.vocab_size).eval()
    with torch.no_grad():
        model.decoder.bias[tok.eos_id] = 100.0
    save_model_dir(tmp_path / "m", model, tok)
    generator = load(tmp_path / "m")
    result = generator.generate("a b", max_new_tokens=10)
    assert result.finish_reason == "eos" and result.text == "" and len(result.tokens) == 1
    assert generator.generate("a b", max_new_tokens=3, stop_at_eos=False).finish_reason == "length"


def test_time_limit_ends_with_its_own_reason(model_dir):
    result = load(model_dir).generate("It", max_new_tokens=10_000, time_limit=0.05, seed=0)
    assert result.finish_reason == "time_limit" and len(result.tokens) < 10_000


class _FixedTokenizer:
    """Decodes ids to fixed strings, for exercising the text tracker alone."""

    def __init__(self, pieces):
        self.pieces = pieces

    def stream_decoder(self):
        return self

    def step(self, token_id):
        return self.pieces[token_id]


@pytest.mark.parametrize(
    "pieces,stop,expected",
    [
        (["Hel", "lo wo", "rld", "!"], ["o w"], "Hell"),  # stop spans two tokens
        (["ab", "c", "de"], ["cd"], "ab"),
        (["x", "y", "z"], ["zz"], "xyz"),  # a held-back prefix that never completes is released at the end
        (["END", "more"], ["END"], ""),
    ],
)
def test_stop_strings_across_token_boundaries(pieces, stop, expected):
    tracker = _TextTracker(_FixedTokenizer(pieces), stop)
    emitted, stopped = "", False
    for i in range(len(pieces)):
        text, stopped = tracker.push(i, last=i == len(pieces) - 1)
        emitted += text
        if stopped:
            break
    assert emitted == expected
    assert stopped == (expected != "".join(pieces))


def test_stop_string_in_a_real_generation(model_dir):
    generator = load(model_dir)
    free = generator.generate("The", max_new_tokens=60, seed=11, temperature=0.8)
    stop = free.text[10:13]
    stopped = generator.generate("The", max_new_tokens=60, seed=11, temperature=0.8, stop=[stop])
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.index(stop)]


@pytest.mark.parametrize(
    "options,name",
    [
        ({"temperature": -1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": 1e-300}, "temperature"),
        ({"temperature": 1e300}, "temperature"),
        ({"repetition_penalty": 1e-300}, "repetition_penalty"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"max_new_tokens": "10"}, "max_new_tokens"),
        ({"seed": -3}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"stop": [""]}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"num_return_sequences": 0}, "num_return_sequences"),
        ({"top_alternatives": -1}, "top_alternatives"),
        ({"time_limit": 0}, "time_limit"),
        ({"beams": 4}, "unknown option"),
    ],
)
def test_bad_options_raise_value_error_naming_the_option(model_dir, options, name):
    with pytest.raises(ValueError, match=name):
        load(model_dir).stream("x", **options)


def test_a_prompt_with_a_lone_surrogate_is_a_value_error(model_dir):
    with pytest.raises(ValueError, match="prompt"):
        load(model_dir).generate("abc\ud800", max_new_tokens=2)


def test_extreme_but_allowed_settings_still_sample(model_dir):
    for options in ({"temperature": 1e-3}, {"temperature": 100.0}, {"repetition_penalty": 1e-3},
                    {"repetition_penalty": 100.0}):
        assert len(load(model_dir).generate("It", max_new_tokens=5, seed=0, **options).tokens) == 5


def test_score_gives_each_tokens_logprob_given_the_text_before_it(model_dir):
    generator = load(model_dir)
    text = "What light through yonder window"
    scores = generator.score(text, top=3)
    ids = generator.tokenizer.encode(text)
    assert [s.id for s in scores] == ids and scores[0].logprob is None and scores[0].alternatives == []
    with torch.no_grad():
        expected = generator.model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
    for i, score in enumerate(scores[1:]):
        assert score.logprob == pytest.approx(float(expected[i, ids[i + 1]]), abs=1e-4)
        assert [a for a, _ in score.alternatives] == expected[i].topk(3).indices.tolist()
    assert generator.score([ids[0]]) == [scores[0]]
    with pytest.raises(ValueError, match="prompt"):
        generator.score([generator.tokenizer.vocab_size])


def test_a_text_longer_than_the_context_is_scored_in_windows(tmp_path, char_tokenizer):
    save_model_dir(tmp_path / "m", tiny_model("gpt", char_tokenizer.vocab_size), char_tokenizer)
    generator = load(tmp_path / "m")
    scores = generator.score(CORPUS[:100])
    assert len(scores) == 100 and all(s.logprob is not None and s.logprob <= 0 for s in scores[1:])


def test_a_prompt_may_be_token_ids(model_dir):
    generator = load(model_dir)
    ids = generator.tokenizer.encode("It is")
    assert generator.generate(ids, max_new_tokens=8, seed=3).text == generator.generate("It is", max_new_tokens=8,
                                                                                         seed=3).text
