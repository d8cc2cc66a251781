"""Who receives an event in a layered network: pooling maps and layer geometry for the event engine.

Pure numpy, built once per layer shape (cached) from the layer list (architecture.py).

A layer of a layered network reads *sources*: the input channels (layer 0) or the neurons of the layer
below, flat index (c, y, x) -> (c H + y) W + x. A "pool:K" before the layer first maps each source to
its K x K window (``pool_map``); the window is one pooled synapse whose weight is W / K^2 (average
pooling of spikes, dense/conv.py), so an event from any neuron of the window is one event on it.

Conv layer "conv:C:K" on a pooled (C_in, H, W) map, output (C, H', W') = (C, H-K+1, W-K+1), neuron
i = (c H' + y') W' + x'. Pooled source (c', y, x) reaches neuron (c, y - u, x - v) for every kernel
offset (u, v) that keeps it inside the output map, through weight W[c, c', u, v]; the compiled layer
(event_engine/layered.py, ``_conv_event``) walks these targets from the geometry
(C_in, H, W, K, H', W'), so a border pixel reaches fewer neurons (the exact synaptic-operation count).
A fully connected layer reaches every neuron, through the weight row of the pooled source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from snnbp.architecture import LayerSpec


@dataclass(frozen=True)
class LayerTables:
    """What the event engine needs to know about one layer of a layered network (module doc).

    kind: "conv" or "fc"; n_maps C and locations HW (fc: C = N neurons, HW = 1): neuron i belongs to
    map i // HW (its threshold) and location i % HW (its WTA group: the C maps at one location).
    pool_map (S_raw,) int32: source -> pooled source; pool_scale: 1 / K^2 (1 without pooling).
    geometry (6,) int64: (C_in, H, W, K, H', W') of a conv layer (zeros for fc).
    """

    kind: str
    n_maps: int
    n_locations: int
    pool_map: np.ndarray
    pool_scale: float
    geometry: np.ndarray

    @property
    def n_neurons(self) -> int:
        return self.n_maps * self.n_locations


def pool_map(in_shape: tuple[int, ...], k: int) -> np.ndarray:
    """(C, H, W) sources -> index of their K x K window in the pooled (C, H/K, W/K) map (identity for k = 1)."""
    n = math.prod(in_shape)
    if k == 1:
        return np.arange(n, dtype=np.int32)
    C, H, W = in_shape
    c, y, x = np.unravel_index(np.arange(n), (C, H, W))
    return ((c * (H // k) + y // k) * (W // k) + x // k).astype(np.int32)


_CACHE: dict[tuple, LayerTables] = {}


def layer_tables(spec: LayerSpec, in_shape: tuple[int, ...], pooled_in: tuple[int, ...],
                 out_shape: tuple[int, ...]) -> LayerTables:
    """Tables of one layer: ``in_shape`` is what it reads before pooling, ``pooled_in`` after
    (architecture.layer_io_shapes), ``out_shape`` its neurons. Cached per shape (pure function)."""
    key = (str(spec), tuple(in_shape), tuple(pooled_in))
    if key not in _CACHE:
        pm = pool_map(tuple(in_shape), spec.pool)
        scale = 1.0 / (spec.pool * spec.pool)
        if spec.kind == "conv":
            geometry = np.array([*pooled_in, spec.kernel, out_shape[1], out_shape[2]], np.int64)
            _CACHE[key] = LayerTables("conv", spec.size, out_shape[1] * out_shape[2], pm, scale, geometry)
        else:
            _CACHE[key] = LayerTables("fc", spec.size, 1, pm, scale, np.zeros(6, np.int64))
    return _CACHE[key]


def network_tables(net) -> list[LayerTables]:
    """LayerTables of every layer of a layered ``Network``."""
    from snnbp.architecture import layer_io_shapes

    specs = net.specs
    out, cur = [], tuple(net.input_shape)
    for sp, (pooled_in, o) in zip(specs, layer_io_shapes(net.input_shape, specs)):
        out.append(layer_tables(sp, cur, pooled_in, o))
        cur = o
    return out
