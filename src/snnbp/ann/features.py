"""What a conventional network sees of a sample: one dense vector per sample, in the SNN's channel order.

MNIST: the 784 pixel intensities / 255 (the image the Poisson streams are drawn from, docs/method.md 6.1).
N-MNIST: the event counts of the whole recording per channel, channel = (polarity, y, x) (data/events.py),
divided by the sample's largest count so that every sample lies in [0, 1] as an image does. A CNN reads
the same vector as a (P, H, W) map: for N-MNIST that is the two-polarity event-count frame of the whole
recording. (The SNN is trained on 300-event crops and tested on the full stream; the baseline is trained
and tested on full-stream frames, the comparison the paper's "conventional CNN trained and tested on
the same data" suggests.)
"""

from __future__ import annotations

import numpy as np


def event_counts(streams: tuple, n_inputs: int, block: int = 4096) -> np.ndarray:
    """(n, n_inputs) float32 counts per channel of CSR streams (channels, times_us, offsets).

    Counted ``block`` samples at a time, so the flat index array stays small (the whole N-MNIST training
    set holds ~250 M events).
    """
    ch, _, off = streams
    n = len(off) - 1
    out = np.empty((n, n_inputs), np.float32)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        sample = np.repeat(np.arange(hi - lo, dtype=np.int64), np.diff(off[lo:hi + 1]))
        flat = sample * n_inputs + ch[off[lo]:off[hi]].astype(np.int64)
        out[lo:hi] = np.bincount(flat, minlength=(hi - lo) * n_inputs).reshape(hi - lo, n_inputs)
    return out


def _max_normalized(x: np.ndarray) -> np.ndarray:
    peak = x.max(axis=1, keepdims=True)
    return x / np.where(peak > 0, peak, 1.0)


def dense_inputs(source, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, n_inputs) float32 in [0, 1], labels (n,) int64) of a sample source's split ("train"/"test")."""
    if split not in ("train", "test"):
        raise ValueError(f"dense_inputs: split must be 'train' or 'test', got {split!r}")
    labels = getattr(source, f"{split}_labels")
    if hasattr(source, "train_images"):  # MNIST
        return getattr(source, f"{split}_images").astype(np.float32) / 255.0, labels
    return _max_normalized(event_counts(getattr(source, f"{split}_streams"), source.n_inputs)), labels


def describe_inputs(source) -> str:
    """The data and what ``dense_inputs`` makes of it, in words (a run summary's "data")."""
    if hasattr(source, "train_images"):
        return "MNIST (real): pixel intensities"
    return f"{source.name}: event counts of the whole recording"
