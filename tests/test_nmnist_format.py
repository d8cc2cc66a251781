"""The N-MNIST 5-byte event format: exact round trips, overflow markers, validation, real recordings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from snnbp.data.events import EVENT_DTYPE
from snnbp.data.nmnist_format import (
    OVERFLOW_INCREMENT_US,
    OVERFLOW_Y,
    TS_MAX,
    decode_events,
    encode_events,
    read_events,
    write_events,
)
from snnbp.errors import DataError

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/nmnist-sample"
needs_sample = pytest.mark.skipif(not (SAMPLE / "Train").is_dir(), reason=f"real N-MNIST sample not found at {SAMPLE}")


def make_events(x, y, p, t) -> np.ndarray:
    events = np.zeros(len(t), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["p"], events["t"] = x, y, p, t
    return events


def record(x: int, y: int, p: int, stored_t: int) -> bytes:
    """One raw 5-byte record, assembled by hand from the format description (independent of the encoder)."""
    return bytes([x, y, (p << 7) | (stored_t >> 16), (stored_t >> 8) & 0xFF, stored_t & 0xFF])


def test_decode_hand_made_records():
    raw = record(0, 0, 1, 0) + record(33, 33, 0, TS_MAX) + record(5, 7, 1, TS_MAX)
    events = decode_events(raw)
    assert events.dtype == EVENT_DTYPE
    assert events["x"].tolist() == [0, 33, 5]
    assert events["y"].tolist() == [0, 33, 7]
    assert events["p"].tolist() == [1, 0, 1]
    assert events["t"].tolist() == [0, TS_MAX, TS_MAX]


def test_overflow_marker_adds_8192_us_and_is_removed():
    # The reference reader (eventvision.py) adds 2**13 us from each y == 240 marker on.
    marker = record(0, OVERFLOW_Y, 0, 0)
    raw = record(1, 1, 0, 100) + marker + record(2, 2, 1, 50) + marker + record(3, 3, 0, 7)
    events = decode_events(raw)
    assert OVERFLOW_INCREMENT_US == 8192
    assert events["t"].tolist() == [100, 8192 + 50, 2 * 8192 + 7]
    assert events["x"].tolist() == [1, 2, 3]


def test_round_trip_boundary_values(tmp_path):
    t = [0, 0, 1, TS_MAX, 2**23, 2**23 + 1, 2**23 + 8192, 3 * 2**23 + 12345, 10**9]
    events = make_events(x=[0, 33, 1, 33, 0, 17, 4, 2, 33], y=[33, 0, 1, 33, 0, 2, 30, 5, 33],
                         p=[0, 1, 1, 0, 1, 0, 1, 1, 0], t=t)
    path = write_events(tmp_path / "sub" / "00001.bin", events)
    back = read_events(path)
    np.testing.assert_array_equal(back, events)
    # Times past 23 bits need markers; the file holds exactly the fewest that make each time fit.
    raw = path.read_bytes()
    n_markers = int((np.frombuffer(raw, np.uint8).reshape(-1, 5)[:, 1] == OVERFLOW_Y).sum())
    assert n_markers == -(-(10**9 - TS_MAX) // OVERFLOW_INCREMENT_US)
    assert len(raw) == 5 * (len(events) + n_markers)


def test_no_markers_below_2_pow_23():
    events = make_events([1, 2], [3, 4], [0, 1], [0, TS_MAX])
    raw = encode_events(events)
    assert len(raw) == 10
    assert raw == record(1, 3, 0, 0) + record(2, 4, 1, TS_MAX)


def test_round_trip_random_streams():
    rng = np.random.default_rng(1)
    for n in (0, 1, 1000):
        t = np.sort(rng.integers(0, 3 * 2**23, n))
        events = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n), t)
        np.testing.assert_array_equal(decode_events(encode_events(events)), events)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    events = make_events([1], [1], [1], [5])
    write_events(tmp_path / "a.bin", events)
    write_events(tmp_path / "a.bin", make_events([2], [2], [0], [6]))  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    assert read_events(tmp_path / "a.bin")["x"].tolist() == [2]


def test_truncated_file_is_refused():
    raw = record(1, 1, 1, 10) + record(2, 2, 0, 20)[:3]
    with pytest.raises(DataError, match=r"Train/3/00011.bin: size 8 bytes is not a multiple of 5.*--skip-bad"):
        decode_events(raw, "Train/3/00011.bin")


@pytest.mark.parametrize("x, y, axis, value", [(34, 0, "x", 34), (0, 34, "y", 34), (255, 3, "x", 255)])
def test_coordinate_off_sensor_is_refused(x, y, axis, value):
    raw = record(1, 1, 1, 10) + record(x, y, 0, 20)
    with pytest.raises(DataError, match=rf"f.bin: {axis} = {value} at event 1 is outside the sensor \(0..33\)"):
        decode_events(raw, "f.bin")


def test_decreasing_timestamp_is_refused():
    raw = record(1, 1, 1, 1500) + record(2, 2, 0, 1234)
    with pytest.raises(DataError, match=r"f.bin: timestamp decreases at event 1 \(1234 us after 1500 us\)"):
        decode_events(raw, "f.bin")


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such N-MNIST file"):
        read_events(tmp_path / "nope.bin")


@pytest.mark.parametrize(
    "field, value, match",
    [("x", 34, r"x = 34 is outside 0..33"), ("y", 40, r"y = 40 is outside 0..33"),
     ("p", 2, r"p = 2 is outside 0..1"), ("t", -1, r"t = -1 us is negative")],
)
def test_encode_refuses_out_of_range(tmp_path, field, value, match):
    events = make_events([1, 2], [1, 2], [0, 1], [0, 10])
    events[field][1] = value
    if field == "t":
        events["t"][0] = -1
    with pytest.raises(DataError, match=match):
        write_events(tmp_path / "bad.bin", events)
    assert not (tmp_path / "bad.bin").exists()


def test_encode_refuses_unsorted_times():
    with pytest.raises(DataError, match=r"event 1: t = 5 us is before the previous event's 9 us"):
        encode_events(make_events([1, 2], [1, 2], [0, 1], [9, 5]))


# --------------------------------------------------------------------------------------- real recordings


@needs_sample
def test_sample_checksums_match():
    lines = (SAMPLE / "SHA256SUMS").read_text().split("\n")
    entries = [line.split() for line in lines if line.strip()]
    assert len(entries) == 20
    for digest, name in entries:
        assert hashlib.sha256((SAMPLE / "Train" / name).read_bytes()).hexdigest() == digest, name


@needs_sample
def test_real_recordings_decode_and_look_like_nmnist():
    files = sorted((SAMPLE / "Train").glob("*/*.bin"))
    assert len(files) == 20
    for f in files:
        events = read_events(f)
        assert 1_100 <= len(events) <= 7_200, f
        assert 0.3 <= events["p"].mean() <= 0.7, f
        assert 250_000 <= events["t"][-1] <= 340_000, f  # three ~100 ms saccades
        assert np.all(np.diff(events["t"]) >= 0), f
        assert events["x"].max() <= 33 and events["y"].max() <= 33
        # Our encoder reproduces the official file byte for byte (no markers in real data).
        assert encode_events(events) == f.read_bytes(), f
