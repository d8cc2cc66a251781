"""Property tests of the binary readers: whatever the bytes, a valid result or a DataError, nothing else.

N-MNIST (``decode_events``): arbitrary bytes and mutated valid encodings decode to events on the sensor
with non-decreasing times, or raise DataError; within ``limits`` they also respect the limits;
``encode_events`` then ``decode_events`` returns the events. IDX (``read_idx``): arbitrary and mutated
files, plain and gzip, read as an array of the header's shape and dtype, or raise DataError.
scripts/fuzz_readers.py runs the same properties for longer.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from snnbp.data.events import EVENT_DTYPE, NMNIST_SENSOR
from snnbp.data.idx import encode_idx, read_idx
from snnbp.data.nmnist_format import (
    BYTES_PER_EVENT,
    OVERFLOW_INCREMENT_US,
    OVERFLOW_Y,
    TS_MAX,
    ReadLimits,
    decode_events,
    encode_events,
)
from snnbp.errors import DataError

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL_LIMITS = ReadLimits(max_duration_us=3 * OVERFLOW_INCREMENT_US, max_events=20)

# ------------------------------------------------------------------------------------------ strategies


@st.composite
def event_arrays(draw, max_events: int = 60) -> np.ndarray:
    """Valid events; time steps are mostly small, sometimes past 2**23 us so that markers are needed."""
    n = draw(st.integers(0, max_events))
    step = st.one_of(st.integers(0, 2_000), st.integers(0, 3 * TS_MAX))
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = draw(st.lists(st.integers(0, NMNIST_SENSOR.width - 1), min_size=n, max_size=n))
    events["y"] = draw(st.lists(st.integers(0, NMNIST_SENSOR.height - 1), min_size=n, max_size=n))
    events["p"] = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    events["t"] = np.cumsum(draw(st.lists(step, min_size=n, max_size=n)), dtype=np.int64)
    return events


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """``valid`` with a few random edits: overwrite, insert, delete or truncate bytes, or plant a marker."""
    raw = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate", "marker"]))
        pos = draw(st.integers(0, len(raw)))
        if kind == "set" and pos < len(raw):
            raw[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        elif kind == "delete":
            del raw[pos : pos + draw(st.integers(1, 6))]
        elif kind == "truncate":
            del raw[pos:]
        elif kind == "marker":  # a y == 240 record at a record boundary
            at = pos - pos % BYTES_PER_EVENT
            raw[at:at] = bytes([0, OVERFLOW_Y, 0, 0, 0]) * draw(st.integers(1, 3))
    return bytes(raw)


@st.composite
def mutated_encodings(draw) -> bytes:
    return draw(mutated(encode_events(draw(event_arrays()))))


# ------------------------------------------------------------------------------------------ N-MNIST


def assert_valid_events(events: np.ndarray, n_bytes: int, limits: ReadLimits | None) -> None:
    assert events.dtype == EVENT_DTYPE
    assert len(events) <= n_bytes // BYTES_PER_EVENT
    if len(events):
        assert events["x"].max() < NMNIST_SENSOR.width and events["y"].max() < NMNIST_SENSOR.height
        assert set(np.unique(events["p"]).tolist()) <= {0, 1}
        assert events["t"].min() >= 0 and np.all(np.diff(events["t"]) >= 0)
    if limits is not None:
        assert len(events) <= limits.max_events
        assert not len(events) or events["t"][-1] <= limits.max_duration_us


def decode_or_data_error(raw: bytes, limits: ReadLimits | None) -> np.ndarray | None:
    """The decoded events, or None for a DataError; any other exception fails the test."""
    try:
        events = decode_events(raw, "fuzz.bin", limits=limits)
    except DataError as err:
        assert str(err).startswith("fuzz.bin: ") and "\n" not in str(err)
        return None
    assert_valid_events(events, len(raw), limits)
    return events


@FAST
@given(raw=st.binary(max_size=400), limits=st.sampled_from([None, SMALL_LIMITS]))
@example(raw=b"", limits=None)
@example(raw=bytes([0, OVERFLOW_Y, 0, 0, 0]) * 4, limits=SMALL_LIMITS)
def test_decode_arbitrary_bytes(raw, limits):
    decode_or_data_error(raw, limits)


@FAST
@given(raw=mutated_encodings(), limits=st.sampled_from([None, SMALL_LIMITS]))
def test_decode_mutated_encodings(raw, limits):
    events = decode_or_data_error(raw, limits)
    if events is not None:  # whatever decodes must survive a round trip of its own
        np.testing.assert_array_equal(decode_events(encode_events(events)), events)


@FAST
@given(events=event_arrays())
def test_encode_then_decode_returns_the_events(events):
    raw = encode_events(events)
    assert len(raw) % BYTES_PER_EVENT == 0
    np.testing.assert_array_equal(decode_events(raw), events)


# ---------------------------------------------------------------------------------------------- IDX

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@st.composite
def idx_arrays(draw) -> np.ndarray:
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
    dtype = np.dtype(draw(st.sampled_from(IDX_DTYPES)))
    data = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize, max_size=int(np.prod(shape)) * dtype.itemsize))
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def read_idx_bytes(raw: bytes, gz: bool) -> np.ndarray | None:
    """``read_idx`` of ``raw`` written to a temporary file (gzip-compressed if ``gz``); None for a DataError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.idx"
        path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
        try:
            array = read_idx(path)
        except DataError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            return None
    assert array.dtype in [np.dtype(d) for d in IDX_DTYPES] and array.dtype.isnative
    assert 1 <= array.ndim <= 255
    # The header promised this shape and the payload was exactly that long.
    assert len(raw) == 4 + 4 * array.ndim + array.nbytes
    assert array.shape == tuple(int(d) for d in np.frombuffer(raw[4 : 4 + 4 * array.ndim], ">u4"))
    return array


@FAST
@given(raw=st.binary(max_size=300), gz=st.booleans())
@example(raw=b"", gz=False)
@example(raw=bytes([0, 0, 8, 1, 0, 0, 0, 2, 7]), gz=False)  # one payload byte short
def test_read_idx_arbitrary_bytes(raw, gz):
    read_idx_bytes(raw, gz)


@FAST
@given(data=st.data(), gz=st.booleans())
def test_read_idx_mutated_files(data, gz):
    array = data.draw(idx_arrays())
    valid = encode_idx(array)
    back = read_idx_bytes(valid, gz)
    np.testing.assert_array_equal(back, array)  # unmutated: the array itself
    read_idx_bytes(data.draw(mutated(valid)), gz)


@pytest.mark.parametrize("dims", [(2**31, 2**31, 2**31), (2**32 - 1, 0, 2, 2**32 - 1)])
def test_read_idx_header_whose_size_overflows(dims):
    raw = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    assert read_idx_bytes(raw, gz=False) is None  # a DataError
