"""``EventTrainer``: the trainer contract (train/protocol.py) on the event engine, one chunk at a time.

Two paths, one rule:
  * SGD with batch size 1 (the paper's protocol): ``event_steps.sgd_per_sample``, fully compiled.
  * Adam with batch size 1 (the paper's 784-300-300-10 row): ``event_steps.adam_per_sample``, fully
    compiled, on the moment buffers of a torch.optim.Adam (so checkpoints are those of the torch path).
  * anything else (mini-batches, Adam): samples of a batch are simulated in parallel on all cores,
    their gradients averaged by ``event_steps.batch_gradients``, and a torch optimizer
    (torch.optim.SGD / torch.optim.Adam) updates ``torch.from_numpy`` views of the network's arrays.
After either, homeostasis is committed and the threshold floor enforced (gradient.lee2016).
Homeostasis is a per-sample rule (docs/method.md 4.4): a mini-batch commits the *sum* of its samples'
threshold changes, so every sample acts at full strength rho whatever the batch size (averaging
would silently divide rho by the batch size).
"""

from __future__ import annotations

import numpy as np
import torch

from snnbp.data.events import EventBatch
from snnbp.event_engine.engine import run_events
from snnbp.gradient.lee2016 import (FLOOR_MODES, NO_MASK, SILENT_ONLY, commit_batch_homeostasis, enforce_floor,
                                   floor_raise_per_unit, weight_regularization)
from snnbp.model import Network
from snnbp.config import OptimConfig
from snnbp.train.event_steps import adam_per_sample, batch_gradients, sgd_per_sample
from snnbp.train.protocol import (ChunkStats, load_optimizer_state, make_optimizer, optimizer_state_tensors,
                                  set_learning_rates, subnormals_flushed,
                                  threshold_rate_ratios)


