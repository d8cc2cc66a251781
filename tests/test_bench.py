"""`snnbp bench`: one measurement runs in-process on tiny nets; the BPTT baseline really learns."""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest
import torch

from snnbp import bench
from snnbp.baselines.bptt import BPTTNet, make_optimizer, poisson_frames, predict, train_step
from snnbp.errors import ConfigError


@pytest.fixture(autouse=True)
def _restore_threads():
    t, n = torch.get_num_threads(), numba.get_num_threads()
    yield
    torch.set_num_threads(t)
    numba.set_num_threads(n)


TINY = {"sizes": [16, 16, 10], "threads": 1, "data": "random"}


@pytest.mark.parametrize(
    "engine,batch,extra",
    [
        ("bptt", 4, {}),
        ("bptt-infer", 4, {}),
        ("event-sgd", 1, {"chunk": 4}),
        ("event-adam", 4, {"chunk": 4}),
        ("event-infer", 4, {"pretrain_samples": 4}),
    ],
)
def test_measure_record_in_process(engine, batch, extra):
    rec = bench.measure({"name": f"tiny-{engine}", "engine": engine, "presentation_ms": 20.0, "batch": batch,
                         "n_samples": 8, **TINY, **extra})
    for key in bench.RECORD_FIELDS:
        assert key in rec, key
    assert rec["name"] == f"tiny-{engine}" and rec["engine"] == engine
    assert rec["samples_per_s"] > 0 and rec["wall_s"] > 0 and rec["peak_rss_mb"] > 0
    assert rec["n_samples"] == 8 and rec["batch"] == batch and rec["threads"] == 1
    assert rec["presentation_ms"] == 20.0
    assert rec["T"] == (20 if engine.startswith("bptt") else None)
    assert rec["data"] == "random"
    json.dumps(rec)  # one JSON object per measurement


def test_unknown_measurement_and_engine_are_config_errors():
    with pytest.raises(ConfigError, match="unknown measurement"):
        bench.build_specs(["nope"], quick=True, threads=1, data="random")
    with pytest.raises(ConfigError, match="unknown engine"):
        bench.measure({"engine": "dense", "presentation_ms": 10.0, "batch": 1, "n_samples": 1, **TINY})


def test_specs_cover_the_paper_protocol():
    specs = {s["name"]: s for s in bench.build_specs(None, quick=False, threads=2, data="auto")}
    assert specs["bptt-50ms"]["batch"] == 100 and specs["bptt-1s"]["presentation_ms"] == 1000.0
    assert specs["event-adam100-50ms"]["batch"] == 100
    assert specs["event-infer-1s"]["batch"] == 1000 and specs["event-infer-1s"]["presentation_ms"] == 1000.0
    assert all(s["threads"] == 2 for s in specs.values())


def test_summary_table_ratios_come_from_the_records():
    def rec(name, engine, sps, peak, delta, batch=100):
        return {"name": name, "engine": engine, "samples_per_s": sps, "peak_rss_mb": peak, "rss_delta_mb": delta,
                "presentation_ms": 50.0, "batch": batch, "T": 50, "threads": 2, "n_samples": 10}

    table = bench.summary_table([rec("bptt-50ms", "bptt", 100.0, 500, 50), rec("bptt-1s", "bptt", 5.0, 2000, 1500),
                                 rec("event-sgd-50ms", "event-sgd", 1000.0, 300, 0, 1),
                                 rec("event-sgd-1s", "event-sgd", 60.0, 300, 0, 1),
                                 {"name": "event-infer-1s", "engine": "event-infer", "error": "exit 1: boom"}])
    assert "| speed: event SGD bs1 / BPTT, 50 ms | 10.00x |" in table
    assert "| speed: event SGD bs1 / BPTT, 1 s | 12.00x |" in table
    assert "memory: BPTT peak RSS 1 s / 50 ms | 4.00x" in table
    assert "memory: event SGD peak RSS 1 s / 50 ms | 1.00x" in table
    assert "FAILED" in table and "n/a" in table


def test_poisson_frames_rate_and_shape():
    img = np.zeros((3, 20), np.uint8)
    img[0, :10] = 255
    img[1, 5] = 7
    gen = torch.Generator().manual_seed(0)
    f = poisson_frames(img, 2000, 1.0, 5000.0, gen)
    assert f.shape == (2000, 3, 20) and f.dtype == torch.float32
    per_s = f.sum(dim=(0, 2)) / 2.0  # events per second per image
    assert abs(per_s[0] - 5000) < 250 and abs(per_s[1] - 5000) < 250 and per_s[2] == 0
    assert f[:, 0, 10:].sum() == 0 and f[:, 1].sum() == f[:, 1, 5].sum()


def test_bptt_baseline_learns_a_separable_problem():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 64
    labels = rng.integers(0, 2, n)
    images = np.zeros((n, 20), np.uint8)
    for i, y in enumerate(labels):
        images[i, 10 * y: 10 * y + 10] = 200  # class 0 lights pixels 0-9, class 1 pixels 10-19
    net = BPTTNet([20, 16, 2], tau_ms=20.0, dt_ms=1.0, seed=0)
    opt = make_optimizer(net, lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    lab = torch.from_numpy(labels)
    losses = []
    for step in range(40):
        idx = np.arange(16 * (step % 4), 16 * (step % 4 + 1))
        losses.append(train_step(net, opt, poisson_frames(images[idx], 20, 1.0, 1000.0, gen), lab[idx]))
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:4]), losses
    acc = (predict(net, poisson_frames(images, 20, 1.0, 1000.0, gen)) == lab).float().mean()
    assert acc >= 0.9, acc
