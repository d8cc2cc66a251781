"""Determinism of the event engine: the same seed gives the same metrics and the same network across
runs and across thread counts (numba's parallel sample loop, torch's intra-op threads).

Why it holds: every random draw is a pure function of (seed, epoch, sample) and is made inside the
sample's own iteration; samples of a batch write to their own rows, and the batch's gradient is reduced
afterwards in a fixed order, so the split of samples over threads cannot change a bit.
"""

from __future__ import annotations

import numba
import pytest
import torch

from snnbp.cli import main
from test_resume import _args, _metrics, _same_model

BATCHED = ["optim.name=\"adam\"", "optim.batch_size=4", "optim.lr=0.002", "optim.lr_th_ratio=1.0", "train.epochs=2"]


def _run_with_threads(tmp_path, name, threads, extra):
    old_numba, old_torch = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)
    try:
        assert main(_args(tmp_path, name, extra)) == 0
    finally:
        numba.set_num_threads(old_numba)
        torch.set_num_threads(old_torch)
    return tmp_path / name


@pytest.mark.parametrize("extra", [["train.epochs=2"], BATCHED], ids=["sgd-per-sample", "adam-batch-4"])
def test_same_seed_same_metrics_across_runs_and_thread_counts(tmp_path, capsys, extra):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least 2 numba threads to compare thread counts")
    one = _run_with_threads(tmp_path, "one-thread", 1, extra)
    two = _run_with_threads(tmp_path, "two-threads", 2, extra)
    again = _run_with_threads(tmp_path, "two-threads-again", 2, extra)
    capsys.readouterr()
    assert _metrics(one) == _metrics(two) == _metrics(again)
    _same_model(one, two)
    _same_model(two, again)
