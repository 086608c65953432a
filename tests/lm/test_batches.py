"""lm/batches.py: training batches are a function of (seed, step)."""

import numpy as np

from lm.batches import StreamSampler, WindowSampler


def test_window_sampler_is_a_function_of_seed_and_step():
    ids = np.arange(1000) % 50
    a, b = WindowSampler(ids, 4, 16, seed=1), WindowSampler(ids, 4, 16, seed=1)
    assert a.batch(5).x.equal(b.batch(5).x) and not a.batch(5).x.equal(a.batch(6).x)
    batch = a.batch(0)
    assert batch.x.shape == (4, 16) and batch.y[:, :-1].equal(batch.x[:, 1:])


def test_stream_sampler_walks_contiguously_and_wraps():
    ids = np.arange(200)
    sampler = StreamSampler(ids, batch_size=2, seq_len=30, seed=0)
    first, second = sampler.batch(0), sampler.batch(1)
    assert first.x[0, 0] == 0 and first.x[1, 0] == 100  # two streams of 100
    assert second.x[0, 0] == first.x[0, -1] + 1 and second.y[0, -1] == second.x[0, -1] + 1
    assert sampler.batch(2).x[0, 0] == 60 and sampler.batch(3).seq_len == 9  # the short remainder
    batch = sampler.batch(4)
    assert batch.reset_state and batch.x[0, 0] == 0 and sampler.epoch == 1


def test_variable_bptt_lengths_vary_deterministically():
    ids = np.arange(10_000)
    lengths = [StreamSampler(ids, 2, 70, seed=1, variable=True).draw_len(s) for s in range(50)]
    again = [StreamSampler(ids, 2, 70, seed=1, variable=True).draw_len(s) for s in range(50)]
    assert lengths == again and len(set(lengths)) > 5 and min(lengths) >= 5 and max(lengths) <= 110


def test_batches_say_where_each_row_begins_in_the_ids():
    """Distillation looks a batch's positions up: x[r] is ids[starts[r]:], for windows and for every rank's streams."""
    ids = np.arange(1000)
    window = WindowSampler(ids, 4, 16, seed=3).batch(2)
    assert np.array_equal(window.x.numpy(), ids[window.starts[:, None] + np.arange(16)])
    for rank in (0, 1):
        sampler = StreamSampler(ids, batch_size=2, seq_len=30, seed=0, rank=rank, world_size=2)
        for step in range(3):
            batch = sampler.batch(step)
            assert np.array_equal(batch.x.numpy(), ids[batch.starts[:, None] + np.arange(batch.seq_len)])
