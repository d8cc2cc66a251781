"""Compiled training steps for the event engine: forward (event_engine.kernels) + backward (gradient.lee2016).

``sgd_per_sample`` is the paper's protocol (batch size 1, plain SGD, docs/method.md 3.8): each sample is
simulated, its gradient computed and applied before the next sample, all inside one compiled call
per chunk, so there is no Python work per sample. ``batch_gradients`` serves every other optimizer:
it averages per-sample gradients of an already simulated batch into buffers that a torch optimizer
then applies (event_trainer.py). Both call the same gradient functions; tests/test_training_steps.py holds
the fused step equal to forward + ``batch_gradients`` + torch.optim.SGD.
"""

from __future__ import annotations

import numba
import numpy as np

from snnbp.event_engine.kernels import simulate_sample
from snnbp.gradient.lee2016 import (
    accumulate_sample_gradients,
    add_scaled_columns,
    column_sq_norms,
    floor_raise_per_unit,
    floor_raises,
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
      hyper   = (rho, lr_w, lr_th, lam, beta, normalize, floor_mode)
      scratch = (x_s, a_s, count_s, dth_s, unmet_s, delta_s, ro_counts, ro_synops): per-sample
                buffers, leading dimension 1 (EventTrainer._sgd_scratch)
      columns = (col_s64, col_s32, col_inv, col_off64, col_off32, sq_norms, col_sums): the lazy
                columns, (N_l,) ones (scales) / zeros (offsets); sq_norms[l], col_sums[l] (N_l,) for
                the regularized layers (their norms enter eq. 13), empty otherwise
    stats += [loss, reg_loss, correct, synops, samples with zero output error]; spikes[l] += spikes
    of layer l; unit_spikes[l] (N_l,) += spikes per neuron.
    """
    weights, thresholds, kappas, floors, reg_layers = net
    channels, times, offsets, t_end = events
    tau_us, tref_us, wd0, gamma, sigma = neuron
    rho, lr_w, lr_th, lam, beta, normalize, floor_mode = hyper
    x_s, a_s, count_s, dth_s, unmet_s, delta_s, ro_counts, ro_synops = scratch
    col_s64, col_s32, col_inv, col_off64, col_off32, sq_norms, col_sums = columns
    L = len(weights)
    B = offsets.shape[0] - 1
    no_readout = np.zeros(0)
    no_log = np.zeros((1, 0, 3))
    n_logged = np.zeros(1, np.int64)
    for l in range(L):
        if sq_norms[l].shape[0] > 0:
            sq_norms[l][:] = column_sq_norms(weights[l])
            W = weights[l]
            sm = col_sums[l]
            sm[:] = 0.0
            for k in range(W.shape[0]):
                for i in range(W.shape[1]):
                    sm[i] += W[k, i]
    for b in range(B):
        s, e = offsets[b], offsets[b + 1]
        synops = simulate_sample(weights, col_s32, col_off32, thresholds, kappas, floors, channels[s:e], times[s:e],
                                 t_end[b], tau_us, tref_us, wd0, gamma, True, rho, no_readout,
                                 0, x_s, a_s, count_s, dth_s, unmet_s, ro_counts, ro_synops, no_log, n_logged)
        label = labels[b]
        loss = sample_deltas(weights, col_s64, col_off64, thresholds, count_s, 0, label, gamma, normalize, delta_s)
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
            u = floor_raises(th, floors[l], unmet_s[l][0], per_unit)
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
                                    gamma, sigma, normalize, inv, inv, ones, no_sq, no_sq)
    for l in range(L):
        if reg_layers[l] and lam > 0.0:
            c, rl = weight_regularization(weights[l], lam, beta)
            stats[1] += rl * B
            add_scaled_columns(grad_w[l], weights[l], c, 1.0)
