"""Poisson spike encoding of static images (docs/method.md 6.1 and 10.13).

Each pixel p emits an independent Poisson stream of rate r_p = R * I_p / sum_q I_q (events/s), so
the whole image emits R events/s in total (R = 5,000 for the paper). A superposition of independent
Poisson processes is one Poisson process of rate R whose events pick pixel p with probability
I_p / sum_q I_q; we draw it that way: n ~ Poisson(R T), times ~ U[0, T) sorted, pixels ~ categorical.

Every sample's stream is a pure function of its 64-bit seed, so draws are reproducible and
independent of batching and thread count; ``sample_seeds`` derives a fresh seed per (run seed,
epoch, sample index), so the training input is redrawn every epoch.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from snnbp.data.events import EventBatch


def sample_seeds(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """Distinct, well-mixed 63-bit seeds for (seed, epoch, index) via the splitmix64 finalizer."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64(epoch) * np.uint64(0xBF58476D1CE4E5B9)
             + np.asarray(indices, np.uint64) * np.uint64(0x94D049BB133111EB))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(1)).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _draw_count(seed, mean):
    np.random.seed(seed)
    return np.random.poisson(mean)


def _poisson_fill_py(cum, seeds, counts, offsets, duration_us, channels, times):
    B = seeds.shape[0]
    for b in numba.prange(B):
        n = counts[b]
        if n == 0:
            continue
        np.random.seed(seeds[b])
        np.random.poisson(1.0)  # keep the stream aligned with _draw_count's first draw
        c = cum[b]
        total = c[-1]
        s = offsets[b]
        t = np.sort(np.random.random(n) * duration_us)
        for e in range(n):
            times[s + e] = t[e]
            channels[s + e] = np.searchsorted(c, np.random.random() * total, side="right")


# Two compilations of one body: samples in parallel from the main thread; serially (prange runs as range)
# from any other thread, e.g. train/prefetch.py's, because numba's workqueue threading layer (the one
# snnbp selects, snnbp/__init__.py) aborts when two threads launch parallel kernels at once.
_poisson_fill_parallel = numba.njit(cache=True, parallel=True, nogil=True)(_poisson_fill_py)
_poisson_fill_serial = numba.njit(cache=True, nogil=True)(_poisson_fill_py)


def poisson_events(images: np.ndarray, duration_ms: float, rate_hz: float, seeds: np.ndarray) -> EventBatch:
    """Encode (B, P) non-negative intensities as Poisson events over [0, duration).

    images: (B, P) uint8 or float; duration_ms: presentation length; rate_hz: total events/s per image.
    Returns an ``EventBatch`` with channels = pixel index and t_end = duration.
    """
    images = np.asarray(images)
    if images.ndim != 2:
        raise ValueError(f"poisson_events expects (B, P) images, got shape {images.shape}")
    B = images.shape[0]
    duration_us = float(duration_ms) * 1000.0
    cum = np.cumsum(images.astype(np.float64), axis=1)
    mean = rate_hz * duration_ms / 1000.0
    counts = np.array([_draw_count(int(s), mean) if cum[b, -1] > 0 else 0 for b, s in enumerate(seeds)], np.int64)
    offsets = np.zeros(B + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    channels = np.empty(offsets[-1], np.int32)
    times = np.empty(offsets[-1], np.float64)
    fill = _poisson_fill_parallel if threading.current_thread() is threading.main_thread() else _poisson_fill_serial
    fill(cum, np.asarray(seeds, np.int64), counts, offsets, duration_us, channels, times)
    return EventBatch(channels, times, offsets, np.full(B, duration_us))
