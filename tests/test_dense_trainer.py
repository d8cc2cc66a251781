"""DenseTrainer (dense/trainer.py), the BPTT rule (dense/bptt.py), config keys and the loop wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from snnbp.data.events import EventBatch
from snnbp.dense.bptt import SurrogateBPTT
from snnbp.dense.lee2016_function import Lee2016Rule
from snnbp.dense.model import DenseSNN
from snnbp.train.dense_trainer import DenseEngine, DenseTrainer, enforce_floor_
from snnbp.errors import ConfigError
from snnbp.gradient.lee2016 import FLOOR_MODES, commit_batch_homeostasis, enforce_floor, floor_raise_per_unit
from snnbp.model import Network
from snnbp.neuron import NeuronParams
from snnbp.config import OptimConfig, load_config
from snnbp.train.build import make_rule, make_trainer
from snnbp.train.event_steps import batch_gradients
from snnbp.train.event_trainer import EventTrainer

M = 30


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _net(floor_alpha=0.5):
    return Network.create(M, [20, 10], [-0.4, -1.0], alpha=[2.0], floor_alpha=floor_alpha,
                          neuron=NeuronParams(tau_mp_ms=20.0), seed=7)


def _batch(B=8, E=200, t_ms=30.0, seed=0):
    rng = np.random.default_rng(seed)
    return EventBatch.from_lists([rng.integers(0, M, E).astype(np.int32) for _ in range(B)],
                                 [np.sort(rng.uniform(0, t_ms * 1000.0, E)) for _ in range(B)], [t_ms * 1000.0] * B)


def _cfg(**kw):
    base = dict(name="sgd", lr=0.01, lr_th_ratio=0.1, batch_size=4, lam=0.01, beta=10.0)
    base.update(kw)
    return OptimConfig(**base)


@pytest.mark.parametrize("floor_alpha", [0.5, 1.99])  # 1.99: homeostasis hits the floor -> compensation
def test_sgd_step_equals_numba_rule_plus_sgd_plus_commit(floor_alpha):
    net, ref = _net(floor_alpha), _net(floor_alpha)
    batch, labels, rho, lr = _batch(B=4), np.array([1, 2, 3, 4]), 2e-3, 0.01
    tr = DenseTrainer(net, _cfg(), dt_ms=0.5)
    st = tr.step_chunk(batch, labels, lr, rho)
    # By hand: dense forward, numba gradient on its traces, SGD, homeostasis, floor (train/trainer.py).
    res = DenseSNN.from_network(ref, 0.5).simulate(batch, train=True, rho=rho).to_numpy()
    assert (res.unmet[0].max() > 0) == (floor_alpha > 1)
    gw = [np.zeros_like(w) for w in ref.weights]
    gth = [np.zeros_like(t) for t in ref.thresholds]
    stats = np.zeros(5)
    batch_gradients(tuple(ref.weights), tuple(ref.thresholds), np.asarray(ref.kappas), np.array([True, False]),
                    res.x_in, tuple(res.traces), tuple(res.counts), labels, 1.0, 0.5, 0.01, 10.0, True,
                    tuple(gw), tuple(gth), tuple(np.zeros((4, n)) for n in ref.sizes), stats)
    for l in range(2):
        start = ref.thresholds[l].astype(np.float64)
        ref.weights[l] -= lr * gw[l]
        ref.thresholds[l] -= lr * 0.1 * gth[l]
        # homeostasis at per-sample strength: summed over the batch, zero-sum at the floor
        unmet = res.unmet[l].sum(0).astype(np.float64)
        th64 = ref.thresholds[l].astype(np.float64)
        commit_batch_homeostasis(th64, res.dth[l].sum(0).astype(np.float64), float(ref.floors[l]), unmet, start)
        ref.thresholds[l][:] = th64
        x = res.x_in if l == 0 else res.traces[l - 1]
        per_unit = floor_raise_per_unit(FLOOR_MODES["drive"], float(x.sum(1).mean()))
        enforce_floor(ref.weights[l], ref.thresholds[l], ref.floors[l], unmet, per_unit)
        assert np.abs(net.weights[l] - ref.weights[l]).max() < 1e-5
        assert np.abs(net.thresholds[l] - ref.thresholds[l]).max() < 1e-5
    assert st.samples == 4 and st.loss == pytest.approx(stats[0], rel=1e-5) and st.correct == stats[2]
    assert st.reg_loss == pytest.approx(stats[1], rel=1e-4)
    assert st.synops == int(res.synops.sum()) and st.spikes.tolist() == [c.sum() for c in res.counts]


@pytest.mark.parametrize("fired", [None, [0, 1, 0, 0, 1]])  # None: every unit compensated; else "silent"
def test_torch_floor_equals_numba_floor(fired):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 5)).astype(np.float32)
    th = np.array([0.5, 0.1, 0.3, 0.05, 0.9], np.float32)
    unmet = np.array([0.0, 0.01, 0.0, 0.02, 0.0])
    layer = DenseSNN.from_network(Network(6, [W.copy()], [th.copy()], [0.0], [0.2])).layers[0]
    mask = None if fired is None else torch.tensor(fired, dtype=torch.bool)
    enforce_floor_(layer, torch.from_numpy(unmet.astype(np.float32)), 0.5, mask)
    W0 = W.copy()
    counts = np.zeros(0, np.int32) if fired is None else np.array(fired, np.int32)
    enforce_floor(W, th, 0.2, unmet, 0.5, counts)
    raised = np.array([0.0, 0.01 + 0.1, 0.0, 0.02 + 0.15, 0.0]) * 0.5  # unmet + what the floor refuses now
    if fired is not None:
        raised[np.array(fired) > 0] = 0.0
    assert np.allclose(W - W0, raised.astype(np.float32), atol=1e-7)
    assert np.allclose(layer.weight.detach().numpy(), W, atol=1e-7)
    assert np.allclose(layer.threshold.detach().numpy(), th) and th.min() >= 0.2


@pytest.mark.parametrize("threshold_optimizer", ["same", "sgd"])
def test_adam_minibatches_state_roundtrip_and_chunk_split(threshold_optimizer):
    net = _net()
    cfg = _cfg(name="adam", lr=0.003, lr_th_ratio=1.0, batch_size=3, threshold_optimizer=threshold_optimizer)
    tr = DenseTrainer(net, cfg, dt_ms=1.0)
    w0, th0 = net.weights[0].copy(), [t.copy() for t in net.thresholds]
    st = tr.step_chunk(_batch(B=7), np.arange(7) % 10, 0.003, 1e-4)  # minibatches 3 + 3 + 1
    assert st.samples == 7 and not np.array_equal(net.weights[0], w0)  # written back into the Network
    assert all(not np.array_equal(a, b) for a, b in zip(net.thresholds, th0))
    tensors, meta = tr.state_tensors()
    assert meta["0.step"] == 3.0 and tensors["optim.0.exp_avg"].shape == net.weights[0].shape
    # Adam keeps moments for the thresholds (param ids L..2L-1) only when it steps them.
    assert (f"optim.{net.n_layers}.exp_avg" in tensors) == (threshold_optimizer == "same")
    # A new trainer on the same network with the saved state continues identically.
    net2 = net.copy()
    tr2 = DenseTrainer(net2, cfg, dt_ms=1.0)
    tr2.load_state_tensors(tensors, meta)
    b, y = _batch(B=3, seed=5), np.array([0, 1, 2])
    tr.step_chunk(b, y, 0.003, 1e-4)
    tr2.step_chunk(b, y, 0.003, 1e-4)
    for a, c in zip(net.weights + net.thresholds, net2.weights + net2.thresholds):
        assert np.array_equal(a, c)
    # Same optimizer-state layout as EventTrainer: a checkpoint can switch engines.
    ev = EventTrainer(net.copy(), cfg)
    ev.load_state_tensors(tensors, meta)


def test_bptt_rule_same_forward_finite_gradients_graph_over_time():
    net = _net()
    batch, labels = _batch(B=4), np.array([0, 1, 2, 3])
    lee = DenseSNN.from_network(net, 1.0, Lee2016Rule())
    bptt = DenseSNN.from_network(net, 1.0, SurrogateBPTT(surrogate="fast_sigmoid", slope=25.0))
    _, r_lee = lee(batch)
    out, r_bptt = bptt(batch)
    for a, b in zip(r_lee.counts, r_bptt.counts):
        assert torch.equal(a, b.detach())  # one forward step, two rules
    assert r_bptt.counts[-1].grad_fn is not None  # the graph over all steps is kept
    loss, _ = bptt.loss(out, labels, lam=0.01)
    loss.backward()
    for layer in bptt.layers:
        for p in (layer.weight, layer.threshold):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    ce = DenseSNN.from_network(net, 1.0, SurrogateBPTT("sigmoid", 5.0, loss="ce_count"))
    out_ce, _ = ce(batch)
    ce.loss(out_ce, labels)[0].backward()
    assert torch.isfinite(ce.layers[0].weight.grad).all()
    for bad in (dict(surrogate="step"), dict(slope=0.0), dict(loss="hinge")):
        with pytest.raises(ConfigError):
            SurrogateBPTT(**bad)


def _saved_bytes(model, batch):
    """Bytes autograd keeps for backward after one forward (what grows with T under BPTT)."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(batch)
    return sum(saved)


