"""Compiled core of the event engine for layered networks: convolutional, pooled and fully connected layers.

The neuron is the one of event_engine/kernels.py (exact decay, refractory weight, one reset by
subtraction per incoming event, WTA, clip at -V_th, homeostasis, in that order); a layer only decides
who receives an event and which neurons share a threshold and a WTA group (connectivity.py):

Conv layer "conv:C:K", neuron i = (c, y', x') of C maps at HW = H' W' locations, an event from pooled
source p at time t (the reading of dense/conv.py, event by event):
  1-2. every target i of p (the neurons whose receptive field holds p; fewer at the borders) decays
       from its own last update, V_i <- V_i exp(-(t - t_i) / tau_mp), and integrates
       W[c, c', u, v] / K_pool^2 times its refractory weight (neurons that are not targets are untouched:
       their decay is applied when they are next touched, which is exact);
  3.   every target at or above its map's threshold V_th,c fires once: V_i <- V_i - gamma V_th,c;
  4.   WTA (kappa != 0): the C maps at one location are a group; a location where n_s targets fired adds
       kappa V_th,c' (n_s - [i fired]) to each of its C neurons (decayed to t first);
  5.   clip V_i >= -V_th,c (after integration and after inhibition, as the fully connected layer);
  6.   training only, homeostasis per map: each spike raises its map's threshold by rho C / HW and every
       map's threshold drops by rho n_s / HW (the fully connected rule with N = C, averaged over the
       locations that share the threshold; dense/conv.py), with the floor handled by
       kernels._homeostasis (water-filling, refused decrements returned as ``unmet``).
Only targets test their threshold, as in the dense engine (a neuron tests only in a step in which its
receptive field received an event). Spikes of a layer are passed on in ascending neuron index.

A fully connected layer inside a layered network is kernels._layer_event itself (all N neurons, the
weight row of the pooled source; a pooled input carries W / K^2).

Synaptic operations: an event costs one op per target (conv: exactly the receptive-field neurons it
reaches, fewer at the borders; fc: N) and a spike in a WTA layer C - 1 (fc: N - 1) more.
"""

from __future__ import annotations

import numba
import numpy as np

from snnbp.event_engine.kernels import (_homeostasis, _layer_event, _log_spikes, _record_readout, _trace_at,
                                        refresh_refractory)
from snnbp.neuron import decay_factor, refractory_weight

FC, CONV = 0, 1  # layer kinds in compiled code


RENORM_LOG = 14.0  # a conv layer's frame moves when G = exp((t - t_f) / tau_mp) would exceed e^14 (~1.2e6)


@numba.njit(cache=True, fastmath={"reassoc"})
def _integrate_row(U, ubase, Wr, wbase, wdyn, thT, G32, n):
    """Steps 1, 2 and 5 for one kernel row of an event: the n = n_v C neurons of n_v neighbouring
    locations (all C maps of each), U[ubase + k] += Wr[wbase + k] G wdyn, clipped at -V_th G; returns
    how many are now at or above V_th G. thT is the per-map threshold tiled K times (thT[k] = V_th,c G,
    c = k mod C). The three arrays are read as slices of one contiguous run each, so the loop has no
    index arithmetic left (numba cannot prove ``base + c`` non-negative and would not vectorize it)."""
    u = U[ubase:ubase + n]
    w = Wr[wbase:wbase + n]
    d = wdyn[ubase:ubase + n]
    th = thT[:n]
    acc = np.float32(0.0)
    for k in range(n):
        v = u[k] + w[k] * (G32 * d[k])
        low = -th[k]
        v = v if v > low else low
        u[k] = v
        acc += np.float32(1.0) if v >= th[k] else np.float32(0.0)
    return int(acc)


