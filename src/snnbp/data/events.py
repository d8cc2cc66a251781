"""Event streams: the one in-memory representation every data source produces.

A recording is a structured numpy array with fields (x, y, p, t): pixel column, pixel row, polarity
(1 = ON, 0 = OFF) and timestamp in microseconds, in non-decreasing time order.

Engines do not see (x, y, p); they see *channels*: one input neuron per (p, y, x), numbered in the
(P, H, W) order that dense frames use, ``channel = (p * H + y) * W + x``. A batch of samples is
passed to an engine in CSR form: concatenated ``channels`` (int32) and ``times_us`` (float64) with
``offsets`` (int64, length B + 1) so that sample b is ``[offsets[b], offsets[b + 1])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EVENT_DTYPE = np.dtype([("x", np.uint16), ("y", np.uint16), ("p", np.uint8), ("t", np.int64)])


@dataclass(frozen=True)
class SensorSize:
    """Sensor geometry: width W, height H, polarities P. Channels = W * H * P."""

    width: int
    height: int
    polarities: int = 2

    @property
    def channels(self) -> int:
        return self.width * self.height * self.polarities


NMNIST_SENSOR = SensorSize(34, 34, 2)


def events_to_channels(events: np.ndarray, sensor: SensorSize) -> np.ndarray:
    """Map (x, y, p) of each event to its input channel ``(p * H + y) * W + x`` (int32)."""
    p = events["p"].astype(np.int64)
    y = events["y"].astype(np.int64)
    x = events["x"].astype(np.int64)
    return ((p * sensor.height + y) * sensor.width + x).astype(np.int32)


@dataclass
class EventBatch:
    """B samples of input events in CSR layout (see module docstring).

    channels: (E,) int32 input-channel index of each event
    times_us: (E,) float64 event time in microseconds, non-decreasing within each sample
    offsets:  (B + 1,) int64 sample b owns events [offsets[b], offsets[b + 1])
    t_end_us: (B,) float64 end of each presentation; traces are read at this time
    """

    channels: np.ndarray
    times_us: np.ndarray
    offsets: np.ndarray
    t_end_us: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def validate(self, n_inputs: int) -> None:
        """Raise ValueError unless the batch is well formed for a network with ``n_inputs`` channels.

        The compiled engine does not bounds-check (a bad channel would read out of bounds), so
        every engine entry point calls this first: O(events) numpy work.
        """
        off = self.offsets
        if off.ndim != 1 or len(off) < 1 or off[0] != 0 or off[-1] != len(self.channels) or np.any(np.diff(off) < 0):
            raise ValueError("event batch: offsets must start at 0, be non-decreasing and end at the number of events")
        if len(self.times_us) != len(self.channels) or len(self.t_end_us) != len(self):
            raise ValueError("event batch: channels, times and t_end have inconsistent lengths")
        if len(self.channels) == 0:
            return
        lo, hi = int(self.channels.min()), int(self.channels.max())
        if lo < 0 or hi >= n_inputs:
            raise ValueError(f"event batch: channel indices span [{lo}, {hi}] but the network has {n_inputs} inputs")
        step = np.diff(self.times_us)
        inside = np.ones(len(step), bool)
        starts = off[1:-1]
        starts = starts[(starts > 0) & (starts < len(self.channels))]
        inside[starts - 1] = False  # no ordering across sample boundaries
        if np.any(step[inside] < 0):
            raise ValueError("event batch: timestamps decrease within a sample; events must be in time order")
        nonempty = np.diff(off) > 0
        last = self.times_us[off[1:][nonempty] - 1]
        if np.any(self.t_end_us[nonempty] < last):
            raise ValueError("event batch: t_end precedes the last event of a sample; traces are read at t_end")

    def samples(self, start: int, stop: int) -> "EventBatch":
        """Samples start..stop-1 as a batch of views (no copy of the events)."""
        s, e = self.offsets[start], self.offsets[stop]
        return EventBatch(self.channels[s:e], self.times_us[s:e], self.offsets[start:stop + 1] - s, self.t_end_us[start:stop])

    def sample(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.offsets[b], self.offsets[b + 1]
        return self.channels[s:e], self.times_us[s:e]

    @staticmethod
    def from_lists(channels: list[np.ndarray], times_us: list[np.ndarray], t_end_us) -> "EventBatch":
        lengths = np.array([len(c) for c in channels], dtype=np.int64)
        offsets = np.zeros(len(channels) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ch = np.concatenate(channels).astype(np.int32) if channels else np.zeros(0, np.int32)
        tt = np.concatenate(times_us).astype(np.float64) if times_us else np.zeros(0)
        return EventBatch(ch, tt, offsets, np.asarray(t_end_us, dtype=np.float64).reshape(len(channels)))