class EventTrainer:
    """Owns the optimizer state for one network; ``step_chunk`` trains on a batch of events."""

    def __init__(self, net: Network, optim: OptimConfig):
        self.net = net
        self.cfg = optim
        L = net.n_layers
        # The output layer gets no weight regularization: the max-normalized loss needs none (3.8).
        self.reg_layers = np.array([l < L - 1 for l in range(L)], np.bool_)
        self.fused = optim.name == "sgd" and optim.batch_size == 1
        self.fused_adam = optim.name == "adam" and optim.batch_size == 1
        self._w_t = [torch.from_numpy(w) for w in net.weights]
        self._th_t = [torch.from_numpy(t) for t in net.thresholds]
        # What Adam steps and keeps moments for: thresholds stepped by SGD (optim.threshold_optimizer) have none.
        self._adam_params = self._w_t if optim.threshold_optimizer == "sgd" else self._w_t + self._th_t
        self.optimizer = None
        if not self.fused:
            self.optimizer = make_optimizer(self._w_t, self._th_t, optim, fused_adam=True)
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

    def set_learning_rate(self, lr: float, warmup: bool = False) -> None:
        if self.optimizer is not None:
            set_learning_rates(self.optimizer, lr, threshold_rate_ratios(self.cfg, self.net.n_layers, warmup))

    @subnormals_flushed()  # Adam moments decay into slow subnormal floats otherwise (protocol.py)
    def step_chunk(self, batch: EventBatch, labels: np.ndarray, lr: float, rho: float,
                   warmup: bool = False) -> ChunkStats:
        self.set_learning_rate(lr, warmup)
        batch.validate(self.net.n_inputs)
        lr_th = lr * threshold_rate_ratios(self.cfg, self.net.n_layers, warmup)  # (L,) per layer
        if self.fused:
            return self._sgd_chunk(batch, labels, lr, rho, lr_th)
        if self.fused_adam:
            return self._adam_chunk(batch, labels, lr, rho, lr_th)
        total = None
        bs = self.cfg.batch_size
        for s in range(0, len(batch), bs):
            stop = min(s + bs, len(batch))
            st = self._minibatch(batch.samples(s, stop), labels[s:stop], rho)
            total = st if total is None else total + st
        return total

    def _sgd_chunk(self, batch: EventBatch, labels: np.ndarray, lr: float, rho: float,
                   lr_th: np.ndarray) -> ChunkStats:
        net, c, p = self.net, self.cfg, self.net.neuron
        sizes = net.sizes
        stats = np.zeros(5)
        spikes = np.zeros(net.n_layers, np.int64)
        unit_spikes = tuple(np.zeros(n, np.int64) for n in sizes)
        sgd_per_sample(
            (tuple(net.weights), tuple(net.thresholds), np.asarray(net.kappas), np.asarray(net.floors), self.reg_layers),
            (batch.channels, batch.times_us, batch.offsets, batch.t_end_us),
            np.asarray(labels, np.int64),
            (p.tau_us, p.t_ref_us, p.w_d0, p.gamma, p.sigma),
            (float(rho), float(lr), lr_th, float(c.lam), float(c.beta), bool(c.normalize),
             FLOOR_MODES[c.floor_compensation]),
            self._sgd_scratch(), self._lazy_columns(), stats, spikes, unit_spikes,
        )
        return ChunkStats(len(batch), stats[0], stats[1], int(stats[2]), int(stats[3]), spikes, int(stats[4]),
                          list(unit_spikes))

    def _adam_state(self) -> tuple[tuple, np.ndarray]:
        """(m_w, v_w, m_th, v_th) as numpy views of the torch optimizer's state, and the step count.

        The state is created here (zeros, step 0) when the optimizer has none yet, exactly as
        torch.optim.Adam would on its first step; views are taken afresh per chunk because loading
        a checkpoint replaces the tensors.
        """
        opt = self.optimizer
        params = self._adam_params
        for p in params:
            if p not in opt.state or "exp_avg" not in opt.state[p]:
                opt.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                "exp_avg_sq": torch.zeros_like(p)}
        m_w, v_w = (tuple(opt.state[p][k].numpy() for p in self._w_t) for k in ("exp_avg", "exp_avg_sq"))
        if self.cfg.threshold_optimizer == "sgd":  # no moments: the kernel gets unused zeros
            m_th = v_th = tuple(np.zeros_like(t) for t in self.net.thresholds)
        else:
            m_th, v_th = (tuple(opt.state[p][k].numpy() for p in self._th_t) for k in ("exp_avg", "exp_avg_sq"))
        steps = {float(opt.state[p]["step"]) for p in params}
        if len(steps) != 1:
            raise RuntimeError(f"Adam state has unequal step counts {sorted(steps)}; per-sample Adam needs one")
        return (m_w, v_w, m_th, v_th), np.array([int(steps.pop())], np.int64)

    def _adam_chunk(self, batch: EventBatch, labels: np.ndarray, lr: float, rho: float,
                    lr_th: np.ndarray) -> ChunkStats:
        net, c, p = self.net, self.cfg, self.net.neuron
        stats = np.zeros(5)
        spikes = np.zeros(net.n_layers, np.int64)
        unit_spikes = tuple(np.zeros(n, np.int64) for n in net.sizes)
        moments, step = self._adam_state()
        b1, b2 = (float(b) for b in c.adam_betas)
        adam_per_sample(
            (tuple(net.weights), tuple(net.thresholds), np.asarray(net.kappas), np.asarray(net.floors), self.reg_layers),
            (batch.channels, batch.times_us, batch.offsets, batch.t_end_us),
            np.asarray(labels, np.int64),
            (p.tau_us, p.t_ref_us, p.w_d0, p.gamma, p.sigma),
            (float(rho), float(lr), lr_th, float(c.lam), float(c.beta), bool(c.normalize),
             FLOOR_MODES[c.floor_compensation], b1, b2, float(c.adam_eps), c.weight_reg == "decoupled",
             c.threshold_optimizer == "sgd"),
            self._sgd_scratch(), moments, step, stats, spikes, unit_spikes,
        )
        for q in self._adam_params:
            self.optimizer.state[q]["step"] = torch.tensor(float(step[0]))
        return ChunkStats(len(batch), stats[0], stats[1], int(stats[2]), int(stats[3]), spikes, int(stats[4]),
                          list(unit_spikes))

    def _sgd_scratch(self) -> tuple:
        """Per-sample buffers of the fused step (event_steps.sgd_per_sample, ``scratch``)."""
        net = self.net
        sizes = net.sizes
        one = lambda n, dt=np.float32: np.zeros((1, n), dt)  # noqa: E731
        return (one(net.n_inputs), tuple(one(n) for n in sizes), tuple(one(n, np.int32) for n in sizes),
                tuple(one(n) for n in sizes), tuple(one(n) for n in sizes), tuple(one(n, np.float64) for n in sizes),
                np.zeros((1, 0, sizes[-1]), np.int32), np.zeros((1, 0, 2), np.int64))

    def _lazy_columns(self) -> tuple:
        """Identity column scales / offsets and norm buffers of the fused step (``columns``)."""
        sizes = self.net.sizes
        regularized = [bool(r) and self.cfg.lam > 0 for r in self.reg_layers]
        return (tuple(np.ones(n) for n in sizes), tuple(np.ones(n, np.float32) for n in sizes),
                tuple(np.ones(n) for n in sizes), tuple(np.zeros(n) for n in sizes),
                tuple(np.zeros(n, np.float32) for n in sizes),
                tuple(np.zeros(n if r else 0) for n, r in zip(sizes, regularized)),
                tuple(np.zeros(n if r else 0) for n, r in zip(sizes, regularized)))

    def _minibatch(self, batch: EventBatch, labels: np.ndarray, rho: float) -> ChunkStats:
        net, c, p = self.net, self.cfg, self.net.neuron
        res = run_events(net, batch, train=True, rho=rho)
        B = len(batch)
        stats = np.zeros(5)
        deltas = tuple(np.zeros((B, n), np.float64) for n in net.sizes)
        decoupled = c.weight_reg == "decoupled" and c.lam > 0.0
        batch_gradients(
            tuple(net.weights), tuple(net.thresholds), np.asarray(net.kappas), self.reg_layers,
            res.x_in, tuple(res.traces), tuple(res.counts), np.asarray(labels, np.int64),
            p.gamma, p.sigma, 0.0 if decoupled else float(c.lam), float(c.beta), bool(c.normalize),
            tuple(self._grad_w), tuple(self._grad_th), deltas, stats,
        )
        shrink = self._decoupled_shrink(stats, B) if decoupled else {}
        th_start = [t.astype(np.float64) for t in net.thresholds]  # what the batch was simulated with
        self._optimizer_step()
        for l, s in shrink.items():
            net.weights[l] *= s  # eq. 13 as its own step after the optimizer's (optim.weight_reg)
        mode = FLOOR_MODES[c.floor_compensation]
        for l in range(net.n_layers):
            x = res.x_in if l == 0 else res.traces[l - 1]
            per_unit = floor_raise_per_unit(mode, float(x.sum(axis=1).mean()))
            unmet, fired = res.unmet[l].astype(np.float64), NO_MASK
            if mode == SILENT_ONLY:  # per sample: only neurons that did not fire in it (keep_silent_unmet)
                unmet, fired = np.where(res.counts[l] > 0, 0.0, unmet), res.counts[l].sum(axis=0).astype(np.int32)
            unmet = unmet.sum(axis=0)
            # Per-sample homeostasis at full strength: the batch's threshold changes are summed, zero-sum at the floor.
            commit_batch_homeostasis(net.thresholds[l], res.dth[l].sum(axis=0).astype(np.float64), float(net.floors[l]),
                                     unmet, th_start[l])
            enforce_floor(net.weights[l], net.thresholds[l], net.floors[l], unmet, per_unit, fired)
        spikes = np.array([cnt.sum() for cnt in res.counts], np.int64)
        unit_spikes = [cnt.sum(axis=0).astype(np.int64) for cnt in res.counts]
        return ChunkStats(B, stats[0], stats[1], int(stats[2]), int(res.synops.sum()), spikes, int(stats[4]), unit_spikes)

    def _decoupled_shrink(self, stats: np.ndarray, batch_size: int) -> dict[int, np.ndarray]:
        """Per regularized layer, the column factors 1 / (1 + lr c_i) of the decoupled eq. 13 step, from
        the pre-step weights (c_i = lambda beta exp(beta (|W_i|^2 - 1))); adds the regularizer's loss."""
        lr = float(self.optimizer.param_groups[0]["lr"])
        out = {}
        for l, w in enumerate(self.net.weights):
            if self.reg_layers[l]:
                c, rl = weight_regularization(w, float(self.cfg.lam), float(self.cfg.beta))
                stats[1] += rl * batch_size
                out[l] = (1.0 / (1.0 + lr * c)).astype(np.float32)
        return out

    # ---- checkpoint support: optimizer state as plain tensors ---------------------------------

    def state_tensors(self) -> tuple[dict[str, np.ndarray], dict]:
        return ({}, {}) if self.optimizer is None else optimizer_state_tensors(self.optimizer)

    def load_state_tensors(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        if self.optimizer is not None:
            load_optimizer_state(self.optimizer, tensors, meta)
