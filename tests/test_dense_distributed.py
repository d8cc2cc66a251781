"""Data-parallel dense training (dense/distributed.py): 2 CPU processes (gloo) must train exactly what
one process trains on the same global batches; inconsistent launches are clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snnbp.data.events import EventBatch
from snnbp.dense.distributed import DistContext, _destroy, context_from_env, init_distributed
from snnbp.train.dense_trainer import DenseTrainer
from snnbp.errors import ConfigError
from snnbp.model import Network
from snnbp.neuron import NeuronParams
from snnbp.config import OptimConfig

M = 30
CHUNKS = (9, 6)  # 9 samples = global batches of 4 + 4 + 1: the last one leaves rank 1 with no sample


def _net():
    return Network.create(M, [20, 10], [-0.4, -1.0], alpha=[2.0], floor_alpha=0.5, neuron=NeuronParams(tau_mp_ms=20.0), seed=7)


def _chunk(B, seed):
    rng = np.random.default_rng(seed)
    b = EventBatch.from_lists([rng.integers(0, M, 150).astype(np.int32) for _ in range(B)],
                              [np.sort(rng.uniform(0, 25_000.0, 150)) for _ in range(B)], [25_000.0] * B)
    return b, rng.integers(0, 10, B)


def _cfg():
    return OptimConfig(name="adam", lr=0.003, lr_th_ratio=1.0, batch_size=4, lam=0.01, rho=1e-3)


def _train(ctx: DistContext):
    torch.set_num_threads(1)
    net = _net()
    tr = DenseTrainer(net, _cfg(), dt_ms=0.5, dist=ctx)
    stats = []
    for i, B in enumerate(CHUNKS):
        batch, labels = _chunk(B, i)
        st = tr.step_chunk(batch, labels, 0.003, 1e-3)
        stats.append([st.samples, st.loss, st.reg_loss, st.correct, st.synops, *st.spikes.tolist()])
    return net, stats


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        net, stats = _train(DistContext(world, rank, rank))
        arrays = {f"w{l}": w for l, w in enumerate(net.weights)} | {f"t{l}": t for l, t in enumerate(net.thresholds)}
        np.savez(Path(out) / f"rank{rank}.npz", stats=np.array(stats), **arrays)
    finally:
        _destroy()


def test_two_processes_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    net, stats = _train(DistContext())
    r0, r1 = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    for l in range(net.n_layers):
        assert np.array_equal(r0[f"w{l}"], r1[f"w{l}"]) and np.array_equal(r0[f"t{l}"], r1[f"t{l}"])  # ranks agree
        assert np.abs(r0[f"w{l}"] - net.weights[l]).max() < 1e-5
        assert np.abs(r0[f"t{l}"] - net.thresholds[l]).max() < 1e-5
    assert np.allclose(r0["stats"], np.array(stats), rtol=1e-5)
    assert not np.array_equal(net.weights[0], _net().weights[0])


def test_shards_cover_every_sample_once():
    for n in range(0, 11):
        parts = [DistContext(3, r).shard(n) for r in range(3)]
        assert parts[0][0] == 0 and parts[-1][1] == n and all(a[1] == b[0] for a, b in zip(parts, parts[1:]))


def test_inconsistent_launches_are_clear_errors():
    assert not context_from_env({}).is_distributed
    with pytest.raises(ConfigError, match="torchrun"):
        context_from_env({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ConfigError, match="integers"):
        context_from_env({"WORLD_SIZE": "two", "RANK": "0"})
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    with pytest.raises(ConfigError, match="train.engine=dense"):
        init_distributed("event", "cpu", 4, env)
    with pytest.raises(ConfigError, match="optim.batch_size=3 is not divisible by the world size 2"):
        init_distributed("dense", "cpu", 3, env)
    with pytest.raises(ConfigError, match="multiple of 2"):
        DenseTrainer(_net(), OptimConfig(batch_size=5), dist=DistContext(2, 0, 0))
    assert DistContext(2, 1, 1).device("cuda") == "cuda:1" and DistContext().device("cuda") == "cuda"


@pytest.mark.slow
def test_torchrun_cli_two_processes_equal_one(tmp_path):
    """`torchrun --nproc-per-node 2 -m snnbp train` vs `python -m snnbp train`: same model, one summary;
    a torchrun run stopped after epoch 1 and resumed under torchrun ends with the same model too."""
    from test_dense_trainer import _tiny_mnist

    _tiny_mnist(tmp_path / "data")
    sets = [f"data.root='{tmp_path / 'data'}'", "data.train_ms=20", "data.test_ms=40", "model.hidden=[16]",
            "train.epochs=2", "train.chunk=8", "optim.batch_size=4", "optim.name='adam'", "optim.lr_th_ratio=1.0",
            "train.engine=dense", "train.dt_ms=1.0", "train.eval_last=1"]
    args = [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "snnbp", "train", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
                          "-m", "snnbp", "train", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    summaries = [l for l in two.stdout.splitlines() if l.startswith("{")]
    assert len(summaries) == 1  # only rank 0 reports
    from snnbp.serialization import load_network

    a, _ = load_network(tmp_path / "one" / "model.safetensors")
    b, _ = load_network(tmp_path / "two" / "model.safetensors")
    for x, y in zip(a.weights + a.thresholds, b.weights + b.thresholds):
        assert np.abs(x - y).max() < 1e-5
    assert json.loads(summaries[0])["test_accuracy"] == json.loads(one.stdout.splitlines()[-1])["test_accuracy"]

    # Resume under torchrun: 1 epoch, then --resume to 2 epochs (every rank reads rank 0's checkpoint).
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29534",
                "-m", "snnbp", "train"]
    part = subprocess.run([*torchrun, *args, "--set", "train.epochs=1", "--out", str(tmp_path / "three")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert part.returncode == 0, part.stderr[-2000:]
    res = subprocess.run([*torchrun, "--resume", str(tmp_path / "three"), "--set", "train.epochs=2"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    c, _ = load_network(tmp_path / "three" / "model.safetensors")
    for x, y in zip(a.weights + a.thresholds, c.weights + c.thresholds):
        assert np.abs(x - y).max() < 1e-5