@numba.njit(cache=True, inline="always")
def _conv_event(Wt, geom, p, t, U, state, last_spike, wdyn, ones, refr, in_refr, th, th64, thG, kappa, floor, gamma,
                tau_us, tref_us, wd0, train, rho, unmet, count, a_val, a_t, fired, map_buf, out_buf, n_out):
    """One event from pooled source p at time t into a conv layer (module doc, steps 1-6); returns
    (out_buf, n_out, n_spikes, synaptic operations).

    geom (6,) int64 = (C_in, H, W, K, H', W'); pooled source p = (c' H + y) W + x reaches, for every
    kernel offset (u, v) with y' = y - u, x' = x - v inside the output map, the C maps at (y', x')
    through W[c, c', u, v]: a border pixel reaches fewer locations (the exact operation count).
    Wt: the weights as (K, C_in, K, C) with the second kernel axis reversed, Wt[u, c', K-1-v, c] =
    W[c, c', u, v], flat, already / K_pool^2: the weights of one kernel row u for the n_v neighbouring
    locations an event reaches are one contiguous run, matching their channels-last states
    (_integrate_row). The layer's state is kept channels-last, j = (y' W' + x') C + c, so one location's C
    maps (one WTA group) are contiguous too; spikes leave in the network's order, neuron
    i = (c H' + y') W' + x', ascending.

    The potentials are kept in a decaying frame: V_j(t) = U_j exp(-(t - t_f) / tau_mp) with one frame
    time t_f per layer (state[0]), so decay costs nothing per neuron: an input w adds w G to U_j,
    G = exp((t - t_f) / tau_mp), and every comparison with V_th scales the threshold by G (thG, per map)
    instead. When G would exceed e^RENORM_LOG the frame moves to t (U *= 1/G, one sweep). This is the
    exact decay of the module doc; only float32 rounding differs from decaying each touched neuron on
    access (an exp per touched neuron, which cost most of the time).
    Refractory weights: wdyn (N,) float32 (1 outside T_ref), refreshed per event for the neurons in
    refr[:state[1]] (the recently fired; in_refr marks them), as kernels._layer_event does (ones: its
    column scales, all 1 here). U, last_spike, wdyn, count, a_val, a_t, fired, in_refr (N,): per neuron,
    channels-last; th (C,) float32, th64 (C,) float64 per map; thG (K C,) and map_buf scratch. Spiking
    neurons are appended to out_buf (network order) from n_out (grown when full).
    """
    C_in, H, W, K, Ho, Wo = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    C = th.shape[0]
    HW = Ho * Wo
    g = (t - state[0]) / tau_us
    if g > RENORM_LOG:
        inv = np.float32(np.exp(-g))
        for j in range(U.shape[0]):
            U[j] *= inv
        state[0] = t
        g = 0.0
    G = np.exp(g)
    G32 = np.float32(G)
    n_refr = int(state[1])
    if n_refr > 0:
        n_refr = refresh_refractory(t, last_spike, wdyn, ones, refr, in_refr, n_refr, tref_us, wd0)
    for c in range(C):
        thG[c] = np.float32(th[c] * G)
    for k in range(1, K):  # tiled: thG[k C + c] = V_th,c G (_integrate_row)
        for c in range(C):
            thG[k * C + c] = thG[c]
    ci = p // (H * W)
    y = (p // W) % H
    x = p % W
    u_lo, u_hi = max(0, y - Ho + 1), min(K - 1, y)
    v_lo, v_hi = max(0, x - Wo + 1), min(K - 1, x)
    n_v = v_hi - v_lo + 1
    n_loc = (u_hi - u_lo + 1) * n_v
    if n_out + n_loc * C > out_buf.shape[0]:
        grown = np.empty(max(2 * out_buf.shape[0], n_out + n_loc * C), dtype=out_buf.dtype)
        grown[:n_out] = out_buf[:n_out]
        out_buf = grown
    first = n_out
    n_row = n_v * C
    for u in range(u_lo, u_hi + 1):
        # Kernel row u: offsets v = v_hi .. v_lo reach locations q0 .. q0 + n_v - 1 (ascending), whose
        # channels-last states are one run, as are their weights in the (K, C_in, K reversed, C) layout.
        q0 = (y - u) * Wo + (x - v_hi)
        ubase = q0 * C
        if _integrate_row(U, ubase, Wt, ((u * C_in + ci) * K + (K - 1 - v_hi)) * C, wdyn, thG, G32, n_row) > 0:
            for k in range(n_row):
                if U[ubase + k] >= thG[k]:
                    out_buf[n_out] = (k % C) * HW + q0 + k // C  # network order
                    n_out += 1
    n_s = n_out - first
    if n_s == 0:
        state[1] = n_refr
        return out_buf, n_out, 0, n_loc * C
    if n_s > 1:
        out_buf[first:n_out].sort()  # ascending network index: the order spikes are passed on
    for s in range(first, n_out):  # step 3
        i = out_buf[s]
        c = i // HW
        j = (i - c * HW) * C + c
        U[j] -= np.float32(gamma * th[c] * G)
        count[j] += 1
        a_val[j] = a_val[j] * decay_factor(t - a_t[j], tau_us) + 1.0
        a_t[j] = t
        last_spike[j] = t
        if kappa != 0.0:
            fired[j] = True  # read (and cleared) by the WTA step below
        if tref_us > 0.0:
            wdyn[j] = np.float32(refractory_weight(0.0, tref_us, wd0))
            if not in_refr[j]:
                in_refr[j] = True
                refr[n_refr] = j
                n_refr += 1
    state[1] = n_refr
    if kappa != 0.0:  # step 4, then the clip of step 5: each location with spikes, once
        for s in range(first, n_out):
            i = out_buf[s]
            q = i % HW
            base = q * C
            ns = 0  # 0: this location was done for an earlier spiker of the event
            for c in range(C):
                ns += np.int32(fired[base + c])
            if ns == 0:
                continue
            for c in range(C):
                j = base + c
                k32 = np.float32(kappa * (ns - 1)) if fired[j] else np.float32(kappa * ns)
                val = U[j] + k32 * thG[c]
                U[j] = val if val > -thG[c] else -thG[c]
            for c in range(C):
                fired[base + c] = False  # marks the location as done
    if train and rho > 0.0:  # step 6, per map
        for s in range(first, n_out):
            map_buf[s - first] = out_buf[s] // HW
        _homeostasis(th, th64, map_buf, 0, n_s, rho / HW, floor, unmet)
    return out_buf, n_out, n_s, n_loc * C


@numba.njit(cache=True)
def _conv_outputs(a_row, count_row, a_val, a_t, count, t_end, tau_us, C, HW):
    """Traces at t_end and counts of a conv layer, from its channels-last state into network order."""
    for q in range(HW):
        for c in range(C):
            j = q * C + c
            i = c * HW + q
            a_row[i] = a_val[j] * decay_factor(t_end - a_t[j], tau_us) if a_val[j] != 0.0 else 0.0
            count_row[i] = count[j]


@numba.njit(cache=True)
def simulate_layered_sample(kinds, w2d, wflat, geoms, pool_maps, n_locs, thresholds, kappas, floors,
                            channels, times, t_end, tau_us, tref_us, wd0, gamma, train, rho, readout_times,
                            b, x_out, a_out, count_out, dth_out, unmet_out, readout_counts, readout_ops,
                            spike_log, n_logged):
    """One presentation of one sample through a layered network; writes row b of the outputs, returns
    (synaptic operations, lateral updates) as kernels.simulate_sample (a conv event's fan-out is exact at
    the map's border; an event from a pooled map reaches the next layer through tied synapses, one
    operation per neuron reached).

    Per layer l (tuples indexed by l): kinds[l] FC or CONV; w2d[l] (M_l, N_l) float32 fc weights (pooled
    rows already / K^2; a (1, 1) dummy for conv); wflat[l] conv weights as (K, C_in, K reversed, C), flat,
    / K^2; geoms[l] (C_in, H, W, K, H', W') of a conv layer (``_conv_event``); pool_maps[l]: source -> pooled
    source; n_locs[l]: HW (fc 1);
    thresholds[l] (C_l,) float64 per map (fc: per neuron). Outputs as simulate_sample (kernels.py), with
    dth_out[l][b], unmet_out[l][b] per map (C_l,).
    """
    L = len(kinds)
    M0 = pool_maps[0].shape[0]
    sizes = [a_out[l].shape[1] for l in range(L)]
    V = [np.zeros(sizes[l], np.float32) for l in range(L)]
    th64 = [thresholds[l].copy() for l in range(L)]
    th = [thresholds[l].astype(np.float32) for l in range(L)]
    last_spike = [np.full(sizes[l], -1e300) for l in range(L)]
    a_val = [np.zeros(sizes[l], np.float64) for l in range(L)]
    a_t = [np.zeros(sizes[l], np.float64) for l in range(L)]
    count = [np.zeros(sizes[l], np.int32) for l in range(L)]
    unmet = [np.zeros(thresholds[l].shape[0], np.float64) for l in range(L)]
    fired = [np.zeros(sizes[l], np.bool_) for l in range(L)]
    map_buf = [np.zeros(sizes[l], np.int32) for l in range(L)]
    # conv: the per-map thresholds tiled K times (_integrate_row)
    thG = [np.zeros(thresholds[l].shape[0] * (geoms[l][3] if kinds[l] == CONV else 1), np.float32)
           for l in range(L)]
    bufs = [np.empty(max(16, sizes[l]), np.int32) for l in range(L)]
    # fully connected layers' extra state (kernels._layer_event)
    state = [np.zeros(2, np.float64) for l in range(L)]
    wdyn = [np.ones(sizes[l], np.float32) for l in range(L)]
    cs = [np.ones(sizes[l], np.float32) for l in range(L)]
    off = [np.zeros(sizes[l], np.float32) for l in range(L)]
    refr = [np.empty(sizes[l], np.int32) for l in range(L)]
    in_refr = [np.zeros(sizes[l], np.bool_) for l in range(L)]
    K = spike_log.shape[1]
    x_val = np.zeros(M0, np.float64)
    x_t = np.zeros(M0, np.float64)
    src = np.empty(1, np.int32)
    synops = 0
    lateral = 0
    R = readout_times.shape[0]
    r = 0
    out_l = L - 1
    for e in range(channels.shape[0]):
        t = times[e]
        while r < R and readout_times[r] < t:
            _record_readout(readout_counts, readout_ops, b, r, count[out_l], synops, lateral)
            r += 1
        k = channels[e]
        x_val[k] = x_val[k] * decay_factor(t - x_t[k], tau_us) + 1.0
        x_t[k] = t
        src[0] = k
        cur = src
        n_cur = 1
        for l in range(L):
            if n_cur == 0:
                break
            buf = bufs[l]
            n_out = 0
            pm = pool_maps[l]
            for s in range(n_cur):
                p = pm[cur[s]]
                if kinds[l] == CONV:
                    buf, n_out, n_s, ops = _conv_event(
                        wflat[l], geoms[l], p, t, V[l], state[l], last_spike[l], wdyn[l], cs[l], refr[l], in_refr[l], th[l],
                        th64[l], thG[l], kappas[l], floors[l], gamma, tau_us, tref_us, wd0, train, rho, unmet[l],
                        count[l], a_val[l], a_t[l], fired[l], map_buf[l], buf, n_out)
                    synops += ops
                    if kappas[l] != 0.0:
                        lateral += n_s * (thresholds[l].shape[0] - 1)
                else:
                    N = sizes[l]
                    synops += N
                    buf, n_out, n_s = _layer_event(
                        w2d[l], off[l], p, t, V[l], th[l], th64[l], state[l], last_spike[l], wdyn[l], cs[l], refr[l],
                        in_refr[l], a_val[l], a_t[l], count[l], kappas[l], floors[l], gamma, tau_us, tref_us, wd0,
                        train, rho, unmet[l], buf, n_out)
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
    _trace_at(x_out[b], x_val, x_t, t_end, tau_us)
    for l in range(L):
        if kinds[l] == CONV:  # channels-last state -> network order
            _conv_outputs(a_out[l][b], count_out[l][b], a_val[l], a_t[l], count[l], t_end, tau_us,
                          thresholds[l].shape[0], n_locs[l])
        else:
            _trace_at(a_out[l][b], a_val[l], a_t[l], t_end, tau_us)
            for i in range(sizes[l]):
                count_out[l][b, i] = count[l][i]
        for c in range(thresholds[l].shape[0]):
            dth_out[l][b, c] = th64[l][c] - thresholds[l][c]
            unmet_out[l][b, c] = unmet[l][c]
    return synops, lateral


@numba.njit(cache=True, parallel=True, nogil=True)
def simulate_layered_batch(kinds, w2d, wflat, geoms, pool_maps, n_locs, thresholds, kappas, floors,
                           channels, times, offsets, t_end, tau_us, tref_us, wd0, gamma, train, rho, readout_times,
                           x_out, a_out, count_out, dth_out, unmet_out, readout_counts, ops_out, readout_ops,
                           spike_log, n_logged):
    """``simulate_layered_sample`` for every sample of a CSR batch, samples in parallel on all cores."""
    B = offsets.shape[0] - 1
    for b in numba.prange(B):
        s, e = offsets[b], offsets[b + 1]
        ops_out[b, 0], ops_out[b, 1] = simulate_layered_sample(
            kinds, w2d, wflat, geoms, pool_maps, n_locs, thresholds, kappas, floors, channels[s:e],
            times[s:e], t_end[b], tau_us, tref_us, wd0, gamma, train, rho, readout_times,
            b, x_out, a_out, count_out, dth_out, unmet_out, readout_counts, readout_ops, spike_log, n_logged)
