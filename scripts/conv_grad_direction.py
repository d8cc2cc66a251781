"""Which way does the paper's rule push the first conv layer's filters? (results/mnist-conv-event-lr1e-3-2026-12-02/README.md)

    python scripts/conv_grad_direction.py [CHECKPOINT] [--batches 8]

Runs batches of 50 training samples (50 ms) through the MNIST conv preset on the event engine (the
network at initialization, seed 0, or CHECKPOINT), sums the data term's weight gradient of conv1
(lambda = 0: without eq. 13), and prints the fraction of conv1 weights that gradient descent would raise
and the mean per-filter sum of -sign(gradient) (the direction of an Adam step, out of C_in K^2 = 25).
"""

from __future__ import annotations

import argparse

import numpy as np

from snnbp.config import embedded_config, load_config
from snnbp.data.sources import make_source
from snnbp.serialization import load_checkpoint
from snnbp.train.build import build_network, make_trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--batches", type=int, default=8)
    a = ap.parse_args()
    cfg = load_config(str(embedded_config("paper/mnist-conv.toml")), ["train.engine=event"])
    src = make_source(cfg.data, 0)
    net = load_checkpoint(a.checkpoint)[0] if a.checkpoint else build_network(cfg, src.n_inputs)
    tr = make_trainer(cfg, net)
    tr.model.load_from(net)
    total = 0.0
    for k in range(a.batches):
        idx = np.arange(k * 50, (k + 1) * 50)
        for p in tr.model.parameters():
            p.grad = None
        out, _ = tr._event_forward(src.train_batch(idx, 0, None), 0.0)
        loss, _ = tr.model.loss(out, src.train_labels[idx], 0.0, cfg.optim.beta)
        loss.backward()
        total = total + tr.model.layers[0].weight.grad.numpy()
    C = total.shape[0]
    print(f"conv1: {float((total < 0).mean()):.3f} of the weights are raised by descent; mean filter sum of "
          f"-sign(grad) {float((-np.sign(total)).reshape(C, -1).sum(1).mean()):.1f} of {total[0].size} "
          f"({a.batches * 50} samples, {'init' if not a.checkpoint else a.checkpoint})")


if __name__ == "__main__":
    main()
