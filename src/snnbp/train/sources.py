"""Sample sources: turn a dataset into event batches for training and testing.

A source knows its input size, its labels and how to present sample indices as an ``EventBatch``:
  * MNIST: Poisson streams redrawn every epoch (method.md 6.1); the test set uses one fixed draw.
  * N-MNIST (real or synthetic recordings): training presents 300 consecutive events from a random
    position of the stream, testing the full stream (method.md 6.2).
Every draw is a pure function of (seed, epoch, index), so training is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnbp.data.events import EventBatch
from snnbp.data.poisson import poisson_events, sample_seeds
from snnbp.train.config import DataConfig

TEST_EPOCH = 1_000_003  # seed "epoch" of the fixed test draw; far from any training epoch


@dataclass
class MNISTSource:
    name: str
    train_images: np.ndarray  # (N, 784) uint8
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray
    test_labels: np.ndarray
    rate_hz: float
    train_ms: float
    test_ms: float
    seed: int
    n_inputs: int = 784

    def train_batch(self, indices: np.ndarray, epoch: int, presentation_ms: float | None = None) -> EventBatch:
        ms = self.train_ms if presentation_ms is None else presentation_ms
        return poisson_events(self.train_images[indices], ms, self.rate_hz, sample_seeds(self.seed, epoch, indices))

    def test_batch(self, indices: np.ndarray) -> EventBatch:
        return poisson_events(self.test_images[indices], self.test_ms, self.rate_hz,
                              sample_seeds(self.seed, TEST_EPOCH, indices))


@dataclass
class EventSource:
    """Recorded event streams held in CSR form (channels int16/int32, times in us)."""

    name: str
    n_inputs: int
    train_streams: tuple  # (channels, times_us, offsets)
    train_labels: np.ndarray
    test_streams: tuple
    test_labels: np.ndarray
    crop_events: int
    seed: int

    def train_batch(self, indices: np.ndarray, epoch: int, presentation_ms: float | None = None) -> EventBatch:
        ch, tt, off = self.train_streams
        rng_seeds = sample_seeds(self.seed, epoch, indices)
        chans, times, ends = [], [], []
        for i, s in zip(indices, rng_seeds):
            a, b = off[i], off[i + 1]
            n = b - a
            if n > self.crop_events:
                start = a + int(np.random.default_rng(int(s)).integers(0, n - self.crop_events + 1))
                a, b = start, start + self.crop_events
            chans.append(ch[a:b])
            times.append(tt[a:b])
            ends.append(float(tt[b - 1]) if b > a else 0.0)
        return EventBatch.from_lists(chans, times, ends)

    def test_batch(self, indices: np.ndarray) -> EventBatch:
        ch, tt, off = self.test_streams
        chans = [ch[off[i]: off[i + 1]] for i in indices]
        times = [tt[off[i]: off[i + 1]] for i in indices]
        ends = [float(t[-1]) if len(t) else 0.0 for t in times]
        return EventBatch.from_lists(chans, times, ends)


def _limit(n: int, limit: int) -> int:
    return n if limit <= 0 else min(n, limit)


def make_source(cfg: DataConfig, seed: int):
    """Build the source named by ``cfg.source``; missing data raises DataError naming the fetch command."""
    if cfg.source == "mnist":
        from snnbp.data.mnist import load_mnist

        root = cfg.root or None
        xi, yi = load_mnist("train", root)
        xt, yt = load_mnist("test", root)
        n, m = _limit(len(xi), cfg.train_limit), _limit(len(xt), cfg.test_limit)
        return MNISTSource("MNIST (real, Poisson-encoded)", xi[:n].reshape(n, -1), yi[:n].astype(np.int64),
                           xt[:m].reshape(m, -1), yt[:m].astype(np.int64), cfg.rate_hz, cfg.train_ms, cfg.test_ms, seed)
    from snnbp.data import nmnist_source

    return nmnist_source.make_nmnist_source(cfg, seed)
