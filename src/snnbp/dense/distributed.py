"""Data-parallel training on torch.distributed (launched with torchrun), for the dense engine.

``torchrun --nproc-per-node N -m snnbp train CONFIG --set train.engine=dense`` sets WORLD_SIZE,
RANK and LOCAL_RANK; every process then runs the same training loop on the same (seeded) sample
order, and for every global mini-batch of ``optim.batch_size`` samples:

  * rank r simulates its contiguous shard of the batch (np.array_split order, so shards differ in
    size by at most one, and a ragged last batch still uses every sample exactly once);
  * the loss is sum_b loss_b / B_global on every rank (the regularizer is added on rank 0 only),
    so the all-reduced *sum* of the gradients is exactly the single-process mean-over-batch gradient;
  * homeostatic threshold changes, refused floor decrements and statistics are summed the same way,
    so every rank commits identical parameters;
  * only rank 0 writes checkpoints, metrics and logs (train/loop.py asks ``is_main``).

Backend: gloo on CPU, nccl on CUDA (each process uses cuda:LOCAL_RANK). Multi-node works through
torchrun's usual rendezvous options (--nnodes, --rdzv-endpoint, ...); nothing here is node-specific.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import numpy as np
import torch

from snnbp.errors import ConfigError


@dataclass
class DistContext:
    """Where this process stands in a data-parallel job (world_size 1: a plain single process)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """'cuda' -> 'cuda:LOCAL_RANK' under a multi-process launch (one GPU per process)."""
        if self.is_distributed and str(device) == "cuda":
            return f"cuda:{self.local_rank}"
        return str(device)

    def shard(self, n: int) -> tuple[int, int]:
        """[start, stop) of this rank's part of n consecutive samples (np.array_split sizes)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def check_batch(self, global_batch: int) -> None:
        if self.is_distributed and global_batch % self.world_size != 0:
            raise ConfigError(f"optim.batch_size={global_batch} is not divisible by the world size {self.world_size}; "
                              f"set optim.batch_size to a multiple of {self.world_size} or launch "
                              f"a number of processes that divides it")

    def all_reduce_sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum every tensor over all ranks, in place (one flat buffer per dtype: few collective calls)."""
        if not self.is_distributed or not tensors:
            return
        import torch.distributed as dist

        by_dtype: dict = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            off = 0
            for t in group:
                t.copy_(flat[off: off + t.numel()].view_as(t))
                off += t.numel()

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any rank (ranks must agree on when to stop)."""
        if not self.is_distributed:
            return bool(flag)
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)


def _collective_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def context_from_env(env=None) -> DistContext:
    """Read WORLD_SIZE / RANK / LOCAL_RANK (set by torchrun); absent -> single process."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return DistContext()
    try:
        world, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "-1"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("WORLD_SIZE, RANK and LOCAL_RANK must be integers; launch with torchrun") from None
    if world < 1 or not (0 <= rank < world):
        raise ConfigError(f"inconsistent distributed launch: RANK={env.get('RANK')} with WORLD_SIZE={world}; "
                          "launch with torchrun --nproc-per-node N (it sets both)")
    return DistContext(world, rank, local)


def init_distributed(engine: str, device: str, global_batch: int, env=None) -> DistContext:
    """The context of this process; under a multi-process launch, join the process group.

    Raises ConfigError when the launch and the config disagree: event engine, or a global batch
    the world size does not divide.
    """
    ctx = context_from_env(env)
    if not ctx.is_distributed:
        return ctx
    if engine != "dense":
        raise ConfigError(f"a distributed launch (WORLD_SIZE={ctx.world_size}) needs the dense engine; "
                          "add --set train.engine=dense")
    ctx.check_batch(global_batch)
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run a single process")
    _pin_threads()
    if not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)
        atexit.register(_destroy)
    return ctx


