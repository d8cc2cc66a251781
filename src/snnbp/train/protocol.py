"""What every trainer provides (the contract train/loop.py relies on) and the pieces both share.

A trainer owns one ``Network`` and its optimizer state. ``train.engines.make_trainer`` builds one of
  * ``EventTrainer`` (event_trainer.py): the event engine; per-sample SGD fully compiled, or
    mini-batches simulated in parallel and stepped by a torch optimizer;
  * ``DenseTrainer`` (dense_trainer.py): the dense engine (CPU or CUDA, data parallel).
Both keep the same rule: weights at lr, layer l's thresholds at lr * ratio_l (``threshold_rate_ratios``:
optim.lr_th_ratio, or optim.warmup_lr_th_ratio in the warm-up epoch; torch param groups: the weights,
then one per layer's thresholds, param ids 0..L-1 weights, L..2L-1 thresholds, so their checkpoints are
interchangeable); homeostasis committed
as the *sum* of a batch's per-sample threshold changes (docs/method.md 4.4, paper-readings.md 9); the
threshold floor enforced after every step. After ``step_chunk`` the trained values are in the
Network's own arrays (checkpoints, evaluation and health read them there).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from snnbp.config import OptimConfig
from snnbp.data.events import EventBatch
from snnbp.errors import ConfigError
from snnbp.model import Network


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


class Trainer(Protocol):
    """The interface train/loop.py uses."""

    net: Network

    def step_chunk(self, batch: EventBatch, labels: np.ndarray, lr: float, rho: float,
                   warmup: bool = False) -> ChunkStats:
        """Train on every sample of ``batch`` (in order) at learning rate lr and homeostasis rho
        (``warmup``: the chunk belongs to the warm-up epoch, whose threshold rates may differ)."""

    def state_tensors(self) -> tuple[dict[str, np.ndarray], dict]:
        """Optimizer state as (tensors named optim.PID.KEY, scalars named PID.KEY) for a checkpoint."""

    def load_state_tensors(self, tensors: dict[str, np.ndarray], meta: dict) -> None:
        """Restore what ``state_tensors`` returned."""


def _subnormals_flushed_now() -> bool:
    """Whether this thread flushes subnormals now (numpy obeys the same control register)."""
    with np.errstate(under="ignore"):
        return bool(np.float32(1.5e-38) * np.float32(0.5) == 0.0)


@contextmanager
def subnormals_flushed():
    """Inside the block, treat subnormal floats (|x| < 1.2e-38 in float32) as zero on this thread.

    Why: Adam's first moment of a weight whose input stays silent decays as 0.9^k and enters the
    subnormal range after ~700 zero-gradient steps (the second moment, 0.999^k, within an epoch), and
    arithmetic on subnormals is tens of times slower on x86. Per-sample Adam updates every moment every
    sample, so it slowed from 0.43 to 2.26 ms per sample on 784-800-10 after ~2,000 samples
    (benchmarks/README.md, "Subnormal Adam moments"). Flushing changes values only below 1.2e-38,
    where they no longer move a weight. torch.set_flush_denormal sets the thread's floating-point
    control register (x86 FTZ/DAZ), which the compiled (numba) steps on the same thread obey too. The
    previous mode is restored on exit: the process's floating-point state is not ours to keep
    (hypothesis, for one, refuses to run with subnormals flushed). Every trainer's ``step_chunk``
    runs inside this block.
    """
    was_on = _subnormals_flushed_now()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was_on:
            torch.set_flush_denormal(False)


def threshold_rate_ratios(cfg: OptimConfig, n_layers: int, warmup: bool = False) -> np.ndarray:
    """eta_th / eta_w per layer (n_layers,): optim.lr_th_ratio, or optim.warmup_lr_th_ratio in the warm-up.

    One configured value applies to every layer. Why per layer and per phase (docs/paper-readings.md 11):
    in 784-500-500-10 the first hidden layer's thresholds must adapt fast through the 200 ms warm-up
    (slow ones let homeostasis park most of the layer on its floor), but at that rate they then drift
    down every 50 ms epoch until the layer runs away, while the output thresholds must stay fast.
    """
    ratios = cfg.warmup_lr_th_ratio if (warmup and cfg.warmup_lr_th_ratio) else cfg.lr_th_ratio
    out = np.asarray(ratios, np.float64)
    out = out.reshape(-1)  # a bare float (OptimConfig built in code) counts as one value
    return np.full(n_layers, out[0]) if out.size == 1 else out


class AdamWithSgdThresholds:
    """Adam on the weights, plain SGD on the thresholds (optim.threshold_optimizer = "sgd" under Adam).

    Quacks like the torch optimizer the trainers expect: ``param_groups`` lists the weights' group, then
    one group per layer's thresholds (the same dicts as the two inner optimizers', so
    ``set_learning_rates`` works unchanged); ``state`` and the checkpointed ``state_dict`` are Adam's
    (momentum-free SGD has none), with the weights at param ids 0..L-1 as in the single-optimizer form.
    """

    def __init__(self, adam: torch.optim.Adam, sgd: torch.optim.SGD):
        self.adam, self.sgd = adam, sgd
        self.param_groups = adam.param_groups + sgd.param_groups

    @property
    def state(self):
        return self.adam.state

    def step(self) -> None:
        self.adam.step()
        self.sgd.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adam.zero_grad(set_to_none=set_to_none)
        self.sgd.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.adam.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.adam.load_state_dict(state_dict)


def make_optimizer(weights: list[torch.Tensor], thresholds: list[torch.Tensor], cfg: OptimConfig,
                   fused_adam: bool = False) -> torch.optim.Optimizer | AdamWithSgdThresholds:
    """torch.optim SGD or Adam: one param group of weights at cfg.lr, then one per layer's thresholds at
    cfg.lr * ratio_l (threshold_rate_ratios; the warm-up's ratios are set per chunk, set_learning_rates).
    Under Adam with optim.threshold_optimizer = "sgd" the threshold groups go to a torch SGD instead."""
    ratios = threshold_rate_ratios(cfg, len(thresholds))
    weight_group = [{"params": weights, "lr": cfg.lr}]
    threshold_groups = [{"params": [th], "lr": cfg.lr * float(r)} for th, r in zip(thresholds, ratios)]
    if cfg.name == "sgd":
        return torch.optim.SGD(weight_group + threshold_groups, lr=cfg.lr)
    if cfg.name == "adam":
        extra = {"foreach": False, "fused": True} if fused_adam else {}

        def adam(groups: list[dict]) -> torch.optim.Adam:
            return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, **extra)

        if cfg.threshold_optimizer == "sgd":
            return AdamWithSgdThresholds(adam(weight_group), torch.optim.SGD(threshold_groups, lr=cfg.lr))
        return adam(weight_group + threshold_groups)
    raise ConfigError(f"optim.name must be 'sgd' or 'adam', got '{cfg.name}'")


def set_learning_rates(optimizer: torch.optim.Optimizer, lr: float, th_ratios: np.ndarray) -> None:
    """Weights at lr, layer l's thresholds at lr * th_ratios[l] (the groups of make_optimizer)."""
    optimizer.param_groups[0]["lr"] = lr
    for group, r in zip(optimizer.param_groups[1:], th_ratios, strict=True):
        group["lr"] = lr * float(r)


def optimizer_state_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, np.ndarray], dict]:
    """The optimizer's state as plain arrays and scalars (safetensors holds no Python objects)."""
    tensors, meta = {}, {}
    for pid, st in optimizer.state_dict()["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.numel() > 1:
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().numpy().copy()
            else:
                meta[f"{pid}.{k}"] = float(v)
    return tensors, meta


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, np.ndarray], meta: dict,
                         device: str | torch.device = "cpu") -> None:
    """Inverse of ``optimizer_state_tensors`` (tensors not named optim.* are ignored)."""
    sd = optimizer.state_dict()
    state: dict = {}
    for name, arr in tensors.items():
        if name.startswith("optim."):
            _, pid, k = name.split(".", 2)
            state.setdefault(int(pid), {})[k] = torch.from_numpy(arr.copy()).to(device)
    for key, v in meta.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = torch.tensor(v)
    sd["state"] = state
    optimizer.load_state_dict(sd)
