"""Input of the dense engine: events binned on a time grid of step dt, streamed one step at a time.

Discretization (documented here once; tests/test_dense_parity.py measures its effect):

  * Step n of the grid covers [n dt, (n+1) dt); an event at time t (microseconds) goes to bin
    n = floor(t / dt). The dense engine processes step n at time t_n = n dt, so every event is moved
    *earlier* by t - n dt in [0, dt) (dt / 2 on average). A frame entry is the number of events of
    that channel in that bin (usually 0 or 1; several events of one bin are summed into one
    input current and one threshold test).
  * A sample's traces are read at its own t_end: the engine snapshots them after step
    n_end = floor(t_end / dt) and decays the snapshot by exp(-(t_end - n_end dt) / tau) (exact).
    Events at t <= t_end are all in steps <= n_end, as in the event engine.
  * ``from_events`` shifts each sample by a whole number of steps so that its grid starts at the
    bin of its first event (origin_step = floor(t_first / dt)): the neuron is time-invariant and
    starts at rest, so this changes nothing except that no empty leading steps are simulated
    (N-MNIST training crops start anywhere in a 300 ms recording). Readout times stay absolute.

Frames are built per step on the target device from the events sorted by step, so memory is
O(B x P + events), not O(T x B x P): a 1 s test presentation at dt = 1 ms of 1,000 MNIST samples
would otherwise be 3 GB of frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from snnbp.data.events import EventBatch
from snnbp.errors import ConfigError


def check_dt(dt_ms: float) -> float:
    """dt must be a positive finite number of milliseconds."""
    try:
        dt = float(dt_ms)
    except (TypeError, ValueError):
        dt = float("nan")
    if not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt_ms={dt_ms!r} is not a positive time step; set train.dt_ms to a positive value in ms, e.g. 1.0")
    return dt


def resolve_device(device: str | torch.device) -> torch.device:
    """torch.device for ``device``; CUDA requested on a machine without it is a ConfigError."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"train.device={device!r} is not a device; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' but this machine has no usable CUDA device "
                          "(torch.cuda.is_available() is False); set train.device=cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.device={device!r} is not supported; use 'cpu' or 'cuda'")
    return dev


