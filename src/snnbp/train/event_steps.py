"""Compiled training steps for the event engine: forward (event_engine.kernels) + backward (gradient.lee2016).

``sgd_per_sample`` is the paper's protocol (batch size 1, plain SGD, docs/method.md 3.8): each sample is
simulated, its gradient computed and applied before the next sample, all inside one compiled call
per chunk, so there is no Python work per sample. ``adam_per_sample`` does the same for Adam with batch
size 1 (the paper's 784-300-300-10 row) on torch.optim.Adam's own moment buffers. ``batch_gradients``
serves every other optimizer:
it averages per-sample gradients of an already simulated batch into buffers that a torch optimizer
then applies (event_trainer.py). All call the same gradient functions; tests/test_training_steps.py holds
the fused steps equal to forward + ``batch_gradients`` + torch.optim.SGD / torch.optim.Adam.
"""

from __future__ import annotations

import numba
import numpy as np

from snnbp.event_engine.kernels import simulate_sample
from snnbp.gradient.lee2016 import (
    accumulate_sample_gradients,
    add_scaled_columns,
    add_threshold_gradient,
    column_sq_norms,
    enforce_floor,
    eq12_scales,
    NO_MASK,
    SILENT_ONLY,
    floor_raise_per_unit,
    floor_raises,
    keep_silent_unmet,
    regularization_from_norms,
    sample_deltas,
    weight_regularization,
)


@numba.njit(cache=True)
def _argmax(c):
    best = 0
    for i in range(1, c.shape[0]):
        if c[i] > c[best]:
            best = i
    return best


@numba.njit(cache=True)
def _input_trace_sum(x_s, a_s, l):
    """sum_k x_k of layer l's input traces for the sample in row 0 (x_in for l = 0, else a^(l-1))."""
    x = x_s[0] if l == 0 else a_s[l - 1][0]
    acc = 0.0
    for k in range(x.shape[0]):
        acc += x[k]
    return acc


@numba.njit(cache=True)
def _fold_columns(W, cs, off):
    """W[:, i] <- (W[:, i] + off_i) cs_i: make the stored weights the effective ones (one sweep)."""
    M, N = W.shape
    for k in range(M):
        row = W[k]
        for i in range(N):
            row[i] = (row[i] + off[i]) * cs[i]


@numba.njit(cache=True)
def _train_forward(net, events, b, label, neuron, rho, normalize, scratch, cols, stats, spikes, unit_spikes):
    """Simulate sample b of a CSR chunk with homeostasis, fill its deltas (eq. 11), add its statistics.

    Shared by the fused steps; arguments as ``sgd_per_sample`` (cols = (scale32, off32, scale64,
    off64) of the lazy columns; ones / zeros for Adam). Returns nothing: results are in scratch.
    """
    weights, thresholds, kappas, floors, _ = net
    channels, times, offsets, t_end = events
    tau_us, tref_us, wd0, gamma, _ = neuron
    x_s, a_s, count_s, dth_s, unmet_s, delta_s, ro_counts, ro_ops = scratch
    s32, o32, s64, o64 = cols
    L = len(weights)
    s, e = offsets[b], offsets[b + 1]
    synops, _ = simulate_sample(weights, s32, o32, thresholds, kappas, floors, channels[s:e], times[s:e],
                             t_end[b], tau_us, tref_us, wd0, gamma, True, rho, np.zeros(0),
                             0, x_s, a_s, count_s, dth_s, unmet_s, ro_counts, ro_ops, np.zeros((1, 0, 3)),
                             np.zeros(1, np.int64))
    loss = sample_deltas(weights, s64, o64, thresholds, count_s, 0, label, gamma, normalize, delta_s)
    stats[0] += loss
    stats[2] += 1.0 if _argmax(count_s[L - 1][0]) == label else 0.0
    stats[3] += synops
    stats[4] += 1.0 if loss == 0.0 else 0.0
    for l in range(L):
        c_l = count_s[l][0]
        spikes[l] += c_l.sum()
        u_l = unit_spikes[l]
        for i in range(c_l.shape[0]):
            u_l[i] += c_l[i]


