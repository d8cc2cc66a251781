"""Compiled core of the event engine: one presentation of one sample, in continuous time.

Semantics (Lee et al. 2016, docs/method.md sections 2 and 10; the order is part of the contract and is
what the tests check by hand):

An input event (channel k, time t) is handled by the whole network before the next event, layer by
layer at the same timestamp (no synaptic delay): layer 1 processes the input event, then layer 2
processes each spike that layer 1 emitted (ascending neuron index), and so on. When a fully connected
layer receives one event from source j at time t, every neuron i of the layer:

  1. decays:        V_i <- V_i * exp(-(t - t_last) / tau_mp)                       (eq. 1)
  2. integrates:    V_i <- V_i + W[j, i] * w_dyn_i(t)       (refractory dynamic weight, 2.2)
  3. fires at most once per incoming event if V_i >= V_th,i, then V_i <- V_i - gamma V_th,i   (eq. 2)
     (one reset per event, no upper clip: the residual is kept, which keeps the trace identity
     V = sum_k w x_k - gamma V_th a + ... exact; docs/method.md 10.6)
  4. WTA layers: each of the n_s spikes of this step adds kappa V_th,i to every *other* neuron i,
     i.e. V_i += kappa V_th,i (n_s - [i fired])                                   (eq. 4)
  5. clips:         V_i <- max(V_i, -V_th,i)
  6. training only, threshold homeostasis (4.4): if n_s > 0 neurons fired, each firing neuron's
     threshold rises by rho N and then every threshold of the layer drops by rho n_s; a threshold
     never goes below the layer's floor: its refused decrement is taken from the neurons above the
     floor (so the layer's sum is conserved) and returned as ``unmet`` so the trainer can raise that
     neuron's weights instead (``_homeostasis``, gradient.lee2016.enforce_floor).

Thresholds, resets and inhibition use the threshold in force when the spike happens; homeostasis
acts on a sample-local copy of the thresholds, which the trainer commits after the sample. The
network's thresholds are float64 (model.Network); integration compares float32 potentials against a
float32 mirror of them, homeostasis accumulates in float64 (``_homeostasis`` says why).

Traces (3.1) are kept incrementally, decayed on access: x_k for input channels, a_i for neurons;
both include events at t <= t_end and are read at t_end. Memory is O(neurons + synapses), not
O(presentation length).

Synaptic operations: an event arriving at a layer of N neurons costs N ops; a spike in a WTA layer
of N neurons costs N - 1 more (the inhibition it delivers).
"""

from __future__ import annotations


import numba
import numpy as np

from snnbp.neuron import decay_factor, refractory_weight, spread_above_floor


@numba.njit(cache=True)
def _homeostasis(th, th64, spikers, first, stop, rho, floor, unmet):
    """Threshold homeostasis after one input event that made n_s = stop - first neurons fire (4.4).

    Each firing neuron's threshold rises by rho N; then the layer gives back the same total,
    rho n_s N, as a decrement of rho n_s per neuron. A neuron whose threshold would go below the
    floor stops there; its refusal is added to ``unmet`` (the trainer turns it into a weight raise,
    gradient.lee2016.enforce_floor) and is taken from the neurons still above the floor instead
    (water-filling: equal extra shares, capped at each neuron's distance to the floor). So the sum
    of the layer's thresholds is conserved unless every neuron sits at the floor. Without this
    redistribution the floor breaks the zero sum and the thresholds ratchet upward (measured:
    mean hidden V_th 0.19 -> 2.4 in 3 epochs, results/paper-protocol-short/README.md, run `base`).

    The arithmetic is float64 on ``th64`` (N,), then mirrored into the float32 ``th`` the
    integration reads. Late in the paper's schedule rho n_s (~1e-8) is below half a float32 ulp of
    a threshold near 1 (6e-8) while the spiker's rise rho N is not: in float32 every decrement
    rounded away and the sum only climbed (results/mnist-800-float32-thresholds: hidden V_th 0.82 -> 1.2 and output
    spikes 1.8 -> 1.1 per sample over the last 40 epochs).
    """
    N = th64.shape[0]
    n_s = stop - first
    up = rho * N
    for s in range(first, stop):
        th64[spikers[s]] += up
    down = rho * n_s
    refused = 0.0
    n_open = 0
    for i in range(N):  # selects, not branches, so the loop vectorizes
        v = th64[i] - down
        below = v < floor
        r = (floor - v) if below else 0.0
        unmet[i] += r
        refused += r
        th64[i] = floor if below else v
        n_open += np.int32(v > floor)
    if refused > 0.0 and n_open > 0:  # spread what the floor refused over the neurons above it
        spread_above_floor(th64, floor, refused, n_open)
    for i in range(N):
        th[i] = np.float32(th64[i])


