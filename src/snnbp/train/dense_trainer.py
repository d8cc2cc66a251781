"""``DenseTrainer``: the trainer contract (train/protocol.py) on the dense engine, CPU or CUDA.

Per global mini-batch of ``optim.batch_size`` samples of a chunk (same split as EventTrainer):

  1. bin this rank's shard of the events on the grid (dense/frames.py) and run the model with
     the configured rule (Lee2016Rule: no graph over time; SurrogateBPTT: graph over time);
  2. loss = sum_b loss_b / B + eq. 13 regularizer of the hidden layers; backward; all-reduce
     (data parallel, dense/distributed.py); torch.optim SGD or Adam step (weights at lr, thresholds
     at lr * ratio_l per layer, the param groups of EventTrainer);
  3. commit homeostasis: V_th += sum_b dth_b (per-sample strength, as EventTrainer), then enforce
     the threshold floor with the summed refused decrement (weights of a floored neuron raised as
     optim.floor_compensation says), i.e. gradient.lee2016.enforce_floor, in torch.

After each chunk the parameters are written into the Network's numpy arrays in place, so
checkpoints, evaluation and the health checks of train/loop.py see the trained values.

``forward="event"`` keeps all of this but runs step 1 on the event engine (exact, event by event,
event_engine/layered.py for conv / pool layers) instead of the time grid: the rule reads the same final
traces and counts (``_event_forward``). This is how a layered network trains with train.engine = "event"
(train/build.py); CPU only. The thresholds stay float32 torch parameters on this path.
"""

from __future__ import annotations

import numpy as np
import torch

from snnbp.data.events import EventBatch
from snnbp.dense.distributed import DistContext, context_from_env
from snnbp.dense.frames import DenseInput, check_dt, resolve_device
from snnbp.dense.lee2016_function import Lee2016Rule
from snnbp.dense.model import DenseSNN
from snnbp.gradient.lee2016 import FLOOR_MODES, SILENT_ONLY, commit_batch_homeostasis, floor_raise_per_unit
from snnbp.errors import ConfigError
from snnbp.model import Network
from snnbp.config import OptimConfig
from snnbp.train.protocol import (ChunkStats, load_optimizer_state, make_optimizer, optimizer_state_tensors,
                                  set_learning_rates, subnormals_flushed,
                                  threshold_rate_ratios)


def _flat64(t: torch.Tensor) -> np.ndarray:
    """A tensor as a flat float64 numpy copy on the CPU (the compiled homeostasis commit works on these)."""
    return t.detach().reshape(-1).to("cpu", torch.float64).numpy().copy()


@torch.no_grad()
def enforce_floor_(layer, unmet: torch.Tensor, raise_per_unit: float, fired: torch.Tensor | None = None) -> int:
    """Torch form of gradient.lee2016.enforce_floor on one layer: V_th >= floor; the refused
    decrement unmet (threshold shape) (plus what the floor refuses now) times raise_per_unit is
    added to every weight of the neuron (conv: of the feature map's filter), except for units where
    ``fired`` (threshold shape, bool; the "silent" reading) is true."""
    th = layer.threshold
    below = th < layer.floor
    u = unmet + torch.where(below, layer.floor - th, torch.zeros_like(th))
    if fired is not None:
        u = torch.where(fired, torch.zeros_like(u), u)
    th.copy_(torch.where(below, torch.full_like(th, layer.floor), th))
    if raise_per_unit <= 0.0:
        return 0
    u = u.clamp(min=0.0) * raise_per_unit
    layer.weight_matrix().add_(u.reshape(1, -1))  # (M, N) view: column i = neuron (filter) i
    return int((u > 0).sum())


def receptive_input_sum(layer, x: torch.Tensor) -> float:
    """Mean over samples of the input traces one neuron sees, sum_{k in its fan-in} x_k.

    Fully connected: sum_k x_k. Conv: the patch of M = P K^2 inputs sees about M / (P H W) of the
    map's total (the mean over locations), which is what the "drive" floor reading divides by.
    """
    x = x.flatten(1)
    fan_in = layer.weight_matrix().shape[0]
    return float(x.sum(1).mean()) * fan_in / x.shape[1]


