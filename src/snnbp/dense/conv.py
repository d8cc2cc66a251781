"""Convolutional spiking layers for the dense engine: ``SpikingConv2d`` and ``SpikingPool2d``.

Lee, Delbruck & Pfeiffer (2016) report a spiking CNN (Frontiers, 99.31 % on MNIST) without giving
its details (docs/method.md 6.3, 10 item 12). This module is one explicit reading. The *neuron* is the
engine's (dense/engine.py: decay exp(-dt/tau_mp), refractory weight, reset by subtracting gamma V_th,
clip at -V_th, WTA, homeostasis); a layer supplies only its connectivity (dense/layers.py protocol).

SpikingConv2d, "conv:C:K" on an input map (C_in, H, W), valid convolution, stride 1:
  neuron (c, y, x), output map (C, H', W') = (C, H-K+1, W-K+1); its receptive field is the
  M = C_in K^2 inputs (c', y+u, x+v), u, v < K, all sharing the filter W[c] (C_in, K, K):
      current_cyx = sum_{c',u,v} W[c, c', u, v] s_{c', y+u, x+v}            (F.conv2d)
  * threshold: one V_th per feature map, shape (C, 1, 1), shared by all H' W' locations (as the
    filter is); the engine's sample-local homeostatic change is (B, C, 1, 1) too.
  * received: neuron (c, y, x) tests its threshold only in a step in which its receptive field got
    an input event (as the fully connected layer / the event engine test only on input events).
  * WTA (kappa != 0): the C neurons at one location (y, x) form a group (eq. 4): a spike of map c
    at (y, x) adds kappa V_th,c' to every other map c' at the same (y, x).
  * homeostasis (docs/method.md 4.4) per feature map: at each location the C maps are a group of N = C
    neurons receiving the same input, so the fully connected rule gives map c the change
    rho (C s_cyx - n_s,yx); the shared threshold takes the *mean* of it over the H' W' locations
    (a sum would move a map's threshold H' W' times faster than a single neuron's at the same
    rate). Summed over the maps it is zero, as in the paper.

The paper's gradient rule with conv ops (dense/lee2016_function.py). The conv layer is the
fully connected layer of the paper applied at every location (the "unfolded" layer: inputs = the
M = C_in K^2 patch, neurons = the N = C maps at the location), with its weights shared:
  m_byx   = active inputs (x > 0) of the receptive field of location (y, x) in sample b
            = conv2d(active mask, ones(1, C_in, K, K))                           (active_fan_in)
  eq. 12  dW[c, c', u, v] = sum_{b,y,x} sqrt(N / m_byx) delta_bcyx x_b,c',y+u,x+v
            = conv2d weight-gradient of x with sqrt(N/m) delta                  (weight_grad)
          dV_th,c = -sum_{b,y,x} sqrt(N / (m_byx M)) delta_bcyx a_hat_bcyx,
            a_hat = gamma a - sigma kappa sum_{c' != c} a_c'  (same location)
  eq. 11  sum_j W_ji sqrt(M / m_j) delta_j for the layer below = transposed convolution of
            sqrt(M / m) delta                                                   (backprop)
  eq. 13  one regularizer term per filter (the weight vector every neuron of a map shares).
tests/test_dense_conv.py checks all of this against ``SpikingLinear`` on the unfolded patches.

SpikingPool2d(layer, K) is K x K *average* pooling (window = stride = K) of the spikes that feed
``layer`` (a conv or fully connected layer), not a layer of neurons: the pooled input of a window
is the mean of its spikes, so ``layer`` effectively has the tied synapses W / K^2 from every neuron
of the window. Pooling is linear, so the pooled traces are the mean of the traces and the
transfer-function model (eq. 5) stays exact; an input event is one event on its window's pooled
synapse. Averaging (not summing) keeps pooled traces on the scale of single-neuron traces, so the
eqs. 9-10 initialization with M = pooled fan-in applies unchanged. A pooled synapse is *active*
when any neuron of its window fired. Backward, eq. 11 uses the effective weights: the delta of a
pooled input is spread over its window times 1 / K^2 (the adjoint of average pooling).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from snnbp.errors import ConfigError


def _as_map(t: torch.Tensor, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """(B, prod(shape)) or (B, *shape) -> (B, *shape) view; a wrong size is a ConfigError."""
    if t.ndim < 2 or math.prod(t.shape[1:]) != math.prod(shape):
        raise ConfigError(f"{what}: got a tensor of shape {tuple(t.shape)}, expected (B, {', '.join(map(str, shape))}) "
                          f"or (B, {math.prod(shape)})")
    return t.reshape(t.shape[0], *shape)


class SpikingConv2d(nn.Module):
    """Convolutional spiking layer: weight (C, C_in, K, K), threshold (C, 1, 1) per feature map.

    in_shape (C_in, H, W) is the map this layer reads; out_shape (C, H-K+1, W-K+1).
    """

    def __init__(self, weight: torch.Tensor, threshold: torch.Tensor, in_shape: tuple[int, int, int],
                 kappa: float = 0.0, floor: float = 0.0):
        super().__init__()
        in_shape = tuple(int(v) for v in in_shape)
        if weight.ndim != 4 or weight.shape[2] != weight.shape[3]:
            raise ConfigError(f"SpikingConv2d: weight {tuple(weight.shape)} must be (C, C_in, K, K)")
        C, C_in, K, _ = weight.shape
        if len(in_shape) != 3 or in_shape[0] != C_in or K > min(in_shape[1], in_shape[2]):
            raise ConfigError(f"SpikingConv2d: input map {in_shape} does not fit weight {tuple(weight.shape)}; "
                              f"it must be ({C_in}, H, W) with H, W >= {K}")
        if threshold.numel() != C or threshold.shape not in ((C,), (C, 1, 1)):
            raise ConfigError(f"SpikingConv2d: threshold {tuple(threshold.shape)} must be ({C}, 1, 1) or ({C},), "
                              "one per feature map")
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.threshold = nn.Parameter(threshold.detach().clone().float().reshape(C, 1, 1))
        self.kappa = float(kappa)
        self.floor = float(floor)
        self._in_shape = in_shape
        # Ones kernel counting the inputs of a receptive field (received / active_fan_in); a buffer
        # so it follows the module to the device.
        self.register_buffer("_field", torch.ones(1, C_in, K, K), persistent=False)

    # ---- shapes and costs ---------------------------------------------------------------------

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self._in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        _, H, W = self._in_shape
        return (self.weight.shape[0], H - self.kernel + 1, W - self.kernel + 1)

    @property
    def fan_in(self) -> int:
        """M of eqs. 9-12: synapses per neuron, C_in K^2 (the receptive field)."""
        return self.weight[0].numel()

    @property
    def neurons_per_field(self) -> int:
        """N of eq. 12: neurons sharing one receptive field (the C maps at a location)."""
        return self.weight.shape[0]

    @property
    def group_size(self) -> int:
        return self.weight.shape[0]

    @property
    def replicas(self) -> int:
        """Neurons sharing one filter and threshold: the H'W' locations of a map."""
        _, h, w = self.out_shape
        return h * w

    def fan_out_map(self) -> torch.Tensor:
        """(C_in, H, W) float64: the neurons one input event at (c', y, x) reaches, C times the output
        locations whose K x K field covers (y, x): C K^2 inside the map, fewer at its border (the event
        engine's exact count, event_engine/layered._conv_event)."""
        cached = getattr(self, "_fan_out", None)
        if cached is None or cached.device != self.weight.device:
            C, C_in, K, _ = self.weight.shape
            _, Ho, Wo = self.out_shape
            ones = torch.ones(1, 1, Ho, Wo, dtype=torch.float64, device=self.weight.device)
            cover = F.conv_transpose2d(ones, torch.ones(1, 1, K, K, dtype=torch.float64, device=self.weight.device))
            cached = (C * cover[0]).expand(C_in, -1, -1).contiguous()
            self._fan_out = cached
        return cached

    def synaptic_ops(self, s_in: torch.Tensor) -> torch.Tensor:
        """(B,) float64: sum over input events of their fan-out (``fan_out_map``)."""
        m = _as_map(s_in.detach(), self._in_shape, "SpikingConv2d input")
        return (m.to(torch.float64) * self.fan_out_map()).flatten(1).sum(1)

    @property
    def ops_per_wta_spike(self) -> int:
        return self.weight.shape[0] - 1 if self.kappa != 0.0 else 0

    # ---- forward ------------------------------------------------------------------------------

    def synaptic_input(self, s_in: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) (or flat) input spike counts of the step -> (B, C, H', W') currents."""
        return F.conv2d(_as_map(s_in, self._in_shape, "SpikingConv2d input"), self.weight)

    def received(self, s_in: torch.Tensor, n_events: torch.Tensor) -> torch.Tensor:
        """(B, 1, H', W') mask: did any input of the location's receptive field carry an event?"""
        m = _as_map(s_in, self._in_shape, "SpikingConv2d input").detach()
        # inputs are spike counts (or their window means), never negative: amax > 0 <=> an event
        return F.conv2d(m.amax(dim=1, keepdim=True), self._field[:, :1]) > 0

    def group_spikes(self, s: torch.Tensor) -> torch.Tensor:
        """n_s per location (B, 1, H', W'): the WTA group is the C maps at one location."""
        return s.sum(dim=1, keepdim=True)

    def peer_spikes(self, s: torch.Tensor) -> torch.Tensor:
        return self.group_spikes(s) - s

    def homeostasis(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(change / rho (B, C, 1, 1), fired mask (B, 1, 1, 1)); module doc: mean over locations of
        C s_cyx - n_s,yx, applied only in a step in which the layer fired (as the FC layer)."""
        C = s.shape[1]
        inc = C * s.mean(dim=(2, 3), keepdim=True) - s.sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        return inc, s.flatten(1).sum(1).view(-1, 1, 1, 1) > 0

    # ---- backward (gradient rule) ---------------------------------------------------------------

    def active_fan_in(self, active: torch.Tensor) -> torch.Tensor:
        """m per location (B, 1, H', W'): active inputs (mask of the layer's input) in the field."""
        a = _as_map(active, self._in_shape, "SpikingConv2d active mask").to(self._field.dtype)
        return F.conv2d(a, self._field)

    def backprop(self, delta: torch.Tensor) -> torch.Tensor:
        """(B, C, H', W') -> (B, C_in, H, W): sum_j W_ji delta_j, the transposed convolution."""
        return F.conv_transpose2d(delta, self.weight.detach())

    def weight_grad(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """sum_{b,y,x} x_patch delta -> (C, C_in, K, K); delta already carries sqrt(N/m) of eq. 12."""
        x = _as_map(x, self._in_shape, "SpikingConv2d input traces")
        return torch.nn.grad.conv2d_weight(x, self.weight.shape, delta)

    def weight_matrix(self) -> torch.Tensor:
        """The weights as (M, C): column c is filter c (a view; eq. 13 and the floor act per filter)."""
        return self.weight.flatten(1).t()

    def extra_repr(self) -> str:
        return (f"{self._in_shape} -> {self.out_shape}, kernel={self.kernel}, kappa={self.kappa}, "
                f"floor={self.floor:.4g}")


class SpikingPool2d(nn.Module):
    """K x K average pooling of the spikes feeding ``layer`` (module doc); delegates the rest.

    in_shape (C, H, W) is the unpooled map (H, W divisible by K); ``layer`` reads (C, H/K, W/K)
    (a conv layer) or its C H W / K^2 flattening (a fully connected layer).
    """

    def __init__(self, layer: nn.Module, k: int, in_shape: tuple[int, int, int]):
        super().__init__()
        in_shape = tuple(int(v) for v in in_shape)
        k = int(k)
        if k < 1 or len(in_shape) != 3 or in_shape[1] % k or in_shape[2] % k:
            raise ConfigError(f"SpikingPool2d: a {k}x{k} pool needs a (C, H, W) map with H and W divisible by {k}, "
                              f"got {in_shape}")
        pooled = (in_shape[0], in_shape[1] // k, in_shape[2] // k)
        if math.prod(layer.in_shape) != math.prod(pooled):
            raise ConfigError(f"SpikingPool2d: the pooled map {pooled} does not fit the layer's input {layer.in_shape}")
        self.layer = layer
        self.k = k
        self._in_shape = in_shape
        self._pooled = pooled

    def pool(self, t: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or flat -> (B, C, H/K, W/K) window means.

        Summed from the K^2 strided views (t[..., i::K, j::K]) rather than F.avg_pool2d: the same
        means, but on the CPU avg_pool2d of an NCHW map was 2-5x slower (benchmarks/README.md,
        "pooling"), and pooling runs once per layer per time step.
        """
        m = _as_map(t, self._in_shape, "SpikingPool2d input")
        k = self.k
        out = m[:, :, 0::k, 0::k].clone()
        for i in range(k):
            for j in range(k):
                if i or j:
                    out += m[:, :, i::k, j::k]
        return out.mul_(1.0 / (k * k))

    def _pool_step(self, s_in: torch.Tensor) -> torch.Tensor:
        # The engine calls synaptic_input and received with the same spikes in each step: pool once.
        cached = getattr(self, "_step_cache", None)
        if cached is None or cached[0] is not s_in:
            cached = (s_in, self.pool(s_in))
            self._step_cache = cached
        return cached[1]

    # delegated parameters, constants and neuron-side methods (the neurons are the inner layer's)
    weight = property(lambda self: self.layer.weight)
    threshold = property(lambda self: self.layer.threshold)
    kappa = property(lambda self: self.layer.kappa)
    floor = property(lambda self: self.layer.floor)
    out_shape = property(lambda self: self.layer.out_shape)
    fan_in = property(lambda self: self.layer.fan_in)
    neurons_per_field = property(lambda self: self.layer.neurons_per_field)
    group_size = property(lambda self: self.layer.group_size)
    replicas = property(lambda self: self.layer.replicas)
    ops_per_wta_spike = property(lambda self: self.layer.ops_per_wta_spike)

    def synaptic_ops(self, s_in: torch.Tensor) -> torch.Tensor:
        """(B,) float64: a spike of the pooled map reaches the next layer through the tied synapses of its
        window, so it costs its window's fan-out there (the inner layer's count of one pooled event)."""
        m = _as_map(s_in.detach(), self._in_shape, "SpikingPool2d input")
        if isinstance(self.layer, SpikingConv2d):
            k = self.k
            fan = self.layer.fan_out_map().repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)
            return (m.to(torch.float64) * fan).flatten(1).sum(1)
        return m.flatten(1).sum(1, dtype=torch.float64) * self.layer.weight.shape[1]

    def __setattr__(self, name, value):
        # ``layer.threshold += x`` (trainer) re-assigns the attribute: hand it to the inner layer.
        if name in ("weight", "threshold"):
            setattr(self.layer, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self._in_shape

    def group_spikes(self, s):
        return self.layer.group_spikes(s)

    def peer_spikes(self, s):
        return self.layer.peer_spikes(s)

    def homeostasis(self, s):
        return self.layer.homeostasis(s)

    def weight_matrix(self):
        return self.layer.weight_matrix()

    def synaptic_input(self, s_in: torch.Tensor) -> torch.Tensor:
        return self.layer.synaptic_input(self._pool_step(s_in))

    def received(self, s_in: torch.Tensor, n_events: torch.Tensor) -> torch.Tensor:
        out = self.layer.received(self._pool_step(s_in), n_events)  # pooled input > 0 iff a window spiked
        self._step_cache = None  # received comes last in the step; do not keep the tensors alive
        return out

    def active_fan_in(self, active: torch.Tensor) -> torch.Tensor:
        """m on the pooled synapses: a pooled synapse is active when any neuron of its window is."""
        return self.layer.active_fan_in(self.pool(active.float()) > 0)

    def backprop(self, delta: torch.Tensor) -> torch.Tensor:
        """Inner sum_j W_ji delta_j on the pooled map, spread over each window times 1/K^2."""
        back = self.layer.backprop(delta).reshape(delta.shape[0], *self._pooled)
        k = self.k
        return back.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3) / (k * k)

    def weight_grad(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return self.layer.weight_grad(self.pool(x), delta)

    def extra_repr(self) -> str:
        return f"avg pool {self.k}x{self.k}: {self._in_shape} -> {self._pooled}"


def build_layers(net) -> list[nn.Module]:
    """Dense-engine layers of a layered ``snnbp.model.Network`` (conv, fc, each maybe pooled)."""
    from snnbp.dense.layers import SpikingLinear
    from snnbp.architecture import layer_io_shapes

    specs = net.specs
    cur = net.input_shape
    layers = []
    for sp, (i, o), w, t, k, f in zip(specs, layer_io_shapes(net.input_shape, specs), net.weights, net.thresholds,
                                      net.kappas, net.floors):
        w_t, t_t = torch.from_numpy(w), torch.from_numpy(t)
        layer = SpikingConv2d(w_t, t_t, i, k, f) if sp.kind == "conv" else SpikingLinear(w_t, t_t, k, f)
        layers.append(SpikingPool2d(layer, sp.pool, cur) if sp.pool > 1 else layer)
        cur = o
    return layers
