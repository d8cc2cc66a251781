"""Convolutional SNNs on the dense engine (dense/conv.py): the step by hand, the gradient rule
against the unfolded fully connected layer, initialization, save/load, training, bad shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snnbp.data.events import EventBatch
from snnbp.dense.conv import SpikingConv2d, SpikingPool2d
from snnbp.dense.engine import run_dense
from snnbp.dense.frames import DenseInput
from snnbp.dense.layers import SpikingLinear
from snnbp.dense.lee2016_function import _norm_gain, backprop_deltas, layer_gradients
from snnbp.dense.model import DenseSNN
from snnbp.train.dense_trainer import DenseTrainer
from snnbp.errors import ConfigError
from snnbp.model import Network
from snnbp.serialization import load_network, save_network
from snnbp.architecture import parse_layers
from snnbp.neuron import NeuronParams
from snnbp.config import OptimConfig, load_config

NEURON = NeuronParams(tau_mp_ms=20.0, t_ref_ms=1.0)
D = math.exp(-1.0 / 20.0)  # decay per 1 ms step


def _frames(T, B, shape, spikes):
    """(T, B, P) frames with 1 at each (t, b, c, y, x) of ``spikes``; channel (c H + y) W + x."""
    f = torch.zeros(T, B, *shape)
    for t, b, c, y, x in spikes:
        f[t, b, c, y, x] = 1.0
    return f.reshape(T, B, -1)


def test_conv_step_by_hand():
    # 1x3x3 input, two 2x2 filters: map 0 all 1.0, map 1 all 0.5; V_th = (1.5, 1.2); WTA kappa = -0.5.
    w = torch.stack([torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 0.5)])
    conv = SpikingConv2d(w, torch.tensor([1.5, 1.2]), (1, 3, 3), kappa=-0.5)
    assert conv.out_shape == (2, 2, 2) and conv.fan_in == 4 and conv.threshold.shape == (2, 1, 1)
    # step 0: pixels (0,0) and (0,1) fire; step 1: pixel (2,2) fires.
    inp = DenseInput.from_frames(_frames(2, 1, (1, 3, 3), [(0, 0, 0, 0, 0), (0, 0, 0, 0, 1), (1, 0, 0, 2, 2)]), 1.0)
    rho = 0.01
    res = run_dense([conv], inp, NEURON, train=True, rho=rho)
    # Step 0, location (0,0): field holds both events: currents (2.0, 1.0). Map 0 fires (2.0 >= 1.5),
    # map 1 does not (1.0 < 1.2). Reset: 2.0 - 1.5 = 0.5. WTA: map 1 gets kappa V_th,1 = -0.6 -> 0.4.
    # Location (0,1): one event: (1.0, 0.5), nobody fires. Locations (1,0), (1,1): no input.
    counts = res.counts[0][0]
    assert counts[0].tolist() == [[1.0, 0.0], [0.0, 0.0]] and counts[1].sum() == 0
    # Homeostasis per map (mean over the 4 locations of C s - n_s): map 0 (2 - 1)/4, map 1 (0 - 1)/4.
    assert torch.allclose(res.dth[0].flatten(), torch.tensor([0.25 * rho, -0.25 * rho]))
    # Traces at t_end = 1 ms: the step-0 spike decayed once; input traces x = decayed events.
    assert torch.allclose(res.traces[0][0, 0, 0, 0], torch.tensor(D))
    x = res.x_in.view(3, 3)
    assert torch.allclose(x[0, :2], torch.tensor([D, D])) and x[2, 2] == 1.0
    # Membranes by hand after step 1 (location (1,1) gets (1.0, 0.5): below both thresholds).
    from snnbp.dense.engine import _LayerState, heaviside, layer_step

    st = _LayerState(conv, 1, torch.device("cpu"), False)
    for n, frame in enumerate(inp.steps()):
        s = layer_step(conv, st, frame, frame.sum(1), float(n), D, NEURON, heaviside, True, False, 0.0)
    V = st.V[0]
    assert torch.allclose(V[:, 0, 0], torch.tensor([0.5 * D, 0.4 * D]))
    assert torch.allclose(V[:, 0, 1], torch.tensor([1.0 * D, 0.5 * D]))
    assert torch.allclose(V[:, 1, 1], torch.tensor([1.0, 0.5])) and V[:, 1, 0].abs().sum() == 0
    # The received mask: only fields that saw an event test their threshold.
    f0 = next(iter(inp.steps()))
    assert conv.received(f0, f0.sum(1))[0, 0].tolist() == [[True, True], [False, False]]


def test_clip_and_receive_gate():
    # A strongly negative filter drives V below -V_th: clipped. No input -> no spike even if V >= V_th.
    conv = SpikingConv2d(torch.full((1, 1, 1, 1), -5.0), torch.tensor([1.0]), (1, 2, 2))
    inp = DenseInput.from_frames(_frames(1, 1, (1, 2, 2), [(0, 0, 0, 0, 0)]), 1.0)
    from snnbp.dense.engine import _LayerState, heaviside, layer_step

    st = _LayerState(conv, 1, torch.device("cpu"), False)
    st.V.fill_(2.0)  # above threshold everywhere, but only (0,0) receives input (and is clipped)
    f = next(iter(inp.steps()))
    s = layer_step(conv, st, f, f.sum(1), 0.0, D, NEURON, heaviside, True, False, 0.0)
    assert s.sum() == 0 and st.V[0, 0, 0, 0] == -1.0 and torch.allclose(st.V[0, 0, 1, 1], torch.tensor(2.0 * D))


def _unfold(t, K):
    """(B, C, H, W) -> (B L, C K K) patches, rows in (b, y, x) order."""
    B = t.shape[0]
    return F.unfold(t, K).transpose(1, 2).reshape(-1, t.shape[1] * K * K) if t.ndim == 4 else t.reshape(B, -1)


def _rows(t):
    """(B, C, H', W') -> (B H' W', C): the neurons of one location are one 'sample' of the FC layer."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


