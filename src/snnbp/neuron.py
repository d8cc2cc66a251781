"""Pure neuron math of the paper's leaky integrate-and-fire neuron, shared by every engine.

Units: neuron time constants in milliseconds in configs, microseconds inside the engines (event
timestamps are microseconds). Every function here is a scalar numba-compiled function so that the
event engine inlines it; the dense (PyTorch) engine calls the tensor forms at the bottom, which are
tested against these scalar forms.

Lee, Delbruck & Pfeiffer (2016), section 3.1-3.2 of the preprint (docs/method.md section 2):
  decay:       V(t_p) = V(t_{p-1}) * exp(-(t_p - t_{p-1}) / tau_mp) + w_i * w_dyn        (eq. 1)
  refractory:  w_dyn = min(1, w_d0 + (dt / T_ref)^2)  if dt < T_ref else 1,  dt = t_p - t_out
               (dt is time since the neuron's own last spike; docs/method.md section 10 item 2)
  reset:       V >= V_th  ->  spike, V <- V - gamma * V_th                                 (eq. 2)
  inhibition:  a spike of neuron j adds kappa * V_th,i to every other neuron i of a WTA layer
  clip:        V <- max(V, -V_th)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class NeuronParams:
    """Constants of the LIF neuron (docs/method.md table 5).

    tau_mp_ms: membrane (and trace) time constant; 20 ms for MNIST, 200 ms for N-MNIST.
    t_ref_ms:  soft refractory period of the dynamic weight (1 ms).
    w_d0:      dynamic weight right after a spike (0).
    gamma:     reset by subtraction of gamma * V_th (1 in every result of the paper).
    sigma:     expected efficacy of lateral inhibition, used only by the backward pass (0.5).
    """

    tau_mp_ms: float = 20.0
    t_ref_ms: float = 1.0
    w_d0: float = 0.0
    gamma: float = 1.0
    sigma: float = 0.5

    @property
    def tau_us(self) -> float:
        return self.tau_mp_ms * 1000.0

    @property
    def t_ref_us(self) -> float:
        return self.t_ref_ms * 1000.0


@numba.njit(cache=True, inline="always")
def decay_factor(dt_us: float, tau_us: float) -> float:
    """exp(-dt / tau): the membrane and every trace decay by this between events (eq. 1)."""
    return math.exp(-dt_us / tau_us)


@numba.njit(cache=True, inline="always")
def refractory_weight(dt_since_spike_us: float, t_ref_us: float, w_d0: float) -> float:
    """Dynamic weight w_dyn multiplying all inputs of a neuron (docs/method.md 2.2).

    Recovers quadratically from w_d0 to 1 over T_ref after the neuron's own spike; capped at 1.
    """
    if dt_since_spike_us >= t_ref_us:
        return 1.0
    w = w_d0 + (dt_since_spike_us / t_ref_us) ** 2
    return 1.0 if w > 1.0 else w


# ---- initialization (eqs. 9-10) -------------------------------------------------------------

@numba.njit(cache=True)
def spread_above_floor(th64, floor, refused, n_open):
    """Homeostasis at the threshold floor (docs/method.md 4.4): take ``refused`` (what the floor
    refused some neurons) from the n_open neurons still above the floor, in equal shares capped at
    each one's distance to it (water-filling, a few passes at most), so the layer's threshold sum is
    conserved unless every neuron reaches the floor. th64 (N,) float64, modified in place."""
    N = th64.shape[0]
    for _ in range(16):
        if refused <= 0.0 or n_open == 0:
            break
        share = refused / n_open
        taken = 0.0
        n_open = 0
        for i in range(N):
            room = th64[i] - floor
            d = share if share < room else (room if room > 0.0 else 0.0)
            th64[i] -= d
            taken += d
            n_open += np.int32(room - d > 0.0)
        refused -= taken


def init_weight_bound(fan_in: int) -> float:
    """sqrt(3 / M): weights ~ U[-b, b] give E[w^2] = 1/M, so E[sum_j w_ij^2] = 1 (eq. 9)."""
    return math.sqrt(3.0 / fan_in)


def init_weights(fan_in: int, n_out: int, rng: np.random.Generator) -> np.ndarray:
    """Weights (fan_in, n_out) float32 ~ U[-sqrt(3/M), sqrt(3/M)] (eq. 9).

    Layout convention of snnbp: W[k, i] is the synapse from input k to neuron i, so the weights an
    input event touches are the contiguous row W[k] (what the event engine reads per event).
    """
    b = init_weight_bound(fan_in)
    return rng.uniform(-b, b, size=(fan_in, n_out)).astype(np.float32)


def init_thresholds(fan_in: int, n_out: int, alpha: float) -> np.ndarray:
    """Thresholds (n_out,) float64 = alpha * sqrt(3/M) with alpha in [3, 10] (eq. 10).

    The value is rounded to float32 first, so a network starts from the thresholds it had when they
    were stored in float32 (same seeds, same initial spikes as earlier records).
    """
    return np.full(n_out, np.float32(alpha * init_weight_bound(fan_in)), dtype=np.float64)


# ---- tensor forms for the dense engine --------------------------------------------------------

def refractory_weight_tensor(dt_since_spike_us, t_ref_us: float, w_d0: float):
    """Tensor version of ``refractory_weight`` (works on torch tensors and numpy arrays)."""
    w = w_d0 + (dt_since_spike_us / t_ref_us) ** 2
    w = w.clip(max=1.0) if hasattr(w, "clip") else min(w, 1.0)
    return w * (dt_since_spike_us < t_ref_us) + 1.0 * (dt_since_spike_us >= t_ref_us)