@numba.njit(cache=True, nogil=True)  # nogil: the next chunk is drawn meanwhile (train/prefetch.py)
def sgd_per_sample(net, events, labels, neuron, hyper, scratch, columns, stats, spikes, unit_spikes):
    """Train on every sample of a CSR chunk in order, updating weights/thresholds in place.

    Per sample (eqs. 11-13): deltas from the pre-update parameters; W <- W - lr (reg grad + data
    grad) (the regularizer step first, semi-implicitly; the data gradient does not depend on W once
    deltas are known); V_th <- V_th + homeostasis - lr_th grad; floor enforced (floor_mode: a
    gradient.lee2016.FLOOR_MODES code).

    Lazy columns (gradient.lee2016 module doc): while the chunk runs, the effective weights are
    W_eff[:, i] = (W[:, i] + off_i) cs_i. The regularizer's shrinkage W_i / (1 + lr c_i) divides cs_i,
    the floor compensation's raise u_i adds u_i / cs_i to off_i, and the squared norm of eq. 13 is
    cs_i^2 (sum_k W_ki^2 + 2 off_i sum_k W_ki + M off_i^2) from sums the data updates keep current.
    So a sample costs O(N) for both instead of sweeps over the M x N matrix; one sweep at the end of
    the chunk folds them into W. cs and off are float64, so the tiny late-schedule shrinkage
    (lr c ~ 1e-8, below float32 resolution) still acts: a float32 factor rounds to exactly 1.
    Arguments, grouped (tuples, unpacked here at no cost):
      net     = (weights, thresholds, kappas, floors, reg_layers): the Network's arrays, updated in place
      events  = (channels, times, offsets, t_end): the chunk in CSR form (data.events.EventBatch)
      labels  (B,) int64
      neuron  = (tau_us, tref_us, wd0, gamma, sigma)
      hyper   = (rho, lr_w, lr_th, lam, beta, normalize, floor_mode); lr_th (L,) per layer
      scratch = (x_s, a_s, count_s, dth_s, unmet_s, delta_s, ro_counts, ro_ops): per-sample
                buffers, leading dimension 1 (EventTrainer._sgd_scratch)
      columns = (col_s64, col_s32, col_inv, col_off64, col_off32, sq_norms, col_sums): the lazy
                columns, (N_l,) ones (scales) / zeros (offsets); sq_norms[l], col_sums[l] (N_l,) for
                the regularized layers (their norms enter eq. 13), empty otherwise
    stats += [loss, reg_loss, correct, synops, samples with zero output error]; spikes[l] += spikes
    of layer l; unit_spikes[l] (N_l,) += spikes per neuron.
    """
    weights, thresholds, kappas, floors, reg_layers = net
    offsets = events[2]
    gamma, sigma = neuron[3], neuron[4]
    rho, lr_w, lr_th, lam, beta, normalize, floor_mode = hyper
    x_s, a_s, count_s, dth_s, unmet_s, delta_s = scratch[:6]
    col_s64, col_s32, col_inv, col_off64, col_off32, sq_norms, col_sums = columns
    L = len(weights)
    B = offsets.shape[0] - 1
    for l in range(L):
        if sq_norms[l].shape[0] > 0:
            sq_norms[l][:] = column_sq_norms(weights[l])
            W = weights[l]
            sm = col_sums[l]
            sm[:] = 0.0
            for k in range(W.shape[0]):
                for i in range(W.shape[1]):
                    sm[i] += W[k, i]
    cols = (col_s32, col_off32, col_s64, col_off64)
    for b in range(B):
        _train_forward(net, events, b, labels[b], neuron, rho, normalize, scratch, cols, stats, spikes, unit_spikes)
        for l in range(L):
            if reg_layers[l] and lam > 0.0:
                cs, off, sq, sm = col_s64[l], col_off64[l], sq_norms[l], col_sums[l]
                M = weights[l].shape[0]
                eff = cs * cs * (sq + 2.0 * off * sm + M * off * off)
                c, rl = regularization_from_norms(eff, lam, beta)
                stats[1] += rl
                # Semi-implicit step W_i / (1 + lr c_i) instead of W_i (1 - lr c_i): equal to first
                # order, but it can never flip the sign of a weight vector when lr c_i > 1, which the
                # exponential growth of c_i (eq. 13) otherwise makes a runaway (deviation, see README).
                for i in range(cs.shape[0]):
                    cs[i] /= 1.0 + lr_w * c[i]
                    col_s32[l][i] = np.float32(cs[i])
                    col_inv[l][i] = 1.0 / cs[i]
        accumulate_sample_gradients(weights, weights, thresholds, x_s, a_s, delta_s, 0, kappas,
                                    gamma, sigma, normalize, -lr_w, -lr_th, col_inv, sq_norms, col_sums)
        for l in range(L):
            th = thresholds[l]
            th += dth_s[l][0]
            per_unit = floor_raise_per_unit(floor_mode, _input_trace_sum(x_s, a_s, l))
            fired = count_s[l][0] if floor_mode == SILENT_ONLY else NO_MASK
            keep_silent_unmet(unmet_s[l][0], fired)
            u = floor_raises(th, floors[l], unmet_s[l][0], per_unit, fired)
            off, inv = col_off64[l], col_inv[l]
            for i in range(u.shape[0]):
                if u[i] != 0.0:
                    off[i] += u[i] * inv[i]
                    col_off32[l][i] = np.float32(off[i])
    for l in range(L):
        _fold_columns(weights[l], col_s32[l], col_off32[l])
        col_s64[l][:] = 1.0
        col_s32[l][:] = 1.0
        col_inv[l][:] = 1.0
        col_off64[l][:] = 0.0
        col_off32[l][:] = 0.0


