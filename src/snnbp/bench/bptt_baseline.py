"""Surrogate-gradient BPTT baseline: the usual time-stepped way to train the same spiking network.

This is the comparison point of `snnbp bench` (benchmarks/README.md), written idiomatically (the way an
snnTorch or Norse user writes it), not artificially slowed:

  * input: time-major (T, B, P) float32 frames from per-pixel Poisson encoding at dt = 1 ms, total
    rate 5,000 events/s per image (the same process as ``snnbp.data.poisson.poisson_events``, binned
    into time steps; a frame entry is the event count of that pixel in that step, almost always 0/1);
  * network: fully connected LIF layers (``nn.Linear`` without bias), leak beta = exp(-dt/tau)
    (tau = 20 ms), V[t] = beta V[t-1] + W x[t] - reset, spike = H(V - V_th), reset by subtraction
    of V_th; the reset term is detached from the graph (snnTorch's default); fixed thresholds;
  * surrogate: fast sigmoid, dS/dV = 1 / (1 + slope |V - V_th| / V_th)^2, slope = 25 (snnTorch's
    ``surrogate.fast_sigmoid`` default), i.e. applied to the threshold-normalized membrane;
  * loss: cross-entropy on the output spike counts summed over the T steps (snnTorch's
    ``ce_count_loss``); optimizer: Adam, lr 1e-3, batch 100.

Initialization follows snnbp (``Network.create``): W ~ U[+-sqrt(3/M)], V_th = alpha sqrt(3/M) per
layer (alpha = 3), so the network starts with the same activity as the event engine's.

The full graph of all T steps is kept until ``backward``: memory grows linearly with T (this is
what the benchmark measures against the event engine's O(neurons + synapses) state).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class _FastSigmoidSpike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid derivative backward (Zenke & Ganguli 2018, snnTorch default)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, slope: float) -> torch.Tensor:  # u = (V - V_th) / V_th
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad_out / (1.0 + ctx.slope * u.abs()) ** 2, None


spike_fn = _FastSigmoidSpike.apply


class BPTTNet(nn.Module):
    """Fully connected LIF network trained by backpropagation through time.

    sizes: [n_in, hidden..., n_out] (e.g. [784, 800, 10]); tau_ms, dt_ms: leak exp(-dt/tau);
    alpha: threshold multiplier of the snnbp init (V_th = alpha sqrt(3/M)); slope: surrogate slope.
    ``forward(frames (T, B, n_in))`` returns the output spike counts (B, n_out) summed over T.
    """

    def __init__(self, sizes: list[int], tau_ms: float = 20.0, dt_ms: float = 1.0, alpha: float = 3.0,
                 slope: float = 25.0, seed: int | None = 0):
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"BPTTNet needs [n_in, ..., n_out], got {sizes}")
        self.sizes = list(sizes)
        self.beta = math.exp(-dt_ms / tau_ms)
        self.slope = float(slope)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.layers = nn.ModuleList()
        th = []
        for m, n in zip(sizes[:-1], sizes[1:]):
            lin = nn.Linear(m, n, bias=False)
            bound = math.sqrt(3.0 / m)
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=gen)
            self.layers.append(lin)
            th.append(alpha * bound)
        self.register_buffer("thresholds", torch.tensor(th, dtype=torch.float32))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        T, B = frames.shape[0], frames.shape[1]
        th = [float(v) for v in self.thresholds]
        mems = [frames.new_zeros(B, lin.out_features) for lin in self.layers]
        counts = frames.new_zeros(B, self.sizes[-1])
        for t in range(T):
            x = frames[t]
            for l, lin in enumerate(self.layers):
                mem = self.beta * mems[l] + lin(x)
                spk = spike_fn((mem - th[l]) / th[l], self.slope)
                mems[l] = mem - spk.detach() * th[l]  # reset by subtraction (detached, as snnTorch)
                x = spk
            counts = counts + x
        return counts


def poisson_frames(images_uint8: np.ndarray | torch.Tensor, T: int, dt_ms: float = 1.0, rate_hz: float = 5000.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-pixel Poisson encoding binned at dt: (B, P) intensities -> (T, B, P) float32 event counts.

    Pixel p fires at rate rate_hz * I_p / sum_q I_q, so each image emits rate_hz events/s in total
    (the same process as snnbp's event input); an all-zero image emits nothing.
    """
    img = torch.as_tensor(np.asarray(images_uint8) if not torch.is_tensor(images_uint8) else images_uint8)
    img = img.to(torch.float32)
    if img.ndim != 2:
        raise ValueError(f"poisson_frames expects (B, P) images, got shape {tuple(img.shape)}")
    total = img.sum(dim=1, keepdim=True)
    mean = torch.where(total > 0, img / total.clamp_min(1e-12), torch.zeros_like(img)) * (rate_hz * dt_ms / 1000.0)
    return torch.poisson(mean.unsqueeze(0).expand(T, -1, -1).contiguous(), generator=generator)


def train_step(net: BPTTNet, optimizer: torch.optim.Optimizer, frames: torch.Tensor, labels: torch.Tensor) -> float:
    """One BPTT step: forward over all T steps, cross-entropy on output spike counts, backward, update."""
    optimizer.zero_grad(set_to_none=True)
    counts = net(frames)
    loss = nn.functional.cross_entropy(counts, torch.as_tensor(labels, dtype=torch.int64))
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def predict(net: BPTTNet, frames: torch.Tensor) -> torch.Tensor:
    """argmax of output spike counts (no graph is kept)."""
    return net(frames).argmax(dim=1)


def make_optimizer(net: BPTTNet, lr: float = 1e-3) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=lr)