@pytest.mark.parametrize("normalize", [True, False])
def test_conv_gradient_equals_unfolded_fc(normalize):
    g = torch.Generator().manual_seed(0)
    B, Cin, H, K, C, kappa = 3, 2, 6, 3, 4, -0.3
    w = torch.randn(C, Cin, K, K, generator=g) * 0.3
    th = torch.rand(C, generator=g) + 0.5
    conv = SpikingConv2d(w, th, (Cin, H, H), kappa=kappa)
    fc = SpikingLinear(w.flatten(1).t(), th, kappa=kappa)  # one location of the conv, unfolded
    sparse = lambda shape, p: torch.rand(*shape, generator=g) * (torch.rand(*shape, generator=g) < p)  # noqa: E731
    x = sparse((B, Cin, H, H), 0.4)
    a = sparse((B, C, H - K + 1, H - K + 1), 0.5)
    d = torch.randn(B, C, H - K + 1, H - K + 1, generator=g) * (a > 0)
    gw, gth = layer_gradients(conv, x, a, d, gamma=1.0, sigma=0.5, normalize=normalize)
    gw_fc, gth_fc = layer_gradients(fc, _unfold(x, K), _rows(a), _rows(d), gamma=1.0, sigma=0.5, normalize=normalize)
    assert torch.allclose(gw, gw_fc.t().reshape(w.shape), atol=1e-5)
    assert torch.allclose(gth.flatten(), gth_fc, atol=1e-5)
    assert gw.abs().sum() > 0 and gth.abs().sum() > 0
    # eq. 11 to the layer below: transposed conv == FC backprop on the patches, folded back.
    active = x > 0
    back = backprop_deltas(conv, d, active, normalize)
    back_fc = backprop_deltas(fc, _rows(d), _unfold(active.float(), K) > 0, normalize)
    folded = F.fold(back_fc.reshape(B, -1, Cin * K * K).transpose(1, 2), (H, H), K)
    assert back.shape == (B, Cin, H, H) and torch.allclose(back, folded, atol=1e-5)
    # g / g_bar with one threshold per map equals the FC form with the threshold of every neuron.
    act = a > 0
    th_full = conv.threshold.detach().expand(C, H - K + 1, H - K + 1).reshape(-1)
    assert torch.allclose(_norm_gain(conv.threshold.detach(), 1.0, act, normalize).expand_as(a).reshape(B, -1),
                          _norm_gain(th_full, 1.0, act.reshape(B, -1), normalize), atol=1e-6)


