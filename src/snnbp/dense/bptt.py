"""Surrogate-gradient BPTT on the *same* dense network: the comparison rule (train.rule = "bptt").

Same forward as the paper's rule (dense/engine.py ``layer_step``: decay, refractory weight, spike,
reset by subtraction, WTA, clip at -V_th, homeostasis), but the autograd graph is kept over all T
steps and the Heaviside spike is given a surrogate derivative (Zenke & Ganguli 2018; Neftci et al.
2019). Memory therefore grows linearly with T: that is BPTT's nature and what the comparison measures.

Spike s = H(u), u = (V - V_th) / V_th (threshold-normalized membrane, as snnTorch):
  fast_sigmoid:  dS/du = 1 / (1 + slope |u|)^2            (snnTorch default, slope 25)
  sigmoid:       dS/du = slope sig(slope u) (1 - sig(slope u))
and du/dV = 1 / V_th, du/dV_th = -V / V_th^2, so both W and V_th are trained.
Reset: the subtracted gamma V_th s uses s detached by default (snnTorch's default; detach_reset).
Not differentiated: the refractory weight (depends on spike times only), homeostasis (a forward
mechanism, committed by the trainer as for the paper's rule), and the clip's inactive branch.

Loss on the output spike counts c (B, N_L) summed over the presentation:
  "mse_max" (default): 0.5 |c / max(c) - y|^2 with the max detached (0 when silent) -- the paper's
            loss (docs/method.md 3.8), so both rules optimize the same objective;
  "ce_count": cross-entropy of softmax(c) against the label (snnTorch's ce_count_loss).
The eq. 13 weight regularizer is added by the model for hidden layers, as for the paper's rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from snnbp.dense.engine import simulate
from snnbp.dense.lee2016_function import max_normalize, max_normalized_mse
from snnbp.errors import ConfigError

SURROGATES = ("fast_sigmoid", "sigmoid")
LOSSES = ("mse_max", "ce_count")


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward; surrogate derivative backward with respect to V and V_th."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, th: torch.Tensor, kind: str, slope: float) -> torch.Tensor:
        u = (v - th) / th
        ctx.save_for_backward(u, th)
        ctx.kind, ctx.slope = kind, slope
        return (v >= th).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_s: torch.Tensor):
        u, th = ctx.saved_tensors
        k = ctx.slope
        if ctx.kind == "fast_sigmoid":
            ds_du = 1.0 / (1.0 + k * u.abs()) ** 2
        else:
            sg = torch.sigmoid(k * u)
            ds_du = k * sg * (1.0 - sg)
        g = grad_s * ds_du / th
        # du/dV_th = -V / V_th^2 = -(u + 1) / V_th; sum the broadcast (B, N) back to th's shape.
        g_th = -g * (u + 1.0)
        if g_th.shape != th.shape:
            g_th = g_th.sum_to_size(th.shape)
        return g, g_th, None, None


@dataclass(frozen=True)
class SurrogateBPTT:
    """Backpropagation through time with a surrogate spike derivative (module doc)."""

    surrogate: str = "fast_sigmoid"
    slope: float = 25.0
    loss: str = "mse_max"
    detach_reset: bool = True
    name: str = "bptt"

    def __post_init__(self) -> None:
        if self.surrogate not in SURROGATES:
            raise ConfigError(f"SurrogateBPTT surrogate={self.surrogate!r} is unknown; use one of {', '.join(SURROGATES)}")
        if not self.slope > 0:
            raise ConfigError(f"SurrogateBPTT slope={self.slope} must be positive (e.g. 25)")
        if self.loss not in LOSSES:
            raise ConfigError(f"SurrogateBPTT loss={self.loss!r} is unknown; use one of {', '.join(LOSSES)}")

    def spike(self, v: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
        return _SurrogateSpike.apply(v, th, self.surrogate, float(self.slope))

    def forward(self, model, inp, *, train: bool, rho: float, readout_ms=None):
        res = simulate(list(model.layers), inp, model.neuron, train=train, rho=rho, readout_ms=readout_ms,
                       spike_fn=self.spike, detach_reset=self.detach_reset)
        c = res.counts[-1]
        if self.loss == "mse_max":
            return max_normalize(c, detach_max=True), res
        return c, res

    def sample_loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.loss == "ce_count":
            return torch.nn.functional.cross_entropy(out, labels, reduction="none")
        return max_normalized_mse(out, labels)