def test_memory_kept_for_backward_is_flat_in_T_for_lee2016_and_grows_for_bptt():
    net = _net()
    short, long = _batch(B=4, t_ms=20.0), _batch(B=4, t_ms=80.0)
    lee = DenseSNN.from_network(net, 1.0, Lee2016Rule())
    bptt = DenseSNN.from_network(net, 1.0, SurrogateBPTT())
    assert _saved_bytes(lee, short) == _saved_bytes(lee, long)  # final traces and counts only
    b_short, b_long = _saved_bytes(bptt, short), _saved_bytes(bptt, long)
    assert b_long > 3 * b_short  # 81 vs 21 steps (plus a constant part)


def test_bptt_trains_through_the_trainer():
    net = _net()
    w0 = net.weights[0].copy()
    tr = DenseTrainer(net, _cfg(name="adam", lr=0.003, lr_th_ratio=1.0), 1.0, rule=SurrogateBPTT())
    st = tr.step_chunk(_batch(B=4), np.arange(4), 0.003, 1e-4)
    assert np.isfinite(st.loss) and not np.array_equal(w0, net.weights[0])


def test_config_keys_map_to_engines_and_rules():
    cfg = load_config(None, [])
    assert (cfg.train.engine, cfg.train.device, cfg.train.dt_ms, cfg.train.rule) == ("event", "cpu", 1.0, "lee2016")
    assert isinstance(make_trainer(cfg, _net()), EventTrainer)
    cfg = load_config(None, ["train.engine=dense", "train.rule=bptt", "train.dt_ms=0.5", "train.surrogate_slope=10"])
    rule = make_rule(cfg)
    assert isinstance(rule, SurrogateBPTT) and rule.slope == 10.0
    tr = make_trainer(cfg, _net())
    assert isinstance(tr, DenseTrainer) and tr.dt_ms == 0.5 and tr.rule is rule or isinstance(tr.rule, SurrogateBPTT)
    assert isinstance(make_rule(load_config(None, ["train.engine=dense"])), Lee2016Rule)
    for bad, key in ((["train.engine=gpu"], "train.engine"), (["train.rule=bptt"], "train.engine=dense"),
                     (["train.engine=dense", "train.dt_ms=0"], "train.dt_ms"), (["train.device=tpu"], "train.device")):
        with pytest.raises(ConfigError, match=key):
            load_config(None, bad)