@dataclass
class DenseInput:
    """A batch on the time grid: T steps of (B, P) frames, plus when to read each sample's traces.

    t_end_ms:    (B,) float64, time of the trace readout relative to the grid origin (step n at n dt)
    origin_step: (B,) int64, absolute index of the grid origin (0 unless shifted, see module doc);
                 absolute readout time r maps to step floor(r / dt) - origin_step
    """

    n_steps: int
    batch_size: int
    n_inputs: int
    dt_ms: float
    t_end_ms: np.ndarray
    origin_step: np.ndarray
    end_step: np.ndarray  # (B,) int64: step after which the traces are read, floor(t_end / dt)
    device: torch.device
    _frames: torch.Tensor | None = None  # (T, B, P), when given as a tensor
    _events: tuple | None = None  # (flat index sorted by step, step boundaries), when built from events

    @staticmethod
    def from_frames(frames: torch.Tensor, dt_ms: float, t_end_ms=None, n_inputs: int | None = None) -> "DenseInput":
        """Wrap time-major frames (T, B, P); traces are read at t_end (default: the last step, (T-1) dt)."""
        dt = check_dt(dt_ms)
        if not torch.is_tensor(frames) or frames.ndim != 3:
            shape = tuple(frames.shape) if hasattr(frames, "shape") else type(frames).__name__
            raise ConfigError(f"dense input frames have shape {shape}; pass a time-major (T, B, P) tensor")
        T, B, P = frames.shape
        if n_inputs is not None and P != n_inputs:
            raise ConfigError(f"dense input frames have P={P} channels but the network has {n_inputs} inputs; "
                              "bin the events with n_inputs equal to the network's input size")
        t_end = np.full(B, (T - 1) * dt) if t_end_ms is None else np.asarray(t_end_ms, np.float64).reshape(-1)
        if t_end.shape != (B,):
            raise ConfigError(f"t_end_ms has {t_end.size} entries for a batch of {B} samples; give one per sample")
        if np.any(t_end < 0):
            raise ConfigError("t_end_ms must be >= 0 (time of the trace readout from the first step)")
        end_step = np.floor(t_end / dt + 1e-9).astype(np.int64)  # 1e-9: (T-1) dt / dt must give T-1
        return DenseInput(T, B, P, dt, t_end, np.zeros(B, np.int64), end_step, frames.device, _frames=frames)

    @staticmethod
    def from_events(batch: EventBatch, n_inputs: int, dt_ms: float, device="cpu", align_start: bool = True) -> "DenseInput":
        """Bin a CSR event batch (module doc); frames are produced one step at a time by ``steps()``."""
        dt = check_dt(dt_ms)
        try:
            batch.validate(n_inputs)
        except ValueError as err:
            raise ConfigError(f"{err}") from None
        dt_us = dt * 1000.0
        B = len(batch)
        counts = np.diff(batch.offsets)
        sample = np.repeat(np.arange(B, dtype=np.int64), counts)
        step_abs = np.floor(batch.times_us / dt_us).astype(np.int64)
        origin = np.zeros(B, np.int64)
        if align_start:
            nonempty = counts > 0
            origin[nonempty] = step_abs[batch.offsets[:-1][nonempty]]
        step = step_abs - origin[sample]
        end_step = np.floor(batch.t_end_us / dt_us).astype(np.int64) - origin
        T = int(end_step.max()) + 1 if B else 0
        t_end_ms = batch.t_end_us / 1000.0 - origin * dt
        order = np.argsort(step, kind="stable")
        flat = (sample * n_inputs + batch.channels.astype(np.int64))[order]
        bounds = np.searchsorted(step[order], np.arange(T + 1), side="left")
        dev = resolve_device(device)
        flat_t = torch.from_numpy(flat).to(dev)
        return DenseInput(T, B, n_inputs, dt, t_end_ms, origin, end_step, dev, _events=(flat_t, bounds))

    @property
    def is_tensor(self) -> bool:
        """True when built from a (T, B, P) tensor (``from_frames``), False when streamed from events."""
        return self._frames is not None

    def steps(self) -> Iterator[torch.Tensor]:
        """Yield the (B, P) float32 frame of every step, in order (a fresh tensor each step)."""
        if self._frames is not None:
            yield from self._frames.float() if self._frames.dtype != torch.float32 else self._frames
            return
        flat, bounds = self._events
        ones = torch.ones(flat.shape[0], device=self.device)
        for n in range(self.n_steps):
            f = torch.zeros(self.batch_size * self.n_inputs, device=self.device)
            s, e = int(bounds[n]), int(bounds[n + 1])
            if e > s:
                f.index_add_(0, flat[s:e], ones[s:e])
            yield f.view(self.batch_size, self.n_inputs)


def bin_events(batch: EventBatch, n_inputs: int, dt_ms: float, t_end_ms: float | None = None,
               device="cpu") -> torch.Tensor:
    """(T, B, P) float32 event counts per bin on the absolute grid: an event at t goes to floor(t / dt).

    T = floor(t_end / dt) + 1 with t_end (ms) defaulting to the batch's largest t_end, so an event at
    exactly t_end is kept. Events after ``t_end_ms`` are dropped. Materializes all T steps (tests,
    small batches); the engine streams them instead (``DenseInput.from_events``).
    """
    dt = check_dt(dt_ms)
    inp = DenseInput.from_events(batch, n_inputs, dt, device, align_start=False)
    T = inp.n_steps if t_end_ms is None else int(math.floor(float(t_end_ms) / dt)) + 1
    out = torch.zeros((T, len(batch), n_inputs), device=inp.device)
    for n, f in enumerate(inp.steps()):
        if n >= T:
            break
        out[n] = f
    return out
