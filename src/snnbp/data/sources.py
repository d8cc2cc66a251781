"""Sample sources: turn a dataset into event batches for training and testing.

A source knows its input size, its labels and how to present sample indices as an ``EventBatch``:
  * MNIST: Poisson streams redrawn every epoch (docs/method.md 6.1); the test set uses one fixed draw.
  * N-MNIST (real or synthetic recordings): training presents 300 consecutive events from a random
    position of the stream (``data.nmnist.crop_events``, the one crop function of the package),
    testing the full stream (docs/method.md 6.2). ``make_nmnist_source`` finds the data
    (``data.path``, else what ``snnbp data nmnist`` set up) and preloads both splits as CSR arrays
    (cached as .npz beside the data root).
Every draw is a pure function of (seed, epoch, index), so training is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnbp.config import DataConfig
from snnbp.data.events import NMNIST_SENSOR, EventBatch
from snnbp.data.nmnist import crop_events
from snnbp.data.poisson import poisson_events, sample_seeds

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
            lo, hi = crop_events(int(off[i + 1] - off[i]), self.crop_events, np.random.default_rng(int(s)))
            a, b = off[i] + lo, off[i] + hi
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
    return make_nmnist_source(cfg, seed)


def make_nmnist_source(cfg: DataConfig, seed: int) -> EventSource:
    """N-MNIST (real or synthetic, ``cfg.source``) as an EventSource; a limit takes an even spread of classes."""
    from snnbp.data.nmnist import NMNIST, load_all
    from snnbp.data.paths import data_root, resolve_nmnist

    kind = "synthetic" if cfg.source == "nmnist-synthetic" else "real"
    root = cfg.root or None
    path = cfg.path or resolve_nmnist(root, kind=kind)
    on_bad = "skip" if cfg.skip_bad else "error"
    cache = data_root(root) / "cache"
    splits = {}
    for split, limit in (("train", cfg.train_limit), ("test", cfg.test_limit)):
        ds = NMNIST(path, split=split, on_bad=on_bad)
        arr = load_all(ds, progress=True, cache_dir=cache)
        if ds.skipped:
            import logging

            logging.getLogger(__name__).warning("skipped %d bad %s files (data.skip_bad=true)", len(ds.skipped), split)
        n = len(arr.labels) if limit <= 0 else min(limit, len(arr.labels))
        if limit > 0:
            # Take an evenly spread subset across classes: files are listed digit by digit.
            idx = np.linspace(0, len(arr.labels) - 1, n).round().astype(np.int64)
            chans = [arr.channels[arr.offsets[i]: arr.offsets[i + 1]] for i in idx]
            times = [arr.times_us[arr.offsets[i]: arr.offsets[i + 1]] for i in idx]
            off = np.zeros(n + 1, np.int64)
            np.cumsum([len(c) for c in chans], out=off[1:])
            streams = (np.concatenate(chans).astype(np.int32), np.concatenate(times).astype(np.float64), off)
            labels = arr.labels[idx]
        else:
            streams = (arr.channels.astype(np.int32), arr.times_us.astype(np.float64), arr.offsets)
            labels = arr.labels
        splits[split] = (streams, labels.astype(np.int64))
    name = f"N-MNIST ({kind}, {path})"
    return EventSource(name, NMNIST_SENSOR.channels, splits["train"][0], splits["train"][1],
                       splits["test"][0], splits["test"][1], cfg.crop_events, seed)
