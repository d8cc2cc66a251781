"""`snnbp bench`: one measurement of every kind runs in-process on tiny nets; groups and ratios; the BPTT
baseline really learns."""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest
import torch

from snnbp.bench import harness as bench, specs as bench_specs, workloads as bench_workloads
from snnbp.bench.bptt_baseline import BPTTNet, make_optimizer, poisson_frames, predict, train_step
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
        ("dense-lee2016", 4, {}),
        ("dense-bptt", 4, {}),
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
    assert rec["presentation_ms"] == 20.0 and rec["device"] == "cpu"
    assert rec["T"] == (20 if engine.startswith(("bptt", "dense")) else None)
    assert rec["data"] == "random"
    if engine.startswith("dense"):
        assert rec["rule"] == engine.split("-")[1] and rec["dt_ms"] == 1.0
        assert np.isfinite(rec["loss_mean"]) and rec["synops_per_sample"] > 0
    json.dumps(rec)  # one JSON object per measurement


@pytest.mark.parametrize(
    "engine,batch,extra",
    [
        ("nmnist-event-sgd", 1, {"chunk": 4, "pool": 3}),
        ("nmnist-event-adam", 4, {"chunk": 4, "pool": 3}),
        ("nmnist-event-infer", 4, {"pretrain_samples": 4}),
        ("nmnist-bptt", 4, {"pool": 3}),
        ("nmnist-bptt-infer", 4, {}),
    ],
)
def test_nmnist_measurements_in_process(engine, batch, extra):
    """Synthetic recordings made in-process (random strokes with data=random), crops of 300 events for
    training, full ~300 ms streams for testing; BPTT bins them at 1 ms (T = the batch's longest sample)."""
    rec = bench.measure({"name": engine, "engine": engine, "batch": batch, "n_samples": 8, **TINY, **extra})
    for key in bench.RECORD_FIELDS:
        assert key in rec, key
    assert rec["samples_per_s"] > 0 and rec["n_samples"] == 8 and rec["tau_mp_ms"] == 200.0
    assert rec["data"].startswith("synthetic N-MNIST") and "random-stroke" in rec["data"]
    test = engine.endswith("infer")
    if test:
        assert rec["presentation"].startswith("full streams") and 250 < rec["presentation_ms"] < 330
        assert rec["events_per_sample"] > 1000
    else:
        assert rec["presentation"].startswith("300-event crops") and rec["events_per_sample"] == 300
        assert 0 < rec["presentation_ms"] < 150
    if "bptt" in engine:
        assert rec["T_max"] >= rec["T"] > 0 and rec["dt_ms"] == 1.0
        assert rec["T"] > 250 if test else rec["T"] < 200
    else:
        assert rec["T"] is None and rec["synops_per_sample"] > 0
    json.dumps(rec)


def test_random_strokes_and_nmnist_pool_are_deterministic():
    a, la = bench_workloads.random_strokes(3, seed=5)
    b, lb = bench_workloads.random_strokes(3, seed=5)
    assert a.shape == (3, 28, 28) and a.dtype == np.uint8 and np.array_equal(a, b) and np.array_equal(la, lb)
    assert all(50 < (img > 0).sum() < 500 for img in a)  # strokes, not blank and not filled
    c1, t1, l1, name = bench_workloads.nmnist_pool(2, "train", "random", seed=0)
    c2, t2, _, _ = bench_workloads.nmnist_pool(2, "train", "random", seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(c1 + t1, c2 + t2))
    assert all(c.dtype == np.int32 and c.max() < 2312 and np.all(np.diff(t) >= 0) for c, t in zip(c1, t1))
    assert "random-stroke" in name


def test_conv_preset_is_found_from_any_directory_and_a_missing_config_is_an_error(tmp_path, monkeypatch):
    # The conv measurements name an embedded preset: found from any working directory, never skipped.
    monkeypatch.chdir(tmp_path)
    assert bench_workloads._preset(bench_specs.CONV_PRESET).is_file()
    with pytest.raises(ConfigError, match="absent.toml"):
        bench.measure({"name": "conv-lee-T50", "engine": "dense-lee2016", "presentation_ms": 20.0, "batch": 4,
                       "n_samples": 8, "config": str(tmp_path / "absent.toml"), **TINY})
    # A record that was skipped (e.g. CUDA measurements without a GPU) still shows as such in the table.
    table = bench.summary_table([{"name": "conv-lee-T50", "engine": "dense-lee2016", "skipped": "no CUDA device"}])
    assert "SKIPPED" in table and "| conv speed: Lee2016 / BPTT, T = 50 | n/a |" in table


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
    # N-MNIST: SGD per sample (the paper) and Adam batch 32 on crops, full-stream test, BPTT on the same net.
    assert specs["nmnist-event-sgd-train"]["batch"] == 1 and specs["nmnist-event-adam32-train"]["batch"] == 32
    assert specs["nmnist-bptt-train"]["batch"] == 32 and specs["nmnist-event-test"]["engine"] == "nmnist-event-infer"
    # Dense engine vs its BPTT variant at T = 50, 100, 200, batch 100, on the CPU unless --device says otherwise.
    for T in (50, 100, 200):
        for rule in ("lee", "bptt"):
            s = specs[f"dense-{rule}-T{T}"]
            assert s["presentation_ms"] == float(T) and s["batch"] == 100 and s["device"] == "cpu"
    assert not any(n.startswith("conv-") for n in specs)  # conv only when asked for