@numba.njit(cache=True, fastmath={"reassoc"})
def _integrate(V, row, off, wdyn, th, d32):
    """Steps 1, 2 and 5 for every neuron; returns how many are now at or above threshold.

    V_i <- max(V_i d + (W[j, i] + off_i) w_dyn,i, -V_th,i) (off: column offsets, zeros unless the
    fused SGD step keeps a floor compensation lazily; w_dyn includes the column scale). This loop is where the engine spends its time (N
    multiply-adds per input event), so it is written for LLVM's vectorizer: float32 throughout, a
    select for the clip, and the count kept as a float32 sum of 0/1 (exact below 2^24), which
    vectorizes once reassociation is allowed ("reassoc", the only fast-math flag, set on this
    function alone; it may reorder the sum of exact integers, nothing else). 3x faster than an
    integer count, which LLVM left scalar (benchmarks/README.md).
    """
    acc = np.float32(0.0)
    for i in range(V.shape[0]):
        v = V[i] * d32 + (row[i] + off[i]) * wdyn[i]
        lo = -th[i]
        v = v if v > lo else lo
        V[i] = v
        acc += np.float32(1.0) if v >= th[i] else np.float32(0.0)
    return int(acc)


@numba.njit(cache=True)
def refresh_refractory(t, last_spike, wdyn, cs, refr, in_refr, n_refr, tref_us, wd0):
    """wdyn[i] = refractory weight at time t times cs[i] for the neurons in refr[:n_refr] (the recently
    fired, marked in in_refr); drops those that have recovered. Returns the new n_refr."""
    r = 0
    while r < n_refr:
        i = refr[r]
        w = refractory_weight(t - last_spike[i], tref_us, wd0)
        wdyn[i] = w * cs[i]
        if w >= 1.0:
            in_refr[i] = False
            n_refr -= 1
            refr[r] = refr[n_refr]
        else:
            r += 1
    return n_refr


