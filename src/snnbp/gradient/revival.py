"""Reviving silent units: a slow, per-threshold homeostasis for units that stopped firing altogether.

The paper's homeostasis (docs/method.md 4.4) exists to revive silent neurons: only active neurons enter
the backward sums of eqs. 11-12, so a neuron that never fires gets no gradient and never recovers.
Its rule acts within each input event, zero-sum over the layer. In the conv preset it could not be
used (every rho tried ran the conv layers away, docs/paper-readings.md 20), and without it units die
for good: after 20 epochs 15 of the 50 conv2 maps and 139 of the 200 fc200 units of
results/mnist-conv were silent on 300 training digits, with their thresholds still at their initial
values; every one of them fires again once its threshold is set to the floor
(results/mnist-conv-revival).

This rule (a DEVIATION: the paper has no such rule) acts only on threshold groups (a neuron; in a conv
layer a whole feature map, which shares one threshold) that fired no spike in any of the last
``after`` training samples:

    V_th <- max(floor, V_th exp(-r n))    for each such group, after a chunk of n samples

so a dead group's threshold falls by the factor e every 1/r silent samples (r = optim.revive_rate,
which follows the learning rate's schedule) until the group fires again, when the gradient takes
over. A group that fired in the last ``after`` samples is untouched, so live units never feel it.
Silence is judged on whole training chunks (train.chunk samples): a group is silent in a chunk when
its units fired no spike in any sample of it; the counter of silent samples then carries across
chunks and epochs and travels in the checkpoint (resume stays exact).
"""

from __future__ import annotations

import numpy as np

STATE_KEY = "revival.silent_samples"  # checkpoint tensor names: STATE_KEY.<layer>


class SilentUnitRevival:
    """Counts, per threshold group, the training samples since its last spike; lowers the dead ones.

    net: a snnbp.model.Network (its thresholds and floors; not imported here: the rule sits below the
    model in the package's layering). after: samples of silence before a group is revived (> 0);
    rate: r per silent sample at the schedule's start (per-chunk factor exp(-r * scale * n)).
    """

    def __init__(self, net, after: int, rate: float):
        if after < 1:
            raise ValueError(f"revive_after must be at least 1 sample, got {after}")
        self.after = int(after)
        self.rate = float(rate)
        self.silent = [np.zeros(th.size, np.int64) for th in net.thresholds]

    def after_chunk(self, net, unit_spikes: list[np.ndarray], n_samples: int, scale: float) -> np.ndarray:
        """Update the counters from a chunk's per-unit spike counts; lower the thresholds of dead groups.

        unit_spikes: per layer (N_l,) spikes per unit summed over the chunk (conv: map-major, C x H'W').
        scale: the schedule's factor (decay_per_epoch ** epoch). Returns (L,) groups lowered per layer.
        """
        lowered = np.zeros(net.n_layers, np.int64)
        factor = float(np.exp(-self.rate * scale * n_samples))
        for l, (th, floor) in enumerate(zip(net.thresholds, net.floors)):
            flat = th.reshape(-1)  # a view: conv thresholds are (C, 1, 1), one per map
            per_group = np.asarray(unit_spikes[l]).reshape(flat.size, -1).sum(axis=1)
            self.silent[l] = np.where(per_group > 0, 0, self.silent[l] + n_samples)
            dead = (self.silent[l] >= self.after) & (flat > floor)
            if dead.any():
                flat[dead] = np.maximum(float(floor), flat[dead] * factor)
                lowered[l] = int(dead.sum())
        return lowered

    def reviving(self) -> np.ndarray:
        """(L,) threshold groups per layer silent for at least ``after`` samples now."""
        return np.array([int((s >= self.after).sum()) for s in self.silent], np.int64)

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {f"{STATE_KEY}.{l}": s.copy() for l, s in enumerate(self.silent)}

    def load_state_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        """Restore the counters (a checkpoint written without them: all groups count from zero)."""
        for l in range(len(self.silent)):
            saved = tensors.get(f"{STATE_KEY}.{l}")
            if saved is not None:
                if saved.shape != self.silent[l].shape:
                    raise ValueError(f"checkpoint {STATE_KEY}.{l} has shape {saved.shape}, the network "
                                     f"{self.silent[l].shape}")
                self.silent[l] = np.asarray(saved, np.int64).copy()
