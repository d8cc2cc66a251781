"""Background tests (train/background_eval.py, train/metrics_lines.py): the same metrics as inline tests,
an exact resume while tests are still outstanding, and inline testing when the worker process dies."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from helpers_fake_mnist import write_fake_mnist
from snnbp.cli import main
from snnbp.config import load_config, to_dict
from snnbp.data.sources import make_source
from snnbp.metrics.evaluate import evaluate
from snnbp.model import Network
from snnbp.serialization import LAST, load_checkpoint
from snnbp.train import background_eval as bg_mod
from snnbp.train import event_trainer as trainer_mod
from snnbp.train.build import make_background_evaluator

TINY = ["model.hidden=[30]", "model.alpha=[2.0]", "train.epochs=4", "train.chunk=20", "train.eval_every=1",
        "data.test_ms=200.0", "optim.lr=0.004", "optim.rho=1e-3", "optim.decay_per_epoch=0.9"]
VOLATILE = {"epoch_wall_s", "train_wall_s", "eval_wall_s"}


def _args(tmp_path, out, mode, extra=()):
    root = write_fake_mnist(tmp_path / "data")
    args = ["train", "--out", str(tmp_path / out)]
    for kv in [*TINY, f"data.root=\"{root}\"", f"train.background_eval={mode}", *extra]:
        args += ["--set", kv]
    return args


def _metrics(run):
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def test_background_tests_give_the_inline_metrics(tmp_path, capsys):
    assert main(_args(tmp_path, "inline", "off")) == 0
    assert main(_args(tmp_path, "background", "on")) == 0
    assert "tests run in a background process" in capsys.readouterr().out
    inline, background = _metrics(tmp_path / "inline"), _metrics(tmp_path / "background")
    assert [r["epoch"] for r in background] == [1, 2, 3, 4]
    assert all("test_accuracy" in r for r in background)
    assert background == inline
    summary = json.loads((tmp_path / "background" / "summary.json").read_text())
    assert summary["test_accuracy"] == inline[-1]["test_accuracy"]


def test_interrupted_with_tests_outstanding_resumes_exactly(tmp_path, monkeypatch):
    assert main(_args(tmp_path, "whole", "off")) == 0
    # No background test comes back during the first run, and Ctrl-C arrives in epoch 3 (chunk 7 of 3 per
    # epoch): the checkpoint must keep epochs 1-2's records and the two network snapshots they wait for.
    monkeypatch.setattr(bg_mod.BackgroundEvaluator, "result", lambda self, epoch: None)
    real = trainer_mod.EventTrainer.step_chunk
    calls = {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(trainer_mod.EventTrainer, "step_chunk", flaky)
    assert main(_args(tmp_path, "cut", "on")) == 130
    cut = tmp_path / "cut"
    assert not (cut / "metrics.jsonl").exists() or _metrics(cut) == []  # nothing written out of order
    _, tensors, _, progress, _ = load_checkpoint(cut / LAST)
    assert [r["epoch"] for r in progress["unwritten"]] == [1, 2]
    assert {k.split(".")[1] for k in tensors if k.startswith("pending.")} == {"1", "2"}
    monkeypatch.undo()
    assert main(["train", "--resume", str(cut)]) == 0
    assert _metrics(cut) == _metrics(tmp_path / "whole")


def _tiny_setup(tmp_path):
    root = write_fake_mnist(tmp_path / "data")
    cfg = load_config(None, [*TINY, f"data.root=\"{root}\"", "train.background_eval=on"])
    source = make_source(cfg.data, cfg.train.seed)
    nets = [Network.create(source.n_inputs, [30, 10], [-0.4, -1.0], alpha=2.0, seed=s) for s in range(3)]
    return cfg, source, nets


def test_a_dead_worker_falls_back_to_inline_tests(tmp_path):
    cfg, source, nets = _tiny_setup(tmp_path)
    logged = []
    bg = bg_mod.BackgroundEvaluator(to_dict(cfg), nets[0].header(), lambda n: evaluate(n, source, progress_bar=False),
                                    cores=2, log=logged.append)
    try:
        bg.submit(1, bg_mod.snapshot(nets[0]))
        bg.drain()
        for pid in list(bg._pool._processes):  # kill the worker, as the OOM killer would
            os.kill(pid, signal.SIGKILL)
        bg.submit(2, bg_mod.snapshot(nets[1]))
        bg.submit(3, bg_mod.snapshot(nets[2]))
        bg.drain()
        results = {e: bg.result(e) for e in (1, 2, 3)}
    finally:
        bg.close()
    for e, net in zip((1, 2, 3), nets):
        assert results[e]["test_accuracy"] == evaluate(net, source, progress_bar=False)["test_accuracy"]
        assert results[e]["synops_per_sample"] == evaluate(net, source, progress_bar=False)["synops_per_sample"]
    assert len(logged) == 1 and "died" in logged[0]


def test_snapshots_are_copies(tmp_path):
    _, _, nets = _tiny_setup(tmp_path)
    snap = bg_mod.snapshot(nets[0])
    nets[0].weights[0] += 1.0
    assert not np.array_equal(snap["layer0.weight"], nets[0].weights[0])


def test_auto_uses_the_background_only_where_it_pays(tmp_path):
    cfg, source, nets = _tiny_setup(tmp_path)
    inline = lambda n: None  # noqa: E731
    auto = load_config(None, [*TINY, "train.background_eval=auto"], base=to_dict(cfg))
    assert make_background_evaluator(auto, None, nets[0], source, inline) is None  # 20 tests of 0.2 s: inline
    off = load_config(None, ["train.background_eval=off"], base=to_dict(cfg))
    assert make_background_evaluator(off, None, nets[0], source, inline) is None
    batched = load_config(None, ["optim.batch_size=8"], base=to_dict(cfg))
    ev = make_background_evaluator(batched, None, nets[0], source, inline)  # "on" forces it even when batched
    assert ev is not None
    ev.close()


def test_bad_mode_is_refused():
    from snnbp.errors import ConfigError

    with pytest.raises(ConfigError, match="background_eval"):
        load_config(None, ["train.background_eval=sometimes"])
    with pytest.raises(ConfigError, match="event engine"):
        load_config(None, ["train.background_eval=on", "train.engine=dense"])


def test_killed_while_the_last_tests_drain_resumes_exactly(tmp_path, monkeypatch):
    # Every epoch is trained and checkpointed with its test outstanding, then the run dies while it waits for
    # the tests: the resumed run has no epoch left to train and must still test, write and commit them.
    assert main(_args(tmp_path, "whole", "off")) == 0
    monkeypatch.setattr(bg_mod.BackgroundEvaluator, "result", lambda self, epoch: None)

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(bg_mod.BackgroundEvaluator, "drain", killed)
    assert main(_args(tmp_path, "cut", "on")) == 130
    cut = tmp_path / "cut"
    _, _, _, progress, _ = load_checkpoint(cut / LAST)
    assert progress["epoch"] == 4 and [r["epoch"] for r in progress["unwritten"]] == [1, 2, 3, 4]
    monkeypatch.undo()
    assert main(["train", "--resume", str(cut)]) == 0
    assert _metrics(cut) == _metrics(tmp_path / "whole")
    assert (cut / "summary.json").is_file()


_ORPHAN_PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from snnbp.train.background_eval import _exit_with_parent
pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                           initializer=_exit_with_parent, initargs=(os.getpid(), 0.1))
pool.submit(time.sleep, 60)
time.sleep(0.5)
print(*pool._processes, flush=True)
time.sleep(60)
"""


def test_the_worker_ends_when_its_trainer_is_killed():
    # A trainer killed by a signal cannot shut its pool down; its worker must not go on testing for nobody.
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_PARENT], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        os.kill(worker, 0)  # alive while its parent is
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the evaluation worker outlived its killed parent by 20 s")
    finally:
        parent.kill()
