"""The paper's gradient rule as a torch.autograd.Function over the dense engine's final traces.

Forward: run the dense simulation without a graph (dense/engine.py) and return the max-normalized
output counts o = counts / max_j counts_j (0 for a silent output layer), docs/method.md 3.8.
Backward: given dL/do (for L = mean_b 0.5 |o_b - y_b|^2 that is e_b / B with e = o - y), return
the gradients of every layer's W and V_th with exactly the equations of gradient/lee2016.py
(batched here; tests/test_dense_parity.py holds the two to 1e-5):

  output layer (3.8, 10.4):  delta_i = (g_i / g_bar) dL/do_i             for *all* output neurons
  hidden layer l (eq. 11):   delta_i = (g_i / g_bar) sqrt(M^(l+1) / m^(l+1)) sum_j W^(l+1)[i, j] delta_j
                             for active i (count > 0), else 0; a sample whose layer l is silent has
                             delta = 0 in l and every layer below
                             g_i = 1 / (gamma V_th,i), g_bar = RMS of g over the active neurons of the
                             sample (over all neurons if none is active)
  weights (eq. 12):          dW[k, i] = sum_b sqrt(N / m_b) x_bk delta_bi     (m_b = #{k: x_bk > 0})
  thresholds (eq. 12, 10.1): dV_th,i = -sum_b sqrt(N / (m_b M)) delta_bi a_hat_bi
                             a_hat_i = gamma a_i - sigma kappa sum_{j != i} a_j           (eq. 6)
                             (sign: gradient descent raises V_th of an over-responding neuron)
  samples with m_b = 0 contribute nothing to that layer.

Written per neuron so that a conv layer (dense/conv.py) runs the same code: m is the layer's
``active_fan_in`` (FC: one m_b per sample; conv: m per receptive field, so eq. 11 reads
sum_j W_ji sqrt(M / m_j) delta_j), M = ``fan_in``, N = ``neurons_per_field``, and a threshold
shared by a feature map sums its neurons' terms (``sum_to_size``).

``normalize=False`` drops g / g_bar -> g and the sqrt factors (the plain chain rule of eq. 5).
The weight regularizer (eq. 13) is an ordinary differentiable loss term (``exp_weight_regularizer``),
added by the model for hidden layers; its autograd gradient is lambda beta W_i exp(beta(|W_i|^2 - 1)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from snnbp.dense.engine import DenseForward, run_dense
from snnbp.gradient.lee2016 import EXP_CAP


def max_normalize(counts: torch.Tensor, detach_max: bool = False) -> torch.Tensor:
    """o = counts / max(counts) per sample (B, N); 0 when no output neuron fired (docs/method.md 3.8, 10.4).

    The torch form of gradient.lee2016.output_error's normalization, for every dense rule.
    detach_max: the surrogate-gradient BPTT rule's form: the max is a constant and the counts are
    divided by max(1, max) -- the same values, but a sample whose outputs are all silent still passes
    the gradient of its counts (o = counts there), which BPTT needs to make a silent output fire.
    """
    cmax = counts.max(dim=1, keepdim=True).values
    if detach_max:
        return counts / cmax.detach().clamp(min=1.0)
    return torch.where(cmax > 0, counts / cmax.clamp(min=1.0), torch.zeros_like(counts))


def max_normalized_mse(o: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """0.5 |o - y|^2 per sample (B,), y the one-hot label (docs/method.md 3.8)."""
    y = torch.nn.functional.one_hot(labels, o.shape[1]).to(o.dtype)
    return 0.5 * ((o - y) ** 2).sum(1)


def _norm_gain(th: torch.Tensor, gamma: float, active: torch.Tensor, normalize: bool) -> torch.Tensor:
    """g_i / g_bar (B, N) of eq. 11 (g_bar: RMS over each sample's active neurons, all if none)."""
    g = 1.0 / (gamma * th)  # threshold shape, broadcastable to a neuron (FC (N,), conv (C, 1, 1))
    if not normalize:
        return g.expand(active.shape)
    act = active.to(g.dtype)
    n_act = act.flatten(1).sum(1)
    ms_active = (act * g * g).flatten(1).sum(1) / n_act.clamp(min=1.0)
    ms_all = (g * g).mean().expand_as(ms_active)  # conv: every map has H'W' neurons, so = mean over neurons
    gbar = torch.sqrt(torch.where(n_act > 0, ms_active, ms_all))
    return g / gbar.view(-1, *([1] * (active.ndim - 1)))


def lee2016_deltas(layers, counts: list[torch.Tensor], err: torch.Tensor, gamma: float, normalize: bool) -> list[torch.Tensor]:
    """Deltas (B, N_l) of every layer from the output error ``err`` = dL/do (B, N_L) (eq. 11)."""
    L = len(layers)
    th = [layer.threshold.detach() for layer in layers]
    deltas: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
    deltas[L - 1] = _norm_gain(th[L - 1], gamma, counts[L - 1] > 0, normalize) * err
    alive = torch.ones(err.shape[0], dtype=torch.bool, device=err.device)
    for l in range(L - 2, -1, -1):
        active = counts[l] > 0
        n_act = active.flatten(1).sum(1)
        alive = alive & (n_act > 0)  # a silent layer stops the backward pass for that sample
        gain = _norm_gain(th[l], gamma, active, normalize)
        back = backprop_deltas(layers[l + 1], deltas[l + 1], active, normalize)
        keep = active & alive.view(-1, *([1] * (active.ndim - 1)))
        deltas[l] = torch.where(keep, gain * back, torch.zeros_like(back))
    return deltas


def backprop_deltas(up, d_up: torch.Tensor, active: torch.Tensor, normalize: bool) -> torch.Tensor:
    """sum_j W_ji sqrt(M / m_j) delta_j of eq. 11 for every input i of layer ``up`` (shape of
    ``active``, the mask of the layer below): of the fan-in M of neuron j above, m_j are active."""
    if normalize:
        d_up = d_up * torch.sqrt(up.fan_in / up.active_fan_in(active).clamp(min=1.0))
    return up.backprop(d_up).reshape(active.shape)


def layer_gradients(layer, x: torch.Tensor, a: torch.Tensor, d: torch.Tensor, gamma: float, sigma: float,
                    normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad W, grad V_th) of eq. 12 for one layer from its input traces x, output traces a and deltas d."""
    M, N = layer.fan_in, layer.neurons_per_field
    m = layer.active_fan_in(x > 0).to(x.dtype)  # FC (B, 1); conv (B, 1, H', W')
    has = m > 0
    if normalize:
        cw = torch.where(has, torch.sqrt(N / m.clamp(min=1.0)), torch.zeros_like(m))
        cth = torch.where(has, torch.sqrt(N / (m.clamp(min=1.0) * M)), torch.zeros_like(m))
    else:
        cw = cth = has.to(x.dtype)
    a_hat = gamma * a - sigma * layer.kappa * layer.peer_spikes(a)  # peer_spikes(a) = sum_{j != i} a_j
    return layer.weight_grad(x, d * cw), -(cth * d * a_hat).sum_to_size(layer.threshold.shape)


def lee2016_gradients(layers, res: DenseForward, err: torch.Tensor, gamma: float, sigma: float,
                      normalize: bool = True, shared_grad: str = "sum") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(grad W per layer, grad V_th per layer) of eqs. 11-12 from final traces/counts and dL/do.

    shared_grad = "mean" divides a layer's gradients by its ``replicas`` (H'W' for a conv layer, 1 for
    FC): optim.shared_grad in config.py says why.
    """
    deltas = lee2016_deltas(layers, res.counts, err, gamma, normalize)
    gw, gth = [], []
    for l, layer in enumerate(layers):
        x = res.x_in if l == 0 else res.traces[l - 1]
        w, t = layer_gradients(layer, x, res.traces[l], deltas[l], gamma, sigma, normalize)
        if shared_grad == "mean" and layer.replicas > 1:
            w, t = w / layer.replicas, t / layer.replicas
        gw.append(w)
        gth.append(t)
    return gw, gth


@dataclass
class Lee2016Call:
    """Everything the Function's forward needs besides the parameters; ``result`` is set by forward."""

    layers: list
    inp: object  # DenseInput
    neuron: object  # NeuronParams
    train: bool = False
    rho: float = 0.0
    normalize: bool = True
    readout_ms: object = None
    shared_grad: str = "sum"  # optim.shared_grad
    # simulate(call) -> DenseForward replaces the dense simulation (the event engine's forward pass for
    # layered networks, train/dense_trainer.py); inp is then whatever it reads (an EventBatch)
    simulate: object = None
    result: DenseForward | None = field(default=None, repr=False)


class Lee2016Function(torch.autograd.Function):
    """o = max-normalized output counts of the dense simulation; backward = the paper's rule.

    apply(call, W_0, V_th_0, W_1, V_th_1, ...): the parameters are passed explicitly so autograd
    routes their gradients; ``call.layers`` hold the same tensors.
    """

    @staticmethod
    def forward(ctx, call: Lee2016Call, *params):
        if call.simulate is not None:
            res = call.simulate(call)
        else:
            res = run_dense(call.layers, call.inp, call.neuron, train=call.train, rho=call.rho, readout_ms=call.readout_ms)
        call.result = res
        ctx.call = call
        ctx.save_for_backward(res.x_in, *res.traces, *res.counts)
        return max_normalize(res.counts[-1])

    @staticmethod
    def backward(ctx, grad_o):
        call = ctx.call
        L = len(call.layers)
        saved = ctx.saved_tensors
        res = DenseForward(saved[0], list(saved[1:1 + L]), list(saved[1 + L:1 + 2 * L]), [], [], None, None, None)
        gw, gth = lee2016_gradients(call.layers, res, grad_o, call.neuron.gamma, call.neuron.sigma, call.normalize,
                                    call.shared_grad)
        grads = []
        for w, t in zip(gw, gth):
            grads += [w, t]
        return (None, *grads)


@dataclass(frozen=True)
class Lee2016Rule:
    """The paper's rule (Lee et al. 2016, section 4): no graph over time, gradients from final traces.

    Output for the loss: o = max-normalized counts; loss per sample 0.5 |o - y|^2 (docs/method.md 3.8).
    normalize: eq. 11-12 error normalization (False: plain chain rule).
    """

    normalize: bool = True
    name: str = "lee2016"
    shared_grad: str = "sum"  # optim.shared_grad (conv layers only)

    def forward(self, model, inp, *, train: bool, rho: float, readout_ms=None):
        call = Lee2016Call(list(model.layers), inp, model.neuron, train, rho, self.normalize, readout_ms,
                           shared_grad=self.shared_grad)
        params = [p for layer in model.layers for p in (layer.weight, layer.threshold)]
        o = Lee2016Function.apply(call, *params)
        return o, call.result

    def sample_loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """0.5 |o - y|^2 per sample (B,)."""
        return max_normalized_mse(out, labels)


def exp_weight_regularizer(weight: torch.Tensor, lam: float, beta: float) -> torch.Tensor:
    """sum_i 0.5 lambda exp(beta (sum_k W[k, i]^2 - 1)) (eq. 13); one neuron per column of W.

    Beyond z = beta (|W_i|^2 - 1) = EXP_CAP the exponential is continued linearly (value and slope
    match at the cap): the overflow policy of gradient.lee2016.regularization_from_norms, so both
    engines apply the same regularizer everywhere.
    """
    if lam <= 0.0:
        return weight.new_zeros(())
    z = beta * ((weight * weight).sum(0) - 1.0)
    capped = z.clamp(max=EXP_CAP)
    return 0.5 * lam * (torch.exp(capped) * (1.0 + (z - capped))).sum()




def exp_weight_coefficients(weight: torch.Tensor, lam: float, beta: float) -> torch.Tensor:
    """c_i = lambda beta exp(min(z_i, EXP_CAP)), z_i = beta (|W_i|^2 - 1): the slope factor of
    ``exp_weight_regularizer`` (its gradient is c_i W_i), one per column of W, no graph."""
    with torch.no_grad():
        z = beta * ((weight * weight).sum(0) - 1.0)
        return lam * beta * torch.exp(z.clamp(max=EXP_CAP))
