"""Exact resume (train/loop.py): a run stopped and resumed writes the metrics of a run never stopped,
no epoch twice; a finished run is never overwritten; --resume can extend a run but not reshape it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.serialization import load_tensors
from snnbp.train import event_trainer as trainer_mod

# SGD per sample (the paper's protocol), homeostasis on, 3 chunks of 20 per epoch.
TINY = ["model.hidden=[30]", "model.alpha=[2.0]", "train.epochs=3", "train.chunk=20", "train.eval_every=1",
        "data.test_ms=200.0", "optim.lr=0.004", "optim.rho=1e-3", "optim.decay_per_epoch=0.9"]
# what differs between two identical runs: wall-clock times
VOLATILE = {"epoch_wall_s", "train_wall_s", "eval_wall_s"}


def _args(tmp_path, out, extra=()):
    root = write_fake_mnist(tmp_path / "data")
    args = ["train", "--out", str(tmp_path / out)]
    for kv in [*TINY, f"data.root=\"{root}\"", *extra]:
        args += ["--set", kv]
    return args


def _metrics(run):
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def _interrupt_at_chunk(monkeypatch, n):
    """Make the n-th training chunk raise KeyboardInterrupt (as Ctrl-C would); returns the real method."""
    real = trainer_mod.EventTrainer.step_chunk
    calls = {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(trainer_mod.EventTrainer, "step_chunk", flaky)
    return real


def _same_model(a, b):
    ta, _ = load_tensors(a / "model.safetensors")
    tb, _ = load_tensors(b / "model.safetensors")
    assert ta.keys() == tb.keys()
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k])


def test_stopped_after_epoch_one_and_resumed_equals_uninterrupted(tmp_path, capsys):
    assert main(_args(tmp_path, "whole")) == 0
    assert main(_args(tmp_path, "parts", ["train.epochs=1"])) == 0
    # the 1-epoch run finished; extending it is an explicit, larger train.epochs
    assert main(["train", "--resume", str(tmp_path / "parts"), "--set", "train.epochs=3"]) == 0
    capsys.readouterr()
    whole, parts = _metrics(tmp_path / "whole"), _metrics(tmp_path / "parts")
    assert [r["epoch"] for r in parts] == [1, 2, 3]
    assert parts == whole  # lr / rho schedule continues as if epochs = 3 from the start
    _same_model(tmp_path / "whole", tmp_path / "parts")


def test_interrupted_mid_epoch_and_resumed_equals_uninterrupted(tmp_path, capsys, monkeypatch):
    assert main(_args(tmp_path, "whole")) == 0
    real = _interrupt_at_chunk(monkeypatch, 5)  # second chunk of epoch 2
    assert main(_args(tmp_path, "parts")) == 130
    monkeypatch.setattr(trainer_mod.EventTrainer, "step_chunk", real)
    assert main(["train", "--resume", str(tmp_path / "parts")]) == 0
    capsys.readouterr()
    assert _metrics(tmp_path / "parts") == _metrics(tmp_path / "whole")
    _same_model(tmp_path / "whole", tmp_path / "parts")


def test_killed_after_metrics_line_does_not_record_an_epoch_twice(tmp_path, capsys):
    # kill -9 between the metrics line of epoch 2 and its checkpoint: the checkpoint says 1 epoch.
    assert main(_args(tmp_path, "whole")) == 0
    assert main(_args(tmp_path, "parts", ["train.epochs=1"])) == 0
    (tmp_path / "parts" / "summary.json").unlink()  # as if killed before the run finished
    run = tmp_path / "parts"
    rows = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(rows + rows.replace('"epoch": 1', '"epoch": 2'))  # a stray epoch-2 line
    assert main(["train", "--resume", str(run), "--set", "train.epochs=3"]) == 0
    capsys.readouterr()
    assert [r["epoch"] for r in _metrics(run)] == [1, 2, 3]
    assert _metrics(run) == _metrics(tmp_path / "whole")


def test_resume_of_finished_run_leaves_it_untouched(tmp_path, capsys):
    assert main(_args(tmp_path, "run")) == 0
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "finished" in err and "train.epochs" in err and "Traceback" not in err
    assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 2  # fewer epochs: nothing to do
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before


def test_resume_with_another_network_shape_is_refused(tmp_path, capsys):
    assert main(_args(tmp_path, "run", ["train.epochs=1"])) == 0
    capsys.readouterr()
    rc = main(["train", "--resume", str(tmp_path / "run"), "--set", "train.epochs=2", "--set", "model.hidden=[40]"])
    err = capsys.readouterr().err
    assert rc == 2 and "model.hidden" in err and "Traceback" not in err


def test_resume_of_a_folder_without_a_run_is_one_clear_error(tmp_path, capsys):
    rc = main(["train", "--resume", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert rc == 2 and "no resumable run" in err


@pytest.mark.parametrize("name", ["adam"])
def test_adam_mid_epoch_resume_is_exact(tmp_path, capsys, monkeypatch, name):
    extra = [f'optim.name="{name}"', "optim.batch_size=5", "optim.lr_th_ratio=1.0"]
    assert main(_args(tmp_path, "whole", extra)) == 0
    real = _interrupt_at_chunk(monkeypatch, 4)
    assert main(_args(tmp_path, "parts", extra)) == 130
    monkeypatch.setattr(trainer_mod.EventTrainer, "step_chunk", real)
    assert main(["train", "--resume", str(tmp_path / "parts")]) == 0
    capsys.readouterr()
    assert _metrics(tmp_path / "parts") == _metrics(tmp_path / "whole")
    _same_model(tmp_path / "whole", tmp_path / "parts")


def test_a_run_stopped_by_its_time_budget_is_extended_by_lifting_the_budget(tmp_path, capsys):
    """train.max_minutes = 0 means no limit, so it extends a run that stopped on its budget."""
    run = tmp_path / "budget"
    # A budget this small stops the run after its first chunk (mid-epoch 1), finished with summary.json.
    assert main(_args(tmp_path, "budget", ["train.max_minutes=1e-9"])) == 0
    assert (run / "summary.json").is_file()
    assert main(["train", "--resume", str(run)]) == 2  # the same budget again: finished, left untouched
    assert main(["train", "--resume", str(run), "--set", "train.max_minutes=0"]) == 0
    capsys.readouterr()
    assert [r["epoch"] for r in _metrics(run)] == [1, 2, 3]  # the budget stop's partial line is not kept twice
    assert main(_args(tmp_path, "whole")) == 0
    _same_model(tmp_path / "whole", run)
    assert _metrics(run) == _metrics(tmp_path / "whole")  # epoch 1's line counts all its samples


def test_an_extended_run_killed_again_resumes_without_new_overrides(tmp_path, capsys, monkeypatch):
    run = tmp_path / "budget"
    assert main(_args(tmp_path, "budget", ["train.max_minutes=1e-9"])) == 0
    real = _interrupt_at_chunk(monkeypatch, 3)  # the extension is stopped again, in epoch 2
    assert main(["train", "--resume", str(run), "--set", "train.max_minutes=0"]) == 130
    assert not (run / "summary.json").exists()  # unfinished again, so a plain --resume continues it
    monkeypatch.setattr(trainer_mod.EventTrainer, "step_chunk", real)
    assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert main(_args(tmp_path, "whole")) == 0
    assert _metrics(run) == _metrics(tmp_path / "whole")
