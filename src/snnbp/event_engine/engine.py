"""Event engine: the paper's exact event-driven simulation of a ``Network`` on a batch of samples.

This wrapper allocates the output arrays and calls the compiled kernel (event_engine/kernels.py, which
documents the semantics). Samples run in parallel on all cores (numba prange); each sample is
simulated sequentially in continuous time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnbp.data.events import EventBatch
from snnbp.event_engine.kernels import simulate_batch
from snnbp.model import Network


@dataclass
class ForwardResult:
    """What one presentation of a batch leaves behind (all arrays indexed by sample first).

    x_in:     (B, M_0) float32 input traces x_k(t_end)
    traces:   per layer (B, N_l) float32 output traces a_i(t_end) (= next layer's input traces)
    counts:   per layer (B, N_l) int32 spike counts
    dth:      per layer (B, N_l) float32 homeostatic threshold change (zero unless training)
    unmet:    per layer (B, N_l) float32 homeostatic decrement refused by the threshold floor
    synops:   (B,) int64 synaptic operations (each event times its fan-out, metrics/operations.py)
    readout_counts: (B, R, N_L) int32 output counts at each readout time
    readout_synops: (B, R) int64 synaptic operations at each readout time
    lateral_ops:     (B,) int64 lateral-inhibition updates (each WTA spike times its group size - 1)
    readout_lateral: (B, R) int64 lateral-inhibition updates at each readout time
    """

    x_in: np.ndarray
    traces: list[np.ndarray]
    counts: list[np.ndarray]
    dth: list[np.ndarray]
    unmet: list[np.ndarray]
    synops: np.ndarray
    readout_counts: np.ndarray
    readout_synops: np.ndarray
    lateral_ops: np.ndarray
    readout_lateral: np.ndarray
    spike_log: list[np.ndarray] | None = None  # per sample (n, 3): layer, neuron, t_us (record_spikes > 0)

    @property
    def output_counts(self) -> np.ndarray:
        return self.counts[-1]

    def predictions(self) -> np.ndarray:
        """argmax of output spike counts; ties (including all-silent outputs) go to the lowest index."""
        return self.output_counts.argmax(axis=1)


def _outputs(net: Network, B: int, n_thresholds: list[int], readout_times_us, record_spikes: int) -> tuple:
    """Zeroed output arrays of one forward call (ForwardResult's fields; dth and unmet per threshold)."""
    sizes = net.sizes
    readout = np.zeros(0) if readout_times_us is None else np.asarray(readout_times_us, np.float64)
    return (readout, np.zeros((B, net.n_inputs), np.float32),
            tuple(np.zeros((B, n), np.float32) for n in sizes), tuple(np.zeros((B, n), np.int32) for n in sizes),
            tuple(np.zeros((B, n), np.float32) for n in n_thresholds),
            tuple(np.zeros((B, n), np.float32) for n in n_thresholds),
            np.zeros((B, len(readout), sizes[-1]), np.int32), np.zeros((B, len(readout), 2), np.int64),
            np.zeros((B, 2), np.int64), np.zeros((B, int(record_spikes), 3)), np.zeros(B, np.int64))


def _result(x_in, traces, counts, dth, unmet, ops, readout_counts, readout_ops, log) -> ForwardResult:
    """ForwardResult from the kernel's arrays; ops (B, 2) and readout_ops (B, R, 2) hold (synaptic, lateral)."""
    return ForwardResult(x_in, list(traces), list(counts), list(dth), list(unmet), ops[:, 0].copy(), readout_counts,
                         readout_ops[..., 0].copy(), ops[:, 1].copy(), readout_ops[..., 1].copy(), log)


def run_events(
    net: Network,
    batch: EventBatch,
    train: bool = False,
    rho: float = 0.0,
    readout_times_us: np.ndarray | None = None,
    record_spikes: int = 0,
) -> ForwardResult:
    """Simulate every sample of ``batch`` through ``net``; thresholds and weights are not modified.

    record_spikes: log up to this many spikes per sample (layer, neuron, time) for rasters.
    A layered network (conv / pool layers) runs in event_engine/layered.py; its dth and unmet are
    per feature map, (B, C_l).
    """
    batch.validate(net.n_inputs)
    if net.is_spatial:
        return _run_layered(net, batch, train, rho, readout_times_us, record_spikes)
    sizes = net.sizes
    readout, x_in, traces, counts, dth, unmet, readout_counts, readout_ops, ops, spike_log, n_logged = \
        _outputs(net, len(batch), sizes, readout_times_us, record_spikes)
    p = net.neuron
    simulate_batch(
        tuple(net.weights), tuple(np.ones(n, np.float32) for n in sizes),
        tuple(np.zeros(n, np.float32) for n in sizes), tuple(net.thresholds), np.asarray(net.kappas, np.float64),
        np.asarray(net.floors, np.float64), batch.channels, batch.times_us, batch.offsets,
        batch.t_end_us, p.tau_us, p.t_ref_us, p.w_d0, p.gamma, bool(train), float(rho), readout,
        x_in, traces, counts, dth, unmet, readout_counts, ops, readout_ops, spike_log, n_logged,
    )
    log = [spike_log[b, : n_logged[b]] for b in range(len(batch))] if record_spikes else None
    return _result(x_in, traces, counts, dth, unmet, ops, readout_counts, readout_ops, log)


def _layered_arrays(net: Network) -> tuple:
    """The per-layer argument tuples of layered.simulate_layered_batch (connectivity.py)."""
    from snnbp.event_engine.connectivity import network_tables
    from snnbp.event_engine.layered import CONV, FC

    tables = network_tables(net)
    kinds, w2d, wflat = [], [], []
    for tab, w in zip(tables, net.weights):
        scale = np.float32(tab.pool_scale)
        if tab.kind == "conv":
            kinds.append(CONV)
            w2d.append(np.zeros((1, 1), np.float32))
            # (C, C_in, K, K) -> (K, C_in, K reversed, C): one kernel row's weights for neighbouring locations
            # contiguous (layered._conv_event)
            wflat.append(np.ascontiguousarray(w[:, :, :, ::-1].transpose(2, 1, 3, 0)).reshape(-1) * scale)
        else:
            kinds.append(FC)
            w2d.append(np.ascontiguousarray(w * scale) if scale != 1 else w)
            wflat.append(np.zeros(1, np.float32))
    geoms = [t.geometry for t in tables]
    return (np.asarray(kinds, np.int64), tuple(w2d), tuple(wflat), tuple(geoms),
            tuple(t.pool_map for t in tables), np.asarray([t.n_locations for t in tables], np.int64),
            tuple(np.ascontiguousarray(t.reshape(-1), np.float64) for t in net.thresholds))


def _run_layered(net: Network, batch: EventBatch, train: bool, rho: float, readout_times_us, record_spikes: int):
    from snnbp.event_engine.layered import simulate_layered_batch

    B = len(batch)
    readout, x_in, traces, counts, dth, unmet, readout_counts, readout_ops, ops, spike_log, n_logged = \
        _outputs(net, B, [int(t.size) for t in net.thresholds], readout_times_us, record_spikes)
    p = net.neuron
    simulate_layered_batch(
        *_layered_arrays(net), np.asarray(net.kappas, np.float64), np.asarray(net.floors, np.float64),
        batch.channels, batch.times_us, batch.offsets, batch.t_end_us, p.tau_us, p.t_ref_us, p.w_d0, p.gamma,
        bool(train), float(rho), readout, x_in, traces, counts, dth, unmet, readout_counts, ops, readout_ops,
        spike_log, n_logged,
    )
    log = [spike_log[b, : n_logged[b]] for b in range(B)] if record_spikes else None
    return _result(x_in, traces, counts, dth, unmet, ops, readout_counts, readout_ops, log)
