"""``DenseSNN``: a ``snnbp.model.Network`` as a torch module, run by the dense engine, trained by a rule object.

The parameters are one ``nn.Parameter`` weight (M_l, N_l) and threshold (N_l,) per layer (in
``SpikingLinear`` modules; a layered network's conv layers hold (C, C_in, K, K) and (C, 1, 1) in
``SpikingConv2d``, pooled inputs in ``SpikingPool2d``, dense/conv.py), so any torch optimizer and
scheduler apply. The gradient rule is an
object passed in, not a string switch:

    DenseSNN.from_network(net, dt_ms=1.0, rule=Lee2016Rule())                     # the paper (no BPTT)
    DenseSNN.from_network(net, dt_ms=1.0, rule=SurrogateBPTT("fast_sigmoid", 25))   # BPTT baseline

A rule provides ``forward(model, inp, train, rho, readout_ms) -> (out, DenseForward)`` (``out`` is
what its loss reads) and ``sample_loss(out, labels) -> (B,)``. ``loss`` adds the eq. 13 weight
regularizer of the hidden layers (not the output layer, docs/method.md 3.8).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from snnbp.data.events import EventBatch
from snnbp.dense.engine import DenseForward, run_dense
from snnbp.dense.frames import DenseInput, check_dt
from snnbp.dense.layers import SpikingLinear
from snnbp.dense.lee2016_function import Lee2016Rule, exp_weight_coefficients, exp_weight_regularizer
from snnbp.errors import ConfigError
from snnbp.model import Network
from snnbp.neuron import NeuronParams


class DenseSNN(nn.Module):
    """Spiking layers + neuron constants + time step + gradient rule."""

    def __init__(self, n_inputs: int, layers: Sequence[nn.Module], neuron: NeuronParams, dt_ms: float = 1.0, rule=None,
                 layout: tuple | None = None):
        super().__init__()
        self.n_inputs = int(n_inputs)
        self.layout = layout  # (input_shape, layers) of a layered Network, for to_network
        self.layers = nn.ModuleList(layers)
        self.neuron = neuron
        self.dt_ms = check_dt(dt_ms)
        self.rule = rule if rule is not None else Lee2016Rule()
        if not (hasattr(self.rule, "forward") and hasattr(self.rule, "sample_loss")):
            raise ConfigError(f"rule {self.rule!r} is not a gradient rule; pass Lee2016Rule() or SurrogateBPTT(...)")

    @staticmethod
    def from_network(net: Network, dt_ms: float = 1.0, rule=None, device="cpu") -> "DenseSNN":
        if net.is_spatial:
            from snnbp.dense.conv import build_layers

            layout = (net.input_shape, list(net.layers))
            return DenseSNN(net.n_inputs, build_layers(net), net.neuron, dt_ms, rule, layout).to(device)
        layers = [SpikingLinear(torch.from_numpy(w), torch.from_numpy(t), k, f)
                  for w, t, k, f in zip(net.weights, net.thresholds, net.kappas, net.floors)]
        return DenseSNN(net.n_inputs, layers, net.neuron, dt_ms, rule).to(device)

    def to_network(self) -> Network:
        """A new ``Network`` holding copies of the current parameters."""
        return Network(self.n_inputs,
                       [layer.weight.detach().cpu().numpy().astype(np.float32).copy() for layer in self.layers],
                       [layer.threshold.detach().cpu().numpy().astype(np.float32).copy() for layer in self.layers],
                       [layer.kappa for layer in self.layers], [layer.floor for layer in self.layers], self.neuron,
                       *(self.layout or (None, None)))

    def write_to(self, net: Network) -> None:
        """Copy the parameters into ``net``'s arrays in place (views of them stay valid)."""
        for layer, w, t in zip(self.layers, net.weights, net.thresholds):
            w[...] = layer.weight.detach().cpu().numpy()
            t[...] = layer.threshold.detach().cpu().numpy()

    def load_from(self, net: Network) -> None:
        """Copy ``net``'s arrays into the parameters (same shapes)."""
        with torch.no_grad():
            for layer, w, t in zip(self.layers, net.weights, net.thresholds):
                layer.weight.copy_(torch.from_numpy(w))
                layer.threshold.copy_(torch.from_numpy(t))

    @property
    def device(self) -> torch.device:
        return self.layers[0].weight.device

    # ---- input --------------------------------------------------------------------------------

    def as_input(self, x, t_end_ms=None) -> DenseInput:
        """EventBatch, DenseInput or (T, B, P) frames -> DenseInput on this model's device and dt."""
        if isinstance(x, DenseInput):
            if x.n_inputs != self.n_inputs:
                raise ConfigError(f"the input has {x.n_inputs} channels but the network has {self.n_inputs} inputs")
            if abs(x.dt_ms - self.dt_ms) > 1e-12:
                raise ConfigError(f"the input was binned with dt={x.dt_ms} ms but the model steps dt={self.dt_ms} ms; bin with the model's dt")
            return x
        if isinstance(x, EventBatch):
            return DenseInput.from_events(x, self.n_inputs, self.dt_ms, self.device)
        inp = DenseInput.from_frames(x, self.dt_ms, t_end_ms, n_inputs=self.n_inputs)
        if inp.device != self.device:
            raise ConfigError(f"the frames are on {inp.device} but the model is on {self.device}; move them with .to()")
        return inp

    # ---- running ----------------------------------------------------------------------------

    def forward(self, x, *, train: bool = False, rho: float = 0.0, t_end_ms=None, readout_ms=None):
        """-> (out, DenseForward): ``out`` is what the rule's loss reads (differentiable by the rule)."""
        return self.rule.forward(self, self.as_input(x, t_end_ms), train=train, rho=rho, readout_ms=readout_ms)

    def simulate(self, x, *, train: bool = False, rho: float = 0.0, t_end_ms=None, readout_ms=None) -> DenseForward:
        """Forward only, no graph (evaluation)."""
        return run_dense(list(self.layers), self.as_input(x, t_end_ms), self.neuron, train=train, rho=rho, readout_ms=readout_ms)

    def regularizer(self, lam: float, beta: float) -> torch.Tensor:
        """Eq. 13 summed over the hidden layers' neurons (the output layer gets none, docs/method.md 3.8);
        a conv layer counts each filter once (``weight_matrix``: one column per shared weight vector)."""
        total = self.layers[0].weight.new_zeros(())
        for layer in list(self.layers)[:-1]:
            total = total + exp_weight_regularizer(layer.weight_matrix(), lam, beta)
        return total

    @torch.no_grad()
    def decoupled_shrink(self, lam: float, beta: float, lr: float) -> list:
        """[(layer, 1 / (1 + lr c))] per hidden layer: the decoupled eq. 13 step's column factors from the
        current weights, c_i = lambda beta exp(beta (|W_i|^2 - 1)) (optim.weight_reg = "decoupled")."""
        return [(layer, 1.0 / (1.0 + lr * exp_weight_coefficients(layer.weight_matrix(), lam, beta)))
                for layer in list(self.layers)[:-1]]

    def loss(self, out: torch.Tensor, labels, lam: float = 0.0, beta: float = 10.0,
             denominator: int | None = None, with_reg: bool = True):
        """-> (total, per_sample): total = sum_b loss_b / denominator + regularizer (hidden layers).

        denominator defaults to the batch size (mean over the batch, like the event trainer's
        minibatch path); data-parallel training passes the global batch size instead.
        """
        labels = torch.as_tensor(labels, dtype=torch.int64, device=out.device)
        if labels.shape != (out.shape[0],):
            raise ConfigError(f"got {labels.numel()} labels for a batch of {out.shape[0]} samples; give one label per sample")
        per_sample = self.rule.sample_loss(out, labels)
        total = per_sample.sum() / float(denominator or out.shape[0])
        if with_reg and lam > 0.0:
            total = total + self.regularizer(lam, beta)
        return total, per_sample
