"""End-to-end workflow on a tiny fake MNIST: train, eval, resume, Ctrl-C, divergence, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.serialization import load_tensors
from snnbp.train import event_trainer as trainer_mod

TINY = ["model.hidden=[30]", "model.alpha=[2.0]", "train.epochs=2", "train.chunk=20", "train.eval_every=1",
        "data.test_ms=200.0", "optim.lr=0.004"]


def _train(tmp_path, capsys, extra=(), out="run"):
    root = write_fake_mnist(tmp_path / "data")
    args = ["train", "--out", str(tmp_path / out)]
    for kv in [*TINY, f"data.root=\"{root}\"", *extra]:
        args += ["--set", kv]
    rc = main(args)
    return rc, capsys.readouterr()


def test_train_eval_and_outputs(tmp_path, capsys):
    rc, cap = _train(tmp_path, capsys)
    assert rc == 0
    summary = json.loads(cap.out.strip().splitlines()[-1])  # last stdout line is the summary
    for key in ("test_accuracy", "epochs", "wall_s", "samples_per_s", "data", "commit", "machine"):
        assert key in summary
    assert summary["epochs"] == 2 and "MNIST" in summary["data"]
    run = tmp_path / "run"
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all("test_accuracy" in r and "train_synops_per_sample" in r for r in rows)
    assert (run / "config.toml").read_text().count("hidden = [30]") == 1
    assert summary["test_accuracy"] > 0.3  # 10 classes, learnable toy data: well above chance

    assert main(["eval", str(run)]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert ev["synops_per_sample"] > 0

    # --curves writes the curves beside the checkpoint; `snnbp report` draws them from there
    assert main(["eval", str(run), "--curves"]) == 0
    curve = json.loads((run / "curves.json").read_text())
    assert len(curve["time_ms"]) == 40 and curve["accuracy"][-1] == pytest.approx(summary["test_accuracy"])
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "curves.png").is_file()
    capsys.readouterr()


def test_rerun_into_existing_dir_is_refused(tmp_path, capsys):
    assert _train(tmp_path, capsys)[0] == 0
    rc, cap = _train(tmp_path, capsys)
    assert rc == 2 and "--resume" in cap.err


def test_interrupt_writes_resumable_checkpoint(tmp_path, capsys, monkeypatch):
    real = trainer_mod.EventTrainer.step_chunk
    calls = {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(trainer_mod.EventTrainer, "step_chunk", flaky)
    rc, cap = _train(tmp_path, capsys)
    assert rc == 130 and "--resume" in cap.err + cap.out
    _, meta = load_tensors(tmp_path / "run" / "last.safetensors")
    assert meta["progress"]["epoch"] == 0 and meta["progress"]["next_sample"] == 20

    monkeypatch.setattr(trainer_mod.EventTrainer, "step_chunk", real)
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and summary["samples_seen"] == 2 * 60


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    real = trainer_mod.EventTrainer.step_chunk
    calls = {"n": 0}

    def poison(self, *a, **k):
        st = real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 4:  # second epoch (3 chunks of 20 per epoch)
            self.net.weights[0][0, 0] = np.nan
        return st

    monkeypatch.setattr(trainer_mod.EventTrainer, "step_chunk", poison)
    rc, cap = _train(tmp_path, capsys)
    assert rc == 2 and "non-finite" in cap.err and "last good checkpoint" in cap.err
    tensors, meta = load_tensors(tmp_path / "run" / "last.safetensors")
    assert meta["progress"]["epoch"] == 1  # written after epoch 1, not overwritten by the bad state
    assert all(np.isfinite(v).all() for v in tensors.values())


def test_missing_data_names_the_fetch_command(tmp_path, capsys):
    rc = main(["train", "--set", f"data.root=\"{tmp_path / 'empty'}\"", "--out", str(tmp_path / "r")])
    assert rc == 2 and "snnbp data mnist" in capsys.readouterr().err


def test_unknown_key_is_one_line_error(tmp_path, capsys):
    rc = main(["train", "--set", "optim.nope=1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "optim.nope" in err and "Traceback" not in err
