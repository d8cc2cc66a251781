"""Applies the learning rule to a ``Network`` with the event engine, one chunk of samples at a time.

Two paths, one rule:
  * SGD with batch size 1 (the paper's protocol): ``event_steps.sgd_per_sample``, fully compiled.
  * anything else (mini-batches, Adam): samples of a batch are simulated in parallel on all cores,
    their gradients averaged by ``event_steps.batch_gradients``, and a torch optimizer
    (torch.optim.SGD / torch.optim.Adam) updates ``torch.from_numpy`` views of the network's arrays.
After either, homeostasis is committed and the threshold floor enforced (gradient.lee2016).
Homeostasis is a per-sample rule (method.md 4.4): a mini-batch commits the *sum* of its samples'
threshold changes, so every sample acts at full strength rho whatever the batch size (averaging
would silently divide rho by the batch size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from snnbp.data.events import EventBatch
from snnbp.event_engine.engine import run_events
from snnbp.gradient.lee2016 import FLOOR_MODES, enforce_floor, floor_raise_per_unit
from snnbp.model import Network
from snnbp.config import OptimConfig
from snnbp.train.event_steps import batch_gradients, sgd_per_sample


@dataclass
class ChunkStats:
    """Sums over the samples of a chunk."""

    samples: int
    loss: float
    reg_loss: float
    correct: int
    synops: int
    spikes: np.ndarray  # (L,) spikes per layer
    zero_error: int  # samples whose output error o - y was exactly zero (no data gradient)
    unit_spikes: list[np.ndarray]  # per layer (N_l,) spikes per neuron (dead units: zeros)

    def __add__(self, o: "ChunkStats") -> "ChunkStats":
        return ChunkStats(self.samples + o.samples, self.loss + o.loss, self.reg_loss + o.reg_loss,
                          self.correct + o.correct, self.synops + o.synops, self.spikes + o.spikes,
                          self.zero_error + o.zero_error, [a + b for a, b in zip(self.unit_spikes, o.unit_spikes)])

    def to_dict(self) -> tuple[dict, list[np.ndarray]]:
        """(JSON-able scalars, per-layer unit spike arrays) for a checkpoint of an interrupted epoch."""
        d = {"samples": self.samples, "loss": self.loss, "reg_loss": self.reg_loss, "correct": self.correct,
             "synops": self.synops, "spikes": self.spikes.tolist(), "zero_error": self.zero_error}
        return d, [np.asarray(u, np.int64) for u in self.unit_spikes]

    @classmethod
    def from_dict(cls, d: dict, unit_spikes: list[np.ndarray]) -> "ChunkStats":
        return cls(int(d["samples"]), float(d["loss"]), float(d["reg_loss"]), int(d["correct"]), int(d["synops"]),
                   np.asarray(d["spikes"], np.int64), int(d["zero_error"]), [np.asarray(u, np.int64) for u in unit_spikes])


class EventTrainer:
    """Owns the optimizer state for one network; ``step_chunk`` trains on a batch of events."""

    def __init__(self, net: Network, optim: OptimConfig):
        self.net = net
        self.cfg = optim
        L = net.n_layers
        # The output layer gets no weight regularization: the max-normalized loss needs none (3.8).
        self.reg_layers = np.array([l < L - 1 for l in range(L)], np.bool_)
        self.fused = optim.name == "sgd" and optim.batch_size == 1
        self._w_t = [torch.from_numpy(w) for w in net.weights]
        self._th_t = [torch.from_numpy(t) for t in net.thresholds]
        self.optimizer = None
        if not self.fused:
            groups = [{"params": self._w_t, "lr": optim.lr}, {"params": self._th_t, "lr": optim.lr * optim.lr_th_ratio}]
            if optim.name == "sgd":
                self.optimizer = torch.optim.SGD(groups, lr=optim.lr)
            else:
                self.optimizer = torch.optim.Adam(groups, lr=optim.lr, betas=tuple(optim.adam_betas), eps=optim.adam_eps,
                                                  foreach=False, fused=True)
            self._grad_w = [np.zeros_like(w) for w in net.weights]
            self._grad_th = [np.zeros_like(t) for t in net.thresholds]
            for p, g in zip(self._w_t + self._th_t, self._grad_w + self._grad_th):
                p.grad = torch.from_numpy(g)

    def _optimizer_step(self) -> None:
        """torch.optim step on one intra-op thread.

        The step is a memory-bound sweep over the parameters; run right after numba's parallel forward
        pass, torch's thread pool fought numba's workers for the cores and the fused Adam step took
        3 ms instead of 0.4 ms on this 784-800-10 network (2 cores; main job +47 % samples/s,
        benchmarks/README.md).
        """
        n = torch.get_num_threads()
        if n == 1:
            self.optimizer.step()
            return
        torch.set_num_threads(1)
        try:
            self.optimizer.step()
        finally:
            torch.set_num_threads(n)

    def set_learning_rate(self, lr: float) -> None:
        self.lr = lr
        if self.optimizer is not None:
            self.optimizer.param_groups[0]["lr"] = lr
            self.optimizer.param_groups[1]["lr"] = lr * self.cfg.lr_th_ratio

    def step_chunk(self, batch: EventBatch, labels: np.ndarray, lr: float, rho: float) -> ChunkStats:
        self.set_learning_rate(lr)
        batch.validate(self.net.n_inputs)
        if self.fused:
            return self._sgd_chunk(batch, labels, lr, rho)
        total = None
        bs = self.cfg.batch_size
        for s in range(0, len(batch), bs):
            stop = min(s + bs, len(batch))
            st = self._minibatch(batch.samples(s, stop), labels[s:stop], rho)
            total = st if total is None else total + st
        return total

    def _sgd_chunk(self, batch: EventBatch, labels: np.ndarray, lr: float, rho: float) -> ChunkStats:
        net, c, p = self.net, self.cfg, self.net.neuron
        sizes = net.sizes
        one = lambda n, dt=np.float32: np.zeros((1, n), dt)  # noqa: E731
        stats = np.zeros(5)
        spikes = np.zeros(net.n_layers, np.int64)
        unit_spikes = tuple(np.zeros(n, np.int64) for n in sizes)
        regularized = [bool(r) and c.lam > 0 for r in self.reg_layers]
        sgd_per_sample(
            tuple(net.weights), tuple(net.thresholds), np.asarray(net.kappas), np.asarray(net.floors),
            self.reg_layers, batch.channels, batch.times_us, batch.offsets, batch.t_end_us,
            np.asarray(labels, np.int64), p.tau_us, p.t_ref_us, p.w_d0, p.gamma, p.sigma, float(rho),
            float(lr), float(lr * c.lr_th_ratio), float(c.lam), float(c.beta), bool(c.normalize),
            FLOOR_MODES[c.floor_compensation],
            one(net.n_inputs), tuple(one(n) for n in sizes), tuple(one(n, np.int32) for n in sizes),
            tuple(one(n) for n in sizes), tuple(one(n) for n in sizes), tuple(one(n, np.float64) for n in sizes),
            tuple(np.ones(n) for n in sizes), tuple(np.ones(n, np.float32) for n in sizes), tuple(np.ones(n) for n in sizes),
            tuple(np.zeros(n) for n in sizes), tuple(np.zeros(n, np.float32) for n in sizes),
            tuple(np.zeros(n if r else 0) for n, r in zip(sizes, regularized)),
            tuple(np.zeros(n if r else 0) for n, r in zip(sizes, regularized)),
            np.zeros((1, 0, sizes[-1]), np.int32), np.zeros((1, 0), np.int64), stats, spikes, unit_spikes,
        )
        return ChunkStats(len(batch), stats[0], stats[1], int(stats[2]), int(stats[3]), spikes, int(stats[4]),
                          list(unit_spikes))

    def _minibatch(self, batch: EventBatch, labels: np.ndarray, rho: float) -> ChunkStats:
        net, c, p = self.net, self.cfg, self.net.neuron
        res = run_events(net, batch, train=True, rho=rho)
        B = len(batch)
        stats = np.zeros(5)
        deltas = tuple(np.zeros((B, n), np.float64) for n in net.sizes)
        batch_gradients(
            tuple(net.weights), tuple(net.thresholds), np.asarray(net.kappas), self.reg_layers,
            res.x_in, tuple(res.traces), tuple(res.counts), np.asarray(labels, np.int64),
            p.gamma, p.sigma, float(c.lam), float(c.beta), bool(c.normalize),
            tuple(self._grad_w), tuple(self._grad_th), deltas, stats,
        )
        self._optimizer_step()
        mode = FLOOR_MODES[c.floor_compensation]
        for l in range(net.n_layers):
            # Per-sample homeostasis at full strength: the batch's threshold changes are summed.
            net.thresholds[l] += res.dth[l].sum(axis=0)
            x = res.x_in if l == 0 else res.traces[l - 1]
            per_unit = floor_raise_per_unit(mode, float(x.sum(axis=1).mean()))
            enforce_floor(net.weights[l], net.thresholds[l], net.floors[l], res.unmet[l].sum(axis=0).astype(np.float64),
                          per_unit)
        spikes = np.array([cnt.sum() for cnt in res.counts], np.int64)
        unit_spikes = [cnt.sum(axis=0).astype(np.int64) for cnt in res.counts]
        return ChunkStats(B, stats[0], stats[1], int(stats[2]), int(res.synops.sum()), spikes, int(stats[4]), unit_spikes)

    # ---- checkpoint support: optimizer state as plain tensors ---------------------------------

    def state_tensors(self) -> tuple[dict[str, np.ndarray], dict]:
        if self.optimizer is None:
            return {}, {}
        sd = self.optimizer.state_dict()
        tensors, meta = {}, {}
        for pid, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v) and v.numel() > 1:
                    tensors[f"optim.{pid}.{k}"] = v.numpy().copy()
                else:
                    meta[f"{pid}.{k}"] = float(v)
        return tensors, meta

    def load_state_tensors(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        if self.optimizer is None:
            return
        sd = self.optimizer.state_dict()
        state: dict = {}
        for name, arr in tensors.items():
            if name.startswith("optim."):
                _, pid, k = name.split(".", 2)
                state.setdefault(int(pid), {})[k] = torch.from_numpy(arr.copy())
        for key, v in meta.items():
            pid, k = key.split(".", 1)
            state.setdefault(int(pid), {})[k] = torch.tensor(v)
        sd["state"] = state
        self.optimizer.load_state_dict(sd)
