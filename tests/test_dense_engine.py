"""Dense engine (dense/frames.py, dense/engine.py): binning, the step arithmetic by hand, streaming,
and its bad-input errors (each a ConfigError naming what to change)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from snnbp.data.events import EventBatch
from snnbp.dense.engine import run_dense
from snnbp.dense.frames import DenseInput, bin_events, resolve_device
from snnbp.dense.model import DenseSNN
from snnbp.errors import ConfigError
from snnbp.model import Network
from snnbp.neuron import NeuronParams

TAU = 20.0


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _net(weights, thresholds, kappas=None, t_ref_ms=0.0, floors=None):
    ws = [np.asarray(w, np.float32) for w in weights]
    ths = [np.asarray(t, np.float32).reshape(w.shape[1]) for w, t in zip(ws, thresholds)]
    L = len(ws)
    return Network(ws[0].shape[0], ws, ths, list(kappas or [0.0] * L), list(floors or [0.0] * L),
                   NeuronParams(tau_mp_ms=TAU, t_ref_ms=t_ref_ms))


def _batch(channels, times_ms, t_end_ms):
    return EventBatch.from_lists([np.asarray(channels, np.int32)], [np.asarray(times_ms, np.float64) * 1000.0], [t_end_ms * 1000.0])


def _sim(net, batch, dt=1.0, **kw):
    return DenseSNN.from_network(net, dt_ms=dt).simulate(batch, **kw)


# ---- binning ------------------------------------------------------------------------------------

def test_bin_events_counts_per_floor_bin_and_keeps_the_event_at_t_end():
    b = EventBatch.from_lists([np.array([0, 1, 1, 2], np.int32), np.array([2], np.int32)],
                              [np.array([0.0, 999.9, 1500.0, 3000.0]), np.array([2999.0])], [3000.0, 3000.0])
    f = bin_events(b, 3, dt_ms=1.0)
    assert f.shape == (4, 2, 3)  # T = floor(3 ms / 1 ms) + 1: the event at exactly t_end is kept
    assert f[0, 0].tolist() == [1, 1, 0] and f[1, 0].tolist() == [0, 1, 0] and f[3, 0].tolist() == [0, 0, 1]
    assert f[2, 1].tolist() == [0, 0, 1] and f.sum() == 5
    # Two events of one channel in one bin are counted, not dropped.
    b2 = _batch([1, 1], [0.1, 0.2], 1.0)
    assert bin_events(b2, 2, 0.5)[0, 0].tolist() == [0, 2]


def test_leading_empty_steps_are_skipped_without_changing_results():
    net = _net([np.random.default_rng(0).uniform(-0.2, 0.6, (5, 4))], [np.full(4, 0.5)], kappas=[-0.4], t_ref_ms=1.0)
    rng = np.random.default_rng(1)
    times = 200.0 + np.sort(rng.uniform(0, 30.0, 60))  # the sample starts at 200 ms
    b = _batch(rng.integers(0, 5, 60), times, 231.0)
    model = DenseSNN.from_network(net, dt_ms=0.5)
    shifted = DenseInput.from_events(b, 5, 0.5, align_start=True)
    full = DenseInput.from_events(b, 5, 0.5, align_start=False)
    origin = int(np.floor(times[0] / 0.5))
    assert full.n_steps == 463 and shifted.n_steps == 463 - origin and origin >= 400
    r1, r2 = model.simulate(shifted), model.simulate(full)
    for a, c in zip(r1.counts + r1.traces + [r1.x_in], r2.counts + r2.traces + [r2.x_in]):
        assert torch.allclose(a, c, atol=1e-5)
    assert r1.counts[0].sum() > 0


# ---- the step, by hand --------------------------------------------------------------------------

@pytest.mark.parametrize("gap, fires", [(8.0, True), (9.0, False)])
def test_decay_between_steps(gap, fires):
    # 0.6 exp(-gap/tau) + 0.6 >= 1 iff gap <= tau ln 1.5 = 8.11 ms (events on the grid: exact).
    net = _net([[[0.6], [0.6]]], [[1.0]])
    res = _sim(net, _batch([0, 1], [0.0, gap], 20.0))
    assert res.counts[0][0].tolist() == [float(fires)]


def test_reset_by_subtraction_residual_and_one_spike_per_step():
    # One input of 2.5 V_th: one spike (at most one per step), residual 1.5 kept (no upper clip);
    # no further spike without input; the next input event fires again from the residual.
    net = _net([[[2.5]]], [[1.0]])
    res = _sim(net, _batch([0], [0.0], 10.0))
    assert res.counts[0].item() == 1.0
    net2 = _net([[[2.5], [0.01]]], [[1.0]])
    res2 = _sim(net2, _batch([0, 1], [0.0, 5.0], 10.0))
    assert res2.counts[0].item() == 2.0  # 1.5 e^(-5/20) + 0.01 = 1.18 >= 1


def test_clip_at_minus_threshold():
    # -5 is clipped to -V_th = -1; then +1.9 exp-decayed residual ... -1 * e^(-1/20) + 1.9 = 0.95 < 1, no spike;
    # without the clip V would be -3.1.
    net = _net([[[-5.0], [1.9], [2.0]]], [[1.0]])
    assert _sim(net, _batch([0, 1], [0.0, 1.0], 5.0)).counts[0].item() == 0.0
    assert _sim(net, _batch([0, 2], [0.0, 1.0], 5.0)).counts[0].item() == 1.0  # -0.951 + 2 >= 1


def test_wta_inhibition_scaled_by_own_threshold_and_clipped():
    # Neuron 0 fires at t=0; neuron 1 (V_th 2) gets kappa V_th,1 = -0.5*2 = -1 on top of its 1.5.
    net = _net([[[1.0, 1.5], [0.0, 1.4]]], [[1.0, 2.0]], kappas=[-0.5])
    r = _sim(net, _batch([0, 1], [0.0, 1.0], 3.0))
    # V1 = (1.5 - 1) e^(-1/20) + 1.4 = 1.876 < 2: no spike (without WTA 1.5 e^-0.05 + 1.4 = 2.83 would fire)
    assert r.counts[0][0].tolist() == [1.0, 0.0]
    net_nowta = _net([[[1.0, 1.5], [0.0, 1.4]]], [[1.0, 2.0]])
    assert _sim(net_nowta, _batch([0, 1], [0.0, 1.0], 3.0)).counts[0][0].tolist() == [1.0, 1.0]


def test_refractory_weight_on_the_grid():
    # After a spike at t=0, an input at t=0.5 ms is scaled by (0.5/1)^2 = 0.25 (dt = 0.1 < T_ref).
    net = _net([[[1.0], [0.9]]], [[1.0]], t_ref_ms=1.0)
    assert _sim(net, _batch([0, 1], [0.0, 0.5], 2.0), dt=0.1).counts[0].item() == 1.0  # 0.225 < 1
    assert _sim(net, _batch([0, 1], [0.0, 1.0], 2.0), dt=0.1).counts[0].item() == 1.0  # 0 e + 0.9 < 1
    net2 = _net([[[1.0], [4.5]]], [[1.0]], t_ref_ms=1.0)
    assert _sim(net2, _batch([0, 1], [0.0, 0.5], 2.0), dt=0.1).counts[0].item() == 2.0  # 1.125 >= 1


def test_traces_read_at_t_end_and_chained_layers_same_step():
    # Input at t=0 -> layer 1 fires at t=0 -> layer 2 fires in the same step (no delay).
    net = _net([[[1.0]], [[1.0]]], [[1.0], [1.0]])
    r = _sim(net, _batch([0], [0.0], 10.5), dt=1.0)
    e = math.exp(-10.5 / TAU)  # read at t_end = 10.5 ms exactly, between grid points
    assert r.x_in.item() == pytest.approx(e, rel=1e-6)
    assert r.traces[0].item() == pytest.approx(e, rel=1e-6) and r.traces[1].item() == pytest.approx(e, rel=1e-6)
    assert r.synops.item() == 2  # one input event into 1 neuron + one spike into 1 neuron


def test_homeostasis_per_step_and_floor():
    # Two neurons, one fires: it rises by rho N, both drop by rho n_s (docs/method.md 4.4); the floor holds
    # neuron 1 at 0.99995, and the 5e-5 it refuses is taken from neuron 0 instead (zero sum).
    net = _net([[[1.0, 0.0]]], [[1.0, 1.0]], floors=[0.99995])
    r = _sim(net, _batch([0], [0.0], 1.0), train=True, rho=1e-4)
    assert r.dth[0][0].tolist() == pytest.approx([1e-4 - 5e-5, -5e-5], abs=1e-7)
    assert float(r.dth[0][0].sum()) == pytest.approx(0.0, abs=1e-7)
    assert r.unmet[0][0].tolist() == pytest.approx([0.0, 5e-5], abs=1e-7)
    r0 = _sim(net, _batch([0], [0.0], 1.0))
    assert r0.dth[0].abs().sum() == 0  # no homeostasis at evaluation


def test_no_graph_and_numpy_result():
    net = Network.create(10, [8, 3], [-0.4, -1.0], alpha=[1.5], seed=0)
    b = _batch(np.arange(10).repeat(5), np.linspace(0, 20, 50), 20.0)
    r = _sim(net, b, readout_ms=np.array([5.0, 10.0, 40.0]))
    assert all(not t.requires_grad for t in r.counts + r.traces + [r.x_in])
    npr = r.to_numpy()
    assert npr.counts[0].dtype == np.int32 and npr.synops.dtype == np.int64 and npr.readout_counts.shape == (1, 3, 3)
    assert np.array_equal(npr.readout_counts[0, -1], npr.counts[-1][0])  # after the end: final counts
    assert np.all(np.diff(npr.readout_counts[0].sum(1)) >= 0)
    assert npr.predictions().shape == (1,)


def test_frames_input_with_per_sample_t_end():
    net = _net([[[0.3]]], [[1.0]])
    frames = torch.zeros(11, 2, 1)
    frames[0, :, 0] = 1.0
    frames[10, 1, 0] = 1.0  # after sample 0's t_end: masked
    r = run_dense(list(DenseSNN.from_network(net).layers), DenseInput.from_frames(frames, 1.0, [4.0, 10.0]), net.neuron)
    assert r.x_in[:, 0].tolist() == pytest.approx([math.exp(-4 / TAU), math.exp(-10 / TAU) + 1.0], rel=1e-6)


# ---- bad input ----------------------------------------------------------------------------------

def test_bad_input_errors_name_the_fix():
    net = _net([[[1.0]]], [[1.0]])
    model = DenseSNN.from_network(net)
    for dt in (0.0, -1.0, float("nan"), "x"):
        with pytest.raises(ConfigError, match="train.dt_ms"):
            DenseSNN.from_network(net, dt_ms=dt)
    with pytest.raises(ConfigError, match=r"\(T, B, P\)"):
        model(torch.zeros(3, 1))
    with pytest.raises(ConfigError, match="network has 1 inputs"):
        model(torch.zeros(3, 1, 4))
    with pytest.raises(ConfigError, match="one per sample"):
        model(torch.zeros(3, 2, 1), t_end_ms=[1.0])
    with pytest.raises(ConfigError, match="channel indices"):
        model(_batch([3], [0.0], 1.0))
    with pytest.raises(ConfigError, match="dt=0.5"):
        model(DenseInput.from_events(_batch([0], [0.0], 1.0), 1, 0.5))
    out, _ = model(_batch([0], [0.0], 1.0))
    with pytest.raises(ConfigError, match="one label per sample"):
        model.loss(out, [0, 1])
    with pytest.raises(ConfigError, match="not a gradient rule"):
        DenseSNN.from_network(net, rule="bptt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ConfigError, match="train.device=cpu"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="'cpu' or 'cuda'"):
        resolve_device("tpu")