@numba.njit(cache=True)
def _layer_event(W, off, j, t, V, th, th64, state, last_spike, wdyn, cs, refr, in_refr, a_val, a_t, count,
                 kappa, floor, gamma, tau_us, tref_us, wd0, train, rho, unmet, out_buf, n_out):
    """One input event from source j at time t into one fully connected layer (steps 1-6 above).

    state[0] = time of the layer's last update (us), state[1] = number of neurons in ``refr``.
    cs, off (N,) float32: column scale and offset of W, the effective weight of synapse j -> i is
    (W[j, i] + off[i]) cs[i] (ones / zeros except inside the fused SGD step); the scale is folded
    into the dynamic weight, wdyn[i] = w_dyn,i cs[i].
    Spiking neuron indices are appended to ``out_buf`` from position n_out; returns the new
    (out_buf, n_out, n_spikes). ``out_buf`` grows when full.
    th (N,) float32: the thresholds spiking, reset and inhibition use; th64 (N,) float64: the same
    thresholds at full precision, where homeostasis accumulates (``_homeostasis``).
    """
    N = V.shape[0]
    d = decay_factor(t - state[0], tau_us)
    state[0] = t
    # Refractory neurons: refresh their dynamic weight; drop those whose T_ref has passed.
    n_refr = refresh_refractory(t, last_spike, wdyn, cs, refr, in_refr, int(state[1]), tref_us, wd0)
    # Steps 1, 2 and 5 fused (clipping before the spike test cannot change the test).
    n_above = _integrate(V, W[j], off, wdyn, th, np.float32(d))
    if n_above == 0:
        state[1] = n_refr
        return out_buf, n_out, 0
    # Step 3: spikes, reset by subtraction, traces, refractory bookkeeping.
    # The spikers' indices are collected branch-free (every i is written, the cursor advances only
    # for a spiker), then handled one by one: a scan with a data-dependent branch per neuron cost
    # several times the integration loop whenever any neuron fired (benchmarks/README.md).
    if n_out + N > out_buf.shape[0]:
        grown = np.empty(max(2 * out_buf.shape[0], n_out + N), dtype=out_buf.dtype)
        grown[:n_out] = out_buf[:n_out]
        out_buf = grown
    first = n_out
    for i in range(N):
        out_buf[n_out] = i
        n_out += np.int32(V[i] >= th[i])
    n_s = n_out - first
    for s in range(first, n_out):
        i = out_buf[s]
        V[i] -= gamma * th[i]
        count[i] += 1
        a_val[i] = a_val[i] * decay_factor(t - a_t[i], tau_us) + 1.0
        a_t[i] = t
        last_spike[i] = t
        wdyn[i] = refractory_weight(0.0, tref_us, wd0) * cs[i]
        if not in_refr[i] and tref_us > 0.0:
            in_refr[i] = True
            refr[n_refr] = i
            n_refr += 1
    state[1] = n_refr
    # Step 4: winner-take-all inhibition, proportional to the inhibited neuron's threshold.
    if kappa != 0.0:
        # Spikers are inhibited by the n_s - 1 others only: remember their potential, then run one
        # vectorizable pass (inhibit by all n_s, clip = step 5) and redo the spikers exactly.
        keep = np.empty(n_s, np.float32)
        for s in range(first, n_out):
            keep[s - first] = V[out_buf[s]]
        k32 = np.float32(kappa * n_s)
        for i in range(N):
            v = V[i] + k32 * th[i]
            lo = -th[i]
            V[i] = v if v > lo else lo
        k_others = np.float32(kappa * (n_s - 1))
        for s in range(first, n_out):
            i = out_buf[s]
            v = keep[s - first] + k_others * th[i]
            V[i] = v if v > -th[i] else -th[i]
    # Step 6: threshold homeostasis (training only).
    if train and rho > 0.0:
        _homeostasis(th, th64, out_buf, n_out - n_s, n_out, rho, floor, unmet)
    return out_buf, n_out, n_s


@numba.njit(cache=True)
def _log_spikes(spike_log, b, n, layer, buf, start, stop, t):
    """Append spikes buf[start:stop] of ``layer`` at time t to spike_log[b] while room is left."""
    for s in range(start, stop):
        if n >= spike_log.shape[1]:
            break
        spike_log[b, n, 0] = layer
        spike_log[b, n, 1] = buf[s]
        spike_log[b, n, 2] = t
        n += 1
    return n


@numba.njit(cache=True)
def _record_readout(readout_counts, readout_ops, b, r, count, synops, lateral):
    """Row r of sample b's readouts: the output layer's counts, synaptic and lateral operations so far."""
    for i in range(count.shape[0]):
        readout_counts[b, r, i] = count[i]
    readout_ops[b, r, 0] = synops
    readout_ops[b, r, 1] = lateral


@numba.njit(cache=True)
def _trace_at(out, val, t_last, t_end, tau_us):
    """out[i] = val[i] decayed from t_last[i] to t_end (0 where no event ever came): traces read at t_end (3.1)."""
    for i in range(val.shape[0]):
        out[i] = val[i] * decay_factor(t_end - t_last[i], tau_us) if val[i] != 0.0 else 0.0


