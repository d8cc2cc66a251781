"""Dense engine: the paper's neuron on a time grid of step dt, mini-batches, CPU or CUDA (PyTorch).

Per step n (time t_n = n dt, input = the events of bin n, dense/frames.py), layers in sequence
(layer l+1 sees layer l's spikes of the same step, no synaptic delay, as in the event engine), every
neuron i of a layer, with the step numbers of event_engine/kernels.py:

  1. decay:      V_i <- V_i exp(-dt / tau_mp)                                    (eq. 1)
  2. integrate:  V_i <- V_i + w_dyn,i(t_n) sum_k W[k, i] s_k     (s: input spike counts of the step;
                 w_dyn = neuron.refractory_weight_tensor(t_n - t_last_spike), docs/method.md 2.2)
     clip:       V_i <- max(V_i, -V_th,i)
  3. spike:      s_i = [V_i >= V_th,i] if the neuron received an input event this step, else 0
                 (at most one spike per neuron per step); reset V_i <- V_i - gamma V_th,i s_i (eq. 2)
  4. WTA:        V_i <- V_i + kappa V_th,i (n_s - s_i)                           (eq. 4)
  5. clip:       V_i <- max(V_i, -V_th,i)
  6. homeostasis (training only, docs/method.md 4.4): V_th,i += rho N s_i - rho n_s, never below the
                 floor, what the floor refuses taken from the others (zero sum, redistribute_refused);
                 the refused decrement accumulates in ``unmet`` (the layer's ``homeostasis``
                 gives the change; a conv layer's is per feature map, dense/conv.py).
  traces (3.1): x_k <- x_k exp(-dt/tau) + s_k (inputs), a_i <- a_i exp(-dt/tau) + s_i (neurons),
                read at each sample's t_end (dense/frames.py); counts_i += s_i.

Where the grid differs from the event engine (all vanish as dt -> 0 except the last two, which
need simultaneous spikes; tests/test_dense_parity.py measures the total effect per dt):
  * events move to the start of their bin (up to dt earlier);
  * events of one bin are summed into one current with one threshold test, and a neuron spikes at
    most once per step (the event engine tests once per input event);
  * the refractory weight is evaluated at step times: with dt >= T_ref it is always 1;
  * homeostasis acts once per step with n_s = spikes of the step, instead of once per input event;
    the summed change is identical, only its timing within the step differs;
  * spikes of layer l in one step reach layer l+1 as one summed input (the event engine delivers
    them one by one, so a neuron of layer l+1 may fire more than once per input event there).

No autograd graph is kept by ``run_dense`` (torch.no_grad): state is O(B x (inputs + neurons)),
whatever T. ``simulate`` with a differentiable ``spike_fn`` is the same step with the graph kept:
the surrogate-gradient BPTT variant (dense/bptt.py). One step, two uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from snnbp.dense.frames import DenseInput
from snnbp.errors import ConfigError
from snnbp.neuron import NeuronParams, refractory_weight_tensor

SpikeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def heaviside(v: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
    """s = [V >= V_th] as float (the engine's spike; no gradient)."""
    return (v >= th).to(v.dtype)


@dataclass
class DenseForward:
    """What one presentation leaves behind; field names of event_engine.engine.ForwardResult, torch tensors.

    x_in (B, M_0), traces per layer (B, N_l): traces at t_end; counts per layer (B, N_l) float32
    holding integers (for BPTT counts[-1] carries the graph); dth, unmet per layer (B, *V_th shape);
    synops (B,) float64 (event-engine synaptic operations: each input event times its fan-out);
    readout_counts (B, R, N_L), readout_synops (B, R) at the readout times; lateral_ops (B,) and
    readout_lateral (B, R): lateral-inhibition updates (WTA spikes x (group size - 1)).
    """

    x_in: torch.Tensor
    traces: list[torch.Tensor]
    counts: list[torch.Tensor]
    dth: list[torch.Tensor]
    unmet: list[torch.Tensor]
    synops: torch.Tensor
    readout_counts: torch.Tensor
    readout_synops: torch.Tensor
    lateral_ops: torch.Tensor | None = None
    readout_lateral: torch.Tensor | None = None

    @property
    def output_counts(self) -> torch.Tensor:
        return self.counts[-1]

    def predictions(self) -> torch.Tensor:
        """argmax of output counts; ties (and all-silent outputs) go to the lowest index (as events)."""
        return self.output_counts.detach().argmax(dim=1)

    def to_numpy(self):
        """The same numbers as an event_engine.engine.ForwardResult (numpy, counts int32, synops int64)."""
        from snnbp.event_engine.engine import ForwardResult

        f = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        i32 = lambda t: t.detach().cpu().round().to(torch.int32).numpy()  # noqa: E731
        i64 = lambda t: t.detach().cpu().round().to(torch.int64).numpy()  # noqa: E731
        return ForwardResult(f(self.x_in), [f(a) for a in self.traces], [i32(c) for c in self.counts],
                             [f(d) for d in self.dth], [f(u) for u in self.unmet], i64(self.synops),
                             i32(self.readout_counts), i64(self.readout_synops), i64(self.lateral_ops),
                             i64(self.readout_lateral))


class _LayerState:
    """Per-layer state, (B, N): membrane, time of last spike (ms, only when the refractory period is
    longer than dt), counts, traces; (B, *threshold shape): homeostatic threshold change and refused
    decrement (the same as (B, N) for a fully connected layer; (B, C, 1, 1) for a conv layer)."""

    def __init__(self, layer, B: int, device, track_refractory: bool):
        shape = (B, *layer.out_shape)
        z = lambda: torch.zeros(shape, device=device)  # noqa: E731
        self.V, self.counts, self.a, self.a_end = z(), z(), z(), z()
        th_shape = (B, *layer.threshold.shape)
        self.dth, self.unmet = torch.zeros(th_shape, device=device), torch.zeros(th_shape, device=device)
        self.last = torch.full(shape, -math.inf, device=device) if track_refractory else None


def layer_step(layer, st: _LayerState, s_in: torch.Tensor, n_ev: torch.Tensor, t_ms: float, decay: float,
               neuron: NeuronParams, spike_fn: SpikeFn, detach_reset: bool, train: bool, rho: float) -> torch.Tensor:
    """Advance one layer by one step (steps 1-6 of the module doc); returns its spikes s (B, N).

    Two forms of the same update: in place when no autograd graph is recorded (the paper's rule and
    evaluation: no per-step allocation of (B, N) temporaries, ~3x faster on the CPU for conv maps,
    benchmarks/README.md), with fresh tensors when it is (the BPTT variant needs every step's V).
    tests/test_dense_trainer.py (fully connected) and tests/test_dense_conv.py (conv, WTA, homeostasis)
    hold the two to the same forward pass.
    """
    graph = torch.is_grad_enabled()
    # sample-local thresholds; dth never carries a graph (V_th does for BPTT)
    th = (layer.threshold if graph else layer.threshold.detach()) + st.dth
    current = layer.synaptic_input(s_in)
    if st.last is not None:
        current = current * refractory_weight_tensor(t_ms - st.last, neuron.t_ref_ms, neuron.w_d0)
    received = layer.received(s_in, n_ev)
    if graph:
        v = torch.maximum(st.V * decay + current, -th)
        s = spike_fn(v, th) * received
        v = v - neuron.gamma * th * (s.detach() if detach_reset else s)
        if layer.kappa != 0.0:
            v = torch.maximum(v + layer.kappa * th * layer.peer_spikes(s), -th)
        st.V = v
        st.counts = st.counts + s
    else:
        neg_th = -th
        v = st.V.mul_(decay).add_(current)
        torch.maximum(v, neg_th, out=v)
        s = spike_fn(v, th).mul_(received)
        v.addcmul_(th, s, value=-neuron.gamma)
        if layer.kappa != 0.0:  # kappa V_th (n_s - s_i) = kappa V_th peer_spikes
            v.addcmul_(th, layer.peer_spikes(s), value=layer.kappa)
            torch.maximum(v, neg_th, out=v)
        st.counts.add_(s)
    with torch.no_grad():
        sd = s.detach()
        st.a.mul_(decay).add_(sd)
        if st.last is not None:
            st.last.masked_fill_(sd > 0, t_ms)
        if train and rho > 0.0:
            inc, fired = layer.homeostasis(sd)  # FC: N s_i - n_s, n_s > 0
            new = st.dth + rho * inc
            lowest = layer.floor - layer.threshold.detach()  # V_th + dth >= floor  <=>  dth >= floor - V_th
            short = (lowest - new).clamp(min=0.0) * fired  # as events: only when something fired
            st.unmet = st.unmet + short
            st.dth = redistribute_refused(new + short, lowest, short)
    return s


def redistribute_refused(dth: torch.Tensor, lowest: torch.Tensor, refused: torch.Tensor, passes: int = 4) -> torch.Tensor:
    """Take the decrement the floor refused from the group's thresholds still above it (zero sum).

    dth (B, *th): threshold changes already clipped at the floor (dth >= lowest = floor - V_th);
    refused (B, *th): what the clip refused. Water-filling as event_engine.kernels._homeostasis: equal
    shares over the neurons with room, capped at each one's distance to the floor, a few passes.
    The group is the whole threshold tensor of a sample (a layer's neurons; a conv layer's maps).
    """
    B = dth.shape[0]
    ones = (1,) * (dth.dim() - 1)
    left = refused.flatten(1).sum(1)
    for _ in range(passes):
        room = (dth - lowest).clamp(min=0.0)
        n_open = (room > 0).flatten(1).sum(1).clamp(min=1)
        take = torch.minimum(room, (left / n_open).view(B, *ones))
        dth = dth - take
        left = (left - take.flatten(1).sum(1)).clamp(min=0.0)
    return dth


def simulate(layers: Sequence, inp: DenseInput, neuron: NeuronParams, *, train: bool = False, rho: float = 0.0,
             readout_ms: np.ndarray | None = None, spike_fn: SpikeFn = heaviside,
             detach_reset: bool = True) -> DenseForward:
    """Run every step of ``inp`` through ``layers``; the graph is kept only if the caller enables grad."""
    if not layers:
        raise ConfigError("the dense network has no layers")
    if inp.n_inputs != math.prod(layers[0].in_shape):
        raise ConfigError(f"the input has {inp.n_inputs} channels but the first layer expects {math.prod(layers[0].in_shape)}; "
                          "bin the events with the network's n_inputs")
    B, dt, dev = inp.batch_size, inp.dt_ms, inp.device
    decay = math.exp(-dt / neuron.tau_mp_ms)
    refr = neuron.t_ref_ms > dt  # w_dyn < 1 needs t - t_spike < T_ref, and t - t_spike >= dt on the grid
    states = [_LayerState(layer, B, dev, refr) for layer in layers]
    x = torch.zeros(B, inp.n_inputs, device=dev)
    x_end = torch.zeros_like(x)
    synops = torch.zeros(B, dtype=torch.float64, device=dev)
    lateral = torch.zeros(B, dtype=torch.float64, device=dev)
    T = inp.n_steps
    end_at = np.minimum(inp.end_step, T - 1)  # step after which each sample's traces are read
    end_masks = {int(n): torch.from_numpy(end_at == n).to(dev).unsqueeze(1) for n in np.unique(end_at)}
    alive_from = int(inp.end_step.min()) if B else 0  # frames past a sample's t_end are masked
    mask_input = inp.is_tensor  # binned events never hold input after t_end; user frames might
    end_step_t = torch.from_numpy(inp.end_step).to(dev)
    R = 0 if readout_ms is None else len(readout_ms)
    n_out = layers[-1].out_shape
    ro_counts = torch.zeros((B, R, *n_out), device=dev)
    ro_synops = torch.zeros((B, R), dtype=torch.float64, device=dev)
    ro_lateral = torch.zeros((B, R), dtype=torch.float64, device=dev)
    if R:
        r_step = np.floor(np.asarray(readout_ms, np.float64)[None, :] / dt + 1e-9).astype(np.int64) - inp.origin_step[:, None]
        r_step = np.minimum(r_step, T - 1)  # readouts after the last step see the final counts
        ro_masks = {int(n): torch.from_numpy(r_step == n).to(dev) for n in np.unique(r_step) if n >= 0}
    for n, frame in enumerate(inp.steps()):
        if n >= T:
            break
        t_ms = n * dt
        if mask_input and n > alive_from:
            frame = frame * (n <= end_step_t).unsqueeze(1).to(frame.dtype)
        with torch.no_grad():
            x.mul_(decay).add_(frame)
        s = frame
        for layer, st in zip(layers, states):
            n_ev = s.detach().flatten(1).sum(1)
            with torch.no_grad():
                synops += layer.synaptic_ops(s)
            s = layer_step(layer, st, s, n_ev, t_ms, decay, neuron, spike_fn, detach_reset, train, rho)
            with torch.no_grad():
                if layer.ops_per_wta_spike:
                    lateral += s.detach().flatten(1).sum(1, dtype=torch.float64) * layer.ops_per_wta_spike
        with torch.no_grad():
            m = end_masks.get(n)
            if m is not None:
                x_end = torch.where(m, x, x_end)
                for st in states:
                    st.a_end = torch.where(m.view(B, *([1] * (st.a.ndim - 1))), st.a, st.a_end)
            if R and n in ro_masks:
                rm = ro_masks[n]
                ro_counts = torch.where(rm.view(B, R, *([1] * len(n_out))), states[-1].counts.detach().unsqueeze(1), ro_counts)
                ro_synops = torch.where(rm, synops.unsqueeze(1), ro_synops)
                ro_lateral = torch.where(rm, lateral.unsqueeze(1), ro_lateral)
    # Decay each snapshot from its step to t_end exactly: exp(-(t_end - n_end dt) / tau).
    residual = np.clip(inp.t_end_ms - end_at * dt, 0.0, None)
    fac = torch.from_numpy(np.exp(-residual / neuron.tau_mp_ms).astype(np.float32)).to(dev).unsqueeze(1)
    return DenseForward(
        x_in=x_end * fac,
        traces=[st.a_end * fac.view(B, *([1] * (st.a.ndim - 1))) for st in states],
        counts=[st.counts if i == len(states) - 1 else st.counts.detach() for i, st in enumerate(states)],
        dth=[st.dth for st in states],
        unmet=[st.unmet for st in states],
        synops=synops,
        readout_counts=ro_counts,
        readout_synops=ro_synops,
        lateral_ops=lateral,
        readout_lateral=ro_lateral,
    )


def run_dense(layers: Sequence, inp: DenseInput, neuron: NeuronParams, *, train: bool = False, rho: float = 0.0,
              readout_ms: np.ndarray | None = None) -> DenseForward:
    """The dense engine without any autograd graph (memory independent of the number of steps)."""
    with torch.no_grad():
        return simulate(layers, inp, neuron, train=train, rho=rho, readout_ms=readout_ms)
