"""The official N-MNIST binary file format: decode, encode, read, write.

One file holds one recording as 5 bytes per event (Orchard et al. 2015, garrickorchard.com/datasets):

    byte 0          x (0..33)
    byte 1          y (0..33), or 240 for a timestamp-overflow marker (see below)
    byte 2 bit 7    polarity (1 = ON, 0 = OFF)
    byte 2 bits 6..0, byte 3, byte 4
                    timestamp in microseconds, 23 bits, big-endian bit fields

Timestamp overflow. The reference reader (Garrick Orchard's ``read_dataset`` in
github.com/gorchard/event-Python ``eventvision.py``; copied unchanged by tonic ``tonic/io.py``
``read_mnist_file``) treats every event with ``y == 240`` as an overflow marker: it adds
``time_increment = 2 ** 13`` us to the timestamps of the marker and of every later event, then drops
the markers. The MATLAB reader (``Read_Ndataset.m``) ignores markers altogether. We follow the Python
reference exactly, constant included (``OVERFLOW_INCREMENT_US = 2**13``), so any file we write reads
back identically in tonic and eventvision: a decoded time is ``stored 23-bit time + 8192 us x (markers
before it)``. Real N-MNIST recordings last about 0.3 s, far below 2**23 us, and contain no markers
(measured on 1,100 files); the rule only matters for long synthetic streams, which the encoder
represents exactly by inserting markers.

Decoded events are a structured array of ``snnbp.data.events.EVENT_DTYPE`` (x, y, p, t in microseconds).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from snnbp.data.events import EVENT_DTYPE, NMNIST_SENSOR, SensorSize
from snnbp.errors import DataError

BYTES_PER_EVENT = 5
TS_BITS = 23
TS_MAX = (1 << TS_BITS) - 1  # largest stored timestamp, 8,388,607 us
OVERFLOW_Y = 240  # y address of an overflow marker (the ATIS sensor is 304 x 240, so 240 is never a pixel)
OVERFLOW_INCREMENT_US = 1 << 13  # 8192 us per marker: eventvision.py read_dataset, `time_increment = 2 ** 13`

_SKIP_HINT = "the file is corrupt - re-extract it or pass --skip-bad to skip it"


def decode_events(raw: bytes, name: str = "<bytes>", *, sensor: SensorSize = NMNIST_SENSOR) -> np.ndarray:
    """Decode the bytes of one N-MNIST file into events.

    raw:    the file's content, ``5 * n`` bytes (markers included)
    name:   how error messages name the file (e.g. ``Train/3/00011.bin``)
    sensor: geometry that x and y must fit (x < width, y < height)
    Returns a ``(n_events,)`` array of EVENT_DTYPE, markers removed, t in microseconds, non-decreasing.
    Raises DataError for a size that is not a multiple of 5, a coordinate off the sensor, or a
    timestamp that decreases.
    """
    if len(raw) % BYTES_PER_EVENT:
        raise DataError(
            f"{name}: size {len(raw)} bytes is not a multiple of {BYTES_PER_EVENT} (truncated by "
            f"{len(raw) % BYTES_PER_EVENT} bytes); {_SKIP_HINT}"
        )
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, BYTES_PER_EVENT)  # (n_records, 5)
    # Widen before shifting: uint8 << 16 would overflow.
    stored = (
        (b[:, 2].astype(np.int64) & 0x7F) << 16 | b[:, 3].astype(np.int64) << 8 | b[:, 4].astype(np.int64)
    )  # (n_records,) us
    is_marker = b[:, 1] == OVERFLOW_Y
    # Offset applies from the marker on (inclusive), exactly as the reference reader's all_ts[i:] += 2**13.
    t = stored + OVERFLOW_INCREMENT_US * np.cumsum(is_marker, dtype=np.int64)
    keep = ~is_marker
    b, t = b[keep], t[keep]  # (n_events, 5), (n_events,)

    _check_coordinates(b[:, 0], "x", sensor.width, name)
    _check_coordinates(b[:, 1], "y", sensor.height, name)
    _check_monotonic(t, name)

    events = np.empty(len(t), dtype=EVENT_DTYPE)
    events["x"] = b[:, 0]
    events["y"] = b[:, 1]
    events["p"] = b[:, 2] >> 7
    events["t"] = t
    return events


def _check_coordinates(values: np.ndarray, axis: str, size: int, name: str) -> None:
    bad = np.flatnonzero(values >= size)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{name}: {axis} = {int(values[i])} at event {i} is outside the sensor (0..{size - 1}); {_SKIP_HINT}"
        )


def _check_monotonic(t: np.ndarray, name: str) -> None:
    drops = np.flatnonzero(np.diff(t) < 0)
    if drops.size:
        i = int(drops[0]) + 1
        raise DataError(
            f"{name}: timestamp decreases at event {i} ({int(t[i])} us after {int(t[i - 1])} us); {_SKIP_HINT}"
        )


def read_events(path: str | os.PathLike, *, sensor: SensorSize = NMNIST_SENSOR) -> np.ndarray:
    """Read one N-MNIST ``.bin`` file; see ``decode_events``. Errors name the file by its path."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such N-MNIST file; check the path or re-run `snnbp data nmnist`") from None
    return decode_events(raw, str(path), sensor=sensor)


