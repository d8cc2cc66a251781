"""The paper's backward rule: traces -> deltas -> parameter gradients (Lee et al. 2016, section 4).

Everything here works on one sample's end-of-presentation traces (docs/method.md 3.9, "backward pass"):
no state is unrolled over time. Conventions: ``grad`` means the quantity that an optimizer *subtracts*
(scaled by its learning rate), so plain SGD reproduces eq. (12) exactly.

Per layer l with N neurons, fan-in M, m active inputs (inputs that spiked at least once) and
input traces x (x_in for layer 0, the previous layer's a otherwise):

  transfer function (eq. 5):   a_i ~ s_i / (gamma V_th,i) + (sigma / gamma) kappa sum_{j != i} a_j
  effective activity (eq. 6):  a_hat_i = gamma a_i - sigma kappa sum_{j != i} a_j
  output error (3.8, 10.4):    o = counts / max(counts) (0 if silent), e = o - y, for *all* outputs
  deltas (eq. 11):             delta_i = (g_i / g_bar) * e_i                                  (output)
                               delta_i = (g_i / g_bar) sqrt(M^(l+1) / m^(l+1)) sum_j W^(l+1)[i, j] delta_j
                                                                      (hidden, active i only)
                               g_i = 1 / (gamma V_th,i), g_bar = RMS of g over the active neurons
  weight gradient (eq. 12):    grad W[k, i] = sqrt(N / m) delta_i x_k
  threshold gradient:          grad V_th,i  = -sqrt(N / (m M)) delta_i a_hat_i
      The paper prints the same sign as for weights; gradient descent on eq. (6)'s
      d a / d V_th = -a_hat / V_th needs this sign (docs/method.md 10.1), i.e. V_th rises when the
      neuron over-responds. tests/test_gradient.py checks it against finite differences.
  regularizer (eq. 13):        grad W[:, i] += lambda beta W[:, i] exp(beta (|W[:, i]|^2 - 1)),
                               hidden layers only, added once per optimizer step (docs/method.md 10.11)
  threshold floor (4.4):       a threshold pushed below its floor f stays at f, and every weight of
                               the neuron is raised by u instead ("raise all weights by the same
                               amount", docs/method.md 10.8; the amount is not given). Our reading: u is
                               the refused decrement D divided by the sample's summed input trace,
                               u = D / sum_k x_k, so the drive sum_k w_k x_k rises by exactly D, the
                               effect the refused threshold step would have had. Raising every weight
                               by D itself ("weight", the literal reading) moves the drive by
                               D sum_k x_k, 60-100x the refused step for MNIST (measured in
                               docs/paper-readings.md).

Lazy columns: the fused SGD step keeps the eq. 13 shrinkage and the floor compensation per neuron,
W_eff[:, i] = (W[:, i] + off_i) cs_i, so neither needs a sweep over the whole matrix per sample;
functions taking ``col_scales`` / ``col_offsets`` / ``col_inv`` read and write the stored W
accordingly (ones / zeros everywhere else).

Deviation switch: ``normalize=False`` drops the g / g_bar and sqrt factors (plain chain rule of the
transfer function), which is what the finite-difference tests compare against.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from snnbp.neuron import spread_above_floor


@numba.njit(cache=True)
def output_error(counts, label):
    """e = o - y with o = counts / max(counts) (o = 0 when no output neuron fired); also 0.5|e|^2."""
    n = counts.shape[0]
    cmax = 0
    for i in range(n):
        if counts[i] > cmax:
            cmax = counts[i]
    e = np.zeros(n, np.float64)
    loss = 0.0
    for i in range(n):
        o = counts[i] / cmax if cmax > 0 else 0.0
        e[i] = o - (1.0 if i == label else 0.0)
        loss += 0.5 * e[i] * e[i]
    return e, loss


@numba.njit(cache=True)
def _norm_gain(th, gamma, active, normalize):
    """g_i / g_bar (eq. 11) for every neuron; g_bar is the RMS over ``active`` neurons (all if none)."""
    n = th.shape[0]
    g = np.empty(n, np.float64)
    acc = 0.0
    n_act = 0
    for i in range(n):
        g[i] = 1.0 / (gamma * th[i])
        if active[i]:
            acc += g[i] * g[i]
            n_act += 1
    if not normalize:
        return g
    if n_act == 0:
        for i in range(n):
            acc += g[i] * g[i]
        n_act = n
    gbar = math.sqrt(acc / n_act)
    for i in range(n):
        g[i] /= gbar
    return g


@numba.njit(cache=True)
def sample_deltas(weights, col_scales, col_offsets, thresholds, counts, b, label, gamma, normalize, deltas):
    """Fill ``deltas[l][b]`` (N_l,) for every layer of sample b (eq. 11); return the loss 0.5|o-y|^2.

    counts: tuple of (B, N_l) int32 spike counts; col_scales, col_offsets: tuples of (N_l,)
    (effective W = (W + off) cs, module doc). Silent hidden neurons get delta 0 (only active
    units enter the sums, docs/method.md 2); every output neuron gets an error (docs/method.md 10.4).
    """
    L = len(weights)
    out = counts[L - 1][b]
    e, loss = output_error(out, label)
    active = out > 0
    gain = _norm_gain(thresholds[L - 1], gamma, active, normalize)
    d_out = deltas[L - 1][b]
    for i in range(out.shape[0]):
        d_out[i] = gain[i] * e[i]
    for l in range(L - 2, -1, -1):
        c = counts[l][b]
        active = c > 0
        n_act = 0
        for i in range(c.shape[0]):
            if active[i]:
                n_act += 1
        d = deltas[l][b]
        d[:] = 0.0
        if n_act == 0:
            for ll in range(l, -1, -1):
                deltas[ll][b][:] = 0.0
            break
        gain = _norm_gain(thresholds[l], gamma, active, normalize)
        # sqrt(M^(l+1) / m^(l+1)): layer l+1 has fan-in N_l of which n_act inputs are active.
        fan = math.sqrt(c.shape[0] / n_act) if normalize else 1.0
        W_up = weights[l + 1]
        cs_up, off_up = col_scales[l + 1], col_offsets[l + 1]
        d_up = deltas[l + 1][b]
        for i in range(c.shape[0]):
            if active[i]:
                acc = 0.0
                for j in range(d_up.shape[0]):
                    acc += (W_up[i, j] + off_up[j]) * cs_up[j] * d_up[j]
                d[i] = gain[i] * fan * acc
    return loss


@numba.njit(cache=True)
def _project_and_step(row, proj, s, dc):
    """proj += s row (before the step), then row += s dc: one row of a rank-1 weight update."""
    for i in range(row.shape[0]):
        w = row[i]
        proj[i] += s * w
        row[i] = w + s * dc[i]


@numba.njit(cache=True)
def eq12_scales(x, N, normalize):
    """(m, sqrt(N / m), sqrt(N / (m M))) of eq. 12 for input traces x (M,): m = inputs with x_k > 0.

    The scales are 0 when m = 0 (no input, no data gradient); 1 when ``normalize`` is off.
    """
    M = x.shape[0]
    m = 0
    for k in range(M):
        if x[k] > 0.0:
            m += 1
    if m == 0:
        return 0, 0.0, 0.0
    if not normalize:
        return m, 1.0, 1.0
    return m, math.sqrt(N / m), math.sqrt(N / (m * M))


@numba.njit(cache=True)
def add_threshold_gradient(gth, a, d, kappa, gamma, sigma, cth, coef):
    """gth += coef (-cth delta_i a_hat_i), a_hat_i = gamma a_i - sigma kappa sum_{j != i} a_j (eq. 6, 12)."""
    total_a = 0.0
    for i in range(a.shape[0]):
        total_a += a[i]
    for i in range(a.shape[0]):
        a_hat = gamma * a[i] - sigma * kappa * (total_a - a[i])
        gth[i] += coef * (-cth * d[i] * a_hat)


@numba.njit(cache=True)
def accumulate_sample_gradients(weights, grad_w, grad_th, x_in, traces, deltas, b, kappas,
                                gamma, sigma, normalize, coef_w, coef_th, col_inv, sq_norms, col_sums):
    """grad_w[l] += coef_w sqrt(N/m) outer(x, delta); grad_th[l] += coef_th[l] (-sqrt(N/(mM)) delta a_hat).

    coef_th (L,): one coefficient per layer (per-layer threshold rates, train.protocol.threshold_rate_ratios).

    Only rows k with x_k > 0 are touched (work ~ active inputs x N, eq. 12). ``grad_w`` may be the
    weights (and thresholds) themselves with coef = -learning rate: that is the per-sample SGD step;
    then col_inv[l] (N_l,) = 1 / column scale turns the effective step into one on the stored W,
    and non-empty sq_norms[l], col_sums[l] (N_l,) float64 are kept equal to the stored columns'
    sum_k W[k, i]^2 and sum_k W[k, i].
    """
    L = len(weights)
    for l in range(L):
        x = x_in[b] if l == 0 else traces[l - 1][b]
        M = x.shape[0]
        N = grad_th[l].shape[0]
        m, cw, cth = eq12_scales(x, N, normalize)
        if m == 0:
            continue
        d = deltas[l][b]
        a = traces[l][b]
        gW = grad_w[l]
        dc = d * col_inv[l]
        sq, sm = sq_norms[l], col_sums[l]
        track = sq.shape[0] > 0
        if track:
            # Norm bookkeeping for the lazy regularizer: with the rank-1 step W[k, i] += s_k dc_i,
            # sum_k W_ki^2 grows by 2 dc_i (s . W)_i + dc_i^2 |s|^2 and sum_k W_ki by dc_i sum_k s_k.
            # (s . W) is gathered in the same row-major pass as the update (vectorizable), instead
            # of a per-element float64 update of both sums, which ran scalar and cost ~180 us/sample.
            dc32 = dc.astype(np.float32)
            proj = np.zeros(N, np.float32)
            s1 = 0.0
            s2 = 0.0
            for k in range(M):
                xk = x[k]
                if xk > 0.0:
                    s = coef_w * cw * xk
                    _project_and_step(gW[k], proj, np.float32(s), dc32)
                    s1 += s
                    s2 += s * s
            for i in range(N):
                sq[i] += 2.0 * dc[i] * proj[i] + dc[i] * dc[i] * s2
                sm[i] += dc[i] * s1
        else:
            for k in range(M):
                xk = x[k]
                if xk > 0.0:
                    s = coef_w * cw * xk
                    row = gW[k]
                    for i in range(N):
                        row[i] += s * dc[i]
        add_threshold_gradient(grad_th[l], a, d, kappas[l], gamma, sigma, cth, coef_th[l])


@numba.njit(cache=True)
def column_sq_norms(W):
    """|W[:, i]|^2 per column (N,) float64 (row-major sweep)."""
    M, N = W.shape
    sq = np.zeros(N, np.float64)
    for k in range(M):
        row = W[k]
        for i in range(N):
            sq[i] += np.float64(row[i]) * row[i]
    return sq


EXP_CAP = 30.0  # eq. 13's exponent z beyond which exp is continued linearly (exp(30) ~ 1e13)


@numba.njit(cache=True)
def regularization_from_norms(sq, lam, beta):
    """c_i = lambda beta exp(beta (|w_i|^2 - 1)) (eq. 13) from squared norms sq (N,), and the loss.

    The one overflow policy of every engine (dense/lee2016_function.exp_weight_regularizer applies
    the same): beyond z = beta (|w_i|^2 - 1) = EXP_CAP the exponential is continued linearly, value
    and slope matching at the cap, so c_i stays exp(EXP_CAP) lambda beta, a huge but finite pull
    back (float32 exp overflows at z ~ 88 and an infinite gradient turns weights into NaN). Below
    the cap (|w_i|^2 < 4 at beta = 10) nothing changes.
    """
    N = sq.shape[0]
    c = np.empty(N, np.float64)
    loss = 0.0
    for i in range(N):
        z = beta * (sq[i] - 1.0)
        zc = z if z < EXP_CAP else EXP_CAP
        ex = math.exp(zc)
        c[i] = lam * beta * ex
        loss += 0.5 * lam * ex * (1.0 + (z - zc))
    return c, loss


@numba.njit(cache=True)
def weight_regularization(W, lam, beta):
    """Per-neuron coefficient c_i = lambda beta exp(beta (|W[:, i]|^2 - 1)) (eq. 13) and the loss.

    The gradient of L_w = 0.5 lambda exp(beta(|w_i|^2 - 1)) is c_i * W[:, i].
    """
    return regularization_from_norms(column_sq_norms(W), lam, beta)


@numba.njit(cache=True)
def add_scaled_columns(G, W, c, coef):
    """G[:, i] += coef * c[i] * W[:, i] (adds the regularizer gradient into a gradient buffer)."""
    M, N = W.shape
    for k in range(M):
        g = G[k]
        w = W[k]
        for i in range(N):
            g[i] += coef * c[i] * w[i]


NO_MASK = np.zeros(0, np.int32)  # ``fired`` of floor_raises / enforce_floor: no neuron excluded


@numba.njit(cache=True)
def floor_raises(th, floor, unmet, raise_per_unit, fired=NO_MASK):
    """Keep V_th >= floor; return the weight raise u (N,) of every neuron whose decrement it refused.

    unmet (N,) holds decrements already refused (by homeostasis during the presentation);
    thresholds now below the floor add theirs. Every weight of neuron i is to be raised by
    u_i = unmet_i * raise_per_unit ("all weights of that neuron are raised by the same amount",
    docs/method.md 4.4): raise_per_unit = 1 / sum_k x_k gives the drive-equivalent reading of the module
    doc, 1 the literal one, 0 no compensation. (A multiplicative rescaling, the other reading, makes
    a silent neuron with mostly negative weights ever more negative; it ran away in our tests.)
    fired (N,) spike counts, or empty: the "silent" reading compensates no neuron that fired (its
    ``unmet`` is zeroed per sample beforehand, keep_silent_unmet; here its threshold is only clamped).
    """
    N = th.shape[0]
    masked = fired.shape[0] > 0
    u = np.zeros(N, np.float64)
    for i in range(N):
        ui = unmet[i]
        if th[i] < floor:
            ui += floor - th[i]
            th[i] = floor
        if masked and fired[i] > 0:
            ui = 0.0
        if ui > 0.0 and raise_per_unit > 0.0:
            u[i] = ui * raise_per_unit
    return u


@numba.njit(cache=True)
def enforce_floor(W, th, floor, unmet, raise_per_unit, fired=NO_MASK):
    """``floor_raises`` applied at once: W[:, i] += u_i; returns the number of neurons raised."""
    u = floor_raises(th, floor, unmet, raise_per_unit, fired)
    n = 0
    for i in range(u.shape[0]):
        if u[i] != 0.0:
            n += 1
    if n > 0:
        u32 = u.astype(np.float32)
        for k in range(W.shape[0]):
            row = W[k]
            for i in range(W.shape[1]):
                row[i] += u32[i]
    return n


@numba.njit(cache=True)
def commit_batch_homeostasis(th, dth, floor, unmet, th_start):
    """th += dth for a mini-batch's summed homeostatic changes, zero-sum at the floor (what the
    floor refuses is taken from the others, neuron.spread_above_floor, unless all sit on it).

    th (N,) float64 thresholds (conv: one per map) after the batch's optimizer step, dth (N,) the
    batch's summed per-sample changes, th_start (N,) the thresholds the batch was simulated with,
    unmet (N,) float64 accumulates refusals (the floor compensation's input, ``floor_raises``).
    Each sample's homeostasis is zero-sum and respects the floor on its own (event_engine/kernels.py
    ``_homeostasis``), but every sample of a batch starts from the same thresholds: B decrements of a
    neuron near the floor sum to up to B times its distance to it, and clamping that sum while the
    spikers' rises count in full made the batch rule only raise thresholds (measured on the conv
    preset: fc200 mean V_th 0.18 -> 3.6 in two short epochs, results/mnist-conv-event-probes). So a
    neuron's homeostatic decrement that would take it below the floor is refused (added to unmet) and
    taken from the neurons still above it instead, by the per-sample rule's water-filling.
    Only the homeostatic part is refused, measured from th_start (as each sample's rule measures it):
    with one sample per batch nothing is refused here, and a threshold the gradient step put below the
    floor is left to ``floor_raises``, as in the per-sample path.
    """
    N = th.shape[0]
    refused = 0.0
    for i in range(N):
        v = th_start[i] + dth[i]
        r = 0.0
        if v < floor and dth[i] < 0.0:
            r = min(floor - v, -dth[i])
        th[i] = th[i] + dth[i] + r
        unmet[i] += r
        refused += r
    n_open = 0
    for i in range(N):
        n_open += np.int32(th[i] > floor)
    spread_above_floor(th, floor, refused, n_open)


# optim.floor_compensation -> code for compiled code. "silent": the drive amount, for neurons that did
# not fire in the sample only (docs/paper-readings.md 8).
FLOOR_MODES = {"none": 0, "drive": 1, "weight": 2, "silent": 3}
SILENT_ONLY = 3


@numba.njit(cache=True)
def floor_raise_per_unit(mode: int, input_trace_sum: float) -> float:
    """The factor u / D of ``enforce_floor`` for a FLOOR_MODES code.

    drive (1) and silent (3): 1 / sum_k x_k (0 when the sample had no input); weight (2): 1 (literal);
    none (0): 0.
    """
    if mode == 1 or mode == 3:
        return 1.0 / input_trace_sum if input_trace_sum > 0.0 else 0.0
    if mode == 2:
        return 1.0
    return 0.0


@numba.njit(cache=True)
def keep_silent_unmet(unmet, count):
    """The "silent" floor reading on one sample: unmet_i <- 0 for every neuron that fired (count_i > 0).

    The compensation stands in for the homeostatic decrement the floor refused, whose purpose is to
    revive silent neurons (docs/method.md 4.4); given to a neuron that fires, it only makes a busy
    neuron busier, and summed over thousands of samples it turned a high floor into a runaway
    (docs/paper-readings.md 8).
    """
    for i in range(count.shape[0]):  # count empty (NO_MASK): nothing to do
        if count[i] > 0:
            unmet[i] = 0.0
