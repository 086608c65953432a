import pytest

from lm.tokenizers import Tokenizer, train_tokenizer

SAMPLES = ["", "a", "Hello, world!\n", "naïve café — 東京 🙂🎭 \t tabs\n\nblank lines", "x" * 50_000]


def test_bpe_round_trips_any_text_exactly_and_never_yields_unk(corpus):
    tok = train_tokenizer("bpe", corpus, vocab_size=300)
    for text in SAMPLES:
        assert tok.decode(tok.encode(text)) == text
    assert tok.unk_id is None
    assert len(tok.encode("🙂")) >= 1


def test_char_round_trips_known_characters_and_maps_unseen_to_unk(corpus):
    text = "naïve 🙂 and long " * 1000
    tok = train_tokenizer("char", corpus + text)
    for sample in ["", "a", text, "What light\n\n  through"]:
        assert tok.decode(tok.encode(sample)) == sample
    ids = tok.encode("aZ€")
    assert ids[1] == tok.unk_id and ids[2] == tok.unk_id
    assert ids[0] != tok.unk_id
    assert len(tok.encode("hello")) == 5


def test_word_tokenizer_behaves_like_basic_english():
    tok = train_tokenizer("word", "The king's men (all) said: no! Yes? Fine; good, \"ok\".\n" * 3, min_freq=3)
    pieces = [tok.hf.id_to_token(i) for i in tok.encode("The KING's men.")]
    assert pieces == ["the", "king", "'", "s", "men", "."]
    assert tok.decode(tok.encode("the king's men (all) said: no!")) == "the king's men (all) said: no!"


def test_word_tokenizer_min_freq_unk_and_eos_at_line_ends():
    tok = train_tokenizer("word", "common common common rare\n" * 1 + "common common\n", min_freq=3)
    ids = tok.encode("common rare\ncommon")
    assert ids == [tok.hf.token_to_id("common"), tok.unk_id, tok.eos_id, tok.hf.token_to_id("common")]
    assert tok.decode(ids) == "common <unk>\ncommon"
    assert list(tok.encode_corpus("common\ncommon\n")) == [ids[0], tok.eos_id, ids[0], tok.eos_id]


@pytest.mark.parametrize("kind,size", [("char", None), ("word", None), ("bpe", 280)])
def test_tokenizer_file_is_self_describing(tmp_path, corpus, kind, size):
    tok = train_tokenizer(kind, corpus, vocab_size=size)
    tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert again.kind == kind and again.vocab_size == tok.vocab_size
    assert again.encode(corpus[:200]) == tok.encode(corpus[:200])
    assert list(again.encode_corpus(corpus)) == tok.encode(corpus)


def test_bad_arguments_raise_value_error(corpus):
    with pytest.raises(ValueError, match="kind"):
        train_tokenizer("sentencepiece", corpus)
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer("bpe", corpus, vocab_size=100)
    with pytest.raises(ValueError, match="min_freq"):
        train_tokenizer("word", corpus, min_freq=0)


@pytest.mark.parametrize("kind,size", [("char", None), ("word", None), ("bpe", 300)])
def test_stream_decoder_steps_add_up_to_the_decoded_text(corpus, kind, size):
    tokenizer = train_tokenizer(kind, corpus + SAMPLES[3], vocab_size=size)
    for text in SAMPLES[:4] + ["ROMEO: (aside) Is it so? Then, 'tis well.\n" * 3]:
        ids = tokenizer.encode(text)
        decoder = tokenizer.stream_decoder()
        pieces = [decoder.step(i) for i in ids]
        assert "".join(pieces) == tokenizer.decode(ids)
        if kind == "bpe" and "🙂" in text:
            assert "" in pieces  # a character split over byte tokens waits for its last byte
