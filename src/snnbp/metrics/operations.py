"""Operation counts: what a spiking network and a conventional network of the same shape pay per sample.

The paper's efficiency claim (Lee et al. 2016, Frontiers: "about five times fewer operations" than a
conventional network on N-MNIST; docs/efficiency.md) needs counts that mean the same in every engine.
The definitions follow NeuroBench (Yik et al. 2024) where it has one:

synaptic operations (SynOps, NeuroBench "effective synaptic operations")
    one per (spike, synapse it reaches): an input event or a spike reaching a layer costs its fan-out
    into that layer. Fully connected: N. Convolution "conv:C:K": C times the output locations whose
    K x K field covers the pixel, C K^2 inside the map and fewer at its border (exact, not the interior
    value). Average pooling is a set of tied synapses: a spike of a pooled map costs the fan-out of its
    pooling window in the next layer (event_engine/layered.py, dense/conv.py). Counted by both engines
    while they simulate (``ForwardResult.synops``), so the count at any readout time is exact too.
lateral-inhibition updates (counted apart)
    a spike of a WTA group (kappa != 0) of G neurons changes the G - 1 other membrane potentials
    (eq. 4): G = N in a fully connected layer, G = C maps at a conv location (``lateral_ops``).
membrane updates
    event-driven (the event engine, and what neuromorphic hardware pays): a neuron's potential is
    decayed and updated when a synaptic event reaches it, so the count equals the synaptic operations
    (lateral updates come on top, counted above). Time-stepped (what a clocked simulator such as the
    dense engine or a BPTT framework pays): every neuron every step, sum_l N_l x T / dt, whatever the
    activity (``time_stepped_membrane_updates``).
multiply-accumulates (MACs, conventional networks)
    a dense layer y = W x does M x N of them; a convolution C_out C_in K^2 H' W' (valid, stride 1);
    pooling and ReLU are not counted (``ann_macs``), as in NeuroBench's dense-operation count.

A SynOp is an addition of a weight (no multiplication), a MAC a multiplication and an addition; the
paper counts both as "operations" and so does the ratio we report (docs/efficiency.md).
"""

from __future__ import annotations

import math

from snnbp.architecture import layer_io_shapes, parse_layers


def time_stepped_membrane_updates(sizes: list[int], duration_ms: float, dt_ms: float) -> float:
    """sum_l N_l x ceil(duration / dt): membrane updates of a clocked simulation of one presentation.

    sizes: neurons per layer (``Network.sizes``; a conv layer counts C H' W'); duration_ms: the
    presentation; dt_ms: the step. Example: 784-800-10 for 1 s at 1 ms: 810 x 1000 = 810,000.
    """
    if dt_ms <= 0 or duration_ms < 0:
        raise ValueError(f"time_stepped_membrane_updates: need dt_ms > 0 and duration_ms >= 0, got {dt_ms}, {duration_ms}")
    return float(sum(sizes)) * math.ceil(duration_ms / dt_ms - 1e-9)


def ann_macs(n_inputs: int, hidden: list[int] | None = None, n_outputs: int = 10,
             input_shape: tuple[int, ...] | None = None, layers: list[str] | None = None) -> int:
    """Multiply-accumulates of one forward pass of a conventional network (module doc).

    Fully connected (``layers`` None): n_inputs-hidden...-n_outputs, sum of M_l N_l.
    Layered (``layers`` as model.layers, e.g. ["conv:20:5", "pool:2", ..., "fc:10"] on ``input_shape``
    (P, H, W)): conv C_out C_in K^2 H' W', fc (pooled input size) x N, pooling free.
    """
    if layers is None:
        sizes = [n_inputs, *(hidden or []), n_outputs]
        return int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:])))
    if input_shape is None:
        raise ValueError("ann_macs: a layered network needs its input_shape (P, H, W)")
    total = 0
    specs = parse_layers(layers, "model.layers")
    for sp, (i, o) in zip(specs, layer_io_shapes(tuple(input_shape), specs)):
        if sp.kind == "conv":
            total += sp.size * i[0] * sp.kernel ** 2 * o[1] * o[2]
        else:
            total += math.prod(i) * sp.size
    return int(total)
