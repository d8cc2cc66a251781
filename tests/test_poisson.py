"""Poisson encoding (docs/method.md 6.1): total rate, proportional pixel rates, seeding."""

from __future__ import annotations

import numpy as np

from snnbp.data.poisson import poisson_events, sample_seeds


def test_total_rate_and_pixel_proportions():
    img = np.zeros((1, 784), np.uint8)
    img[0, 10], img[0, 20] = 255, 85  # rates 3:1
    b = poisson_events(np.repeat(img, 200, 0), 1000.0, 5000.0, sample_seeds(0, 0, np.arange(200)))
    counts = np.diff(b.offsets)
    assert abs(counts.mean() - 5000) < 5000 * 0.01  # mean of 200 Poisson(5000): sd 5
    assert abs(counts.var() / counts.mean() - 1) < 0.3  # Poisson: variance = mean
    ratio = (b.channels == 10).sum() / (b.channels == 20).sum()
    assert abs(ratio - 3.0) < 0.05
    assert set(np.unique(b.channels)) == {10, 20}


def test_times_sorted_within_window_and_t_end():
    img = np.random.default_rng(0).integers(0, 256, (5, 784)).astype(np.uint8)
    b = poisson_events(img, 50.0, 5000.0, sample_seeds(1, 2, np.arange(5)))
    for i in range(5):
        _, t = b.sample(i)
        assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < 50_000
    assert np.all(b.t_end_us == 50_000)
    b.validate(784)


def test_reproducible_by_seed_and_fresh_each_epoch():
    img = np.random.default_rng(0).integers(0, 256, (4, 784)).astype(np.uint8)
    a = poisson_events(img, 50.0, 5000.0, sample_seeds(7, 3, np.arange(4)))
    b = poisson_events(img, 50.0, 5000.0, sample_seeds(7, 3, np.arange(4)))
    c = poisson_events(img, 50.0, 5000.0, sample_seeds(7, 4, np.arange(4)))
    assert np.array_equal(a.channels, b.channels) and np.array_equal(a.times_us, b.times_us)
    assert not np.array_equal(a.channels[:50], c.channels[:50])
    # A sample's stream does not depend on which batch it is drawn in.
    single = poisson_events(img[2:3], 50.0, 5000.0, sample_seeds(7, 3, np.array([2])))
    assert np.array_equal(single.channels, a.sample(2)[0])


def test_blank_image_gives_no_events():
    b = poisson_events(np.zeros((2, 784), np.uint8), 50.0, 5000.0, sample_seeds(0, 0, np.arange(2)))
    assert len(b.channels) == 0 and list(b.offsets) == [0, 0, 0]
