"""Are the conv preset's silent units whole feature maps or single locations?

    python scripts/conv_dead_maps.py CHECKPOINT [N_DIGITS] [--floor-test]

Runs the first N_DIGITS (default 1,000) MNIST training digits (50 ms Poisson presentations, no
homeostasis) through the checkpoint's network on the event engine and prints, per conv layer, the share
of (map, location) units and of whole maps that never fired, with quantiles of the spikes per map per
digit; per fully connected layer the share of units that never fired.

--floor-test: then, one hidden layer at a time, sets the thresholds of that layer's silent groups (conv:
maps) to the layer's floor and reruns the digits: how many of them fire again, and what that does to
the layer's and the next layer's spikes per digit. (Can a lower threshold alone revive them, or are
their weights past saving?)
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
    ap.add_argument("--floor-test", action="store_true", help="lower silent groups to the floor, rerun")
    a = ap.parse_args()
    cfg = load_config(str(embedded_config("paper/mnist-conv.toml")), [])
    src = make_source(cfg.data, 0)
    net = load_checkpoint(a.checkpoint)[0]
    totals = _totals(net, src, a.n_digits)
    for spec, th, c in zip(net.specs, net.thresholds, totals):
        if spec.kind == "conv":  # counts are map-major: (C * H' * W',), one threshold per map
            per_map = c.reshape(th.size, -1)
            q = np.percentile(per_map.sum(1), [10, 50, 90]) / a.n_digits
            print(f"{spec}: silent units {(per_map == 0).mean():.3f}, silent maps {int((per_map.sum(1) == 0).sum())}"
                  f"/{th.size}; spikes per map per digit q10 / q50 / q90 {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}")
        else:
            print(f"{spec}: silent units {(c == 0).mean():.3f} of {c.size}")
    if a.floor_test:
        _floor_test(net, src, a.n_digits, totals)


def _totals(net, src, n_digits: int) -> list[np.ndarray]:
    """Per layer, spikes per unit summed over the first n_digits training digits."""
    totals = None
    for k in range(0, n_digits, 100):
        idx = np.arange(k, min(k + 100, n_digits))
        counts = [c.sum(0) for c in run_events(net, src.train_batch(idx, 0, None), train=False).counts]
        totals = counts if totals is None else [t + c for t, c in zip(totals, counts)]
    return totals


def _floor_test(net, src, n_digits: int, totals: list[np.ndarray]) -> None:
    for l in range(net.n_layers - 1):
        th = net.thresholds[l].reshape(-1)  # a view: one threshold per group (conv: per map)
        silent = totals[l].reshape(th.size, -1).sum(1) == 0
        if not silent.any():
            continue
        saved = th.copy()
        print(f"layer {l}: silent groups' V_th mean {th[silent].mean():.4f} (live {th[~silent].mean():.4f}), "
              f"floor {float(net.floors[l]):.4f}")
        th[silent] = float(net.floors[l])
        after = _totals(net, src, n_digits)
        th[:] = saved
        still = int((after[l].reshape(th.size, -1).sum(1)[silent] == 0).sum())
        per = lambda t, k: t[k].sum() / n_digits  # noqa: E731
        print(f"  at the floor: {still} of {int(silent.sum())} still silent; spikes per digit in layer {l} "
              f"{per(totals, l):.1f} -> {per(after, l):.1f}, layer {l + 1} {per(totals, l + 1):.1f} -> {per(after, l + 1):.1f}")


if __name__ == "__main__":
    main()
