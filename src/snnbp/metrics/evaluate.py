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

    readout_ms: optional times (ms) at which accuracy and operations-so-far are also reported, giving
    the accuracy-vs-latency and accuracy-vs-operations curves (metrics/curves.py). The decision at a
    readout time is the test's own, argmax of the output counts so far with ties (a silent output
    included) to the lowest index, so the curve at the full presentation is the test accuracy.

    Operation counts per test sample (metrics/operations.py): ``synops_per_sample`` (synaptic
    operations, = the event engine's membrane updates) and ``lateral_ops_per_sample`` (WTA updates).
    """
    from tqdm import tqdm

    labels = source.test_labels
    n = len(labels)
    readout_us = None if readout_ms is None else np.asarray(readout_ms, np.float64) * 1000.0
    correct = 0
    synops = 0
    lateral = 0
    spikes = None
    ro_correct = None
    ro_synops = None
    ro_lateral = None
    n_classes = net.sizes[-1]
    confusion = np.zeros((n_classes, n_classes), np.int64)  # [true label, predicted]
    t0 = time.perf_counter()
    bar = tqdm(total=n, desc="eval", disable=not (progress_bar and sys.stderr.isatty()), unit="sample", leave=False)
    for s in range(0, n, chunk):
        idx = np.arange(s, min(n, s + chunk))
        res = (engine or run_events)(net, source.test_batch(idx), readout_times_us=readout_us)
        pred = res.predictions()
        correct += int((pred == labels[idx]).sum())
        np.add.at(confusion, (labels[idx], pred), 1)
        synops += int(res.synops.sum())
        lateral += int(res.lateral_ops.sum())
        sp = np.array([c.sum() for c in res.counts], np.float64)
        spikes = sp if spikes is None else spikes + sp
        if readout_us is not None:
            ok = res.readout_counts.argmax(axis=2) == labels[idx][:, None]  # (B, R), the rule of predictions()
            ro_correct = ok.sum(0) if ro_correct is None else ro_correct + ok.sum(0)
            ro_synops = res.readout_synops.sum(0) if ro_synops is None else ro_synops + res.readout_synops.sum(0)
            ro_lateral = (res.readout_lateral.sum(0) if ro_lateral is None
                          else ro_lateral + res.readout_lateral.sum(0))
        bar.update(len(idx))
    bar.close()
    out = {
        "test_accuracy": correct / n,
        "n_test": n,
        "synops_per_sample": synops / n,
        "lateral_ops_per_sample": lateral / n,
        "spikes_per_layer": (spikes / n).round(2).tolist(),
        "wall_s": round(time.perf_counter() - t0, 2),
        "confusion": confusion.tolist(),
    }
    if readout_us is not None:
        out["latency_curve"] = {
            "time_ms": np.asarray(readout_ms, float).tolist(),
            "accuracy": (ro_correct / n).tolist(),
            "synops_per_sample": (ro_synops / n).tolist(),
            "lateral_ops_per_sample": (ro_lateral / n).tolist(),
        }
    return out
