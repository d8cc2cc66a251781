"""IDX reader/writer: round trips, gzip, and every kind of corrupt file."""

from __future__ import annotations

import gzip
import os
import stat

import numpy as np
import pytest

from snnbp.data import idx
from snnbp.data.idx import read_idx, write_idx
from snnbp.errors import DataError


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_round_trip(tmp_path, dtype, shape):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_on_disk_layout_is_big_endian_idx(tmp_path):
    # Hand-check the bytes so reader and writer cannot agree on a wrong format.
    write_idx(tmp_path / "a", np.array([[1, 2, 3], [4, 5, 258]], dtype=np.int32))
    raw = (tmp_path / "a").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 2])
    assert raw[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    assert raw[-4:] == (258).to_bytes(4, "big")
    assert len(raw) == 12 + 6 * 4


def test_reads_gzip_by_content(tmp_path):
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    plain = write_idx(tmp_path / "x-idx3-ubyte", array)
    gz = tmp_path / "x-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(read_idx(gz), array)
    # write_idx compresses when the name ends in .gz
    written = write_idx(tmp_path / "y.gz", array)
    assert written.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(written), array)


def _valid_bytes() -> bytes:
    return bytes([0, 0, 0x08, 1]) + (4).to_bytes(4, "big") + bytes([1, 2, 3, 4])


@pytest.mark.parametrize(
    "content, fault",
    [
        (_valid_bytes()[:-1], "truncated"),
        (_valid_bytes()[:6], "truncated"),
        (_valid_bytes() + b"\x00", "oversized"),
        (b"\x01\x02" + _valid_bytes()[2:], "bad magic"),
        (b"", "bad magic"),
        (bytes([0, 0, 0x07, 1]) + _valid_bytes()[4:], "unknown dtype"),
    ],
)
def test_corrupt_files_raise_data_error_naming_file(tmp_path, content, fault):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert fault in str(info.value)
    assert str(path) in str(info.value)


def test_truncated_gzip_raises_data_error(tmp_path):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(_valid_bytes() * 100)[:-20])
    with pytest.raises(DataError, match="t.gz"):
        read_idx(path)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = write_idx(tmp_path / "keep", np.arange(10, dtype=np.uint8))
    before = target.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(idx.os, "fsync", disk_full)  # fails after the payload was written to the temp file
    with pytest.raises(OSError):
        write_idx(target, np.arange(1000, dtype=np.int32))
    with pytest.raises(OSError):
        write_idx(tmp_path / "new", np.arange(1000, dtype=np.int32))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_unsupported_dtype_is_refused_before_writing(tmp_path):
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "z", np.arange(3, dtype=np.int64))
    assert list(tmp_path.iterdir()) == []


def test_written_file_gets_ordinary_permissions(tmp_path):
    # The temp file starts as 0600; the final file must be readable like any file the user writes.
    old = os.umask(0o022)
    try:
        path = write_idx(tmp_path / "p", np.zeros(2, dtype=np.uint8))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_encode_idx_matches_written_bytes(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert idx.encode_idx(array) == write_idx(tmp_path / "e", array).read_bytes()
