"""Reading and writing the IDX format (the container MNIST ships in).

An IDX file is a 4-byte magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes,
then the array in C order, big-endian. Files may be gzip-compressed (detected from the content, not
the name). Every fault (bad magic, unknown dtype, truncated or oversized payload) is a ``DataError``
that names the file, because a silently misread dataset is worse than no dataset.
"""

from __future__ import annotations

import gzip
import math
import os
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from snnbp.errors import DataError
from snnbp.files import current_umask

# IDX dtype code -> big-endian numpy dtype (the format is always big-endian on disk).
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_TO_CODE: dict[str, int] = {dt.newbyteorder("=").str: code for code, dt in _CODE_TO_DTYPE.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 24  # read in 16 MiB pieces so a lying header cannot make us allocate more than the file holds


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian numpy array.

    Returns an array whose shape is the header's dims (1 to 255 of them) and whose dtype is one of
    uint8, int8, int16, int32, float32, float64. Raises ``DataError`` naming the file if it is
    missing, has a bad magic number, an unknown dtype code, or a payload shorter or longer than the
    header promises.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw) as stream:
                    return _read_stream(stream, path)
            return _read_stream(raw, path)
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist; check the path or re-create the data.") from None
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"IDX file {path} could not be read ({err}); delete it and re-create the data.") from None


def _read_stream(stream: BinaryIO, path: Path) -> np.ndarray:
    """Parse header and payload from an open binary stream; ``path`` is only for messages."""
    dtype, shape = _read_header(stream, path)
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: dims near 2**32 must not wrap around to 0
    payload = _read_up_to(stream, nbytes)
    if len(payload) < nbytes:
        raise DataError(
            f"IDX file {path} is truncated: header promises {nbytes} payload bytes but only {len(payload)} "
            "are there; delete it and re-create the data."
        )
    if stream.read(1):
        raise DataError(
            f"IDX file {path} is oversized: it has data past the {nbytes} payload bytes its header "
            "promises; delete it and re-create the data."
        )
    try:
        flat = np.frombuffer(payload, dtype=dtype).reshape(shape)
    except ValueError:  # e.g. a zero dim beside dims whose product numpy cannot represent
        raise DataError(f"IDX file {path} declares an impossible shape {shape}; it is corrupt, re-create the data.") from None
    # astype copies into a writable, native-endian array (frombuffer over bytes is read-only).
    return flat.astype(dtype.newbyteorder("="))


def _read_header(stream: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Return (big-endian dtype, shape) from the magic number and dims."""
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"IDX file {path} has a bad magic number {magic.hex() or '(empty file)'}: it is not an IDX "
            "file; check that the path points at an IDX file."
        )
    code, ndim = magic[2], magic[3]
    if code not in _CODE_TO_DTYPE:
        raise DataError(
            f"IDX file {path} has an unknown dtype code 0x{code:02x} (known: 08, 09, 0b, 0c, 0d, 0e); "
            "it is corrupt or not an IDX file."
        )
    if ndim == 0:
        raise DataError(f"IDX file {path} declares zero dimensions; it is corrupt, re-create the data.")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"IDX file {path} is truncated inside its header; delete it and re-create the data.")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    return _CODE_TO_DTYPE[code], shape


def _read_up_to(stream: BinaryIO, nbytes: int) -> bytes:
    """Read at most ``nbytes`` bytes, stopping early at end of stream."""
    parts: list[bytes] = []
    left = nbytes
    while left > 0:
        part = stream.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, atomically; gzip-compress if ``path`` ends in ``.gz``.

    The data goes to a temporary file in the same directory, is flushed to disk, then renamed over
    ``path`` (``os.replace`` is atomic within a filesystem), so a failed or interrupted write never
    leaves a half-written file at ``path``; an existing file there stays intact until the new one is
    complete. Supported dtypes: uint8, int8, int16, int32, float32, float64; 1 to 255 dimensions,
    each below 2**32. Returns ``path``.
    """
    path = Path(path)
    content = encode_idx(array, name=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the permissions an ordinary open() would.
        os.chmod(tmp_name, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as out:
            if path.suffix == ".gz":
                # mtime=0 keeps the output byte-identical across runs (reproducible caches).
                with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
                    gz.write(content)
            else:
                out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # Remove the partial temp file; the target (if any) was never touched.
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def encode_idx(array: np.ndarray, name: str = "array") -> bytes:
    """The uncompressed IDX bytes of ``array`` (header + big-endian payload), exactly as ``write_idx`` writes them.

    ``name`` is only used in error messages. Raises ``DataError`` if IDX cannot represent the array.
    """
    array = np.asarray(array)
    payload = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).tobytes()
    return _header_bytes(array, name) + payload


def _header_bytes(array: np.ndarray, path: str) -> bytes:
    """Magic + dims for ``array``; ``DataError`` if IDX cannot represent it."""
    code = _DTYPE_TO_CODE.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise DataError(
            f"cannot write {path}: IDX has no code for dtype {array.dtype}; convert the array to uint8, "
            "int8, int16, int32, float32 or float64 first."
        )
    if not 1 <= array.ndim <= 255 or any(n >= 2**32 for n in array.shape):
        raise DataError(
            f"cannot write {path}: IDX needs 1 to 255 dimensions each below 2**32, got shape {array.shape}."
        )
    return bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
