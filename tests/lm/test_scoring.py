"""lm/scoring.py: reading a long text in windows or as carried streams scores every target exactly once."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from lm.scoring import score_streams, score_windows, windows

from .conftest import tiny_model


@given(st.integers(2, 500), st.integers(1, 64), st.data())
def test_windows_score_every_target_once(num_tokens, window, data):
    stride = data.draw(st.integers(1, window))
    covered = []
    for start, end, first in windows(num_tokens, window, stride):
        assert 0 <= start < end and end - start <= window and 0 <= first < end - start
        covered.extend(range(start + first, end))
        if start > 0:  # a window that slid gives each scored token at least window - stride before it
            assert first >= window - stride
    assert covered == list(range(num_tokens - 1))


class _Recorder:
    def __init__(self):
        self.targets = []

    def __call__(self, logits, targets):
        assert logits.shape[:-1] == targets.shape
        self.targets.extend(targets.reshape(-1).tolist())


def test_windows_and_streams_hand_over_every_target_once():
    ids = np.arange(1, 301) % 30
    for score, model, reading in (
        (score_windows, tiny_model("gpt", 30).eval(), {"window": 32, "stride": 12, "batch_size": 4}),
        (score_streams, tiny_model("lstm", 30).eval(), {"streams": 1, "chunk": 50}),
    ):
        seen = _Recorder()
        score(model, ids, seen, "cpu", **reading)
        assert sorted(seen.targets) == sorted(ids[1:].tolist())


def test_one_stream_scores_like_one_forward_pass_over_the_whole_text():
    model = tiny_model("lstm", 30).eval()
    ids = np.arange(200) % 30
    pieces = []
    score_streams(model, ids, lambda logits, targets: pieces.append(logits), "cpu", streams=1, chunk=64)
    with torch.no_grad():
        whole = model(torch.from_numpy(ids[:-1])[None]).logits
    assert torch.allclose(torch.cat(pieces, dim=1), whole, atol=1e-5)
