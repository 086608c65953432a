import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm.tokenizers import Tokenizer, train_tokenizer

DATA = Path(__file__).parent / "data"

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


# torchtext.data.utils._basic_english_normalize, as torchtext 0.18 has it: the reference the word tokenizer matches.
_TORCHTEXT_PATTERNS = [r"\'", r"\"", r"\.", r"<br \/>", r",", r"\(", r"\)", r"\!", r"\?", r"\;", r"\:", r"\s+"]
_TORCHTEXT_REPLACEMENTS = [" '  ", "", " . ", " ", " , ", " ( ", " ) ", " ! ", " ? ", " ", " ", " "]


def basic_english(line: str) -> list[str]:
    line = line.lower()
    for pattern, replacement in zip(_TORCHTEXT_PATTERNS, _TORCHTEXT_REPLACEMENTS):
        line = re.sub(pattern, replacement, line)
    return line.split()


TRICKY = [
    "The KING's men (all) said: no! Yes? Fine; good, \"ok\".",
    "I don't know... it's \"quoted\" -- isn't it?!",
    "One<br />two<br/>three<BR />four <br / > five<br  />six",
    '<br "/>joined by the quote rule<br ."/>',
    "time: 10:30; ratio 3:2;done",
    "'tis 'twas o'clock rock 'n' roll ''double''",
    "e.g. U.S.A. 3.14 ... end.",
    "Tabs\tand\x0bvertical\x0cfeeds\rreturns\x1cfile\x1dgroup\x85next\u2028line\u00a0nbsp\u3000ideographic",
    "naïve CAFÉ — Straße ÆSIR İstanbul ΟΔΟΣ ΣΟΦΟΣ. ΌΣΟΣ’ Σ ΑΣ1 東京 🙂🎭 l'été",
    "MiXeD CaSe, (nested (parens)) [brackets] {braces} a-b a_b a/b #hash @at $5 100% a&b",
    "   leading and trailing   ",
    "",
    "<unk> and <eos> written out",
]


@pytest.fixture(scope="module")
def word_tokenizer():
    return train_tokenizer("word", "\n".join(TRICKY))


@pytest.mark.parametrize("text", TRICKY)
def test_word_tokenizer_is_torchtext_basic_english(word_tokenizer, text):
    assert [word_tokenizer.hf.id_to_token(i) for i in word_tokenizer.encode(text)] == basic_english(text)


def test_word_vocabulary_is_basic_englishs_tokens():
    text = "\n".join(TRICKY)
    expected = {token for line in TRICKY for token in basic_english(line)} | {"<unk>", "<eos>"}
    assert set(train_tokenizer("word", text).hf.get_vocab()) == expected


_TRICKY_CHARS = ("'\".<br />,()!?;:"  # the rules' characters
                 "\t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000 "  # Python's whitespace, some of it beyond ASCII
                 "\u03a3\u03c3AaZ\u0130\u00c9\u02b0\u0345\u00ad-_")  # sigmas, cased and case-ignorable letters


# Code points this Python's Unicode tables leave unassigned (category Cn) are left out: the tokenizers library has
# newer tables and lowercases, for example, U+10D50 (Garay, Unicode 16), which Python 3.11's str.lower keeps.
_ASSIGNED = st.characters(exclude_categories=("Cs", "Cn"))  # and no surrogates, as st.text()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(_TRICKY_CHARS), max_size=40) | st.text(alphabet=_ASSIGNED, max_size=40))
def test_word_normalisation_matches_basic_english_on_any_line(word_tokenizer, text):
    normalized = word_tokenizer.hf.normalizer.normalize_str(text.replace("\n", " "))
    words = [piece for piece, _ in word_tokenizer.hf.pre_tokenizer.pre_tokenize_str(normalized)]
    assert words == basic_english(text)


def test_word_tokenizer_decodes_words_with_spaces_and_punctuation_attached():
    tok = train_tokenizer("word", "The king's men (all) said: no! Yes? Fine; good, \"ok\".\n" * 3, min_freq=3)
    assert tok.decode(tok.encode("the king's men (all) said: no!")) == "the king's men (all) said no!"
    assert tok.decode(tok.encode('Fine; "good", ok.')) == "fine good, ok."


def test_word_tokenizer_files_from_before_basic_english_still_load():
    old = Tokenizer.from_file(DATA / "word-tokenizer-before-basic-english.json")
    assert old.kind == "word" and old.eos_id is not None
    # it keeps the tokenization it was trained with: `:`, `;` and `"` are tokens of its vocabulary
    ids = old.encode('The king said: "no"; fine.\nyes')
    assert [old.hf.id_to_token(i) for i in ids] == ["the", "king", "said", ":", '"', "no", '"', ";", "fine", ".",
                                                    "<eos>", "yes"]
    assert old.decode(ids) == 'the king said: " no "; fine.\nyes'  # its spacing, as before


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


@pytest.mark.parametrize("kind, size", [("char", None), ("bpe", 300), ("word", None)])
@settings(max_examples=60, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
       | st.lists(st.sampled_from(["<unk>", "<unk", "the ", "\r\n", "\n", "é", "🙂", "\x00", "Z"]),
                  max_size=30).map("".join))
def test_encode_corpus_gives_the_librarys_ids_for_any_text(corpus, kind, size, text):
    """The char table lookup (and the batch paths) give exactly what the library's own encode gives: unseen code
    points and the literal text "<unk>" become <unk>."""
    tok = train_tokenizer(kind, corpus + "é🙂", vocab_size=size)
    assert tok.encode_corpus(text).tolist() == tok.encode(text)


@settings(max_examples=40, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=300),
       vocab_size=st.none() | st.integers(2, 40), min_freq=st.integers(1, 3))
def test_a_char_tokenizer_from_counts_is_the_one_the_trainer_learns(text, vocab_size, min_freq):
    from collections import Counter

    from lm.tokenizers import char_tokenizer

    learned = train_tokenizer("char", text, vocab_size=vocab_size, min_freq=min_freq)
    assert char_tokenizer(Counter(text), vocab_size, min_freq).to_str() == learned.to_str()


def test_pieces_end_at_line_breaks_else_between_words():
    from lm.tokenizers import split_at_newlines

    assert split_at_newlines("ab\ncd\nef", 5) == ["ab\n", "cd\nef"]
    assert split_at_newlines("one two three four", 9) == ["one two ", "three ", "four"]
    assert split_at_newlines("abcdefgh", 3) == ["abc", "def", "gh"]
