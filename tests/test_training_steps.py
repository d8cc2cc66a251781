"""Training steps (train/event_steps.py, train/trainer.py): the fused per-sample SGD path against the
minibatch path (engine + batch_gradients + torch optimizer), and Adam wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from snnbp.data.events import EventBatch
from snnbp.event_engine.engine import run_events
from snnbp.model import Network
from snnbp.neuron import NeuronParams
from snnbp.config import OptimConfig
from snnbp.gradient.lee2016 import weight_regularization
from snnbp.train.event_steps import batch_gradients
from snnbp.train.event_trainer import EventTrainer

M, SIZES, KAPPAS = 8, (6, 3), (-0.4, -1.0)


def _net(seed=0, floor=0.3):
    rng = np.random.default_rng(seed)
    ws, ths, fan = [], [], M
    for n in SIZES:
        ws.append(rng.uniform(-0.3, 0.7, (fan, n)).astype(np.float32))
        ths.append(rng.uniform(0.8, 1.2, n).astype(np.float32))
        fan = n
    return Network(M, ws, ths, list(KAPPAS), [floor] * len(SIZES), NeuronParams(tau_mp_ms=20.0))


def _batch(seed=0, n_samples=3, n_events=120, t_ms=40.0, all_channels=False):
    rng = np.random.default_rng(100 + seed)
    chs, ts = [], []
    for _ in range(n_samples):
        ch = rng.integers(0, M, n_events).astype(np.int32)
        if all_channels:
            ch[:M] = np.arange(M)
        chs.append(ch)
        ts.append(np.sort(rng.uniform(0, t_ms * 1000.0, n_events)))
    return EventBatch.from_lists(chs, ts, [t_ms * 1000.0] * n_samples)


def _cfg(**kw):
    base = dict(name="sgd", lr=0.01, lr_th_ratio=0.1, batch_size=1, lam=0.01, beta=10.0)
    base.update(kw)
    return OptimConfig(**base)


def _minibatch_sgd_trainer(net, **kw):
    """EventTrainer on the minibatch path (torch.optim.SGD) but with batch size 1.

    The constructor only builds the torch optimizer when the config is not (sgd, batch 1), so build
    it with batch_size=2 and then set the batch size to 1: step_chunk then runs one engine call,
    one batch_gradients call and one optimizer.step() per sample.
    """
    tr = EventTrainer(net, _cfg(batch_size=2, **kw))
    assert not tr.fused and tr.optimizer is not None
    tr.cfg.batch_size = 1
    return tr


@pytest.mark.parametrize("n_samples", [1, 3])
@pytest.mark.parametrize("floor,mode", [(0.3, "drive"), (0.97, "drive"), (0.97, "silent")])  # 0.97: the floor
def test_fused_sgd_equals_minibatch_sgd_batch1(n_samples, floor, mode):                     # is hit
    # lam = 0 here: the two paths apply the weight regularizer differently (see the next test).
    batch = _batch(n_samples=n_samples)
    labels = np.array([0, 2, 1][:n_samples])
    rho = 2e-3
    net_a, net_b = _net(floor=floor), _net(floor=floor)
    tr_a = EventTrainer(net_a, _cfg(lam=0.0, floor_compensation=mode))
    assert tr_a.fused and tr_a.optimizer is None
    tr_b = _minibatch_sgd_trainer(net_b, lam=0.0, floor_compensation=mode)
    before = _net(floor=floor)
    res = run_events(before, batch, train=True, rho=rho)
    assert all(c.sum() > 0 for c in res.counts), "test needs activity in every layer"
    assert (res.unmet[0].max() > 0) == (floor > 0.5)
    st_a = tr_a.step_chunk(batch, labels, 0.01, rho)
    st_b = tr_b.step_chunk(batch, labels, 0.01, rho)
    for l in range(net_a.n_layers):
        assert not np.allclose(net_a.weights[l], before.weights[l], atol=1e-6)
        assert not np.allclose(net_a.thresholds[l], before.thresholds[l], atol=1e-7)
        np.testing.assert_allclose(net_a.weights[l], net_b.weights[l], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(net_a.thresholds[l], net_b.thresholds[l], rtol=1e-5, atol=1e-6)
        assert np.all(net_a.thresholds[l] >= floor - 1e-7)
    assert st_a.samples == st_b.samples == n_samples
    assert st_a.correct == st_b.correct and st_a.synops == st_b.synops
    np.testing.assert_array_equal(st_a.spikes, st_b.spikes)
    np.testing.assert_allclose(st_a.loss, st_b.loss, rtol=1e-6)


def test_regularizer_step_fused_vs_minibatch():
    # With lam > 0 the fused path shrinks hidden weights semi-implicitly, W / (1 + lr c), while the
    # torch path takes the explicit gradient step W (1 - lr c) (c_i = lam beta exp(beta(|w_i|^2-1))).
    # Everything else is identical, so for one sample the difference is exactly
    # W0 (1 / (1 + lr c) - (1 - lr c)) on the hidden layer and 0 on the (unregularized) output layer.
    batch = _batch(n_samples=1)
    labels = np.array([0])
    lr, lam = 0.01, 0.01
    net_a, net_b, before = _net(), _net(), _net()
    st_a = EventTrainer(net_a, _cfg(lam=lam)).step_chunk(batch, labels, lr, 2e-3)
    st_b = _minibatch_sgd_trainer(net_b, lam=lam).step_chunk(batch, labels, lr, 2e-3)
    c, _ = weight_regularization(before.weights[0], lam, 10.0)
    expect = before.weights[0] * (1.0 / (1.0 + lr * c) - (1.0 - lr * c))
    assert np.abs(expect).max() > 1e-3  # some columns have |w|^2 > 1, where lr c is not small
    np.testing.assert_allclose(net_a.weights[0] - net_b.weights[0], expect, atol=2e-6)
    np.testing.assert_allclose(net_a.weights[1], net_b.weights[1], rtol=1e-5, atol=1e-6)
    for l in range(2):
        np.testing.assert_allclose(net_a.thresholds[l], net_b.thresholds[l], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st_a.reg_loss, st_b.reg_loss, rtol=1e-5)
    assert st_a.reg_loss > 0
    # to first order in lr c they agree: scale the weights down so that |w_i|^2 < 1 everywhere
    small_a, small_b = _net(), _net()
    for n in (small_a, small_b):
        n.weights[0] *= 0.7
    EventTrainer(small_a, _cfg(lam=lam)).step_chunk(batch, labels, lr, 0.0)
    _minibatch_sgd_trainer(small_b, lam=lam).step_chunk(batch, labels, lr, 0.0)
    np.testing.assert_allclose(small_a.weights[0], small_b.weights[0], atol=2e-6)


def test_minibatch_of_identical_samples_equals_single_sample():
    # batch_gradients averages per-sample gradients: B copies of one sample give that sample's
    # gradient step (rho = 0 here: homeostasis is summed, see the next test).
    one = _batch(n_samples=1)
    ch, t = one.sample(0)
    two = EventBatch.from_lists([ch, ch], [t, t], [one.t_end_us[0]] * 2)
    net_a, net_b = _net(), _net()
    tr_a = _minibatch_sgd_trainer(net_a)
    tr_b = EventTrainer(net_b, _cfg(batch_size=2))
    tr_a.step_chunk(one, np.array([1]), 0.01, 0.0)
    tr_b.step_chunk(two, np.array([1, 1]), 0.01, 0.0)
    for l in range(net_a.n_layers):
        np.testing.assert_allclose(net_a.weights[l], net_b.weights[l], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(net_a.thresholds[l], net_b.thresholds[l], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,batch_size", [("sgd", 3), ("adam", 3), ("sgd", 1)])
def test_homeostasis_per_sample_strength_is_independent_of_batch_size(name, batch_size):
    # Homeostasis is a per-sample rule (docs/method.md 4.4): a batch of B samples commits the sum of the
    # B samples' threshold changes, each simulated from the same starting thresholds. With lr = 0
    # only homeostasis acts, so batch size 3 must move the thresholds by sum_b dth_b, where the
    # old averaging moved them by a third of that.
    batch, labels, rho = _batch(n_samples=3), np.array([0, 2, 1]), 2e-3
    net, ref = _net(floor=0.0), _net(floor=0.0)
    dth = run_events(ref, batch, train=True, rho=rho).dth
    assert all(np.abs(d).sum() > 0 for d in dth), "test needs homeostasis in every layer"
    EventTrainer(net, _cfg(name=name, batch_size=batch_size, lam=0.0, lr=1e-30)).step_chunk(
        batch, labels, 0.0 if name == "sgd" else 1e-30, rho)
    for l in range(net.n_layers):
        if batch_size == 1:  # sequential: each sample starts from the previous one's thresholds
            assert np.abs(net.thresholds[l] - ref.thresholds[l]).sum() > 0
            continue
        np.testing.assert_allclose(net.thresholds[l], ref.thresholds[l] + dth[l].sum(axis=0), atol=2e-6)


def test_homeostasis_conserves_threshold_sum_with_units_held_at_the_floor():
    # The floor refuses decrements of neurons sitting on it; the refused amount is taken from the
    # neurons still above the floor, so the layer's threshold sum is unchanged (kernels._homeostasis).
    # Without that the sum only climbs (the ratchet this test guards against).
    batch = _batch(n_samples=4)
    net = _net(floor=0.0)
    net.thresholds[0][:] = [0.8, 1.0, 0.9, 1.1, 0.95, 0.85]
    net.floors[0] = 0.9  # neurons 0, 2, 5 start on (or below) the floor: held there
    net.thresholds[0][[0, 2, 5]] = 0.9
    res = run_events(net, batch, train=True, rho=3e-3)
    unmet = res.unmet[0]
    assert unmet.sum() > 0, "test needs decrements refused by the floor"
    for b in range(len(batch)):
        if res.counts[0][b].sum() == 0:
            continue
        np.testing.assert_allclose(res.dth[0][b].sum(), 0.0, atol=1e-5)
        assert np.all(net.thresholds[0] + res.dth[0][b] >= 0.9 - 1e-6)


def test_regularizer_shrinks_weights_at_the_smallest_learning_rate_of_the_schedule():
    # Paper schedule: lr 0.004 x exp(-200/35) = 1.3e-5 at epoch 200. With |w_i|^2 = 0.5, c_i =
    # lam beta exp(-5) = 6.7e-4, so lr c_i ~ 1e-8 per sample: below float32 resolution near 1
    # (6e-8), so a float32 factor 1 / (1 + lr c) is exactly 1. The fused step keeps the scale in
    # float64 over a chunk and must shrink the weights by (1 + lr c)^-n after n samples.
    n_samples, lr, lam = 400, 0.004 * math.exp(-200 / 35), 0.01
    batch = _batch(n_samples=n_samples, n_events=30)
    net = _net(floor=0.0)
    net.weights[0] *= np.float32(math.sqrt(0.5) / np.sqrt((net.weights[0] ** 2).sum(0))).astype(np.float32)
    w0 = net.weights[0].astype(np.float64).copy()
    c, _ = weight_regularization(net.weights[0], lam, 10.0)
    assert (lr * c).max() < 3e-8  # the regime where the float32 factor rounds to 1
    # lr for the data gradient would swamp the effect; thresholds out of reach keep the net silent
    for th in net.thresholds:
        th[:] = 1e6
    EventTrainer(net, _cfg(lam=lam, lr=lr)).step_chunk(batch, np.zeros(n_samples, np.int64), lr, 0.0)
    shrink = net.weights[0].astype(np.float64) / w0
    np.testing.assert_allclose(shrink, np.broadcast_to((1.0 + lr * c) ** -n_samples, shrink.shape), rtol=5e-8 * 20)
    assert np.all(shrink < 1.0)


def test_adam_updates_every_parameter():
    # One sample in which every input channel fires, every hidden neuron fires and every output
    # fires, with the label on the least active output: then every data gradient entry is nonzero.
    batch = _batch(n_samples=1, n_events=200, all_channels=True)
    net = _net(seed=3, floor=0.0)
    res = run_events(net, batch)
    assert np.all(res.x_in > 0)
    assert np.all(res.counts[0] > 0) and np.all(res.counts[1] > 0), [c.tolist() for c in res.counts]
    out = res.counts[1][0]
    label = int(np.argmin(out))
    assert out[label] < out.max()
    # the gradient the optimizer should see
    gW = tuple(np.zeros_like(w) for w in net.weights)
    gth = tuple(np.zeros_like(t) for t in net.thresholds)
    p = net.neuron
    batch_gradients(tuple(net.weights), tuple(net.thresholds), np.asarray(net.kappas),
                    np.array([True, False]), res.x_in, tuple(res.traces), tuple(res.counts),
                    np.array([label], np.int64), p.gamma, p.sigma, 0.01, 10.0, True, gW, gth,
                    tuple(np.zeros((1, n)) for n in net.sizes), np.zeros(4))
    for g in gW + gth:
        assert np.all(np.isfinite(g)) and np.all(g != 0)
    before = _net(seed=3, floor=0.0)
    lr = 1e-3
    tr = EventTrainer(net, _cfg(name="adam", lr_th_ratio=1.0, lam=0.01))
    assert not tr.fused and tr.optimizer is not None
    tr.step_chunk(batch, np.array([label]), lr, 0.0)  # rho = 0: no homeostasis, floor 0: no compensation
    for l in range(net.n_layers):
        dW = net.weights[l] - before.weights[l]
        dth = net.thresholds[l] - before.thresholds[l]
        assert np.all(np.isfinite(dW)) and np.all(np.isfinite(dth))
        assert np.all(dW != 0) and np.all(dth != 0)
        # Adam's first step is lr * sign(grad) (|grad| >> eps): the torch optimizer sees our buffers
        np.testing.assert_allclose(dW, -lr * np.sign(gW[l]), rtol=1e-3, atol=1e-7)
        np.testing.assert_allclose(dth, -lr * np.sign(gth[l]), rtol=1e-3, atol=1e-7)


def test_sgd_step_descends_threshold_of_over_responding_output():
    # Integration check of the threshold sign through the fused path: a sample where output 0 fires
    # most but the label is another neuron -> output 0's threshold must rise (homeostasis off).
    batch = _batch(n_samples=1)
    net = _net(floor=0.0)
    out = run_events(net, batch).counts[1][0]
    winner = int(np.argmax(out))
    label = (winner + 1) % 3
    th0 = net.thresholds[1].copy()
    EventTrainer(net, _cfg(lam=0.0)).step_chunk(batch, np.array([label]), 0.01, 0.0)
    assert net.thresholds[1][winner] > th0[winner]


@pytest.mark.parametrize("mode", ["drive", "silent", "weight"])
def test_lazy_columns_equal_applying_every_step_at_once(mode):
    # The fused step keeps the regularizer's shrinkage and the floor compensation as per-neuron
    # scale / offset and folds them into W at the end of its call. One call over 6 samples must
    # equal 6 calls of one sample each (each folding at once), with both mechanisms active.
    batch, labels = _batch(n_samples=6), np.array([0, 2, 1, 1, 0, 2])
    net_a, net_b = _net(floor=0.97), _net(floor=0.97)
    cfg = dict(lam=0.01, floor_compensation=mode)
    tr_a, tr_b = EventTrainer(net_a, _cfg(**cfg)), EventTrainer(net_b, _cfg(**cfg))
    res = run_events(_net(floor=0.97), batch, train=True, rho=2e-3)
    assert res.unmet[0].max() > 0, "test needs floor compensation"
    c, _ = weight_regularization(_net().weights[0], 0.01, 10.0)
    assert (0.01 * c).max() > 1e-3, "test needs a regularizer step that matters"
    tr_a.step_chunk(batch, labels, 0.01, 2e-3)
    for b in range(len(batch)):
        ch, t = batch.sample(b)
        tr_b.step_chunk(EventBatch.from_lists([ch], [t], [batch.t_end_us[b]]), labels[b:b + 1], 0.01, 2e-3)
    for l in range(net_a.n_layers):
        np.testing.assert_allclose(net_a.weights[l], net_b.weights[l], rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(net_a.thresholds[l], net_b.thresholds[l], rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("name,batch_size", [("sgd", 1), ("adam", 4)])
def test_homeostasis_stays_zero_sum_at_the_smallest_rho_of_the_schedule(name, batch_size):
    # Late in the paper's schedule rho has decayed by exp(-200/35): rho n_s per neuron (~1e-8) is
    # below half a float32 ulp of a threshold near 1 (6e-8), while the spiker's rise rho N is not.
    # With float32 thresholds every decrement rounded away and the layer's sum only climbed (the
    # late rise of hidden thresholds and fall of activity in results/mnist-800-float32-thresholds). Thresholds are
    # kept in float64, so the sum must stay put to float64 precision.
    rho = 2e-8
    batch, labels = _batch(n_samples=8), np.arange(8) % 3
    net = _net(floor=0.0)
    assert net.thresholds[0].dtype == np.float64
    sums = [float(t.sum()) for t in net.thresholds]
    spikes = EventTrainer(net, _cfg(name=name, batch_size=batch_size, lam=0.0, lr=0.0)).step_chunk(
        batch, labels, 0.0, rho).spikes
    for l in range(net.n_layers):
        rise = rho * net.sizes[l] * spikes[l]  # what the spikers gained in total
        assert spikes[l] > 0 and rise > 0
        assert abs(float(net.thresholds[l].sum()) - sums[l]) < 1e-6 * rise, l


@pytest.mark.parametrize("weight_reg,threshold_optimizer", [("coupled", "same"), ("decoupled", "same"),
                                                             ("decoupled", "sgd")])
@pytest.mark.parametrize("floor", [0.3, 0.97])  # 0.97: homeostasis hits the floor -> weight compensation
def test_fused_adam_equals_torch_adam_batch1(floor, weight_reg, threshold_optimizer):
    # Two chunks (Adam's step count and moments must carry over), regularizer and homeostasis on:
    # unlike SGD, both paths take the same eq. 13 step (inside Adam's gradient, or after Adam's step).
    # threshold_optimizer "sgd": torch Adam on the weights + torch SGD on the thresholds, fused alike.
    kw = dict(name="adam", lr_th_ratio=1.0, lam=0.5, weight_reg=weight_reg, threshold_optimizer=threshold_optimizer)
    rho, lr = 2e-3, 3e-3
    net_a, net_b = _net(floor=floor), _net(floor=floor)
    tr_a = EventTrainer(net_a, _cfg(**kw))
    assert tr_a.fused_adam
    tr_b = EventTrainer(net_b, _cfg(batch_size=2, **kw))
    assert not tr_b.fused_adam
    tr_b.cfg.batch_size = 1  # minibatch path, one torch.optim.Adam step per sample
    before = _net(floor=floor)
    for chunk in range(2):
        batch = _batch(seed=chunk, n_samples=3)
        labels = np.array([0, 2, 1])
        st_a = tr_a.step_chunk(batch, labels, lr, rho)
        st_b = tr_b.step_chunk(batch, labels, lr, rho)
        assert st_a.correct == st_b.correct and st_a.synops == st_b.synops
        np.testing.assert_array_equal(st_a.spikes, st_b.spikes)
        np.testing.assert_allclose([st_a.loss, st_a.reg_loss], [st_b.loss, st_b.reg_loss], rtol=1e-5)
    for l in range(net_a.n_layers):
        assert not np.allclose(net_a.weights[l], before.weights[l], atol=1e-4)
        np.testing.assert_allclose(net_a.weights[l], net_b.weights[l], rtol=1e-4, atol=2e-6)
        np.testing.assert_allclose(net_a.thresholds[l], net_b.thresholds[l], rtol=1e-4, atol=2e-6)
        assert np.all(net_a.thresholds[l] >= floor - 1e-7)
    ta, ma = tr_a.state_tensors()
    tb, mb = tr_b.state_tensors()
    assert sorted(ta) == sorted(tb) and ma == mb  # same checkpoint format, same step counts (6)
    assert set(ma.values()) == {6.0}
    # Adam's moments for every weight matrix, and for the thresholds only when Adam steps them.
    assert len(ta) == 2 * net_a.n_layers * (1 if threshold_optimizer == "sgd" else 2)
    for k in ta:
        np.testing.assert_allclose(ta[k], tb[k], rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_adam_with_sgd_thresholds_steps_thresholds_as_sgd(batch_size):
    # On the first sample the deltas come from the same initial parameters, so thresholds stepped by
    # SGD under Adam (optim.threshold_optimizer = "sgd") must equal plain SGD's, and differ from Adam's.
    batch, labels = _batch(seed=3, n_samples=batch_size), np.array([2, 0])[:batch_size]
    ratios, lr = [1.0, 5.0], 3e-3
    after = {}
    for name, th_opt in (("sgd", "same"), ("adam", "sgd"), ("adam", "same")):
        net = _net(floor=0.0)
        tr = EventTrainer(net, _cfg(name=name, batch_size=batch_size, lr_th_ratio=ratios, lam=0.0,
                                    threshold_optimizer=th_opt))
        tr.step_chunk(batch, labels, lr, 1e-3)
        after[name, th_opt] = [t.copy() for t in net.thresholds]
    init = _net(floor=0.0).thresholds
    for l in range(len(init)):
        moved = np.abs(after["sgd", "same"][l] - init[l]).max()
        assert moved > 0, l
        np.testing.assert_allclose(after["adam", "sgd"][l], after["sgd", "same"][l], rtol=1e-6, atol=1e-9 * moved)
        # Adam's first step is lr_th sign(g) per threshold, far from SGD's lr_th g with |g| << 1.
        assert np.abs(after["adam", "same"][l] - after["adam", "sgd"][l]).max() > 0.5 * lr * ratios[l], l


def test_fused_adam_resumes_from_its_state_tensors():
    # Train 2 chunks; separately train 1, checkpoint (state tensors + parameters), restore into a
    # fresh trainer and train the 2nd: the results are equal bit for bit.
    kw = dict(name="adam", lr_th_ratio=1.0, lam=0.01)
    batches = [_batch(seed=s, n_samples=2) for s in range(2)]
    labels = np.array([1, 0])
    ref = _net()
    tr = EventTrainer(ref, _cfg(**kw))
    for b in batches:
        tr.step_chunk(b, labels, 2e-3, 1e-3)
    first = _net()
    tr1 = EventTrainer(first, _cfg(**kw))
    tr1.step_chunk(batches[0], labels, 2e-3, 1e-3)
    tensors, meta = tr1.state_tensors()
    resumed = _net()
    for l in range(resumed.n_layers):
        resumed.weights[l][:] = first.weights[l]
        resumed.thresholds[l][:] = first.thresholds[l]
    tr2 = EventTrainer(resumed, _cfg(**kw))
    tr2.load_state_tensors(tensors, meta)
    tr2.step_chunk(batches[1], labels, 2e-3, 1e-3)
    for l in range(ref.n_layers):
        np.testing.assert_array_equal(resumed.weights[l], ref.weights[l])
        np.testing.assert_array_equal(resumed.thresholds[l], ref.thresholds[l])


@pytest.mark.parametrize("fused", [True, False])
def test_decoupled_regularizer_spares_weights_without_data_gradient(fused):
    # Input channel 7 never fires, so its weights get no data gradient. Coupled (eq. 13 inside Adam's
    # gradient), Adam normalizes the tiny pull c w into steps of size ~lr; decoupled, the weights only
    # shrink by the factor 1 / (1 + lr c) per step, which for |w|^2 < 1 is almost 1.
    batch = EventBatch.from_lists([np.array(list(range(7)) * 20, np.int32)] * 3,
                                  [np.linspace(0, 39e3, 140)] * 3, [40e3] * 3)
    lr = 1e-2
    delta = {}
    for weight_reg in ("coupled", "decoupled"):
        net = _net(seed=2)
        net.weights[0] *= 0.4  # |w_i|^2 < 1: eq. 13's pull is weak (c_i ~ 1e-3)
        w7 = net.weights[0][7].copy()
        c, _ = weight_regularization(net.weights[0], 0.01, 10.0)
        tr = EventTrainer(net, _cfg(name="adam", lr_th_ratio=1.0, lam=0.01, weight_reg=weight_reg,
                                    batch_size=1 if fused else 2))
        if not fused:
            tr.cfg.batch_size = 1
        assert tr.fused_adam == fused
        tr.step_chunk(batch, np.array([0, 1, 2]), lr, 0.0)
        delta[weight_reg] = np.abs(net.weights[0][7] - w7)
    assert c.max() < 0.05
    # coupled: three Adam steps of ~lr each (fewer net where a small weight crosses zero)
    assert np.all(delta["coupled"] > 2 * lr), delta["coupled"]
    # decoupled: |w| (1 - (1 + lr c)^-3) <= 3 lr c |w|, up to float32 rounding of the three products
    assert delta["decoupled"].max() > 0
    assert np.all(delta["decoupled"] <= 3 * lr * c * np.abs(w7) + 8 * np.spacing(np.abs(w7))), (delta["decoupled"], c)


def test_training_steps_flush_subnormals_and_restore_the_mode():
    # Adam moments of silent inputs decay into the subnormal range, where x86 arithmetic is tens of
    # times slower (per-sample Adam 0.43 -> 2.26 ms per sample). step_chunk flushes them (the
    # compiled step runs on the same thread, so it must obey the mode) and restores the mode after.
    import torch

    from snnbp.train.protocol import _subnormals_flushed_now, subnormals_flushed

    torch.set_flush_denormal(False)
    assert not _subnormals_flushed_now()
    with subnormals_flushed():
        assert _subnormals_flushed_now()
    assert not _subnormals_flushed_now()
    net = _net()
    tr = EventTrainer(net, _cfg(name="adam", lr=1e-3, lr_th_ratio=1.0, lam=0.0))
    assert tr.fused_adam
    ch = np.arange(120, dtype=np.int32) % (M - 1)  # input channel M - 1 stays silent: zero gradient in its row
    batch = EventBatch.from_lists([ch], [np.linspace(0.0, 30000.0, 120)], [30000.0])
    tr.step_chunk(batch, np.array([1]), 1e-3, 0.0)  # creates the moments
    m = tr.optimizer.state[tr._w_t[0]]["exp_avg"]
    m[M - 1] = 1.2e-38  # normal; beta1 times it (1.08e-38) is subnormal
    tr.step_chunk(batch, np.array([1]), 1e-3, 0.0)
    assert float(m[M - 1].abs().max()) == 0.0  # flushed inside the compiled Adam step
    assert not _subnormals_flushed_now()


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_silent_floor_compensation_raises_only_neurons_that_did_not_fire(name):
    # "silent": the refused homeostatic decrement becomes a weight raise only for a neuron held at the
    # floor that stayed silent in the sample; "drive" raises every floor-held neuron.
    def net_with_a_silent_neuron():
        net = _net(floor=0.97)
        net.weights[0][:, 0] = -0.5  # neuron 0 never reaches its threshold
        net.thresholds[0][0] = 0.97  # and sits on the floor
        return net

    batch, labels, rho = _batch(n_samples=1), np.array([1]), 2e-3
    res = run_events(net_with_a_silent_neuron(), batch, train=True, rho=rho)
    unmet, counts = res.unmet[0][0], res.counts[0][0]
    assert (unmet > 0).any() and ((unmet > 0) & (counts > 0)).any(), "test needs a firing neuron on the floor"
    assert ((unmet > 0) & (counts == 0)).any(), "test needs a silent neuron on the floor"
    moved = {}
    for mode in ("drive", "silent", "none"):
        net = net_with_a_silent_neuron()
        EventTrainer(net, _cfg(name=name, lam=0.0, lr=0.0, lr_th_ratio=0.0, floor_compensation=mode)).step_chunk(
            batch, labels, 0.0, rho)  # lr 0: only homeostasis and the floor act
        moved[mode] = np.abs(net.weights[0] - net_with_a_silent_neuron().weights[0]).max(axis=0) > 0
    assert not moved["none"].any()
    np.testing.assert_array_equal(moved["drive"], unmet > 0)
    np.testing.assert_array_equal(moved["silent"], (unmet > 0) & (counts == 0))


@pytest.mark.parametrize("name,batch_size", [("sgd", 1), ("sgd", 2), ("adam", 1), ("adam", 2)])
def test_threshold_rates_are_per_layer_and_switch_in_the_warm_up(name, batch_size):
    # optim.lr_th_ratio per layer (train.protocol.threshold_rate_ratios): a layer at ratio 0 keeps its
    # thresholds (homeostasis off), the other learns; in the warm-up epoch optim.warmup_lr_th_ratio
    # applies instead. Every path: fused SGD / Adam (batch 1) and the torch optimizers (batch 2).
    batch, labels = _batch(n_samples=4, all_channels=True), np.array([0, 2, 1, 0])
    for warmup in (False, True):
        net, before = _net(), _net()
        tr = EventTrainer(net, _cfg(name=name, batch_size=batch_size, lr_th_ratio=[0.0, 1.0],
                                    warmup_lr_th_ratio=[1.0, 0.0]))
        assert (tr.fused or tr.fused_adam) == (batch_size == 1)
        tr.step_chunk(batch, labels, 0.05, 0.0, warmup=warmup)
        frozen, learning = (1, 0) if warmup else (0, 1)
        np.testing.assert_array_equal(net.thresholds[frozen], before.thresholds[frozen])
        assert np.abs(net.thresholds[learning] - before.thresholds[learning]).max() > 1e-6
        assert not np.array_equal(net.weights[frozen], before.weights[frozen])  # weights learn in both


def test_threshold_rate_ratios_broadcast_one_value_and_fall_back_outside_the_warm_up():
    from snnbp.train.protocol import threshold_rate_ratios
    np.testing.assert_array_equal(threshold_rate_ratios(_cfg(lr_th_ratio=[10.0]), 3), [10.0, 10.0, 10.0])
    cfg = _cfg(lr_th_ratio=[1.0, 1.0, 10.0], warmup_lr_th_ratio=[10.0])
    np.testing.assert_array_equal(threshold_rate_ratios(cfg, 3), [1.0, 1.0, 10.0])
    np.testing.assert_array_equal(threshold_rate_ratios(cfg, 3, warmup=True), [10.0, 10.0, 10.0])
    no_warmup_value = _cfg(lr_th_ratio=[1.0, 10.0])
    np.testing.assert_array_equal(threshold_rate_ratios(no_warmup_value, 2, warmup=True), [1.0, 10.0])


def test_batch_homeostasis_commit_is_zero_sum_at_the_floor():
    from snnbp.gradient.lee2016 import commit_batch_homeostasis

    floor = 0.5
    th = np.array([0.51, 0.9, 1.2, 0.7])
    dth = np.array([-0.05, 0.03, 0.03, -0.01])  # summed over a batch: zero-sum, but 0.04 too much for unit 0
    unmet = np.zeros(4)
    commit_batch_homeostasis(th, dth, floor, unmet, th.copy())
    np.testing.assert_allclose(th.sum(), 0.51 + 0.9 + 1.2 + 0.7)
    assert th[0] == floor and np.all(th >= floor)
    np.testing.assert_allclose(unmet, [0.04, 0.0, 0.0, 0.0])
    # A threshold the gradient step put below the floor (no homeostatic decrement) is not touched here.
    th2, un2 = np.array([0.4, 1.0]), np.zeros(2)
    commit_batch_homeostasis(th2, np.array([0.0, 0.0]), floor, un2, th2.copy())
    np.testing.assert_array_equal(th2, [0.4, 1.0])


@pytest.mark.parametrize("trainer", ["event", "dense"])
def test_minibatch_homeostasis_conserves_threshold_sum_with_units_near_the_floor(trainer):
    # Every sample of a batch starts from the same thresholds, so the batch's summed decrements of a
    # unit near the floor can exceed its distance to it; clamping that sum while the spikers' rises
    # count in full ratcheted the thresholds upward. With lr = 0 only homeostasis acts: the layer's
    # sum must be unchanged and no threshold below the floor.
    from snnbp.train.dense_trainer import DenseTrainer

    batch, labels, rho = _batch(n_samples=8, n_events=200), np.arange(8) % 3, 3e-3
    net = _net(floor=0.0)
    net.floors[0] = 0.9
    net.thresholds[0][:] = [0.905, 1.0, 0.91, 1.1, 0.95, 0.902]
    before = net.thresholds[0].astype(np.float64).sum()
    if trainer == "event":
        EventTrainer(net, _cfg(batch_size=8, lam=0.0, floor_compensation="none")).step_chunk(batch, labels, 0.0, rho)
    else:
        DenseTrainer(net, _cfg(batch_size=8, lam=0.0, floor_compensation="none"), forward="event").step_chunk(
            batch, labels, 0.0, rho)
    dth = run_events(_net(floor=0.0), batch, train=True, rho=rho).dth[0]
    assert np.abs(dth).sum() > 0, "test needs homeostasis"
    assert np.all(net.thresholds[0] >= 0.9 - 1e-6)
    np.testing.assert_allclose(net.thresholds[0].astype(np.float64).sum(), before, atol=1e-5)
    assert np.abs(net.thresholds[0] - np.array([0.905, 1.0, 0.91, 1.1, 0.95, 0.902])).max() > 1e-4