def test_pool_is_average_pooling_and_its_adjoint():
    g = torch.Generator().manual_seed(1)
    inner = SpikingConv2d(torch.randn(3, 2, 2, 2, generator=g), torch.ones(3), (2, 3, 3))
    pool = SpikingPool2d(inner, 2, (2, 6, 6))
    s = (torch.rand(4, 2, 6, 6, generator=g) < 0.3).float()
    assert torch.allclose(pool.synaptic_input(s.flatten(1)), F.conv2d(F.avg_pool2d(s, 2), inner.weight))
    # A pooled synapse is active when any neuron of its window fired.
    assert torch.equal(pool.active_fan_in(s > 0), inner.active_fan_in(F.max_pool2d(s, 2) > 0))
    d = torch.randn(4, 3, 2, 2, generator=g)
    z = torch.zeros(4, 2, 6, 6, requires_grad=True)
    (adj,) = torch.autograd.grad(F.avg_pool2d(z, 2), z, inner.backprop(d))
    assert torch.allclose(pool.backprop(d), adj, atol=1e-6)
    # The wrapper's parameters are the inner layer's; an FC layer behind a pool reads the flat map.
    assert pool.weight is inner.weight and pool.threshold is inner.threshold and pool.fan_in == 8
    fcp = SpikingPool2d(SpikingLinear(torch.randn(18, 5, generator=g), torch.ones(5)), 2, (2, 6, 6))
    assert torch.allclose(fcp.synaptic_input(s), F.avg_pool2d(s, 2).flatten(1) @ fcp.weight, atol=1e-6)


def test_initialization_statistics():
    net = Network.create_layered((1, 28, 28), ["conv:64:5", "pool:2", "conv:32:5", "pool:2", "fc:200", "fc:10"],
                                 [0.0, 0.0, 0.0, -1.0], alpha=[3.0], floor_alpha=0.5, seed=3)
    assert net.describe() == "1x28x28-64C5-P2-32C5-P2-200-10"
    assert net.sizes == [64 * 24 * 24, 32 * 8 * 8, 200, 10]
    for w, th, f, M in zip(net.weights, net.thresholds, net.floors, (25, 64 * 25, 32 * 16, 200)):
        b = math.sqrt(3.0 / M)  # eq. 9 with M = the receptive field (pooled for the fc layer)
        assert np.abs(w).max() <= b and np.abs(w).max() > 0.95 * b
        assert abs(w.mean()) < 0.05 * b and abs((w ** 2).mean() * M - 1.0) < 0.1  # E[sum_j w_ij^2] = 1
        assert np.allclose(th, 3.0 * b) and math.isclose(f, 0.5 * b, rel_tol=1e-6)  # eq. 10
    assert net.weights[0].shape == (64, 1, 5, 5) and net.thresholds[1].shape == (32, 1, 1)


