import json
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm.fast_bpe import tiktoken_encoder
from lm.tokenizers import Tokenizer, train_tokenizer

SHIPPED = Path(__file__).parents[2] / "models" / "shakespeare-lstm" / "tokenizer.json"

# whitespace the two regex engines must class alike, letters and digits of other scripts, and apostrophe suffixes
_TRICKY = ("ab c\n\t  'sllvedmt'RE0123xyzé漢字🙂\x0b\x0c\x1c\x85\xa0\u1680\u2028\u2029\u3000\u200b\r\ufeff"
           "٣Ⅷ²_-.,;:!?\"'")


def _random_text(seed: int, size: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(_TRICKY) for _ in range(size))


@pytest.fixture(scope="module")
def tokenizers(corpus) -> list[Tokenizer]:
    return [
        Tokenizer.from_file(SHIPPED),
        train_tokenizer("bpe", corpus, vocab_size=400),
        train_tokenizer("bpe", _random_text(0, 100_000), vocab_size=700),
        # runs of one letter: merges that overlap ("aa" then "aaa" and "aaaa")
        train_tokenizer("bpe", "aaaa bbbb aaab abab aaaaaaa\n" * 500 + _random_text(1, 3_000), vocab_size=300),
    ]


def _library_ids(tok: Tokenizer, pieces: list[str]) -> list[int]:
    return [i for enc in tok.hf.encode_batch(pieces) for i in enc.ids]


def test_trained_and_shipped_bpe_tokenizers_get_tiktokens_encoder(tokenizers):
    for tok in tokenizers:
        assert tiktoken_encoder(json.loads(tok.to_str())) is not None


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(st.text(st.sampled_from(_TRICKY), max_size=80)
                       | st.text(st.characters(exclude_categories=("Cs",)), max_size=40), max_size=6))
def test_tiktoken_gives_the_librarys_ids_on_any_text(tokenizers, pieces):
    for tok in tokenizers:
        assert tok.encode_pieces(pieces).tolist() == _library_ids(tok, pieces)


def test_whole_corpora_encode_to_the_librarys_ids(tokenizers, corpus):
    texts = [corpus, _random_text(2, 50_000), Path(__file__).read_text() * 3]
    for tok in tokenizers:
        for text in texts:
            assert tok.encode_corpus(text, chunk_chars=4096).tolist() == tok.hf.encode(text).ids


def _edited(tok: Tokenizer, edit) -> dict:
    spec = json.loads(tok.to_str())
    edit(spec)
    return spec


def _swap_two_merges(spec):
    merges = spec["model"]["merges"]
    merges[10], merges[11] = merges[11], merges[10]


def _add_unmerged_token(spec):
    spec["model"]["vocab"]["ĠtheĠking"] = len(spec["model"]["vocab"])


@pytest.mark.parametrize("edit", [
    lambda s: s["model"].update(dropout=0.1),
    lambda s: s.update(normalizer={"type": "Lowercase"}),
    lambda s: s["pre_tokenizer"].update(add_prefix_space=True),
    lambda s: s["pre_tokenizer"].update(use_regex=False),
    _swap_two_merges,
    _add_unmerged_token,
], ids=["dropout", "normalizer", "prefix-space", "no-regex", "merges-out-of-order", "token-no-merge-makes"])
def test_pipelines_tiktoken_cannot_reproduce_keep_the_library(tokenizers, edit):
    spec = _edited(tokenizers[0], edit)
    assert tiktoken_encoder(spec) is None


def test_added_tokens_and_other_kinds_keep_the_library(corpus):
    tok = train_tokenizer("bpe", corpus, vocab_size=300)
    tok.hf.add_tokens(["<sep>"])
    assert tiktoken_encoder(json.loads(tok.to_str())) is None
    assert tok.encode_corpus("a <sep> b\n" * 3).tolist() == tok.hf.encode("a <sep> b\n" * 3).ids
    assert tiktoken_encoder(json.loads(train_tokenizer("char", corpus).to_str())) is None


def test_without_tiktoken_the_library_encodes(tokenizers, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import tiktoken -> ImportError
    spec = json.loads(tokenizers[1].to_str())
    assert tiktoken_encoder(spec) is None
    fresh = Tokenizer.from_str(tokenizers[1].to_str())
    text = _random_text(3, 5_000)
    assert fresh.encode_corpus(text).tolist() == fresh.hf.encode(text).ids
