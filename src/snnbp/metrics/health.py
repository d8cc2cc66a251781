"""Training health signals per epoch: what shows an activity collapse before accuracy does.

Recorded as ``health`` in every metrics.jsonl line (train/loop.py) and drawn by ``snnbp report``.
Per layer l (fully connected: one entry per neuron; conv: per feature map for thresholds and
weight norms, per neuron-location for spikes):

  th_mean, th_min, th_max   thresholds V_th at the end of the epoch
  at_floor                  fraction of thresholds within 1e-6 (relative) of the layer's floor (4.4)
  dead                      fraction of neurons that did not spike once in the epoch's training
  wnorm2_q05/q50/q95        quantiles of the per-neuron squared weight norm |W_i|^2 (eq. 13 keeps
                            it near 1; a collapse shows as a falling median)
  spikes_per_sample         training spikes of the layer per sample

and for the run: ``zero_error_fraction``, the fraction of training samples whose output error
o - y was exactly zero (no data gradient; docs/method.md 3.8: max-normalized outputs).
"""

from __future__ import annotations

import numpy as np


def weight_sq_norms(weight: np.ndarray) -> np.ndarray:
    """|W_i|^2 per neuron: columns of an (M, N) matrix, filters of a (C, C_in, K, K) conv weight."""
    w = weight.astype(np.float64)
    if w.ndim == 2:
        return (w * w).sum(axis=0)
    return (w * w).reshape(w.shape[0], -1).sum(axis=1)


def epoch_health(net, samples: int, unit_spikes: list[np.ndarray], zero_error: int) -> dict:
    """The health record of one epoch (module doc); unit_spikes: per layer, spikes per neuron."""
    layers = []
    for l, (w, th) in enumerate(zip(net.weights, net.thresholds)):
        th = np.asarray(th, np.float64).ravel()
        floor = float(net.floors[l])
        q05, q50, q95 = np.quantile(weight_sq_norms(w), [0.05, 0.5, 0.95])
        spikes = np.asarray(unit_spikes[l])
        layers.append({
            "th_mean": round(float(th.mean()), 6), "th_min": round(float(th.min()), 6),
            "th_max": round(float(th.max()), 6),
            "at_floor": round(float(np.mean(th <= floor * (1 + 1e-6))), 4),
            "dead": round(float(np.mean(spikes == 0)), 4),
            "wnorm2_q05": round(float(q05), 5), "wnorm2_q50": round(float(q50), 5), "wnorm2_q95": round(float(q95), 5),
            "spikes_per_sample": round(float(spikes.sum()) / max(1, samples), 3),
        })
    return {"layers": layers, "zero_error_fraction": round(zero_error / max(1, samples), 4)}
