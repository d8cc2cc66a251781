"""Per-sample Adam: the fused compiled step against the torch path, on the same samples and network.

    python scripts/compare_adam_paths.py [--sizes 784,300,300,10] [--samples 1000]

Both paths start from the same network (bench settings, seed 0) and train on the same 50 ms Poisson
MNIST samples (real digits when `snnbp data mnist` has run, else random images); prints ms per sample.
The torch path is forward + batch_gradients + torch.optim.Adam per sample (EventTrainer with the fused
step switched off). Run it with NUMBA_NUM_THREADS=1 for the one-core figure.
"""
import argparse
import time

import numpy as np

from snnbp.bench.workloads import _data, _event_setup
from snnbp.data.poisson import poisson_events, sample_seeds

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", default="784,300,300,10")
ap.add_argument("--samples", type=int, default=1000)
args = ap.parse_args()
sizes = [int(s) for s in args.sizes.split(",")]
n = args.samples
x, y, source = _data(sizes[0], n + 100, "train", "auto", 0)


def events(lo, hi):
    return poisson_events(x[lo:hi], 50.0, 5000.0, sample_seeds(0, 0, np.arange(lo, hi)))


batches = [(events(lo, lo + 100), y[lo:lo + 100]) for lo in range(100, n + 100, 100)]
print(f"data: {source}; network {sizes}; {n} samples of 50 ms")
for mode in ("torch", "fused", "torch", "fused"):
    net, tr, cfg = _event_setup(sizes, "event-adam", 1)
    tr.fused_adam = mode == "fused"
    tr.step_chunk(events(0, 100), y[:100], 1e-3, 3e-6)  # compile / warm up
    t = time.perf_counter()
    for b, lab in batches:
        st = tr.step_chunk(b, lab, 1e-3, 3e-6)
    ms = (time.perf_counter() - t) / n * 1e3
    print(f"{mode}: {ms:.3f} ms / sample (spikes per sample in the last chunk {np.round(st.spikes / 100, 1).tolist()})")
