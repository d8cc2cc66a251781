"""The conventional network of a preset's shape: ReLU MLP or CNN in PyTorch, and its MACs per sample.

model.hidden = [800] on 784 inputs gives Linear(784, 800) - ReLU - Linear(800, 10): the SNN's
784-800-10 with its spiking neurons replaced by rectified linear units (the rate model of eq. 5
without WTA is a thresholded ReLU, docs/method.md 3.3). model.layers (conv:C:K, pool:K, fc:N on
model.input_shape) gives Conv2d(C_in, C, K) - ReLU per conv, AvgPool2d(K) per pool (the SNN's
average pooling, so both networks have one shape), Linear - ReLU per fc, the last fc without ReLU.
Initialization is PyTorch's default (the paper's eqs. 9-10 exist for spiking thresholds).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from snnbp.architecture import describe_layers, layer_io_shapes, parse_layers
from snnbp.metrics.operations import ann_macs


def build_ann(model_cfg, n_inputs: int, seed: int = 0) -> nn.Module:
    """nn.Module mapping (B, n_inputs) float inputs to (B, 10) logits, for a ModelConfig's shape."""
    torch.manual_seed(seed)
    if not model_cfg.layers:
        sizes = [n_inputs, *model_cfg.hidden, 10]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(nn.ReLU())
        return nn.Sequential(*mods)
    shape = tuple(model_cfg.input_shape)
    specs = parse_layers(model_cfg.layers, "model.layers")
    mods = [nn.Unflatten(1, shape)]
    flat = False
    for k, (sp, (i, o)) in enumerate(zip(specs, layer_io_shapes(shape, specs))):
        last = k == len(specs) - 1
        if sp.pool > 1:
            mods.append(nn.AvgPool2d(sp.pool))
        if sp.kind == "conv":
            mods += [nn.Conv2d(i[0], sp.size, sp.kernel), nn.ReLU()]
        else:
            if not flat:
                mods.append(nn.Flatten())
                flat = True
            mods.append(nn.Linear(math.prod(i), sp.size))
            if not last:
                mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def macs_per_sample(model_cfg, n_inputs: int) -> int:
    """Multiply-accumulates of one forward pass (metrics/operations.ann_macs)."""
    if model_cfg.layers:
        return ann_macs(n_inputs, input_shape=tuple(model_cfg.input_shape), layers=list(model_cfg.layers))
    return ann_macs(n_inputs, list(model_cfg.hidden), 10)


def describe(model_cfg, n_inputs: int) -> str:
    """784-800-10 ReLU MLP, or 1x28x28-20C5-P2-50C5-P2-200-10 ReLU CNN (architecture.describe_layers)."""
    if not model_cfg.layers:
        return "-".join(map(str, [n_inputs, *model_cfg.hidden, 10])) + " ReLU MLP"
    return describe_layers(tuple(model_cfg.input_shape), parse_layers(model_cfg.layers, "model.layers")) + " ReLU CNN"
