"""Are the conv preset's silent units whole feature maps or single locations?

    python scripts/conv_dead_maps.py CHECKPOINT [N_DIGITS]

Runs the first N_DIGITS (default 1,000) MNIST training digits (50 ms Poisson presentations, no
homeostasis) through the checkpoint's network on the event engine and prints, per conv layer, the share
of (map, location) units and of whole maps that never fired, with quantiles of the spikes per map per
digit; per fully connected layer the share of units that never fired.
"""

from __future__ import annotations

import argparse

import numpy as np

from snnbp.config import embedded_config, load_config
from snnbp.data.sources import make_source
from snnbp.event_engine.engine import run_events
from snnbp.serialization import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("n_digits", nargs="?", type=int, default=1000)
    a = ap.parse_args()
    cfg = load_config(str(embedded_config("paper/mnist-conv.toml")), [])
    src = make_source(cfg.data, 0)
    net = load_checkpoint(a.checkpoint)[0]
    totals = None
    for k in range(0, a.n_digits, 100):
        idx = np.arange(k, min(k + 100, a.n_digits))
        counts = [c.sum(0) for c in run_events(net, src.train_batch(idx, 0, None), train=False).counts]
        totals = counts if totals is None else [t + c for t, c in zip(totals, counts)]
    for spec, th, c in zip(net.specs, net.thresholds, totals):
        if spec.kind == "conv":  # counts are map-major: (C * H' * W',), one threshold per map
            per_map = c.reshape(th.size, -1)
            q = np.percentile(per_map.sum(1), [10, 50, 90]) / a.n_digits
            print(f"{spec}: silent units {(per_map == 0).mean():.3f}, silent maps {int((per_map.sum(1) == 0).sum())}"
                  f"/{th.size}; spikes per map per digit q10 / q50 / q90 {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}")
        else:
            print(f"{spec}: silent units {(c == 0).mean():.3f} of {c.size}")


if __name__ == "__main__":
    main()
