"""Layers of the dense engine: what a spiking layer must provide so the engine and the rules can run it.

The engine (dense/engine.py) owns the neuron: decay, refractory weight, spike, reset, inhibition,
clip, homeostasis (event_engine/kernels.py steps 1-6). A layer owns only its *connectivity*:

    synaptic_input(s_in)  (B, *in_shape) -> (B, *out_shape)   sum_k W[k, i] s_k   (the input current)
    received(s_in, n_ev)  -> bool mask broadcastable to (B, *out_shape): which neurons got an input
                             event this step (the event engine tests the threshold only on an input
                             event, kernels.py step 3, so the dense engine does too)
    peer_spikes(s)        -> (B, *out_shape) number of spikes of the *other* neurons of each neuron's
                             WTA / homeostasis group this step (n_s - s_i, eq. 4 and docs/method.md 4.4)
    group_spikes(s)       -> (B, *out_shape) number of spikes in each neuron's group (n_s)
    group_size            N of the homeostasis rule (rho N per spike, docs/method.md 4.4)
    synaptic_ops(s_in)    (B,) float64: synaptic operations this step's input events cost, each event
                          times its fan-out into this layer (event engine: N per event; exact at a
                          conv map's border; metrics/operations.py)
    ops_per_wta_spike     lateral-inhibition updates one spike costs (event engine: N - 1)

    homeostasis(s)        -> (change / rho, broadcastable to the threshold's batch shape (B, *th.shape);
                              mask of the samples/groups where something fired) (docs/method.md 4.4)

and, for the paper's gradient rule (dense/lee2016_function.py, eqs. 11-12):

    backprop(delta)       (B, *out_shape) -> (B, *in_shape)   sum_j W[i, j] delta_j
    weight_grad(x, delta) (B, *in_shape), (B, *out_shape) -> weight-shaped sum_b x_b^T delta_b
    active_fan_in(active) input mask (B, *in_shape) -> m, active synapses of each neuron,
                          broadcastable to (B, *out_shape)
    fan_in, neurons_per_field   M and N of eqs. 11-12
    weight_matrix()       the weights as an (M, N) view, column i = neuron i's weight vector
                          (eq. 13 regularizer, threshold-floor compensation)

``SpikingLinear`` is the fully connected layer of the paper (W[k, i]: input k -> neuron i, the
layout of ``snnbp.model.Network``). The convolutional layer with the same neuron (dense/conv.py)
implements the same methods (conv2d / conv_transpose2d, WTA across channels per location).
The threshold may have fewer entries than the layer has neurons (conv: one per feature map), so
the engine's homeostatic state has the threshold's shape, not the neurons'.
"""

from __future__ import annotations

import torch
from torch import nn

SPARSE_RATIO = 16  # CPU: gather weight rows when fewer than 1/16 of the inputs of a step are non-zero


class SpikingLinear(nn.Module):
    """Fully connected spiking layer: weight (M, N), threshold (N,), WTA strength kappa, threshold floor.

    weight[k, i] is the synapse from input k to neuron i (snnbp.model.Network layout), so the
    input current of a batch of input spike vectors s (B, M) is s @ W (B, N).
    """

    def __init__(self, weight: torch.Tensor, threshold: torch.Tensor, kappa: float = 0.0, floor: float = 0.0):
        super().__init__()
        if weight.ndim != 2 or threshold.shape != (weight.shape[1],):
            from snnbp.errors import ConfigError

            raise ConfigError(f"SpikingLinear: weight {tuple(weight.shape)} and threshold {tuple(threshold.shape)} "
                              "must be (M, N) and (N,)")
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.threshold = nn.Parameter(threshold.detach().clone().float())
        self.kappa = float(kappa)
        self.floor = float(floor)

    # ---- shapes and costs -------------------------------------------------------------------

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[0],)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[1],)

    @property
    def fan_in(self) -> int:
        """M of eqs. 11-12: synapses per neuron."""
        return self.weight.shape[0]

    @property
    def neurons_per_field(self) -> int:
        """N of eq. 12: every neuron of the layer sees the same M inputs."""
        return self.weight.shape[1]

    @property
    def group_size(self) -> int:
        return self.weight.shape[1]

    @property
    def replicas(self) -> int:
        """Neurons sharing one weight column and threshold: 1 in a fully connected layer."""
        return 1

    def synaptic_ops(self, s_in: torch.Tensor) -> torch.Tensor:
        """Every input event reaches all N neurons: (B,) float64 events x N."""
        return s_in.detach().flatten(1).sum(1, dtype=torch.float64) * self.weight.shape[1]

    @property
    def ops_per_wta_spike(self) -> int:
        return self.weight.shape[1] - 1 if self.kappa != 0.0 else 0

    # ---- forward ------------------------------------------------------------------------------

    def synaptic_input(self, s_in: torch.Tensor) -> torch.Tensor:
        """(B, M) input spike counts of this step -> (B, N) current sum_k W[k, i] s_k.

        On the CPU, a sparse step (a few events per sample, the usual case at dt ~ 1 ms) gathers
        the rows W[k] of the events instead of multiplying by the mostly-zero frame: work ~ events x N
        (what the event engine does) instead of B x M x N. Same sums, differentiable either way.
        On CUDA the dense matmul is used (no host synchronization per step).
        """
        if s_in.ndim > 2:  # spikes of a (pooled) conv map, flattened (c, y, x) as the weight rows
            s_in = s_in.flatten(1)
        if s_in.device.type == "cpu":
            idx = s_in.nonzero()
            if idx.shape[0] * SPARSE_RATIO < s_in.numel():
                b, k = idx[:, 0], idx[:, 1]
                rows = self.weight.index_select(0, k) * s_in[b, k].unsqueeze(1)
                return torch.zeros(s_in.shape[0], self.weight.shape[1], dtype=rows.dtype).index_add(0, b, rows)
        return s_in @ self.weight

    def received(self, s_in: torch.Tensor, n_events: torch.Tensor) -> torch.Tensor:
        """Every neuron of a fully connected layer sees every input event: (B, 1) mask n_events > 0."""
        return (n_events > 0).unsqueeze(1)

    def group_spikes(self, s: torch.Tensor) -> torch.Tensor:
        """n_s of the layer (B, 1): the whole layer is one WTA / homeostasis group."""
        return s.sum(dim=1, keepdim=True)

    def peer_spikes(self, s: torch.Tensor) -> torch.Tensor:
        """(B, N) spikes of the other neurons of the group: n_s - s_i."""
        return self.group_spikes(s) - s

    def homeostasis(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N s_i - n_s (B, N), n_s > 0 (B, 1)): threshold change / rho of docs/method.md 4.4, and where
        it applies at all (as the event engine, only when something fired)."""
        n_s = self.group_spikes(s)
        return self.group_size * s - n_s, n_s > 0

    # ---- backward (gradient rule) ---------------------------------------------------------------

    def backprop(self, delta: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, M): sum_j W[i, j] delta_j, the sum of eq. 11 (layer above: self)."""
        return delta @ self.weight.detach().t()

    def weight_grad(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """sum_b x_b^T delta_b -> (M, N); delta already carries the per-sample sqrt(N/m) of eq. 12."""
        return x.flatten(1).t() @ delta

    def active_fan_in(self, active: torch.Tensor) -> torch.Tensor:
        """m (B, 1): active inputs of the sample, the same for every neuron of the layer."""
        return active.flatten(1).sum(1, keepdim=True).to(torch.float32)

    def weight_matrix(self) -> torch.Tensor:
        return self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]} -> {self.weight.shape[1]}, kappa={self.kappa}, floor={self.floor:.4g}"