def encode_events(events: np.ndarray, *, sensor: SensorSize = NMNIST_SENSOR) -> bytes:
    """Encode events (EVENT_DTYPE or any array with fields x, y, p, t) as N-MNIST file bytes.

    Times at or above 2**23 us are written with overflow markers (x = 0, y = 240, p = 0, stored
    time 0) so that ``decode_events(encode_events(e))`` equals ``e`` and tonic reads the same times.
    Raises DataError for coordinates off the sensor, polarity other than 0/1, negative or
    decreasing times.
    """
    x = np.asarray(events["x"]).astype(np.int64)
    y = np.asarray(events["y"]).astype(np.int64)
    p = np.asarray(events["p"]).astype(np.int64)
    t = np.asarray(events["t"]).astype(np.int64)
    _check_encodable(x, y, p, t, sensor)

    # need[i] = markers before event i: the fewest that bring its stored time into 0..TS_MAX. It is
    # non-decreasing because t is, so event i goes to row i + need[i] and the gaps are markers.
    need = np.maximum(0, -(-(t - TS_MAX) // OVERFLOW_INCREMENT_US))  # ceil division, (n,)
    stored = t - need * OVERFLOW_INCREMENT_US

    n_out = len(t) + int(need[-1]) if len(t) else 0
    out = np.zeros((n_out, BYTES_PER_EVENT), dtype=np.uint8)  # marker rows stay (0, 240, 0, 0, 0)
    rows = np.arange(len(t)) + need  # row of event i = i + markers before it
    out[:, 1] = OVERFLOW_Y
    out[rows, 0] = x
    out[rows, 1] = y
    out[rows, 2] = (p << 7) | (stored >> 16)
    out[rows, 3] = (stored >> 8) & 0xFF
    out[rows, 4] = stored & 0xFF
    return out.tobytes()


def _check_encodable(x, y, p, t, sensor: SensorSize) -> None:
    for axis, values, size in (("x", x, sensor.width), ("y", y, sensor.height), ("p", p, 2)):
        bad = np.flatnonzero((values < 0) | (values >= size))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"cannot encode event {i}: {axis} = {int(values[i])} is outside 0..{size - 1}; "
                "fix the events before writing them"
            )
    if t.size and t.min() < 0:
        i = int(np.flatnonzero(t < 0)[0])
        raise DataError(f"cannot encode event {i}: t = {int(t[i])} us is negative; shift times to start at 0 or later")
    drops = np.flatnonzero(np.diff(t) < 0)
    if drops.size:
        i = int(drops[0]) + 1
        raise DataError(
            f"cannot encode event {i}: t = {int(t[i])} us is before the previous event's {int(t[i - 1])} us; "
            "sort events by time before writing them"
        )


def write_events(path: str | os.PathLike, events: np.ndarray, *, sensor: SensorSize = NMNIST_SENSOR) -> Path:
    """Write events as an N-MNIST ``.bin`` file, atomically (temp file + os.replace), making parent dirs.

    A reader never sees a half-written file, even if the writer is killed. Returns the path.
    """
    path = Path(path)
    data = encode_events(events, sensor=sensor)  # validate before touching the disk
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