def test_layered_network_save_load(tmp_path):
    net = Network.create_layered((2, 10, 10), ["conv:3:3", "pool:2", "fc:7", "fc:10"], [-0.4, 0.0, -1.0], seed=1)
    save_network(tmp_path / "n.safetensors", net)
    back, _ = load_network(tmp_path / "n.safetensors")
    assert back.layers == net.layers and back.input_shape == (2, 10, 10) and back.sizes == net.sizes
    assert all(np.array_equal(a, b) for a, b in zip(back.weights + back.thresholds, net.weights + net.thresholds))
    m = DenseSNN.from_network(back)
    assert isinstance(m.layers[0], SpikingConv2d) and isinstance(m.layers[1], SpikingPool2d)
    assert m.to_network().layers == net.layers
    # Fully connected networks keep their header (and engines) unchanged.
    fc = Network.create(784, [800, 10], [-0.4, -1.0])
    assert "layers" not in fc.header() and not fc.is_spatial
    assert not Network.create_layered((1, 28, 28), ["fc:800", "fc:10"], [-0.4, -1.0]).is_spatial


def _bars(n, seed, T_ms=20.0, size=10):
    """Class c lights row c of a 1 x size x size image with Poisson-like events (a learnable task)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    chans, times = [], []
    for c in labels:
        k = 40
        ch = c * size + rng.integers(0, size, k)
        chans.append(ch.astype(np.int32))
        times.append(np.sort(rng.uniform(0, T_ms * 1000, k)))
    return EventBatch.from_lists(chans, times, [T_ms * 1000] * n), labels.astype(np.int64)


def test_conv_training_updates_every_parameter_and_learns():
    torch.manual_seed(0)
    net = Network.create_layered((1, 10, 10), ["conv:6:3", "pool:2", "fc:10"], [-0.4, -1.0], alpha=[3.0],
                                 floor_alpha=0.25, seed=0)
    before = [a.copy() for a in net.weights + net.thresholds]
    tr = DenseTrainer(net, OptimConfig(name="adam", lr=0.01, lr_th_ratio=1.0, batch_size=20, lam=0.01, rho=1e-4))
    batch, labels = _bars(60, 0)
    test, test_labels = _bars(40, 1)
    acc0 = (DenseSNN.from_network(net).simulate(test).predictions().numpy() == test_labels).mean()
    for epoch in range(4):
        st = tr.step_chunk(batch, labels, 0.01, 1e-4)
    for a, b in zip(net.weights + net.thresholds, before):
        assert np.isfinite(a).all() and not np.array_equal(a, b)  # every parameter moved, finitely
    acc = (DenseSNN.from_network(net).simulate(test).predictions().numpy() == test_labels).mean()
    assert st.samples == 60 and np.isfinite(st.loss)
    assert acc >= max(acc0, 0.3), (acc0, acc)


def test_bptt_rule_runs_on_a_conv_network():
    from snnbp.dense.bptt import SurrogateBPTT

    net = Network.create_layered((1, 10, 10), ["conv:4:3", "pool:2", "fc:10"], [-0.4, -1.0], alpha=[1.0], seed=0)
    m = DenseSNN.from_network(net, rule=SurrogateBPTT())
    batch, labels = _bars(8, 2)
    out, res = m(batch, train=True, rho=1e-3)
    m.loss(out, labels, 0.01)[0].backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())
    # The graph-keeping step (BPTT) and the in-place step (no graph: the paper's rule) are one forward
    # pass: same spikes, traces and homeostasis in every layer, WTA and pooling included.
    _, ref = DenseSNN.from_network(net)(batch, train=True, rho=1e-3)
    assert sum(float(c.sum()) for c in ref.counts[:-1]) > 0  # the comparison sees activity
    for name in ("counts", "traces", "dth"):
        for a, b in zip(getattr(res, name), getattr(ref, name)):
            assert torch.equal(a.detach(), b.detach()), name


def test_train_loop_conv_preset_shape(tmp_path):
    """model.layers through config -> loop -> checkpoint -> evaluation, on a tiny fake MNIST."""
    from tests.helpers_fake_mnist import write_fake_mnist
    from snnbp.train.loop import train

    write_fake_mnist(tmp_path / "data", n_train=24, n_test=10)
    cfg = load_config(None, [f"data.root='{tmp_path / 'data'}'", "data.train_ms=10", "data.test_ms=20",
                             "model.hidden=[]", "model.layers=['conv:4:5', 'pool:4', 'fc:10']",
                             "model.input_shape=[1, 28, 28]", "model.kappa=[0.0, -1.0]", "optim.name='adam'",
                             "optim.batch_size=8", "train.engine='dense'", "train.epochs=1", "train.chunk=24"])
    summary = train(cfg, tmp_path / "run", progress_bar=False, log=lambda *a: None)
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["network"] == "['conv:4:5', 'pool:4', 'fc:10']"
    net, _ = load_network(tmp_path / "run" / "model.safetensors")
    assert net.describe() == "1x28x28-4C5-P4-10" and net.weights[0].shape == (4, 1, 5, 5)


def test_bad_shapes_and_configs_are_clear_errors():
    bad_lists = {("conv:20",): "conv:CHANNELS:KERNEL", ("fc:x", "fc:10"): "model.layers\\[0\\]",
                 ("conv:4:3", "pool:2"): "ends with a pool", ("pool:2", "pool:2", "fc:10"): "two pool",
                 ("conv:4:3",): "must end with the fully connected"}
    for items, msg in bad_lists.items():
        with pytest.raises(ConfigError, match=msg):
            parse_layers(list(items))
    with pytest.raises(ConfigError, match="divisible by 2"):  # 28 -> conv 5 -> 24 -> pool -> 12 -> conv 4 -> 9: odd
        Network.create_layered((1, 28, 28), ["conv:4:5", "pool:2", "conv:4:4", "pool:2", "fc:10"], [0, 0, 0])
    with pytest.raises(ConfigError, match="kernel needs"):
        Network.create_layered((1, 4, 4), ["conv:4:5", "fc:10"], [0, 0])
    with pytest.raises(ConfigError, match="model.kappa has 2"):
        Network.create_layered((1, 8, 8), ["conv:4:3", "pool:2", "fc:7", "fc:10"], [0, 0])
    net = Network.create_layered((1, 8, 8), ["conv:4:3", "fc:10"], [0, 0])
    with pytest.raises(ConfigError, match="expected \\(4, 1, 3, 3\\)"):
        Network(64, [net.weights[0][:, :, :2, :2], net.weights[1]], net.thresholds, [0, 0], net.floors,
                input_shape=(1, 8, 8), layers=net.layers)
    with pytest.raises(ConfigError, match="input_shape"):
        Network(64, net.weights, net.thresholds, [0, 0], net.floors, input_shape=(1, 8, 9), layers=net.layers)
    with pytest.raises(ConfigError, match="expected \\(B, 1, 8, 8\\)"):
        DenseSNN.from_network(net).layers[0].synaptic_input(torch.zeros(2, 63))
    with pytest.raises(ConfigError, match="P=784 channels but the network has 64"):
        DenseSNN.from_network(net).simulate(torch.zeros(3, 2, 784))
    base = ["model.hidden=[]", "model.layers=['conv:4:5', 'pool:2', 'fc:10']", "model.kappa=[0.0, -1.0]",
            "model.input_shape=[1, 28, 28]"]
    load_config(None, base + ["train.engine=dense"])  # the valid ones: both engines run conv layers
    load_config(None, base + ["train.engine=event"])
    for extra, msg in ((["train.engine=dense", "model.input_shape=[1, 27, 27]"], "layer 1 .*pool:2.*divisible by 2"),
                       (["train.engine=event", "model.input_shape=[1, 3, 3]"], "layer 0 .*conv:4:5.*5x5 kernel"),
                       (["train.engine=dense", "model.hidden=[800]"], "model.hidden = \\[\\]"),
                       (["train.engine=dense", "model.input_shape=[]"], "model.input_shape"),
                       (["train.engine=dense", "model.kappa=[0.0]"], "model.kappa needs 2"),
                       (["train.engine=dense", "model.layers=['conv:4:5', 'fc:7']"], "fc:10")):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, base + extra)
    # A conv network handed to the event engine trains with the rule of the dense trainer, event by event.
    from snnbp.train.build import make_trainer

    assert make_trainer(load_config(None, []), net).forward == "event"
    # build_network: the input shape must match the data's channels.
    from snnbp.train.build import build_network

    with pytest.raises(ConfigError, match="model.input_shape"):
        build_network(load_config(None, base + ["train.engine=dense"]), 2312)


@pytest.mark.parametrize("preset, n_inputs, shape", [("configs/paper/mnist-conv.toml", 784, "1x28x28-20C5-P2-50C5-P2-200-10"),
                                                     ("configs/nmnist-conv.toml", 2312, "2x34x34-20C5-P2-50C4-P2-200-10")])
def test_conv_presets_build(preset, n_inputs, shape):
    from pathlib import Path

    from snnbp.train.build import build_network

    path = Path(__file__).resolve().parent.parent / preset
    net = build_network(load_config(path), n_inputs)
    assert net.describe() == shape and net.is_spatial
    assert load_config(path, ["train.engine=event"]).train.engine == "event"


def test_exp_regularizer_is_eq13_below_the_cap_and_finite_above():
    from snnbp.dense.lee2016_function import exp_weight_regularizer

    w = torch.full((4, 2), 0.45, requires_grad=True)  # |W_i|^2 = 0.81: the plain eq. 13
    exp_weight_regularizer(w, 0.01, 10.0).backward()
    assert torch.allclose(w.grad, 0.01 * 10.0 * w.detach() * math.exp(10.0 * (0.81 - 1.0)), rtol=1e-5)
    big = torch.full((4, 2), 2.5, requires_grad=True)  # |W_i|^2 = 25: exp(240) would overflow float32
    loss = exp_weight_regularizer(big, 0.01, 10.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all() and (big.grad > 0).all()


def test_shared_grad_mean_divides_conv_gradients_by_the_locations_only():
    # optim.shared_grad = "mean": a conv filter / map threshold gets the mean over its H'W' locations
    # (here 4 x 4), a fully connected layer's gradients are unchanged.
    from snnbp.dense.engine import DenseForward
    from snnbp.dense.lee2016_function import lee2016_gradients

    g = torch.Generator().manual_seed(1)
    conv = SpikingConv2d(torch.randn(3, 1, 3, 3, generator=g) * 0.3, torch.rand(3, generator=g) + 0.5, (1, 6, 6),
                         kappa=-0.3)
    fc = SpikingLinear(torch.randn(48, 5, generator=g) * 0.3, torch.rand(5, generator=g) + 0.5, kappa=-1.0)
    assert conv.replicas == 16 and fc.replicas == 1
    B = 2
    x = torch.rand(B, 36, generator=g) * (torch.rand(B, 36, generator=g) < 0.5)
    a1 = torch.rand(B, 3, 4, 4, generator=g) * (torch.rand(B, 3, 4, 4, generator=g) < 0.6)
    a2 = torch.rand(B, 5, generator=g) + 0.1
    res = DenseForward(x, [a1, a2], [(a1 > 0).float() * 2, (a2 > 0).float()], [], [], None, None, None)
    err = torch.randn(B, 5, generator=g)
    gw_s, gth_s = lee2016_gradients([conv, fc], res, err, 1.0, 0.5, True, "sum")
    gw_m, gth_m = lee2016_gradients([conv, fc], res, err, 1.0, 0.5, True, "mean")
    assert gw_s[0].abs().sum() > 0 and gth_s[0].abs().sum() > 0
    assert torch.allclose(gw_m[0], gw_s[0] / 16) and torch.allclose(gth_m[0], gth_s[0] / 16)
    assert torch.equal(gw_m[1], gw_s[1]) and torch.equal(gth_m[1], gth_s[1])
    with pytest.raises(ConfigError, match="shared_grad"):
        load_config(None, ["optim.shared_grad='median'"])