def test_trainer_bad_input():
    with pytest.raises(ConfigError, match="one label per sample"):
        DenseTrainer(_net(), _cfg()).step_chunk(_batch(B=2), np.array([0]), 0.01, 0.0)
    with pytest.raises(ConfigError, match="channel indices"):
        DenseTrainer(_net(), _cfg()).step_chunk(EventBatch.from_lists([np.array([M], np.int32)], [np.array([0.0])], [1.0]),
                                                np.array([0]), 0.01, 0.0)


def _tiny_mnist(root, n_train=24, n_test=12, seed=0):
    from snnbp.data.idx import write_idx
    from snnbp.data.mnist import record_mnist

    rng = np.random.default_rng(seed)
    d = root / "mnist"
    d.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, y in enumerate(labels):  # a digit-dependent bright band, so the task is learnable
            images[i, 2 * y: 2 * y + 6, :] = rng.integers(100, 255, (6, 28))
        write_idx(d / f"{prefix}-images-idx3-ubyte", images)
        write_idx(d / f"{prefix}-labels-idx1-ubyte", labels)
    record_mnist(d)  # as `snnbp data mnist` does: load_mnist refuses unrecorded files


def test_train_loop_with_the_dense_engine(tmp_path):
    from snnbp.train.loop import train

    _tiny_mnist(tmp_path / "data")
    cfg = load_config(None, [f"data.root='{tmp_path / 'data'}'", "data.train_ms=20", "data.test_ms=40",
                             "model.hidden=[16]", "train.epochs=2", "train.chunk=8", "optim.batch_size=4",
                             "train.engine=dense", "train.dt_ms=1.0", "train.eval_last=1"])
    summary = train(cfg, tmp_path / "run", progress_bar=False, log=lambda *a: None)
    assert summary["epochs"] == 2 and 0.0 <= summary["test_accuracy"] <= 1.0
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["train_loss"]) for r in rows)
    # Evaluation ran on the dense engine: same numbers as DenseEngine on the saved model.
    from snnbp.metrics.evaluate import evaluate
    from snnbp.serialization import load_network
    from snnbp.data.sources import make_source

    net, _ = load_network(tmp_path / "run" / "model.safetensors")
    ev = evaluate(net, make_source(cfg.data, cfg.train.seed), engine=DenseEngine(1.0), progress_bar=False)
    assert ev["test_accuracy"] == summary["test_accuracy"]


