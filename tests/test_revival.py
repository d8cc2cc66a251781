"""Silent-unit revival (gradient/revival.py): only threshold groups silent for revive_after samples are
lowered, by exp(-r n) per chunk, never below the floor; conv maps count as one group; the counters
travel in the checkpoint so a revived run resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.gradient.revival import SilentUnitRevival
from snnbp.model import Network


def _net(thresholds, floors):
    weights = [np.zeros((4, len(thresholds[0])), np.float32), np.zeros((len(thresholds[0]), 2), np.float32)]
    return Network(n_inputs=4, weights=weights, thresholds=[np.array(t, np.float64) for t in thresholds],
                   kappas=[0.0, -1.0], floors=floors)


def test_only_units_silent_long_enough_are_lowered_exactly_and_not_below_the_floor():
    net = _net([[1.0, 1.0, 0.26], [0.5, 0.5]], [0.25, 0.1])
    rev = SilentUnitRevival(net, after=30, rate=0.01)
    spikes = [np.array([3, 0, 0]), np.array([1, 1])]
    assert rev.after_chunk(net, spikes, 20, 1.0).tolist() == [0, 0]  # 20 silent samples < 30: nothing yet
    np.testing.assert_array_equal(net.thresholds[0], [1.0, 1.0, 0.26])
    lowered = rev.after_chunk(net, spikes, 20, 0.5)  # 40 >= 30 for units 1 and 2; the schedule halves r
    assert lowered.tolist() == [2, 0]
    np.testing.assert_allclose(net.thresholds[0], [1.0, np.exp(-0.01 * 0.5 * 20), 0.25])  # unit 2 stops at the floor
    np.testing.assert_array_equal(net.thresholds[1], [0.5, 0.5])
    assert rev.reviving().tolist() == [2, 0]


def test_a_spike_resets_the_count():
    net = _net([[1.0, 1.0, 1.0], [0.5, 0.5]], [0.1, 0.1])
    rev = SilentUnitRevival(net, after=30, rate=0.01)
    rev.after_chunk(net, [np.array([0, 0, 0]), np.array([1, 1])], 25, 1.0)
    rev.after_chunk(net, [np.array([0, 1, 0]), np.array([1, 1])], 10, 1.0)
    assert rev.silent[0].tolist() == [35, 0, 35]
    np.testing.assert_allclose(net.thresholds[0], [np.exp(-0.1), 1.0, np.exp(-0.1)])


def test_a_conv_map_is_one_group_whichever_location_fires():
    # layer of 2 maps x 3 locations (map-major unit order), one threshold per map stored as (C, 1, 1)
    net = _net([[1.0] * 6, [0.5, 0.5]], [0.1, 0.1])
    net.thresholds[0] = np.array([1.0, 1.0]).reshape(2, 1, 1)
    rev = SilentUnitRevival(net, after=1, rate=0.1)
    rev.after_chunk(net, [np.array([0, 0, 2, 0, 0, 0]), np.array([1, 1])], 1, 1.0)
    np.testing.assert_allclose(net.thresholds[0].ravel(), [1.0, np.exp(-0.1)])
    assert net.thresholds[0].shape == (2, 1, 1)


def test_counters_of_the_wrong_shape_are_refused():
    net = _net([[1.0, 1.0, 1.0], [0.5, 0.5]], [0.1, 0.1])
    rev = SilentUnitRevival(net, after=5, rate=0.01)
    with pytest.raises(ValueError, match="shape"):
        rev.load_state_tensors({"revival.silent_samples.0": np.zeros(4, np.int64)})


TINY = ["model.hidden=[30]", "model.alpha=[8.0]", "train.epochs=3", "train.chunk=20", "train.eval_every=1",
        "data.test_ms=100.0", "optim.lr=0.004", "optim.rho=0.0", "optim.decay_per_epoch=0.9",
        "optim.revive_after=20", "optim.revive_rate=0.02"]


def _run(tmp_path, out, extra=()):
    root = write_fake_mnist(tmp_path / "data")
    args = ["train", "--out", str(tmp_path / out)]
    for kv in [*TINY, f"data.root=\"{root}\"", *extra]:
        args += ["--set", kv]
    return main(args)


def _rows(run):
    drop = {"epoch_wall_s", "train_wall_s", "eval_wall_s"}
    return [{k: v for k, v in json.loads(l).items() if k not in drop}
            for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]


def test_revival_acts_in_training_and_resumes_exactly(tmp_path, capsys):
    # alpha 8: high thresholds leave hidden units silent, so the rule has something to revive
    assert _run(tmp_path, "off", ["optim.revive_after=0"]) == 0
    assert _run(tmp_path, "whole") == 0
    assert _run(tmp_path, "parts", ["train.epochs=1"]) == 0
    assert main(["train", "--resume", str(tmp_path / "parts"), "--set", "train.epochs=3"]) == 0
    capsys.readouterr()
    whole, parts, off = _rows(tmp_path / "whole"), _rows(tmp_path / "parts"), _rows(tmp_path / "off")
    assert parts == whole
    assert "reviving_per_layer" not in off[0]
    assert sum(whole[0]["reviving_per_layer"]) > 0
    th_off = [r["health"]["layers"][0]["th_min"] for r in off]
    th_on = [r["health"]["layers"][0]["th_min"] for r in whole]
    assert th_on[-1] < th_off[-1]  # silent hidden units' thresholds came down