@numba.njit(cache=True)
def batch_gradients(weights, thresholds, kappas, reg_layers, x_in, traces, counts, labels,
                    gamma, sigma, lam, beta, normalize, grad_w, grad_th, deltas, stats):
    """Average the per-sample gradients of a simulated batch into grad_w / grad_th (zeroed here).

    The regularizer gradient depends only on W, so it is added once (same as averaging it B times).
    stats += [loss, reg_loss, correct, 0, samples with zero output error].
    """
    L = len(weights)
    B = labels.shape[0]
    ones = [np.ones(weights[l].shape[1], np.float64) for l in range(L)]
    zeros = [np.zeros(weights[l].shape[1], np.float64) for l in range(L)]
    no_sq = [np.zeros(0, np.float64) for l in range(L)]
    for l in range(L):
        grad_w[l][:] = 0.0
        grad_th[l][:] = 0.0
    inv = 1.0 / B
    for b in range(B):
        loss = sample_deltas(weights, ones, zeros, thresholds, counts, b, labels[b], gamma, normalize, deltas)
        stats[0] += loss
        stats[2] += 1.0 if _argmax(counts[L - 1][b]) == labels[b] else 0.0
        stats[4] += 1.0 if loss == 0.0 else 0.0
        accumulate_sample_gradients(weights, grad_w, grad_th, x_in, traces, deltas, b, kappas,
                                    gamma, sigma, normalize, inv, np.full(L, inv), ones, no_sq, no_sq)
    for l in range(L):
        if reg_layers[l] and lam > 0.0:
            c, rl = weight_regularization(weights[l], lam, beta)
            stats[1] += rl * B
            add_scaled_columns(grad_w[l], weights[l], c, 1.0)


