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

Size limits. A damaged or hostile file can be tiny yet decode to an absurd recording: 270,000 overflow
markers (1.35 MB) push the next event to 2,212 s, which `snnbp show` would draw as 221,200 GIF frames and
training cannot even hold in int32 microseconds. So the readers take ``limits`` (a ``ReadLimits``): a
recording whose last event is later than ``max_duration_us`` or that holds more than ``max_events`` events
(markers not counted) is a DataError when decoded, and a file too big to fit both (``ReadLimits.max_bytes``)
is refused before it is read. ``read_limits()`` gives the limits every user-facing reader applies (the
``NMNIST`` dataset, hence ``snnbp data nmnist`` and training, and ``snnbp show``): 10 s and 1,000,000 events,
raised for all of them at once by the environment variables ``SNNBP_NMNIST_MAX_DURATION_S`` and
``SNNBP_NMNIST_MAX_EVENTS``. Without ``limits`` the codec functions stay exact and unbounded, for long
synthetic streams and round trips.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from snnbp.data.events import EVENT_DTYPE, NMNIST_SENSOR, SensorSize
from snnbp.errors import ConfigError, DataError

BYTES_PER_EVENT = 5
TS_BITS = 23
TS_MAX = (1 << TS_BITS) - 1  # largest stored timestamp, 8,388,607 us
OVERFLOW_Y = 240  # y address of an overflow marker (the ATIS sensor is 304 x 240, so 240 is never a pixel)
OVERFLOW_INCREMENT_US = 1 << 13  # 8192 us per marker: eventvision.py read_dataset, `time_increment = 2 ** 13`

_SKIP_HINT = "the file is corrupt - re-extract it or pass --skip-bad to skip it"

# Default limits on one recording. Real N-MNIST recordings last about 0.3 s (three ~100 ms saccades) and hold
# about 4,000-6,000 events (at most ~7,200 in our sample), so 10 s and 1,000,000 events leave a margin of 30x
# and 140x for unusual but genuine streams, while keeping the worst accepted file small: 5 MB of events,
# 1,000 GIF frames at 10 ms in `snnbp show`, and times far below the 2**31 us (2,147 s) that training's
# int32 times can hold.
DEFAULT_MAX_DURATION_S = 10.0
DEFAULT_MAX_EVENTS = 1_000_000
MAX_DURATION_ENV = "SNNBP_NMNIST_MAX_DURATION_S"  # seconds, a positive number
MAX_EVENTS_ENV = "SNNBP_NMNIST_MAX_EVENTS"  # a positive whole number
# The duration limit cannot be raised past this: training keeps event times as int32 microseconds, so a
# longer recording could be checked and recorded, then fail every training run.
DURATION_CEILING_US = (1 << 31) - 1  # 2,147.48 s


