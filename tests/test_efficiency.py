"""Efficiency evidence: operation counts in both engines, conventional baselines, curves, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.data.events import EventBatch
from snnbp.dense.conv import SpikingConv2d, SpikingPool2d
from snnbp.event_engine.engine import run_events
from snnbp.metrics.curves import compare_with_baseline, describe_comparison, first_crossing, readout_grid
from snnbp.metrics.operations import ann_macs, time_stepped_membrane_updates
from snnbp.model import Network
from snnbp.neuron import NeuronParams
from snnbp.train.dense_trainer import DenseEngine


# ---- operation counts ------------------------------------------------------------------------------


def test_ann_macs_hand_counted():
    assert ann_macs(784, [800], 10) == 784 * 800 + 800 * 10 == 635_200
    assert ann_macs(2312, [800], 10) == 2312 * 800 + 8000
    # 1x28x28-20C5-P2-50C5-P2-200-10: conv1 20*1*25 weights at 24*24 locations; conv2 on the pooled 20x12x12,
    # 50*20*25 at 8*8; fc on the pooled 50x4x4 = 800 inputs; pooling costs nothing
    layers = ["conv:20:5", "pool:2", "conv:50:5", "pool:2", "fc:200", "fc:10"]
    assert ann_macs(784, input_shape=(1, 28, 28), layers=layers) == 288_000 + 1_600_000 + 160_000 + 2_000


def test_time_stepped_membrane_updates():
    assert time_stepped_membrane_updates([800, 10], 1000.0, 1.0) == 810_000
    assert time_stepped_membrane_updates([5], 2.5, 1.0) == 15  # 3 steps cover 2.5 ms
    with pytest.raises(ValueError):
        time_stepped_membrane_updates([5], 1.0, 0.0)


def test_dense_conv_fan_out_is_exact_at_the_border():
    # 2 maps, 2x2 kernel on a 1x3x3 input: a corner pixel reaches 1 location, an edge pixel 2, the centre 4
    conv = SpikingConv2d(torch.zeros(2, 1, 2, 2), torch.ones(2), (1, 3, 3))
    assert conv.fan_out_map()[0].tolist() == [[2, 4, 2], [4, 8, 4], [2, 4, 2]]
    s = torch.zeros(1, 9)
    s[0, 0], s[0, 4] = 1.0, 2.0  # one corner event, two centre events
    assert conv.synaptic_ops(s).item() == 2 + 2 * 8
    # pooled (tied synapses): a 2x2 pool before a 2x2 conv on a 1x4x4 map -> pooled 1x2x2, one location:
    # every pooled pixel reaches the 3 maps once, so each of the 16 unpooled neurons costs 3
    inner = SpikingConv2d(torch.zeros(3, 1, 2, 2), torch.ones(3), (1, 2, 2))
    pool = SpikingPool2d(inner, 2, (1, 4, 4))
    assert pool.synaptic_ops(torch.ones(1, 16)).item() == 16 * 3


def _conv_net(th1: float) -> Network:
    net = Network.create_layered((1, 6, 6), ["conv:2:3", "pool:2", "conv:3:2", "fc:4"], [-0.5, 0.0, -1.0],
                                 alpha=1.0, floor_alpha=0.0, neuron=NeuronParams(t_ref_ms=0.0), seed=0)
    net.weights[0][:] = 1.0  # conv1 fires on every input event it receives (th1 tiny), both maps
    net.thresholds[0][:] = th1
    net.thresholds[1][:] = 1e6  # conv2 and the output stay silent: their inputs' cost is all that is counted
    net.thresholds[2][:] = 1e6
    return net


def test_both_engines_count_the_same_operations_on_a_conv_net():
    rng = np.random.default_rng(0)
    ch = rng.integers(0, 36, 12).astype(np.int32)
    t = np.arange(12, dtype=np.float64) * 1000.0 + 500.0  # one event per 1 ms step
    batch = EventBatch.from_lists([ch], [t], [13_000.0])
    for th1 in (1e6, 1e-3):  # silent: input fan-out only; firing: also the pooled spikes' fan-out and WTA
        net = _conv_net(th1)
        ev = run_events(net, batch)
        de = DenseEngine(dt_ms=1.0)(net, batch)
        assert [c.sum() for c in ev.counts] == [c.sum() for c in de.counts]
        assert ev.synops[0] == de.synops[0] and ev.lateral_ops[0] == de.lateral_ops[0]
    # hand count of the silent case: each event costs 2 maps x the 4x4 locations whose 3x3 field covers it
    cover = np.zeros((6, 6))
    for y in range(4):
        for x in range(4):
            cover[y:y + 3, x:x + 3] += 1
    silent = run_events(_conv_net(1e6), batch)
    assert silent.synops[0] == int(sum(2 * cover.flat[c] for c in ch)) and silent.lateral_ops[0] == 0
    firing = run_events(_conv_net(1e-3), batch)
    n1 = int(firing.counts[0].sum())
    # conv1's spikes: each reaches, through its pooling window, the 3 maps of conv2's single 2x2 location
    # on the pooled 2x2 map; WTA: each spike updates the other map at its location
    assert firing.synops[0] == silent.synops[0] + 3 * n1 and firing.lateral_ops[0] == n1 * (2 - 1)


# ---- curves ------------------------------------------------------------------------------------------------


def _curves(acc, ops):
    return {"time_ms": list(readout_grid(100.0, len(acc))), "accuracy": acc, "ops_per_sample": ops,
            "synops_per_sample": ops}


def test_readout_grid_is_increasing_and_ends_at_the_presentation():
    g = readout_grid(300.0)
    assert len(g) == 40 and np.all(np.diff(g) > 0) and g[-1] == 300.0 and g[0] > 0


def test_first_crossing_and_comparison_with_baseline():
    c = _curves([0.1, 0.5, 0.97, 0.985, 0.99], [10.0, 100.0, 1000.0, 2000.0, 4000.0])
    assert first_crossing(c, 0.98)["ops_per_sample"] == 2000.0
    assert first_crossing(c, 0.995) is None
    cmp = compare_with_baseline(c, {"test_accuracy": 0.988, "macs_per_sample": 8000, "network": "MLP"})
    assert cmp["at_baseline"]["ops_per_sample"] == 4000.0 and cmp["at_baseline"]["fewer_ops_factor"] == 2.0
    assert cmp["baseline_minus_0.5"]["ops_per_sample"] == 2000.0  # 98.3 % reached at 98.5 %
    assert cmp["full_presentation"]["macs_ratio"] == 2.0
    never = compare_with_baseline(c, {"test_accuracy": 0.999, "macs_per_sample": 8000, "network": "MLP"})
    assert never["at_baseline"] is None
    assert any("never reaches its accuracy" in line for line in describe_comparison(never))


# ---- conventional baselines, curves and the report through the command line ------------------------------

ANN = ["model.kind=\"ann\"", "model.hidden=[30]", "optim.name=\"adam\"", "optim.lr=0.003", "optim.batch_size=10",
       "train.epochs=2"]
SNN = ["model.hidden=[30]", "model.alpha=[2.0]", "train.epochs=2", "train.chunk=20", "train.eval_every=1",
       "data.test_ms=200.0", "optim.lr=0.004"]


def _run(tmp_path, capsys, name, sets, root):
    args = ["train", "--out", str(tmp_path / name)]
    for kv in [*sets, f"data.root=\"{root}\""]:
        args += ["--set", kv]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_ann_baseline_trains_evaluates_and_resumes_exactly(tmp_path, capsys):
    root = write_fake_mnist(tmp_path / "data")
    s = _run(tmp_path, capsys, "ann", ANN, root)
    assert s["kind"] == "ann" and s["macs_per_sample"] == 784 * 30 + 300 and s["test_accuracy"] > 0.3
    assert s["data"] == "MNIST (real): pixel intensities"
    assert main(["eval", str(tmp_path / "ann")]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["test_accuracy"] == s["test_accuracy"] and ev["macs_per_sample"] == s["macs_per_sample"]
    assert main(["eval", str(tmp_path / "ann"), "--curves"]) == 2  # a conventional network has no time axis
    assert "conventional network" in capsys.readouterr().err
    # one epoch, then --resume to two: the same metrics as the uninterrupted run
    _run(tmp_path, capsys, "ann1", [*ANN, "train.epochs=1"], root)
    assert main(["train", "--resume", str(tmp_path / "ann1"), "--set", "train.epochs=2"]) == 0
    capsys.readouterr()
    rows = lambda d: [{k: r[k] for k in ("epoch", "train_loss", "test_accuracy")}  # noqa: E731
                      for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())]
    assert rows("ann1") == rows("ann")
    assert main(["train", "--resume", str(tmp_path / "ann")]) == 2  # finished: left untouched
    assert "finished" in capsys.readouterr().err


def test_ann_cnn_shape_and_macs(tmp_path, capsys):
    root = write_fake_mnist(tmp_path / "data")
    layers = '["conv:4:5", "pool:2", "conv:6:5", "pool:2", "fc:10"]'
    s = _run(tmp_path, capsys, "cnn", ["model.kind=\"ann\"", "model.hidden=[]", f"model.layers={layers}",
                                        "model.input_shape=[1, 28, 28]", "model.kappa=[0.0, 0.0, 0.0]",
                                        "train.epochs=1", "optim.batch_size=10"], root)
    assert s["macs_per_sample"] == 4 * 25 * 24 * 24 + 6 * 4 * 25 * 8 * 8 + 6 * 4 * 4 * 10
    assert "CNN" in s["network"]


def test_curves_and_report_with_every_figure(tmp_path, capsys):
    from PIL import Image

    root = write_fake_mnist(tmp_path / "data")
    _run(tmp_path, capsys, "ann", ANN, root)
    _run(tmp_path, capsys, "snn", SNN, root)
    run = tmp_path / "snn"
    assert main(["eval", str(run), "--curves", "--baseline", str(tmp_path / "ann"), "--baseline", str(tmp_path / "ann")]) == 0
    out = capsys.readouterr().out
    assert "baseline 784-30-10 ReLU MLP" in out
    ev = json.loads(out.strip().splitlines()[-1])
    curves = json.loads((run / "curves.json").read_text())
    for key in ("ops_per_sample", "synops_per_sample", "lateral_ops_per_sample", "time_stepped_membrane_updates"):
        assert np.all(np.diff(curves[key]) >= 0), key  # cumulative
    assert curves["accuracy"][-1] == ev["test_accuracy"] == curves["test_accuracy"]
    assert curves["ops_per_sample"][-1] == pytest.approx(ev["synops_per_sample"] + ev["lateral_ops_per_sample"])
    assert curves["comparison"]["baseline"]["macs_per_sample"] == 784 * 30 + 300
    assert len(curves["comparisons"]) == 2 and curves["comparisons"][1] == curves["comparison"]
    assert np.asarray(curves["confusion"]).sum() == curves["n_test"]
    rasters = json.loads((run / "rasters.json").read_text())
    assert len(rasters["samples"]) == 3 and rasters["layer_sizes"] == [30, 10]
    assert len({smp["label"] for smp in rasters["samples"]}) == 3  # three different digits
    assert main(["report", str(run)]) == 0
    capsys.readouterr()
    report = run / "report"
    for name in ("training", "health", "weights", "curves", "confusion", "rasters"):
        img = np.asarray(Image.open(report / f"{name}.png").convert("L"), np.float64)
        assert img.shape[0] > 200 and img.shape[1] > 300, name
        assert img.std() > 5, name  # something is drawn, not a blank canvas
    page = (report / "README.md").read_text()
    assert "Operations against the conventional baseline" in page and "![confusion matrix](confusion.png)" in page
    # the dense engine (time grid) records the same kind of curves, cumulative, ending at its own test accuracy
    assert main(["eval", str(run), "--curves", "--set", 'train.engine="dense"']) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    dense = json.loads((run / "curves.json").read_text())
    assert dense["engine"] == "dense" and dense["accuracy"][-1] == ev["test_accuracy"]
    assert np.all(np.diff(dense["ops_per_sample"]) >= 0) and dense["ops_per_sample"][-1] > 0
    # the baseline's own report: training curves and weights, no curves (it has no time axis)
    assert main(["report", str(tmp_path / "ann")]) == 0
    assert (tmp_path / "ann" / "report" / "weights.png").is_file()


def test_report_bad_input(tmp_path, capsys):
    root = write_fake_mnist(tmp_path / "data")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    _run(tmp_path, capsys, "snn", SNN, root)
    run = tmp_path / "snn"
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 3, "lr": 0.0')  # a run killed while appending
    assert main(["report", str(run)]) == 0
    cap = capsys.readouterr()
    assert "cut off" in cap.err and "skipped" in cap.err
    assert "| 2 |" in (run / "report" / "README.md").read_text()
    # --curves on a checkpoint whose data is gone names the command that fetches it
    import shutil

    shutil.rmtree(root / "mnist")
    assert main(["eval", str(run), "--curves"]) == 2
    assert "snnbp data mnist" in capsys.readouterr().err


@pytest.mark.parametrize("block", [1, 3, 100])
def test_event_counts_per_channel_in_any_block_size(block):
    from snnbp.ann.features import event_counts

    rng = np.random.default_rng(0)
    lens = rng.integers(0, 50, 10)  # some samples without events
    lens[4] = 0
    off = np.concatenate([[0], np.cumsum(lens)])
    ch = rng.integers(0, 7, off[-1]).astype(np.int32)
    want = np.zeros((10, 7))
    for i in range(10):
        np.add.at(want[i], ch[off[i]:off[i + 1]], 1)
    np.testing.assert_array_equal(event_counts((ch, None, off), 7, block=block), want)
