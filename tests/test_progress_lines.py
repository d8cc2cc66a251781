"""Progress lines of train/loop.py for runs without a terminal (train/progress_lines.py)."""

from __future__ import annotations

import numpy as np

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.train.progress_lines import ProgressLines
from snnbp.train.protocol import ChunkStats


def _stats(samples, correct, spikes):
    return ChunkStats(samples, 0.0, 0.0, correct, 0, np.asarray(spikes, np.int64), 0, [])


def test_a_line_at_most_every_interval_with_the_running_epoch_statistics():
    t = [0.0]
    logged = []
    p = ProgressLines("epoch 2/5", 600, logged.append, every_s=10.0, clock=lambda: t[0])
    t[0] = 4.0
    assert not p.after_chunk(200, 200, _stats(200, 150, [4000, 300]))  # 4 s < 10 s: quiet
    t[0] = 12.0
    assert p.after_chunk(400, 200, _stats(400, 300, [8000, 600]))
    assert logged == ["epoch 2/5: 400/600 samples, 33 samples/s, train acc 75.00 %, spikes/sample [20.0, 1.5]"]
    t[0] = 30.0
    assert not p.after_chunk(600, 200, _stats(600, 450, [12000, 900]))  # the epoch's end has its own line
    assert len(logged) == 1


def test_interval_zero_logs_nothing():
    logged = []
    p = ProgressLines("epoch 1/1", 100, logged.append, every_s=0.0, clock=lambda: 1e9)
    assert not p.after_chunk(50, 50, _stats(50, 1, [1, 1]))
    assert logged == []


def test_training_without_a_terminal_logs_progress_inside_the_epoch(tmp_path, capsys):
    root = write_fake_mnist(tmp_path / "data")
    args = ["train", "--out", str(tmp_path / "run")]
    for kv in ["model.hidden=[20]", "train.epochs=1", "train.chunk=20", "train.eval_every=1", "data.test_ms=100.0",
               "train.log_every_s=1e-9", f"data.root=\"{root}\""]:
        args += ["--set", kv]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = [l for l in out.splitlines() if l.startswith("epoch 1/1: ") and "samples/s" in l]
    assert lines, out  # pytest's stderr is not a terminal, so the bar is off and the lines stand in
    assert "spikes/sample [" in lines[0]
