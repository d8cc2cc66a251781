"""Run directories under faults and bad input (train/loop.py, train/run_dir.py, files.read_jsonl):
every mistake is one error with exit code 2 and nothing written, and a run killed at any point resumes
to the metrics of a run never stopped, each epoch recorded once."""

from __future__ import annotations

import json

import pytest

from snnbp.cli import main
from snnbp.train import loop as loop_mod
from test_resume import _args, _metrics, _same_model


class Killed(BaseException):
    """Stands for kill -9 at a chosen point: nothing after it runs (no handler catches BaseException)."""


def _kill_at_checkpoint(monkeypatch, n, before=lambda path: None):
    """The n-th checkpoint write dies before it replaces last.safetensors (``before`` runs first)."""
    real = loop_mod.save_checkpoint
    calls = {"n": 0}

    def dying(path, *a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            before(path)
            raise Killed
        return real(path, *a, **k)

    monkeypatch.setattr(loop_mod, "save_checkpoint", dying)
    return real


@pytest.mark.parametrize("override, key", [
    ("data.rate_hz=nan", "data.rate_hz"), ("data.rate_hz=-5", "data.rate_hz"), ("data.train_ms=-20", "data.train_ms"),
    ("train.epochs=0", "train.epochs"), ("train.epochs=-3", "train.epochs"), ("data.train_limit=-5", "data.train_limit"),
    ("optim.lr=inf", "optim.lr"), ("model.alpha=[nan]", "model.alpha[0]"),
])
def test_bad_values_are_refused_before_anything_is_written(tmp_path, capsys, override, key):
    assert main(_args(tmp_path, "run", [override])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"'{key}'" in err
    assert not (tmp_path / "run").exists()


def test_divergence_in_the_first_epoch_keeps_no_phantom_checkpoint(tmp_path, capsys):
    # Any hidden spike exceeds a 1e-6 Hz budget: the run "diverges" in its first chunk, before any checkpoint.
    assert main(_args(tmp_path, "run", ["train.max_rate_hz=1e-6"])) == 2
    err = capsys.readouterr().err
    assert "no checkpoint had been written yet" in err and "last.safetensors is kept" not in err
    assert not (tmp_path / "run").exists()  # the half-made directory is gone, so the same --out works again


def test_divergence_later_names_the_checkpoint_that_is_kept(tmp_path, capsys, monkeypatch):
    assert main(_args(tmp_path, "run", ["train.epochs=1"])) == 0
    before = (tmp_path / "run" / "last.safetensors").read_bytes()
    monkeypatch.setattr(loop_mod, "_check_health", lambda *a: "a problem injected by the test")
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "train.epochs=2"]) == 2
    assert "last good checkpoint" in capsys.readouterr().err
    assert (tmp_path / "run" / "last.safetensors").read_bytes() == before


def test_kill_between_metrics_line_and_checkpoint_records_each_epoch_once(tmp_path, capsys, monkeypatch):
    assert main(_args(tmp_path, "whole")) == 0
    real = _kill_at_checkpoint(monkeypatch, 2)  # epoch 2's line is written, its checkpoint is not
    with pytest.raises(Killed):
        main(_args(tmp_path, "parts"))
    assert [r["epoch"] for r in _metrics(tmp_path / "parts")] == [1, 2]
    monkeypatch.setattr(loop_mod, "save_checkpoint", real)
    assert main(["train", "--resume", str(tmp_path / "parts")]) == 0
    capsys.readouterr()
    assert [r["epoch"] for r in _metrics(tmp_path / "parts")] == [1, 2, 3]
    assert _metrics(tmp_path / "parts") == _metrics(tmp_path / "whole")
    _same_model(tmp_path / "whole", tmp_path / "parts")


def test_kill_during_the_first_checkpoint_then_the_same_out_is_refused(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    _kill_at_checkpoint(monkeypatch, 1, before=lambda path: (path.parent / f"{path.name}x1y2.tmp").write_bytes(b""))
    with pytest.raises(Killed):
        main(_args(tmp_path, "run"))
    monkeypatch.undo()
    left = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(_args(tmp_path, "run")) == 2  # a second run would append epoch 1 again
    err = capsys.readouterr().err
    assert "no checkpoint to resume" in err and "metrics.jsonl" in err
    assert main(["train", "--resume", str(run)]) == 2
    assert {p.name: p.read_bytes() for p in run.iterdir()} == left  # neither attempt touched anything


def test_resume_cuts_a_torn_metrics_line_and_removes_stale_tmp_files(tmp_path, capsys, monkeypatch):
    assert main(_args(tmp_path, "whole")) == 0
    real = _kill_at_checkpoint(monkeypatch, 2)
    with pytest.raises(Killed):
        main(_args(tmp_path, "parts"))
    run = tmp_path / "parts"
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "lr": 0.00')  # an append cut off by the kill
    (run / "last.safetensorsq9.tmp").write_bytes(b"\0" * 10)
    assert main(["report", str(run)]) == 0  # the report leaves the torn line out and says so
    assert "cut off" in capsys.readouterr().err
    monkeypatch.setattr(loop_mod, "save_checkpoint", real)
    assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert not list(run.glob("*.tmp"))
    assert _metrics(run) == _metrics(tmp_path / "whole")


def test_out_naming_a_file_is_refused_and_the_file_kept(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    args = _args(tmp_path, "x")
    args[args.index("--out") + 1] = str(target)
    assert main(args) == 2
    assert "is a file" in capsys.readouterr().err and target.read_text() == "mine"


def test_a_non_utf8_config_is_one_error(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(b'name = "caf\xe9"\n')
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "not UTF-8" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_report_of_a_damaged_metrics_file_is_one_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    assert main(["report", str(run)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_eval_refuses_overrides_of_the_network(tmp_path, capsys):
    assert main(_args(tmp_path, "run", ["train.epochs=1"])) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--set", "model.alpha=[9.0]"]) == 2
    assert "cannot change 'model.alpha'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "run"), "--set", "data.test_limit=5"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_accuracy"] >= 0