def test_dense_resume_equals_uninterrupted_training(tmp_path):
    """Stop after epoch 1, resume to epoch 2 (optimizer state from the checkpoint): same model as 2 epochs."""
    from snnbp.serialization import load_network
    from snnbp.train.loop import run_from_args

    _tiny_mnist(tmp_path / "data")
    sets = [f"data.root='{tmp_path / 'data'}'", "data.train_ms=20", "data.test_ms=40", "model.hidden=[16]",
            "train.chunk=8", "optim.batch_size=4", "optim.name='adam'", "optim.lr_th_ratio=1.0",
            "train.engine=dense", "train.dt_ms=1.0", "train.eval_last=1"]
    whole = run_from_args(None, sets + ["train.epochs=2"], str(tmp_path / "whole"), None)
    run_from_args(None, sets + ["train.epochs=1"], str(tmp_path / "parts"), None)
    after_one, _ = load_network(tmp_path / "parts" / "model.safetensors")
    resumed = run_from_args(None, ["train.epochs=2"], None, str(tmp_path / "parts"))
    assert resumed["epochs"] == whole["epochs"] == 2 and resumed["samples_seen"] == whole["samples_seen"]
    a, _ = load_network(tmp_path / "whole" / "model.safetensors")
    b, _ = load_network(tmp_path / "parts" / "model.safetensors")
    assert np.abs(b.weights[0] - after_one.weights[0]).max() > 1e-4  # the resumed leg did train epoch 2
    for x, y in zip(a.weights + a.thresholds, b.weights + b.thresholds):
        assert np.abs(x - y).max() < 1e-6


def test_decoupled_regularizer_is_its_own_step_after_adam():
    # optim.weight_reg = "decoupled": Adam sees the data gradient alone (so its step equals that of a
    # run with lambda = 0), then W_i <- W_i / (1 + lr c_i) with c from the pre-step weights (eq. 13).
    batch, labels, lr = _batch(B=4), np.array([1, 2, 3, 4]), 0.01
    init = _net()
    init.weights[0] *= 3.0  # |w_i|^2 above 1 in places, so the shrink is visible
    net_a, net_b = init.copy(), init.copy()
    DenseTrainer(net_a, _cfg(name="adam", lr_th_ratio=1.0, lam=0.01, weight_reg="decoupled"), dt_ms=0.5).step_chunk(
        batch, labels, lr, 0.0)
    DenseTrainer(net_b, _cfg(name="adam", lr_th_ratio=1.0, lam=0.0), dt_ms=0.5).step_chunk(batch, labels, lr, 0.0)
    sq = (init.weights[0].astype(np.float64) ** 2).sum(0)
    shrink = 1.0 / (1.0 + lr * 0.01 * 10.0 * np.exp(10.0 * (sq - 1.0)))
    assert shrink.min() < 0.99
    np.testing.assert_allclose(net_a.weights[0], net_b.weights[0] * shrink, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net_a.weights[1], net_b.weights[1], rtol=1e-6)  # the output layer: no eq. 13
