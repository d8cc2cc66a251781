"""The backward rule (gradient/lee2016.py) against finite differences of the analytic transfer function.

Harness: the rule reads spike counts (for the output error o = counts / max(counts)) and end-of-sample
traces x (inputs) and a (neurons). We choose parameters so that the analytic transfer function of
docs/method.md 3.3, a = (x @ W) / V_th (per layer, ReLU: silent neurons have s <= 0), gives *exactly* the
max-normalized counts at the output, and feed the rule a = transfer-function output as traces. Then
the rule's gradient (normalize=False) must equal the finite-difference gradient of
L = 0.5 |a_out - y|^2 with respect to every weight and threshold (the derivative of the
max-normalization being ignored, as in the paper). This fixes in particular the sign of the threshold
gradient (docs/method.md 10.1): gradient descent must raise V_th of an over-responding neuron.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from snnbp.gradient.lee2016 import (
    accumulate_sample_gradients,
    FLOOR_MODES,
    enforce_floor,
    floor_raise_per_unit,
    output_error,
    sample_deltas,
    weight_regularization,
)
from snnbp.model import Network

GAMMA, SIGMA = 1.0, 0.5


def _grads(weights, thresholds, counts, x, traces, label, kappas, normalize, sigma=SIGMA):
    """Run sample_deltas + accumulate_sample_gradients for one sample; return (gW, gth, deltas, loss)."""
    W = tuple(np.asarray(w, np.float32) for w in weights)
    th = tuple(np.asarray(t, np.float32) for t in thresholds)
    cnt = tuple(np.asarray(c, np.int32)[None] for c in counts)
    deltas = tuple(np.zeros((1, w.shape[1]), np.float64) for w in W)
    ones = tuple(np.ones(w.shape[1]) for w in W)
    zeros = tuple(np.zeros(w.shape[1]) for w in W)
    loss = sample_deltas(W, ones, zeros, th, cnt, 0, label, GAMMA, normalize, deltas)
    gW = tuple(np.zeros_like(w) for w in W)
    gth = tuple(np.zeros_like(t) for t in th)
    accumulate_sample_gradients(W, gW, gth, np.asarray(x, np.float32)[None],
                                tuple(np.asarray(a, np.float32)[None] for a in traces), deltas, 0,
                                np.asarray(kappas, np.float64), GAMMA, sigma, normalize, 1.0, np.ones(len(W)), ones,
                                tuple(np.zeros(0) for _ in W), tuple(np.zeros(0) for _ in W))
    return gW, gth, [d[0] for d in deltas], loss


def _fd(f, params, h=1e-6):
    """Central finite differences of scalar f(params) w.r.t. every entry of every array in params."""
    out = []
    for p in params:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            fp = f(params)
            p[idx] = old - h
            fm = f(params)
            p[idx] = old
            g[idx] = (fp - fm) / (2 * h)
        out.append(g)
    return out


def _two_layer_setup(seed=0, silent_hidden=True):
    """Float64 parameters of a 4-3-3 net whose transfer-function output is o = [1, 0.5, 0.25]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 1.5, 4)
    W1 = rng.uniform(0.1, 1.0, (4, 3))
    if silent_hidden:
        W1[:, 2] = -rng.uniform(0.1, 1.0, 4)  # s <= 0: hidden neuron 2 is silent (ReLU)
    th1 = rng.uniform(0.5, 1.5, 3)
    W2 = rng.uniform(-0.2, 1.0, (3, 3))
    counts2 = np.array([4, 2, 1])
    o = counts2 / counts2.max()
    a1 = np.maximum(x @ W1 / th1, 0.0)
    s2 = a1 @ W2
    assert np.all(s2 > 0)
    th2 = s2 / o  # so that the transfer function gives a2 = o exactly
    # round to float32 (what the rule sees) and recompute derived quantities in float64
    W1, th1, W2, th2, x = (np.float64(np.float32(v)) for v in (W1, th1, W2, th2, x))
    return x, W1, th1, W2, th2, counts2


def _loss_2layer(x, y):
    def f(params):
        W1, th1, W2, th2 = params
        a1 = np.maximum(x @ W1 / th1, 0.0)
        a2 = (a1 @ W2) / th2
        return 0.5 * np.sum((a2 - y) ** 2)
    return f


