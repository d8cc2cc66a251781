"""Who receives an event: the connectivity tables the event engine runs a layered network with.

Pure numpy, built once per forward call from the layer list (architecture.py) and the weights.

A layer of a layered network reads *sources*: the input channels (layer 0) or the neurons of the layer
below, flat index (c, y, x) -> (c H + y) W + x. A "pool:K" before the layer first maps each source to
its K x K window (``pool_map``); the window is one pooled synapse whose weight is W / K^2 (average
pooling of spikes, dense/conv.py), so an event from any neuron of the window is one event on it.

Conv layer "conv:C:K" on a pooled (C_in, H, W) map, output (C, H', W') = (C, H-K+1, W-K+1), neuron
i = (c H' + y') W' + x'. Pooled source (c', y, x) reaches neuron (c, y - u, x - v) for every kernel
offset (u, v) that keeps it inside the output map, through weight W[c, c', u, v]. The tables list,
per pooled source, its targets and the flat index of their weight (CSR):

    targets[ptr[p]:ptr[p + 1]]   neuron indices,   weight_index[...]   flat indices into W (C, C_in, K, K)

so a border pixel has fewer targets (the exact synaptic-operation count) and nothing is padded.
A fully connected layer needs no table: every neuron is a target, through the weight row of the
pooled source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from snnbp.architecture import LayerSpec


@dataclass(frozen=True)
class LayerTables:
    """Connectivity of one layer of a layered network (module doc); all arrays read-only by convention.

    kind: "conv" or "fc"; n_maps C and locations HW (fc: C = N neurons, HW = 1): neuron i belongs to
    map i // HW (its threshold) and location i % HW (its WTA group: the C maps at one location).
    pool_map (S_raw,) int32: source -> pooled source; pool_scale: 1 / K^2 (1 without pooling).
    ptr (S + 1,) int64, targets (nnz,) int32, weight_index (nnz,) int32: conv only (empty for fc).
    """

    kind: str
    n_maps: int
    n_locations: int
    pool_map: np.ndarray
    pool_scale: float
    ptr: np.ndarray
    targets: np.ndarray
    weight_index: np.ndarray

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


def conv_tables(in_shape: tuple[int, int, int], n_maps: int, kernel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ptr, targets, weight_index) of a valid, stride-1 convolution of ``in_shape`` (C_in, H, W)."""
    C_in, H, W = in_shape
    K, C = kernel, n_maps
    Ho, Wo = H - K + 1, W - K + 1
    rows_t, rows_w, counts = [], [], np.zeros(C_in * H * W, np.int64)
    for ci in range(C_in):
        for y in range(H):
            for x in range(W):
                # u, v descending: targets come out in ascending neuron index (the order spikes are passed on)
                us = [u for u in range(K - 1, -1, -1) if 0 <= y - u < Ho]
                vs = [v for v in range(K - 1, -1, -1) if 0 <= x - v < Wo]
                t, w = [], []
                for c in range(C):
                    for u in us:
                        for v in vs:
                            t.append((c * Ho + (y - u)) * Wo + (x - v))
                            w.append(((c * C_in + ci) * K + u) * K + v)
                rows_t.append(t)
                rows_w.append(w)
                counts[(ci * H + y) * W + x] = len(t)
    ptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    targets = np.fromiter((i for r in rows_t for i in r), np.int32, count=int(ptr[-1]))
    weight_index = np.fromiter((i for r in rows_w for i in r), np.int32, count=int(ptr[-1]))
    return ptr, targets, weight_index


_CACHE: dict[tuple, LayerTables] = {}


def layer_tables(spec: LayerSpec, in_shape: tuple[int, ...], pooled_in: tuple[int, ...],
                 out_shape: tuple[int, ...]) -> LayerTables:
    """Tables of one layer: ``in_shape`` is what it reads before pooling, ``pooled_in`` after
    (architecture.layer_io_shapes), ``out_shape`` its neurons. Cached per shape (pure function)."""
    key = (str(spec), tuple(in_shape), tuple(pooled_in))
    if key not in _CACHE:
        pm = pool_map(tuple(in_shape), spec.pool) if spec.pool > 1 else np.arange(math.prod(in_shape), dtype=np.int32)
        scale = 1.0 / (spec.pool * spec.pool)
        if spec.kind == "conv":
            ptr, tgt, wix = conv_tables(tuple(pooled_in), spec.size, spec.kernel)
            _CACHE[key] = LayerTables("conv", spec.size, out_shape[1] * out_shape[2], pm, scale, ptr, tgt, wix)
        else:
            empty = np.zeros(0, np.int32)
            _CACHE[key] = LayerTables("fc", spec.size, 1, pm, scale, np.zeros(1, np.int64), empty, empty)
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
