"""Health signals per epoch (metrics/health.py), their place in metrics.jsonl and in `snnbp report`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.metrics.health import epoch_health, weight_sq_norms
from snnbp.model import Network


def test_epoch_health_hand_example():
    W0 = np.array([[1.0, 0.0, 0.5], [0.0, 2.0, 0.5]], np.float32)  # |W_i|^2 = 1, 4, 0.5
    W1 = np.ones((3, 2), np.float32)
    net = Network(2, [W0, W1], [np.array([0.1, 0.3, 0.1], np.float32), np.array([1.0, 2.0], np.float32)],
                  [-0.4, -1.0], [0.1, 0.5])
    h = epoch_health(net, samples=4, unit_spikes=[np.array([0, 8, 4]), np.array([2, 0])], zero_error=3)
    l0, l1 = h["layers"]
    assert l0["at_floor"] == pytest.approx(2 / 3, abs=1e-4) and l1["at_floor"] == 0.0
    assert l0["dead"] == pytest.approx(1 / 3, abs=1e-4) and l1["dead"] == 0.5
    assert l0["spikes_per_sample"] == 3.0 and l1["spikes_per_sample"] == 0.5
    assert (l0["th_min"], l0["th_max"]) == pytest.approx((0.1, 0.3))
    assert l0["wnorm2_q50"] == pytest.approx(1.0) and l0["wnorm2_q05"] < 1.0 < l0["wnorm2_q95"]
    assert h["zero_error_fraction"] == 0.75
    conv = np.ones((4, 2, 3, 3), np.float32)
    np.testing.assert_allclose(weight_sq_norms(conv), [18.0] * 4)


def test_metrics_carry_health_and_report_draws_it(tmp_path, capsys):
    root = write_fake_mnist(tmp_path / "data")
    args = ["train", "--out", str(tmp_path / "run")]
    for kv in ["model.hidden=[30]", "train.epochs=2", "train.chunk=20", "data.test_ms=200.0", f"data.root=\"{root}\""]:
        args += ["--set", kv]
    assert main(args) == 0
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        h = r["health"]
        assert len(h["layers"]) == 2 and 0.0 <= h["zero_error_fraction"] <= 1.0
        for layer in h["layers"]:
            assert 0.0 <= layer["dead"] <= 1.0 and 0.0 <= layer["at_floor"] <= 1.0
            assert layer["th_min"] <= layer["th_mean"] <= layer["th_max"]
        # spikes per sample agree with the epoch's per-layer count
        assert [l["spikes_per_sample"] for l in h["layers"]] == pytest.approx(r["train_spikes_per_layer"], abs=0.01)
    capsys.readouterr()
    assert main(["report", str(tmp_path / "run")]) == 0
    rep = tmp_path / "run" / "report"
    assert (rep / "health.png").stat().st_size > 10_000
    assert "health.png" in (rep / "README.md").read_text()