@pytest.mark.parametrize("label", [1, 0, 2])
@pytest.mark.parametrize("silent_hidden", [False, True])
def test_two_layer_gradient_matches_finite_differences(label, silent_hidden):
    x, W1, th1, W2, th2, counts2 = _two_layer_setup(seed=label, silent_hidden=silent_hidden)
    a1 = np.maximum(x @ W1 / th1, 0.0)
    a2 = a1 @ W2 / th2
    counts1 = (a1 > 0).astype(np.int32) * 3
    y = np.eye(3)[label]
    gW, gth, deltas, loss = _grads((W1, W2), (th1, th2), (counts1, counts2), x, (a1, a2), label,
                                   [0.0, 0.0], normalize=False)
    f = _loss_2layer(x, y)
    params = [W1.copy(), th1.copy(), W2.copy(), th2.copy()]
    np.testing.assert_allclose(loss, f(params), rtol=1e-5)
    fW1, fth1, fW2, fth2 = _fd(f, params)
    for got, want in ((gW[0], fW1), (gth[0], fth1), (gW[1], fW2), (gth[1], fth2)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
    if silent_hidden:
        assert np.all(gW[0][:, 2] == 0) and gth[0][2] == 0 and deltas[0][2] == 0
    # the gradient is informative (not trivially zero)
    assert np.abs(gth[1]).max() > 1e-3 and np.abs(gW[0]).max() > 1e-3


def test_threshold_sign_descent_raises_threshold_of_over_responding_neuron():
    # One neuron, a = x w / V_th = 1 (it is the only output, so o = 1), target y = 0 (label elsewhere):
    # it over-responds, so gradient descent must raise V_th and lower w.
    x, w, th = np.array([0.8]), np.array([[0.5, 0.4]]), np.array([0.4, 0.8])
    counts = np.array([3, 0])  # neuron 0 fires (o = 1), neuron 1 silent (o = 0)
    a = np.array([1.0, 0.0])
    gW, gth, deltas, _ = _grads((w,), (th,), (counts,), x, (a,), 1, [0.0], normalize=False)
    assert deltas[0][0] > 0
    assert gth[0][0] < 0, "descent (th -= lr * grad) must raise the over-responding neuron's threshold"
    assert gW[0][0, 0] > 0
    # and the under-responding target neuron 1 (a = 0, y = 1): its weight gradient pushes w up;
    # with a = 0 the threshold gets no gradient (a_hat = 0 without WTA)
    assert gW[0][0, 1] < 0 and gth[0][1] == 0
    # a descent step of the transfer-function loss with these gradients lowers the loss
    lr = 0.05
    th0 = th.copy()
    th_new = th - lr * gth[0]
    w_new = w - lr * gW[0]
    assert th_new[0] > th0[0]
    L = lambda ww, tt: 0.5 * ((x @ ww / tt)[0] - 0.0) ** 2  # noqa: E731
    assert L(w_new, th_new) < L(w, th)


@pytest.mark.parametrize("kappa", [-0.4, -1.0])
def test_wta_threshold_gradient_uses_effective_activity(kappa):
    # One WTA layer of 3 with a = o = [1, 0.5, 0.25]. First-order model (eq. 5/6): with the other
    # neurons' a_j held fixed, a_i = s_i / V_th,i + sigma kappa sum_{j != i} a_j, so
    # dL/dV_th,i = -e_i a_hat_i / V_th,i, a_hat_i = a_i - sigma kappa sum_{j != i} a_j,
    # and dL/dW[k, i] = e_i x_k / V_th,i. Compare with finite differences of that partial model.
    rng = np.random.default_rng(5)
    x = np.float64(np.float32(rng.uniform(0.2, 1.0, 4)))
    counts = np.array([4, 2, 1])
    a = counts / counts.max()
    th = np.float64(np.float32(rng.uniform(0.5, 1.5, 3)))
    others = a.sum() - a
    a_hat = a - SIGMA * kappa * others
    s = th * a_hat  # what x @ W must equal for a to be the fixed point
    W = rng.uniform(0.1, 1.0, (4, 3))
    W *= s / (x @ W)
    W = np.float64(np.float32(W))
    label = 1
    y = np.eye(3)[label]
    gW, gth, deltas, _ = _grads((W,), (th,), (counts,), x, (a,), label, [kappa], normalize=False)

    def f(params):
        Wp, tp = params
        ap = (x @ Wp) / tp + SIGMA * kappa * others  # lateral term frozen (first order)
        return 0.5 * np.sum((ap - y) ** 2)

    fW, fth = _fd(f, [W.copy(), th.copy()])
    np.testing.assert_allclose(gW[0], fW, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(gth[0], fth, rtol=2e-4, atol=1e-6)
    # explicit formula and magnitude: a_hat > a for kappa < 0
    e = a - y
    np.testing.assert_allclose(gth[0], -(e / th) * a_hat, rtol=1e-5)
    assert np.all(a_hat > a)


def test_output_error():
    e, loss = output_error(np.array([2, 4, 0], np.int32), 0)
    np.testing.assert_allclose(e, [0.5 - 1, 1.0, 0.0])
    np.testing.assert_allclose(loss, 0.5 * (0.25 + 1.0))
    e, loss = output_error(np.array([0, 0, 0], np.int32), 2)  # all silent: o = 0
    np.testing.assert_allclose(e, [0.0, 0.0, -1.0])
    np.testing.assert_allclose(loss, 0.5)


def test_normalized_scale_factors_hand_example():
    # 5 inputs (3 active: m0 = 3), hidden 4 (3 active: n1 = 3), output 3 (2 active).
    x = np.array([0.5, 0.0, 1.0, 0.25, 0.0])
    W1 = np.array([[0.5, -0.2, 0.3, 0.1],
                   [0.4, 0.4, 0.4, 0.4],
                   [0.2, 0.1, -0.3, 0.6],
                   [-0.1, 0.5, 0.2, 0.3],
                   [0.3, 0.3, 0.3, 0.3]])
    th1 = np.array([0.5, 1.0, 2.0, 0.8])
    counts1 = np.array([2, 0, 1, 5])
    a1 = np.array([0.9, 0.0, 0.4, 2.5])
    W2 = np.array([[0.3, -0.6, 0.2],
                   [0.9, 0.9, 0.9],
                   [-0.4, 0.7, 0.5],
                   [0.25, 0.1, -0.2]])
    th2 = np.array([1.0, 0.5, 0.25])
    counts2 = np.array([3, 6, 0])
    a2 = np.array([0.7, 1.6, 0.0])
    kappas = [-0.4, -1.0]
    label = 2
    W1, th1, W2, th2, x, a1, a2 = (np.float64(np.float32(v)) for v in (W1, th1, W2, th2, x, a1, a2))
    gW, gth, deltas, _ = _grads((W1, W2), (th1, th2), (counts1, counts2), x, (a1, a2), label, kappas,
                                normalize=True)
    # --- expected, by hand from eqs. 11-12 ---
    e2 = np.array([0.5, 1.0, -1.0])                       # o = [3/6, 1, 0], y = e_2
    g2 = 1.0 / th2
    gbar2 = math.sqrt((g2[0] ** 2 + g2[1] ** 2) / 2)      # RMS over the 2 active outputs
    d2 = g2 / gbar2 * e2                                  # silent output 2 still gets its error
    g1 = 1.0 / th1
    gbar1 = math.sqrt((g1[0] ** 2 + g1[2] ** 2 + g1[3] ** 2) / 3)
    fan2 = math.sqrt(4 / 3)                               # sqrt(M^(2) / m^(2)), m^(2) = n^(1) = 3
    d1 = np.where(counts1 > 0, g1 / gbar1 * fan2 * (W2 @ d2), 0.0)
    np.testing.assert_allclose(deltas[1], d2, rtol=1e-5)
    np.testing.assert_allclose(deltas[0], d1, rtol=1e-5)
    # layer 1: N = 4, M = 5, m = 3; layer 2: N = 3, M = 4, m = 3
    np.testing.assert_allclose(gW[0], math.sqrt(4 / 3) * np.outer(x, d1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gW[1], math.sqrt(3 / 3) * np.outer(a1, d2), rtol=1e-5, atol=1e-7)
    ahat1 = a1 - SIGMA * kappas[0] * (a1.sum() - a1)
    ahat2 = a2 - SIGMA * kappas[1] * (a2.sum() - a2)
    np.testing.assert_allclose(gth[0], -math.sqrt(4 / (3 * 5)) * d1 * ahat1, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gth[1], -math.sqrt(3 / (3 * 4)) * d2 * ahat2, rtol=1e-5, atol=1e-7)
    # inactive inputs (rows 1, 4) and the silent hidden neuron's outgoing row are untouched
    assert np.all(gW[0][[1, 4]] == 0) and np.all(gW[1][1] == 0)
    # the silent output neuron gets a threshold gradient through a_hat (lateral term), lowering it
    assert gth[1][2] > 0


def test_normalize_false_is_plain_chain_rule_on_same_example():
    # Same rule without normalization: delta_out = e / V_th, delta_hidden = (1/V_th) W2 @ delta_out.
    x = np.float64(np.float32([0.5, 0.0, 1.0]))
    W1 = np.float64(np.float32([[0.5, 0.3], [0.2, 0.2], [0.4, -0.1]]))
    th1 = np.float64(np.float32([0.5, 2.0]))
    W2 = np.float64(np.float32([[0.3, 0.8], [0.5, -0.4]]))
    th2 = np.float64(np.float32([1.0, 0.5]))
    counts = (np.array([1, 1]), np.array([1, 2]))
    a1, a2 = np.array([1.0, 0.5]), np.array([0.5, 1.0])
    gW, gth, deltas, _ = _grads((W1, W2), (th1, th2), counts, x, (a1, a2), 0, [0.0, 0.0], normalize=False)
    d2 = (np.array([0.5, 1.0]) - [1, 0]) / th2
    d1 = (W2 @ d2) / th1
    np.testing.assert_allclose(deltas[1], d2, rtol=1e-6)
    np.testing.assert_allclose(deltas[0], d1, rtol=1e-6)
    np.testing.assert_allclose(gW[0], np.outer(x, d1), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(gth[1], -d2 * a2, rtol=1e-5)


def test_no_active_hidden_neuron_stops_backprop():
    W = (np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
    th = (np.ones(2, np.float32), np.ones(2, np.float32))
    gW, gth, deltas, _ = _grads(W, th, (np.zeros(2), np.zeros(2)), [1.0, 1.0], (np.zeros(2), np.zeros(2)),
                                0, [0.0, 0.0], normalize=True)
    np.testing.assert_allclose(deltas[1], [-1.0, 0.0])  # all outputs silent: o = 0, g/g_bar = 1
    assert np.all(deltas[0] == 0) and np.all(gW[0] == 0) and np.all(gth[0] == 0)
    assert np.all(gW[1] == 0)  # the output layer's inputs are silent: no active synapse


# ---- regularizer and floor -------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [0.8, 1.05])
def test_weight_regularizer_matches_finite_differences(scale):
    lam, beta = 0.01, 10.0
    rng = np.random.default_rng(0)
    M, N = 6, 3
    W = rng.uniform(-1, 1, (M, N))
    W *= scale / np.sqrt((W ** 2).sum(axis=0))  # column norms = scale
    W = np.float64(np.float32(W))
    c, loss = weight_regularization(W.astype(np.float32), lam, beta)

    def f(params):
        (Wp,) = params
        return np.sum(0.5 * lam * np.exp(beta * ((Wp ** 2).sum(axis=0) - 1.0)))

    np.testing.assert_allclose(loss, f([W]), rtol=1e-5)
    (fW,) = _fd(f, [W.copy()], h=1e-7)
    np.testing.assert_allclose(c * W, fW, rtol=1e-4, atol=1e-9)
    # soft max-norm: a column with norm^2 > 1 is pulled much harder than one below 1
    np.testing.assert_allclose(c, lam * beta * math.exp(beta * (scale ** 2 - 1)), rtol=1e-5)


def test_enforce_floor_hand_example():
    # Compensation (lee2016.enforce_floor): every weight of the neuron is raised by the refused
    # decrement times raise_per_unit, additively.
    W = np.ones((2, 3), np.float32)
    th = np.array([0.5, 0.2, 0.4], np.float32)
    unmet = np.array([0.0, 0.03, 0.06])
    n = enforce_floor(W, th, 0.3, unmet, 1.0)
    np.testing.assert_allclose(th, [0.5, 0.3, 0.4], rtol=1e-6)
    # neuron 1: refused 0.03 (homeostasis) + 0.1 (below the floor) = 0.13
    # neuron 2: above the floor but 0.06 unmet from homeostasis
    np.testing.assert_allclose(W, [[1.0, 1.13, 1.06]] * 2, rtol=1e-6)
    assert n == 2
    np.testing.assert_array_equal(unmet, [0.0, 0.03, 0.06])  # input not modified
    W = np.ones((2, 3), np.float32)
    th = np.array([0.5, 0.2, 0.4], np.float32)
    assert enforce_floor(W, th, 0.3, unmet, 0.0) == 0
    np.testing.assert_array_equal(W, 1.0)
    np.testing.assert_allclose(th, [0.5, 0.3, 0.4], rtol=1e-6)


def test_floor_raise_drive_reading_moves_drive_by_refused_decrement():
    # "drive" reading: u = D / sum_k x_k, so the drive sum_k w_k x_k rises by exactly D.
    rng = np.random.default_rng(1)
    W = rng.normal(0, 0.1, (5, 3)).astype(np.float32)
    x = np.array([0.5, 0.0, 1.2, 0.3, 0.9])
    th = np.array([0.3, 0.3, 0.5], np.float32)
    unmet = np.array([0.02, 0.0, 0.0])
    drive0 = x @ W
    per_unit = floor_raise_per_unit(FLOOR_MODES["drive"], float(x.sum()))
    assert enforce_floor(W, th, 0.3, unmet, per_unit) == 1
    np.testing.assert_allclose(x @ W - drive0, [0.02, 0.0, 0.0], atol=1e-6)
    assert floor_raise_per_unit(FLOOR_MODES["weight"], 80.0) == 1.0
    assert floor_raise_per_unit(FLOOR_MODES["none"], 80.0) == 0.0
    assert floor_raise_per_unit(FLOOR_MODES["drive"], 0.0) == 0.0


# ---- initialization ---------------------------------------------------------------------------------

def test_initialization_statistics():
    net = Network.create(784, [800, 10], [-0.4, -1.0], alpha=[3.0, 7.0], floor_alpha=1.5, seed=1)
    for l, (M, alpha) in enumerate(((784, 3.0), (800, 7.0))):
        W = net.weights[l].astype(np.float64)
        b = math.sqrt(3.0 / M)
        assert net.weights[l].dtype == np.float32 and net.thresholds[l].dtype == np.float64
        assert np.abs(W).max() <= b + 1e-7
        assert np.abs(W).max() > 0.99 * b  # fills the whole interval
        assert abs(W.mean()) < 0.02 * b
        np.testing.assert_allclose((W ** 2).mean(), 1.0 / M, rtol=0.03)
        # each neuron's squared weight norm starts near 1 (eq. 10)
        np.testing.assert_allclose((W ** 2).sum(axis=0).mean(), 1.0, rtol=0.03)
        np.testing.assert_allclose(net.thresholds[l], alpha * b, rtol=1e-6)
        np.testing.assert_allclose(net.floors[l], 1.5 * b, rtol=1e-9)
    # same seed -> same weights; different seed -> different weights
    again = Network.create(784, [800, 10], [-0.4, -1.0], alpha=[3.0, 7.0], floor_alpha=1.5, seed=1)
    np.testing.assert_array_equal(again.weights[0], net.weights[0])
    other = Network.create(784, [800, 10], [-0.4, -1.0], alpha=[3.0, 7.0], floor_alpha=1.5, seed=2)
    assert not np.array_equal(other.weights[0], net.weights[0])


def test_both_engines_apply_one_regularizer_also_beyond_the_overflow_cap():
    # eq. 13 with the same overflow policy in the numba rule and the torch rule: equal loss and
    # gradient for columns below, near and far above the cap (|w|^2 = 0.5, 3.9, 10, 40 at beta 10).
    import torch

    from snnbp.dense.lee2016_function import exp_weight_regularizer
    from snnbp.gradient.lee2016 import EXP_CAP, weight_regularization

    lam, beta, M = 0.01, 10.0, 16
    W = np.ones((M, 4), np.float32) * np.sqrt(np.array([0.5, 3.9, 10.0, 40.0]) / M).astype(np.float32)
    c, loss = weight_regularization(W, lam, beta)
    assert np.all(np.isfinite(c)) and math.isfinite(loss)
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    lt = exp_weight_regularizer(Wt, lam, beta)
    lt.backward()
    assert float(lt.detach()) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(Wt.grad.numpy(), c * W.astype(np.float64), rtol=1e-5)
    z = beta * ((W.astype(np.float64) ** 2).sum(0) - 1.0)
    assert z[-1] > EXP_CAP > z[0]  # the test spans both sides of the cap