class DenseTrainer:
    """Owns the dense model and the optimizer for one ``Network``; ``step_chunk`` as EventTrainer."""

    def __init__(self, net: Network, optim: OptimConfig, dt_ms: float = 1.0, device: str = "cpu", rule=None,
                 dist: DistContext | None = None, forward: str = "dense"):
        if forward not in ("dense", "event"):
            raise ConfigError(f"DenseTrainer forward={forward!r}: use 'dense' (time grid) or 'event' (event engine)")
        self.forward = forward
        self.net = net
        self.cfg = optim
        self.dist = dist if dist is not None else context_from_env()
        self.device = resolve_device(self.dist.device(device))
        self.dt_ms = check_dt(dt_ms)
        if optim.batch_size < 1:
            raise ConfigError(f"optim.batch_size={optim.batch_size} must be at least 1")
        self.dist.check_batch(optim.batch_size)
        self.rule = rule if rule is not None else Lee2016Rule(normalize=optim.normalize, shared_grad=optim.shared_grad)
        if forward == "event" and (not isinstance(self.rule, Lee2016Rule) or self.device.type != "cpu"):
            raise ConfigError("the event engine trains with the paper's rule on the CPU; set train.rule = 'lee2016' "
                              "and train.device = 'cpu', or train.engine = 'dense'")
        self.model = DenseSNN.from_network(net, self.dt_ms, self.rule, self.device)
        self._w = [layer.weight for layer in self.model.layers]
        self._th = [layer.threshold for layer in self.model.layers]
        self.optimizer = make_optimizer(self._w, self._th, optim)

    def set_learning_rate(self, lr: float, warmup: bool = False) -> None:
        set_learning_rates(self.optimizer, lr, threshold_rate_ratios(self.cfg, len(self._th), warmup))

    @subnormals_flushed()  # Adam moments decay into slow subnormal floats otherwise (protocol.py)
    def step_chunk(self, batch: EventBatch, labels: np.ndarray, lr: float, rho: float,
                   warmup: bool = False) -> ChunkStats:
        labels = np.asarray(labels, np.int64)
        if labels.shape != (len(batch),):
            raise ConfigError(f"got {labels.size} labels for a chunk of {len(batch)} samples; give one label per sample")
        try:
            batch.validate(self.net.n_inputs)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.set_learning_rate(lr, warmup)
        self.model.load_from(self.net)  # the Network is the source of truth between chunks
        total = None
        bs = self.cfg.batch_size
        for s in range(0, len(batch), bs):
            n = min(bs, len(batch) - s)
            lo, hi = self.dist.shard(n)
            st = self._minibatch(batch.samples(s + lo, s + hi) if hi > lo else None, labels[s + lo:s + hi], n, rho)
            total = st if total is None else total + st
        self.model.write_to(self.net)
        return total

    def _minibatch(self, batch: EventBatch | None, labels: np.ndarray, n_global: int, rho: float) -> ChunkStats:
        model, c = self.model, self.cfg
        L = len(model.layers)
        self.optimizer.zero_grad(set_to_none=False)
        # loss, reg, correct, synops, zero-error samples, input trace sums (L), spikes (L)
        stats = torch.zeros(5 + 2 * L, dtype=torch.float64, device=self.device)
        dth = [torch.zeros_like(t) for t in self._th]
        unmet = [torch.zeros_like(t) for t in self._th]
        unit_spikes = [torch.zeros(layer.out_shape, dtype=torch.float64, device=self.device) for layer in model.layers]
        with_reg = self.dist.is_main and c.lam > 0.0
        decoupled = c.weight_reg == "decoupled" and c.lam > 0.0
        silent_only = FLOOR_MODES[c.floor_compensation] == SILENT_ONLY
        if batch is not None:
            if self.forward == "event":
                out, res = self._event_forward(batch, rho)
            else:
                inp = DenseInput.from_events(batch, model.n_inputs, self.dt_ms, self.device)
                out, res = model(inp, train=True, rho=rho)
            loss, per_sample = model.loss(out, labels, c.lam, c.beta, denominator=n_global,
                                          with_reg=with_reg and not decoupled)
            loss.backward()
            with torch.no_grad():
                y = torch.as_tensor(labels, device=self.device)
                stats[0] = per_sample.detach().sum()
                stats[2] = (res.predictions() == y).sum()
                stats[3] = res.synops.sum()
                stats[4] = (per_sample.detach() == 0).sum()
                for l, layer in enumerate(model.layers):
                    counts = res.counts[l].detach()
                    stats[5 + l] = receptive_input_sum(layer, res.x_in if l == 0 else res.traces[l - 1]) * len(labels)
                    stats[5 + L + l] = counts.sum()
                    unit_spikes[l] += counts.sum(0)
                    dth[l] += res.dth[l].sum(0)
                    u = res.unmet[l]
                    if silent_only:  # per sample, only units (conv: maps) that did not fire (keep_silent_unmet)
                        fired = counts.reshape(u.shape[0], u[0].numel(), -1).sum(-1).reshape(u.shape) > 0
                        u = torch.where(fired, torch.zeros_like(u), u)
                    unmet[l] += u.sum(0)
        elif with_reg and not decoupled:
            model.regularizer(c.lam, c.beta).backward()
        if with_reg:
            stats[1] = float(model.regularizer(c.lam, c.beta).detach()) * n_global
        for p in self._w + self._th:
            if p.grad is None:  # first step on a rank whose shard was empty
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in self._w + self._th]
        self.dist.all_reduce_sum_(grads + dth + unmet + unit_spikes + [stats])
        shrink = model.decoupled_shrink(c.lam, c.beta, self.optimizer.param_groups[0]["lr"]) if decoupled else []
        th_start = [_flat64(t) for t in self._th]  # the thresholds the batch was simulated with
        self.optimizer.step()
        with torch.no_grad():
            for layer, s in shrink:  # eq. 13 as its own step after the optimizer's (optim.weight_reg)
                layer.weight_matrix().mul_(s)
        s = stats.cpu().numpy()
        mode = FLOOR_MODES[c.floor_compensation]
        for l, layer in enumerate(model.layers):
            th = layer.threshold
            with torch.no_grad():
                # Per-sample homeostasis at full strength: the batch's threshold changes are summed, zero-sum
                # at the floor (gradient.lee2016.commit_batch_homeostasis; a few values per layer, on the CPU).
                th64, un = _flat64(th), _flat64(unmet[l])
                commit_batch_homeostasis(th64, _flat64(dth[l]), float(layer.floor), un, th_start[l])
                th.copy_(torch.from_numpy(th64).reshape(th.shape).to(th))
                unmet_l = torch.from_numpy(un).reshape(th.shape).to(th)
            # "silent": units (conv: maps) that fired in any sample of the batch, all ranks (unit_spikes is reduced)
            fired = (unit_spikes[l].reshape(th.numel(), -1).sum(-1).reshape(th.shape) > 0) if silent_only else None
            enforce_floor_(layer, unmet_l, floor_raise_per_unit(mode, float(s[5 + l]) / n_global), fired)
        return ChunkStats(n_global, float(s[0]), float(s[1]), int(round(s[2])), int(round(s[3])),
                          np.round(s[5 + L:5 + 2 * L]).astype(np.int64), int(round(s[4])),
                          [u.flatten().cpu().numpy().round().astype(np.int64) for u in unit_spikes])

    def _event_forward(self, batch: EventBatch, rho: float):
        """(o, DenseForward) of the paper's rule with the event engine as the simulation (module doc)."""
        from snnbp.dense.lee2016_function import Lee2016Call, Lee2016Function

        model = self.model

        def simulate(call):
            from snnbp.dense.engine import DenseForward
            from snnbp.event_engine.engine import run_events

            r = run_events(model.to_network(), call.inp, train=call.train, rho=call.rho)
            t = torch.from_numpy
            shape = [tuple(layer.threshold.shape) for layer in model.layers]
            out = [tuple(layer.out_shape) for layer in model.layers]  # the dense engine's (B, C, H', W') maps
            return DenseForward(t(r.x_in), [t(a).reshape(-1, *o) for a, o in zip(r.traces, out)],
                                [t(c.astype(np.float32)).reshape(-1, *o) for c, o in zip(r.counts, out)],
                                [t(d).reshape(-1, *s) for d, s in zip(r.dth, shape)],
                                [t(u).reshape(-1, *s) for u, s in zip(r.unmet, shape)],
                                t(r.synops.astype(np.float64)), t(r.readout_counts), t(r.readout_synops),
                                t(r.lateral_ops.astype(np.float64)), t(r.readout_lateral.astype(np.float64)))

        call = Lee2016Call(list(model.layers), batch, model.neuron, True, rho, self.rule.normalize, simulate=simulate,
                           shared_grad=self.rule.shared_grad)
        out = Lee2016Function.apply(call, *[p for layer in model.layers for p in (layer.weight, layer.threshold)])
        return out, call.result

    # ---- checkpoint support: the format of train/protocol.py, shared with EventTrainer

    def state_tensors(self) -> tuple[dict[str, np.ndarray], dict]:
        return optimizer_state_tensors(self.optimizer)

    def load_state_tensors(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        load_optimizer_state(self.optimizer, tensors, meta, self.device)


class DenseEngine:
    """Evaluation callable with the signature of event_engine.engine.run_events, on the dense engine.

    ``engine(net, batch, readout_times_us=None) -> ForwardResult`` (numpy), so metrics.evaluate
    runs unchanged; train=False: no homeostasis.
    """

    def __init__(self, dt_ms: float = 1.0, device: str = "cpu"):
        self.dt_ms = check_dt(dt_ms)
        self.device = resolve_device(device)

    def __call__(self, net: Network, batch: EventBatch, train: bool = False, rho: float = 0.0,
                 readout_times_us: np.ndarray | None = None):
        model = DenseSNN.from_network(net, self.dt_ms, None, self.device)
        readout_ms = None if readout_times_us is None else np.asarray(readout_times_us, np.float64) / 1000.0
        return model.simulate(batch, train=train, rho=rho, readout_ms=readout_ms).to_numpy()