def test_groups_select_measurements():
    names = lambda which: [s["name"] for s in bench.build_specs(which, quick=True, threads=1, data="random")]  # noqa: E731
    assert names(["nmnist"]) == bench.GROUPS["nmnist"] and len(names(["nmnist"])) == 5
    assert names(["dense"]) == [f"dense-{r}-T{T}" for T in (50, 100, 200) for r in ("lee", "bptt")]
    assert names(["mnist"]) == bench.GROUPS["mnist"]
    assert names(["dense", "dense-lee-T50", "bptt-50ms"]) == names(["dense"]) + ["bptt-50ms"]  # no duplicates
    assert names(None) == names(["mnist", "nmnist", "dense"])
    cuda = bench.build_specs(["dense", "conv", "bptt-50ms"], quick=True, threads=1, data="random", device="cuda")
    assert {s["device"] for s in cuda if s["engine"].startswith("dense")} == {"cuda"}
    assert "device" not in cuda[-1]  # the device applies to the dense engines only
    assert all(s["config"] == bench_specs.CONV_PRESET for s in cuda if s["name"].startswith("conv"))
    assert set(bench.QUICK) == set(bench.MEASUREMENTS)
    assert bench._default_out(["nmnist"]).name.endswith("-nmnist.md") and bench._default_out(["bptt-50ms"]).name.startswith("results-")


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
    assert "N-MNIST" not in table and "dense" not in table  # only the groups that were measured


def test_summary_table_dense_and_nmnist_ratios():
    def rec(name, sps, peak, delta, **kw):
        return {"name": name, "engine": "x", "samples_per_s": sps, "peak_rss_mb": peak, "rss_delta_mb": delta,
                "presentation_ms": 50.0, "batch": 100, "T": 50, "threads": 1, "n_samples": 10, **kw}

    table = bench.summary_table([
        rec("dense-lee-T50", 600.0, 400, 10), rec("dense-lee-T200", 150.0, 404, 12),
        rec("dense-bptt-T50", 200.0, 500, 100), rec("dense-bptt-T200", 50.0, 900, 500),
        rec("dense-lee-T100", 300.0, 402, 11, device="cuda", cuda_peak_mb=30.0, cuda_delta_mb=5.0),
        rec("dense-bptt-T100", 75.0, 450, 50, device="cuda", cuda_peak_mb=300.0, cuda_delta_mb=280.0),
        rec("nmnist-event-sgd-train", 1000.0, 400, 0, presentation="300-event crops (~25 ms)"),
        rec("nmnist-bptt-train", 40.0, 600, 200),
    ])
    assert "| dense speed: Lee2016 / BPTT, T = 100 (target >= 3x) | 4.00x |" in table
    assert "| dense memory: Lee2016 peak T = 200 / T = 50 (target: flat) | 1.01x (peak RSS 400 -> 404 MiB" in table
    assert "| dense memory: BPTT peak T = 200 / T = 50 | 1.80x" in table
    assert "| N-MNIST train speed: event SGD bs1 (paper) / BPTT bs32 | 25.00x |" in table
    assert "| N-MNIST test speed: event / BPTT, full streams | n/a |" in table
    assert "300-event crops (~25 ms)" in table and "| cuda |" in table and "| 300 |" in table  # GPU peak column
    assert "conv" not in table


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


def test_repeated_runs_aggregate_to_the_median():
    runs = [{"name": "a", "engine": "x", "samples_per_s": v, "peak_rss_mb": p, "rss_delta_mb": 1.0, "repetition": i}
            for i, (v, p) in enumerate([(10.0, 100.0), (30.0, 120.0), (20.0, 110.0)])]
    agg = bench.aggregate(runs)
    assert agg["samples_per_s"] == 20.0 and agg["samples_per_s_runs"] == [10.0, 30.0, 20.0] and agg["repeats"] == 3
    assert agg["peak_rss_mb"] == 100.0 and agg["peak_rss_mb_runs"] == [100.0, 120.0, 110.0] and "repetition" not in agg
    assert bench.aggregate(runs[:2] + [{"name": "a", "engine": "x", "error": "boom"}])["error"] == "boom"
    assert bench._sps(agg) == "20.0 [10.0-30.0]"


def test_cli_runs_children_and_writes_the_results_file(tmp_path):
    """The parent path: fresh child processes, --repeat, the .md file with table, records and every run."""
    out = tmp_path / "r.md"
    rc = bench.main(["--which", "dense-lee-T50", "--quick", "--repeat", "2", "--threads", "1", "--data", "random",
                     "--out", str(out)])
    text = out.read_text()
    assert rc == 0, text
    assert "| dense-lee-T50 | dense-lee2016 | cpu | 50 ms Poisson | 10 | 50 | 1 | 20 |" in text
    assert "--repeat 2" in text and "## Every run (--repeat)" in text
    records = [json.loads(line) for line in text.split("```jsonl\n")[1].split("```")[0].splitlines()]
    assert len(records) == 1 and records[0]["repeats"] == 2 and len(records[0]["samples_per_s_runs"]) == 2