class ReadLimits(NamedTuple):
    """The largest recording a reader accepts.

    max_duration_us: time of the last event, in microseconds (recordings start at 0 us)
    max_events:      events after overflow markers are removed
    """

    max_duration_us: int
    max_events: int

    @property
    def max_bytes(self) -> int:
        """Largest file (bytes) that can hold a recording within both limits.

        Its events, plus the overflow markers its duration can account for (each adds 8192 us to every
        later event, so at most ``max_duration_us // 8192`` come before the last event), plus one. Markers
        after the last event change no time, so a file padded with them is refused: no writer makes one.
        """
        return BYTES_PER_EVENT * (self.max_events + self.max_duration_us // OVERFLOW_INCREMENT_US + 1)


def read_limits(max_duration_us: int | None = None, max_events: int | None = None) -> ReadLimits:
    """The limits to apply: each value given here, else its environment variable, else the default.

    max_duration_us: microseconds, 1..DURATION_CEILING_US (``SNNBP_NMNIST_MAX_DURATION_S`` is in seconds)
    max_events:      events, at least 1
    Raises ConfigError for an environment variable that is not a positive number or asks for more than
    2,147 s, ValueError for a keyword argument out of range.
    """
    if max_duration_us is None:
        max_duration_us = _env_duration_us()
    if max_events is None:
        max_events = _env_number(MAX_EVENTS_ENV, DEFAULT_MAX_EVENTS, int)
    if not 1 <= max_duration_us <= DURATION_CEILING_US or max_events < 1:
        raise ValueError(f"need 1 <= max_duration_us <= {DURATION_CEILING_US} and max_events >= 1, got "
                         f"{max_duration_us} and {max_events}")
    return ReadLimits(int(max_duration_us), int(max_events))


def _env_duration_us() -> int:
    """``SNNBP_NMNIST_MAX_DURATION_S`` in microseconds (the default if unset); ConfigError past the ceiling."""
    duration_us = max(1, round(1e6 * _env_number(MAX_DURATION_ENV, DEFAULT_MAX_DURATION_S, float)))
    if duration_us > DURATION_CEILING_US:
        raise ConfigError(f"{MAX_DURATION_ENV} can be at most {DURATION_CEILING_US / 1e6:.0f} s (training keeps "
                          f"times as int32 microseconds), got {os.environ[MAX_DURATION_ENV].strip()!r}; lower it")
    return duration_us


def _env_number(var: str, default, kind):
    """``kind(os.environ[var])`` (float or int), ``default`` if unset or empty; ConfigError unless finite and > 0."""
    text = os.environ.get(var, "").strip()
    if not text:
        return default
    try:
        value = kind(text)  # both accept "1_000_000"
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        kind_name = "number of seconds" if kind is float else "whole number"
        raise ConfigError(f"{var} must be a positive {kind_name}, got {text!r}; fix it or unset it for the default")
    return value


def check_file_size(n_bytes: int, name: str, limits: ReadLimits) -> None:
    """DataError if a file of ``n_bytes`` bytes cannot hold a recording within ``limits``; call before reading."""
    if n_bytes > limits.max_bytes:
        records = -(-n_bytes // BYTES_PER_EVENT)
        raise DataError(
            f"{name}: {n_bytes:,} bytes is more than the {limits.max_bytes:,} bytes a recording within the limits "
            f"({limits.max_events:,} events, {limits.max_duration_us / 1e6:g} s) can take; if it is genuine, raise "
            f"the limit by setting {MAX_EVENTS_ENV}={records}, else pass --skip-bad to skip it"
        )


def decode_events(raw: bytes, name: str = "<bytes>", *, sensor: SensorSize = NMNIST_SENSOR,
                  limits: ReadLimits | None = None) -> np.ndarray:
    """Decode the bytes of one N-MNIST file into events.

    raw:    the file's content, ``5 * n`` bytes (markers included)
    name:   how error messages name the file (e.g. ``Train/3/00011.bin``)
    sensor: geometry that x and y must fit (x < width, y < height)
    limits: largest recording accepted (duration in us, events), e.g. ``read_limits()``; None = no limit
    Returns a ``(n_events,)`` array of EVENT_DTYPE, markers removed, t in microseconds, non-decreasing.
    Raises DataError for a size that is not a multiple of 5, a coordinate off the sensor, a
    timestamp that decreases, or a recording past ``limits``.
    """
    if len(raw) % BYTES_PER_EVENT:
        raise DataError(
            f"{name}: size {len(raw)} bytes is not a multiple of {BYTES_PER_EVENT} (truncated by "
            f"{len(raw) % BYTES_PER_EVENT} bytes); {_SKIP_HINT}"
        )
    if limits is not None:
        check_file_size(len(raw), name, limits)  # before decoding: bounds the memory the arrays below take
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
    if limits is not None:
        _check_limits(t, name, limits)

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


def _check_limits(t: np.ndarray, name: str, limits: ReadLimits) -> None:
    """DataError if the recording (times ``t`` in us, non-decreasing) lasts too long or holds too many events."""
    if len(t) and int(t[-1]) > limits.max_duration_us:
        seconds = int(t[-1]) / 1e6
        if int(t[-1]) <= DURATION_CEILING_US:
            fix = f"if it is genuine, raise the limit by setting {MAX_DURATION_ENV}={math.ceil(seconds)}, else"
        else:
            fix = f"no limit can exceed {DURATION_CEILING_US / 1e6:.0f} s (int32 microseconds), so trim it or"
        raise DataError(
            f"{name}: lasts {seconds:,.1f} s (last event at {int(t[-1]):,} us), past the limit of "
            f"{limits.max_duration_us / 1e6:g} s per recording (real N-MNIST lasts about 0.3 s); {fix} pass "
            "--skip-bad to skip it"
        )
    if len(t) > limits.max_events:
        raise DataError(
            f"{name}: holds {len(t):,} events, past the limit of {limits.max_events:,} per recording (real N-MNIST "
            f"holds about 4,000-6,000); if it is genuine, raise the limit by setting {MAX_EVENTS_ENV}={len(t)}, "
            "else pass --skip-bad to skip it"
        )


def read_file_bytes(path: str | os.PathLike, limits: ReadLimits | None = None, name: str | None = None) -> bytes:
    """The bytes of the recording at ``path``, read only if its size fits ``limits`` (see ``check_file_size``).

    limits: None = read the whole file, whatever its size
    name:   how error messages name the file; default its path
    Raises DataError naming the file if it is missing, a folder, not a regular file (a device, a pipe),
    cannot be opened (a symlink loop, no permission), or is too big.
    """
    path = Path(path)
    name = str(path) if name is None else name
    try:
        info = path.stat()  # follows symlinks: a loop or a dangling link fails here
        if stat.S_ISDIR(info.st_mode):
            raise DataError(f"{name}: is a folder, not an N-MNIST recording; remove or rename it, or pass --skip-bad "
                            "to skip it")
        if not stat.S_ISREG(info.st_mode):  # a pipe could block forever and a device never end
            raise DataError(f"{name}: is not a regular file; replace it with the recording, or pass --skip-bad to "
                            "skip it")
        if limits is None:
            return path.read_bytes()
        check_file_size(info.st_size, name, limits)
        with open(path, "rb") as f:
            return f.read(limits.max_bytes + 1)  # a file that grew since stat still cannot exceed the bound
    except FileNotFoundError:
        raise DataError(f"{name}: no such N-MNIST file; check the path or re-run `snnbp data nmnist`") from None
    except OSError as err:  # ELOOP, EACCES, EIO, ...
        raise DataError(f"{name}: cannot be read ({err.strerror or err}); fix or remove it, or pass --skip-bad to "
                        "skip it") from None


def read_events(path: str | os.PathLike, *, sensor: SensorSize = NMNIST_SENSOR,
                limits: ReadLimits | None = None) -> np.ndarray:
    """Read one N-MNIST ``.bin`` file; see ``decode_events`` (``limits`` included). Errors name the file by its path.

    Pass ``limits=read_limits()`` for a file a user gave: it is then refused unread if too big.
    """
    raw = read_file_bytes(path, limits)
    return decode_events(raw, str(Path(path)), sensor=sensor, limits=limits)


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
