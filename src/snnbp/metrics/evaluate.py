"""Test-set evaluation: accuracy, synaptic operations, spikes, and accuracy vs. time (latency).

Evaluation never modifies the network (no homeostasis, train=False) and runs samples in parallel.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from snnbp.event_engine.engine import run_events
from snnbp.model import Network


def evaluate(net: Network, source, chunk: int = 1000, readout_ms: np.ndarray | None = None,
             progress_bar: bool = True, engine=None) -> dict:
    """Accuracy of argmax(output counts) over the source's test set.

    engine: ``engine(net, batch, readout_times_us=...) -> ForwardResult``; default the event engine
    (``run_events``); ``snnbp.train.dense_trainer.DenseEngine`` runs the dense engine instead.

    readout_ms: optional times (ms) at which accuracy and synops-so-far are also reported, giving
    the accuracy-vs-latency and accuracy-vs-operations curves.
    """
    from tqdm import tqdm

    labels = source.test_labels
    n = len(labels)
    readout_us = None if readout_ms is None else np.asarray(readout_ms, np.float64) * 1000.0
    correct = 0
    synops = 0
    spikes = None
    ro_correct = None
    ro_synops = None
    t0 = time.perf_counter()
    bar = tqdm(total=n, desc="eval", disable=not (progress_bar and sys.stderr.isatty()), unit="sample", leave=False)
    for s in range(0, n, chunk):
        idx = np.arange(s, min(n, s + chunk))
        res = (engine or run_events)(net, source.test_batch(idx), readout_times_us=readout_us)
        correct += int((res.predictions() == labels[idx]).sum())
        synops += int(res.synops.sum())
        sp = np.array([c.sum() for c in res.counts], np.float64)
        spikes = sp if spikes is None else spikes + sp
        if readout_us is not None:
            pred = res.readout_counts.argmax(axis=2)  # (B, R)
            ok = (pred == labels[idx][:, None]) & (res.readout_counts.max(axis=2) > 0)
            ro_correct = ok.sum(0) if ro_correct is None else ro_correct + ok.sum(0)
            ro_synops = res.readout_synops.sum(0) if ro_synops is None else ro_synops + res.readout_synops.sum(0)
        bar.update(len(idx))
    bar.close()
    out = {
        "test_accuracy": correct / n,
        "n_test": n,
        "synops_per_sample": synops / n,
        "spikes_per_layer": (spikes / n).round(2).tolist(),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    if readout_us is not None:
        out["latency_curve"] = {
            "time_ms": np.asarray(readout_ms, float).tolist(),
            "accuracy": (ro_correct / n).tolist(),
            "synops_per_sample": (ro_synops / n).tolist(),
        }
    return out