def _pin_threads() -> None:
    """Keep each rank at OMP_NUM_THREADS threads (torchrun sets 1 per process).

    numba's OpenMP threading layer (used by the Poisson encoder and the event kernels) shares
    libgomp with torch and raises its thread count to NUMBA_NUM_THREADS (all cores) at its first
    parallel call; N ranks x all cores then oversubscribe the CPU, which slows small torch ops by
    orders of magnitude. Limiting numba too keeps the setting.
    """
    n = os.environ.get("OMP_NUM_THREADS", "")
    if not n.isdigit() or int(n) < 1:
        return
    torch.set_num_threads(int(n))
    try:
        import numba

        numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass


def _destroy() -> None:
    """Leave the process group in step with the other ranks.

    The barrier first: a rank that tears down its gloo pairs while a peer is still inside a
    collective (or still connecting its own teardown) can make the peer's transport thread
    abort the process ("terminate called without an active exception") at exit.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:
            pass  # a peer already gone: nothing left to wait for
        dist.destroy_process_group()


class _ShardSource:
    """A view of a source whose test set is this rank's shard (for sharded evaluation)."""

    def __init__(self, source, ctx: DistContext):
        self._source = source
        lo, hi = ctx.shard(len(source.test_labels))
        self._idx = np.arange(lo, hi)
        self.test_labels = source.test_labels[lo:hi]

    def test_batch(self, indices):
        return self._source.test_batch(self._idx[np.asarray(indices)])

    def __getattr__(self, name):
        return getattr(self._source, name)


def sharded_evaluate(evaluate_fn, net, source, ctx: DistContext, **kw) -> dict:
    """Each rank evaluates its shard of the test set; counts are summed so every rank gets the total."""
    if not ctx.is_distributed:
        return evaluate_fn(net, source, **kw)
    part = _ShardSource(source, ctx)
    n = len(part.test_labels)
    ev = evaluate_fn(net, part, **kw) if n else {"test_accuracy": 0.0, "synops_per_sample": 0.0,
                                                 "lateral_ops_per_sample": 0.0,
                                                 "spikes_per_layer": [0.0] * net.n_layers, "wall_s": 0.0}
    sums = [ev["test_accuracy"] * n, ev["synops_per_sample"] * n, *(np.asarray(ev["spikes_per_layer"]) * n), float(n),
            ev["lateral_ops_per_sample"] * n]
    curve = ev.get("latency_curve")
    if kw.get("readout_ms") is not None:
        R = len(kw["readout_ms"])
        acc = np.asarray(curve["accuracy"]) if curve else np.zeros(R)
        syn = np.asarray(curve["synops_per_sample"]) if curve else np.zeros(R)
        lat = np.asarray(curve["lateral_ops_per_sample"]) if curve else np.zeros(R)
        sums += list(acc * n) + list(syn * n) + list(lat * n)
    t = torch.tensor(sums, dtype=torch.float64, device=_collective_device())
    ctx.all_reduce_sum_([t])
    v = t.cpu().numpy()
    L = net.n_layers
    total = v[2 + L]
    out = dict(ev, test_accuracy=float(v[0] / total), n_test=int(round(total)), synops_per_sample=float(v[1] / total),
               spikes_per_layer=(v[2:2 + L] / total).round(2).tolist(), lateral_ops_per_sample=float(v[3 + L] / total))
    C = net.sizes[-1]
    conf = torch.tensor(np.asarray(ev.get("confusion", np.zeros((C, C)))), dtype=torch.float64, device=_collective_device())
    ctx.all_reduce_sum_([conf])
    out["confusion"] = conf.cpu().round().to(torch.int64).tolist()
    if kw.get("readout_ms") is not None:
        R = len(kw["readout_ms"])
        c = 4 + L  # the curves' sums follow the scalars
        out["latency_curve"] = {"time_ms": np.asarray(kw["readout_ms"], float).tolist(),
                                "accuracy": (v[c:c + R] / total).tolist(),
                                "synops_per_sample": (v[c + R:c + 2 * R] / total).tolist(),
                                "lateral_ops_per_sample": (v[c + 2 * R:c + 3 * R] / total).tolist()}
    return out