# error_model="numpy": numba's default (Python) error model guards every float division with a
# ZeroDivisionError branch, which keeps LLVM from vectorizing the loop (measured: scalar code, 2.3x
# slower than torch's fused Adam step; vectorized, 0.4-0.6x of its time including the gradient).
@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _adam_weight_sweep(W, m_w, v_w, x, s_coef, d, c, shrink, b1, b2, step_size, bc2_sqrt, eps, sq_new):
    """One Adam step on every weight of a layer; the gradient is built row by row, never stored.

    g[k, i] = s_coef x_k delta_i (eq. 12, rows with x_k > 0) + c_i W[k, i] (eq. 13, c = 0 where the
    layer is not regularized), then torch.optim.Adam's update (float32, same order of operations):
    m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2; W <- W - step_size m / (sqrt(v) / bc2_sqrt + eps),
    then W[:, i] *= shrink_i (the decoupled eq. 13 step, optim.weight_reg; ones when coupled).
    sq_new (N,) float64 += the new W[k, i]^2, so the next sample's eq. 13 needs no extra sweep.
    """
    M, N = W.shape
    one_b1, one_b2 = np.float32(1.0 - b1), np.float32(1.0 - b2)
    fb1, fb2 = np.float32(b1), np.float32(b2)
    fstep, fbc2, feps = np.float32(step_size), np.float32(bc2_sqrt), np.float32(eps)
    d32 = d.astype(np.float32)
    c32 = c.astype(np.float32)
    sh32 = shrink.astype(np.float32)
    sq32 = np.zeros(N, np.float32)
    for k in range(M):
        row, mr, vr = W[k], m_w[k], v_w[k]
        s = np.float32(s_coef * x[k]) if x[k] > 0.0 else np.float32(0.0)
        for i in range(N):
            w = row[i]
            g = s * d32[i] + c32[i] * w
            mi = fb1 * mr[i] + one_b1 * g
            vi = fb2 * vr[i] + one_b2 * g * g
            mr[i] = mi
            vr[i] = vi
            w = (w - fstep * mi / (np.sqrt(vi) / fbc2 + feps)) * sh32[i]
            row[i] = w
            sq32[i] += w * w
        if (k & 255) == 255:  # bound the float32 round-off of the norms: flush every 256 rows
            for i in range(N):
                sq_new[i] += sq32[i]
                sq32[i] = 0.0
    for i in range(N):
        sq_new[i] += sq32[i]


@numba.njit(cache=True)
def _adam_threshold_step(th, m_t, v_t, g, b1, b2, step_size, bc2_sqrt, eps):
    """torch.optim.Adam's update on one layer's (float64) thresholds for gradient g (N,)."""
    for i in range(th.shape[0]):
        m_t[i] = b1 * m_t[i] + (1.0 - b1) * g[i]
        v_t[i] = b2 * v_t[i] + (1.0 - b2) * g[i] * g[i]
        th[i] -= step_size * m_t[i] / (np.sqrt(v_t[i]) / bc2_sqrt + eps)