@numba.njit(cache=True)
def simulate_sample(weights, col_scales, col_offsets, thresholds, kappas, floors, channels, times, t_end,
                    tau_us, tref_us, wd0, gamma, train, rho, readout_times,
                    b, x_out, a_out, count_out, dth_out, unmet_out, readout_counts, readout_ops,
                    spike_log, n_logged):
    """Run one presentation; write sample b's row of every output array; return its operation counts.

    Returns (synaptic operations, lateral-inhibition updates) (metrics/operations.py defines them): an
    event reaching a layer of N neurons costs N synaptic operations (its fan-out), and every spike of a
    WTA layer N - 1 lateral updates of its peers.

    weights:     tuple of (M_l, N_l) float32; thresholds: tuple of (N_l,) float64 (not modified)
    col_scales, col_offsets: tuples of (N_l,) float32: effective weights are
                 (weights[l] + col_offsets[l]) * col_scales[l] (per column); ones / zeros except inside
                 the fused SGD step, which keeps the eq. 13 shrinkage and the floor compensation lazily
    kappas, floors: (L,) float64
    channels:    (E,) int32 input channel per event; times: (E,) float64 us, non-decreasing
    t_end:       time (us) at which traces are read
    readout_times: (R,) float64 us, sorted; output-layer counts and operations so far are recorded at
                 each (events at t <= readout time included) into readout_counts[b] (R, N_L),
                 readout_ops[b] (R, 2) (synaptic, lateral)
    x_out[b] (M_0,), a_out[l][b] (N_l,), count_out[l][b] (N_l,) int32: traces and counts at t_end
    dth_out[l][b] (N_l,): net homeostatic threshold change; unmet_out[l][b]: decrement the floor refused
    spike_log[b] (K, 3) float64: the first K spikes as (layer, neuron, t_us); n_logged[b] their count
                 (K = 0 disables logging; used for spike rasters)
    """
    L = len(weights)
    M0 = weights[0].shape[0]
    # Per-layer state; lists of arrays are fine in nopython mode.
    V = [np.zeros(weights[l].shape[1], np.float32) for l in range(L)]
    th64 = [thresholds[l].copy() for l in range(L)]  # sample-local; homeostasis acts here
    th = [thresholds[l].astype(np.float32) for l in range(L)]  # what integration compares against
    last_spike = [np.full(weights[l].shape[1], -1e300) for l in range(L)]
    wdyn = [col_scales[l].astype(np.float32) for l in range(L)]  # copy: w_dyn = 1 times the scale
    refr = [np.empty(weights[l].shape[1], np.int32) for l in range(L)]
    in_refr = [np.zeros(weights[l].shape[1], np.bool_) for l in range(L)]
    a_val = [np.zeros(weights[l].shape[1], np.float64) for l in range(L)]
    a_t = [np.zeros(weights[l].shape[1], np.float64) for l in range(L)]
    count = [np.zeros(weights[l].shape[1], np.int32) for l in range(L)]
    unmet = [np.zeros(weights[l].shape[1], np.float64) for l in range(L)]
    state = [np.zeros(2, np.float64) for l in range(L)]
    bufs = [np.empty(max(16, weights[l].shape[1]), np.int32) for l in range(L)]
    W0, V0, th0, th64_0, state0, last_spike0 = weights[0], V[0], th[0], th64[0], state[0], last_spike[0]
    wdyn0, refr0, in_refr0, a_val0, a_t0 = wdyn[0], refr[0], in_refr[0], a_val[0], a_t[0]
    cs0, off0 = col_scales[0], col_offsets[0]
    count0, unmet0, buf0 = count[0], unmet[0], bufs[0]
    kappa0, floor0, N0 = kappas[0], floors[0], weights[0].shape[1]
    K = spike_log.shape[1]
    x_val = np.zeros(M0, np.float64)
    x_t = np.zeros(M0, np.float64)
    synops = 0
    lateral = 0
    R = readout_times.shape[0]
    r = 0
    out_l = L - 1
    n_events = channels.shape[0]
    for e in range(n_events):
        t = times[e]
        while r < R and readout_times[r] < t:
            _record_readout(readout_counts, readout_ops, b, r, count[out_l], synops, lateral)
            r += 1
        k = channels[e]
        x_val[k] = x_val[k] * decay_factor(t - x_t[k], tau_us) + 1.0
        x_t[k] = t
        # Layer 0 receives every input event: its state is hoisted out of the per-layer lists,
        # because taking an array out of a list costs reference counting on every event.
        synops += N0
        buf0, n_cur, n_s = _layer_event(
            W0, off0, k, t, V0, th0, th64_0, state0, last_spike0, wdyn0, cs0, refr0, in_refr0, a_val0, a_t0, count0,
            kappa0, floor0, gamma, tau_us, tref_us, wd0, train, rho, unmet0, buf0, 0)
        if kappa0 != 0.0:
            lateral += n_s * (N0 - 1)
        if K > 0:
            n_logged[b] = _log_spikes(spike_log, b, n_logged[b], 0, buf0, 0, n_cur, t)
        cur = buf0
        for l in range(1, L):
            if n_cur == 0:
                break
            N = weights[l].shape[1]
            n_out = 0
            buf = bufs[l]
            for s in range(n_cur):
                synops += N
                buf, n_out, n_s = _layer_event(
                    weights[l], col_offsets[l], cur[s], t, V[l], th[l], th64[l], state[l], last_spike[l], wdyn[l], col_scales[l], refr[l],
                    in_refr[l], a_val[l], a_t[l], count[l], kappas[l], floors[l], gamma, tau_us,
                    tref_us, wd0, train, rho, unmet[l], buf, n_out)
                if kappas[l] != 0.0:
                    lateral += n_s * (N - 1)
                if K > 0:
                    n_logged[b] = _log_spikes(spike_log, b, n_logged[b], l, buf, n_out - n_s, n_out, t)
            bufs[l] = buf
            cur = buf
            n_cur = n_out
    while r < R:
        _record_readout(readout_counts, readout_ops, b, r, count[out_l], synops, lateral)
        r += 1
    # Traces at t_end (3.1), decayed on access.
    _trace_at(x_out[b], x_val, x_t, t_end, tau_us)
    for l in range(L):
        _trace_at(a_out[l][b], a_val[l], a_t[l], t_end, tau_us)
        for i in range(a_val[l].shape[0]):
            count_out[l][b, i] = count[l][i]
            dth_out[l][b, i] = th64[l][i] - thresholds[l][i]
            unmet_out[l][b, i] = unmet[l][i]
    return synops, lateral


@numba.njit(cache=True, parallel=True, nogil=True)
def simulate_batch(weights, col_scales, col_offsets, thresholds, kappas, floors, channels, times, offsets, t_end,
                   tau_us, tref_us, wd0, gamma, train, rho, readout_times,
                   x_out, a_out, count_out, dth_out, unmet_out, readout_counts, ops_out, readout_ops,
                   spike_log, n_logged):
    """``simulate_sample`` for every sample of a CSR batch, samples in parallel on all cores.

    ops_out (B, 2) int64: (synaptic, lateral) operations per sample; readout_ops (B, R, 2).
    """
    B = offsets.shape[0] - 1
    for b in numba.prange(B):
        s, e = offsets[b], offsets[b + 1]
        ops_out[b, 0], ops_out[b, 1] = simulate_sample(
            weights, col_scales, col_offsets, thresholds, kappas, floors, channels[s:e], times[s:e], t_end[b],
            tau_us, tref_us, wd0, gamma, train, rho, readout_times,
            b, x_out, a_out, count_out, dth_out, unmet_out, readout_counts, readout_ops, spike_log, n_logged)
