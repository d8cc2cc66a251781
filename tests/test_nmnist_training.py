"""A tiny end-to-end N-MNIST run: synthetic recordings of fake digits -> train -> eval (docs/method.md 6.2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.data.synthetic.writer import generate_synthetic_nmnist
from snnbp.config import load_config
from snnbp.data.sources import make_source


def _data(tmp_path):
    root = write_fake_mnist(tmp_path / "data", n_train=20, n_test=10)
    generate_synthetic_nmnist(root, mnist_root=root, seed=0, limit=20, workers=1, progress=False)
    return root


def test_crops_and_full_streams(tmp_path):
    root = _data(tmp_path)
    cfg = load_config(None, ["data.source=\"nmnist-synthetic\"", f"data.root=\"{root}\""])
    src = make_source(cfg.data, seed=0)
    assert src.n_inputs == 2312 and "synthetic" in src.name
    idx = np.arange(len(src.train_labels))
    crops = src.train_batch(idx, epoch=0)
    assert np.all(np.diff(crops.offsets) == 300)  # synthetic recordings hold thousands of events
    crops.validate(2312)
    ch, tt, off = src.train_streams
    for b in range(3):  # each crop is a contiguous window of its own stream
        c, t = crops.sample(b)
        stream_c, stream_t = ch[off[b]: off[b + 1]], tt[off[b]: off[b + 1]]
        starts = [s for s in np.flatnonzero(stream_t == t[0]) if s + 300 <= len(stream_t)]
        assert any(np.array_equal(stream_c[s: s + 300], c) and np.array_equal(stream_t[s: s + 300], t)
                   for s in starts)
        assert crops.t_end_us[b] == t[-1]
    again = src.train_batch(idx, epoch=0)
    other = src.train_batch(idx, epoch=1)
    assert np.array_equal(again.times_us, crops.times_us) and not np.array_equal(other.times_us, crops.times_us)
    full = src.test_batch(np.arange(len(src.test_labels)))
    assert np.array_equal(np.diff(full.offsets), np.diff(src.test_streams[2]))


def test_train_and_eval_on_synthetic_nmnist(tmp_path, capsys):
    root = _data(tmp_path)
    args = ["train", "--out", str(tmp_path / "run")]
    for kv in ["data.source=\"nmnist-synthetic\"", f"data.root=\"{root}\"", "model.hidden=[20]",
               "model.tau_mp_ms=200.0", "train.epochs=1", "train.chunk=10"]:
        args += ["--set", kv]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "synthetic" in summary["data"] and 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["synops_per_sample"] > 1000 * 20  # full test streams hold thousands of events
    assert main(["eval", str(tmp_path / "run"), "--curves"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    curve = json.loads((tmp_path / "run" / "curves.json").read_text())
    assert len(curve["time_ms"]) == 40 and np.all(np.diff(curve["ops_per_sample"]) >= 0)
    # the last readout lies at the longest recording's end: the whole streams, the test's own accuracy
    assert curve["accuracy"][-1] == pytest.approx(ev["test_accuracy"])
    assert curve["synops_per_sample"][-1] == pytest.approx(ev["synops_per_sample"])


def test_show_draws_frames_gif_and_network_raster(tmp_path, capsys):
    root = _data(tmp_path)
    args = ["train", "--out", str(tmp_path / "run")]
    for kv in ["data.source=\"nmnist-synthetic\"", f"data.root=\"{root}\"", "model.hidden=[20]",
               "model.tau_mp_ms=200.0", "train.epochs=1", "train.chunk=10"]:
        args += ["--set", kv]
    assert main(args) == 0
    capsys.readouterr()
    rec = next((root / "nmnist-synthetic" / "Test").rglob("*.bin"))
    assert main(["show", str(rec), "--out", str(tmp_path / "fig"), "--checkpoint", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out.lower()
    for suffix in ("_frames.png", ".gif", "_raster.png"):
        f = tmp_path / "fig" / f"{rec.stem}{suffix}"
        assert f.is_file() and f.stat().st_size > 1000