@numba.njit(cache=True, nogil=True)
def adam_per_sample(net, events, labels, neuron, hyper, scratch, moments, step, stats, spikes, unit_spikes):
    """Per-sample Adam (batch size 1, the paper's 784-300-300-10 row) on every sample of a chunk.

    Per sample, in the order of the minibatch path (forward, batch_gradients, torch.optim.Adam, then
    homeostasis and the floor; tests/test_training_steps.py holds the two equal): simulate with
    homeostasis; deltas (eq. 11) from the pre-update parameters; the eq. 13 coefficients from the
    pre-update column norms; one Adam step per weight with the data and regularizer gradients built in
    the same sweep (_adam_weight_sweep: the gradient is never materialized, and the sweep returns the
    new norms); Adam on the thresholds with gradient -sqrt(N/(mM)) delta a_hat; V_th += homeostasis;
    floor enforced (its weight raise applied at once, a sweep only when some neuron was held).
    Adam is dense by nature (every weight moves every step through its moments and eq. 13), so the
    sweep over all weights per sample is the cost floor; what this saves over torch is the separate
    gradient buffer and its zeroing, the Python per sample, and the second norm sweep.

    net, events, labels, neuron, scratch, stats, spikes, unit_spikes: as ``sgd_per_sample``.
    hyper   = (rho, lr_w, lr_th, lam, beta, normalize, floor_mode, b1, b2, eps, decoupled, th_sgd):
              lr_th (L,) per layer; decoupled applies eq. 13 as W_i / (1 + lr_w c_i) after the Adam step
              instead of inside its gradient; th_sgd steps the thresholds by plain SGD,
              V_th -= lr_th g (optim.threshold_optimizer = "sgd"; m_th, v_th are then left untouched)
    moments = (m_w, v_w, m_th, v_th): tuples per layer, shapes of the weights / thresholds (torch
              Adam's exp_avg / exp_avg_sq, shared with the checkpointed optimizer state)
    step    (1,) int64: Adam steps taken so far (torch's "step"), advanced per sample.
    """
    weights, thresholds, kappas, floors, reg_layers = net
    offsets = events[2]
    gamma, sigma = neuron[3], neuron[4]
    rho, lr_w, lr_th, lam, beta, normalize, floor_mode, b1, b2, eps, decoupled, th_sgd = hyper
    x_s, a_s, count_s, dth_s, unmet_s, delta_s = scratch[:6]
    m_w, v_w, m_th, v_th = moments
    L = len(weights)
    B = offsets.shape[0] - 1
    ones32 = [np.ones(weights[l].shape[1], np.float32) for l in range(L)]
    zeros32 = [np.zeros(weights[l].shape[1], np.float32) for l in range(L)]
    ones64 = [np.ones(weights[l].shape[1], np.float64) for l in range(L)]
    zeros64 = [np.zeros(weights[l].shape[1], np.float64) for l in range(L)]
    sq = [column_sq_norms(weights[l]) for l in range(L)]
    cols = (ones32, zeros32, ones64, zeros64)
    for b in range(B):
        _train_forward(net, events, b, labels[b], neuron, rho, normalize, scratch, cols, stats, spikes, unit_spikes)
        step[0] += 1
        t = step[0]
        bc1 = 1.0 - b1 ** t
        bc2_sqrt = np.sqrt(1.0 - b2 ** t)
        for l in range(L):
            W = weights[l]
            N = W.shape[1]
            x = x_s[0] if l == 0 else a_s[l - 1][0]
            _, cw, cth = eq12_scales(x, N, normalize)  # 0 without input: the data terms vanish
            c = np.zeros(N, np.float64)
            shrink = np.ones(N, np.float64)
            if reg_layers[l] and lam > 0.0:
                c, rl = regularization_from_norms(sq[l], lam, beta)
                stats[1] += rl
                if decoupled:
                    shrink = 1.0 / (1.0 + lr_w * c)
                    c = np.zeros(N, np.float64)
            sq[l][:] = 0.0
            _adam_weight_sweep(W, m_w[l], v_w[l], x, cw, delta_s[l][0], c, shrink, b1, b2, lr_w / bc1, bc2_sqrt,
                               eps, sq[l])
            if th_sgd:
                add_threshold_gradient(thresholds[l], a_s[l][0], delta_s[l][0], kappas[l], gamma, sigma, cth,
                                       -lr_th[l])
            else:
                g_th = np.zeros(N, np.float64)
                add_threshold_gradient(g_th, a_s[l][0], delta_s[l][0], kappas[l], gamma, sigma, cth, 1.0)
                _adam_threshold_step(thresholds[l], m_th[l], v_th[l], g_th, b1, b2, lr_th[l] / bc1, bc2_sqrt,
                                     eps)
        for l in range(L):
            th = thresholds[l]
            th += dth_s[l][0]
            per_unit = floor_raise_per_unit(floor_mode, _input_trace_sum(x_s, a_s, l))
            fired = count_s[l][0] if floor_mode == SILENT_ONLY else NO_MASK
            keep_silent_unmet(unmet_s[l][0], fired)
            if enforce_floor(weights[l], th, floors[l], unmet_s[l][0], per_unit, fired) > 0:
                sq[l][:] = column_sq_norms(weights[l])
