"""Spike rasters of a few test samples, recorded for `snnbp report` (RUN_DIR/rasters.json).

The exact event engine logs every spike as (layer, neuron, t_us) (event_engine/engine.run_events,
``record_spikes``); the input events are kept as (channel, t_ms). Both are capped per sample so the
file stays small (a 1 s MNIST test sample has ~5,000 input events and a few thousand spikes).
"""

from __future__ import annotations

import numpy as np

from snnbp.event_engine.engine import run_events

MAX_SPIKES = 20_000
MAX_INPUT = 6_000


def raster_samples(labels, n: int) -> list[int]:
    """The first test sample of each of the first n distinct digits (test sets may be sorted by digit)."""
    picks, seen = [], set()
    for i, y in enumerate(labels):
        if int(y) not in seen:
            seen.add(int(y))
            picks.append(i)
            if len(picks) == n:
                break
    return picks


def record_rasters(net, source, indices: list[int], max_spikes: int = MAX_SPIKES, max_input: int = MAX_INPUT) -> dict:
    """{"layer_sizes", "max_spikes", "truncated", "samples": [{index, label, prediction, input, spikes}]}."""
    idx = np.asarray(indices, np.int64)
    batch = source.test_batch(idx)
    res = run_events(net, batch, record_spikes=max_spikes)
    samples, truncated = [], False
    for b, i in enumerate(idx):
        lo, hi = batch.offsets[b], batch.offsets[b + 1]
        n_in = int(hi - lo)
        keep = min(n_in, max_input)
        inp = np.stack([batch.channels[lo:lo + keep].astype(np.float64), batch.times_us[lo:lo + keep] / 1000.0], axis=1)
        log = res.spike_log[b]
        truncated |= int(sum(c[b].sum() for c in res.counts)) > len(log)
        samples.append({"index": int(i), "label": int(source.test_labels[i]), "prediction": int(res.predictions()[b]),
                        "input": np.round(inp, 3).ravel().tolist(), "input_truncated": n_in > keep,
                        "spikes": np.round(log, 1).ravel().tolist()})
    return {"layer_sizes": [int(n) for n in net.sizes], "max_spikes": max_spikes, "truncated": bool(truncated),
            "samples": samples}
