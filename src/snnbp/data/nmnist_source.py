"""N-MNIST (real or synthetic) as a training source (method.md 6.2).

Finds the data (``data.path``, else what ``snnbp data nmnist`` set up), preloads both splits as CSR
arrays (cached as .npz beside the data root), and hands them to ``train.sources.EventSource``, which
presents random 300-event crops for training and full streams for testing.
"""

from __future__ import annotations

import numpy as np

from snnbp.data.events import NMNIST_SENSOR
from snnbp.data.mnist import data_root
from snnbp.data.nmnist import NMNIST, load_all, resolve_nmnist


def make_nmnist_source(cfg, seed: int):
    from snnbp.train.sources import EventSource

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
