"""N-MNIST as a dataset: the official layout, from a folder or straight from the official zips.

Layout (Orchard et al. 2015): ``Train|Test/<digit>/<NNNNN>.bin``, one recording per file (format in
``nmnist_format``). ``NMNIST(path, split)`` accepts

- the folder that contains ``Train/`` and ``Test/`` (or ``Train.zip`` and ``Test.zip``),
- a split folder itself (``.../Train``); asking it for the other split looks beside it,
- the official ``Train.zip`` / ``Test.zip``, read member by member without unpacking.

Any subset works (a handful of files is a valid dataset). Every file is named the same way whatever the
source, ``Train/3/00011.bin``, so a zip and its unpacked folder give identical datasets.

Faults are ``DataError``s that name the file: a recording that does not decode or is past the size limits
(``nmnist_format.ReadLimits``), a zip member that fails its CRC or does not decompress, a listed entry
that is a folder or a symlink loop. With ``on_bad="skip"`` each such recording is left out and listed in
``skipped``. A split that holds no recordings at all is an error, never an empty dataset.

``load_all`` preloads a split as compact CSR arrays (optionally cached as .npz); ``crop_events`` picks
the paper's random 300-event training window. Where the data root keeps N-MNIST (the index written by
``snnbp data nmnist``, ``resolve_nmnist``) is ``snnbp.data.paths``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import os
import re
import stat
import struct
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from snnbp.data.events import NMNIST_SENSOR, events_to_channels
from snnbp.data.nmnist_format import (
    BYTES_PER_EVENT,
    ReadLimits,
    check_file_size,
    decode_events,
    read_file_bytes,
    read_limits,
)
from snnbp.data.paths import SPLIT_DIRS
from snnbp.errors import DataError

log = logging.getLogger(__name__)

CLASSES = tuple(str(d) for d in range(10))
CACHE_VERSION = 1  # bump when load_all's arrays change meaning, so old caches are not reused
_MEMBER = re.compile(r"(?:^|/)([0-9])/([^/]+\.bin)$", re.IGNORECASE)  # ".../<digit>/<name>.bin" in a zip
# What zipfile raises for a damaged archive or member, besides BadZipFile: a corrupt deflate / bzip2 / lzma
# stream (zlib.error, OSError, lzma.LZMAError), a member cut short (EOFError), a header field that makes
# no sense (struct.error, ValueError, OverflowError), a compression method it does not know
# (NotImplementedError). All mean "this file is damaged", never a bug of ours.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, struct.error, ValueError,
               OverflowError, NotImplementedError)


class SplitNotFound(DataError):
    """The asked-for split is simply not at the given path (only Train.zip was given, say).

    Unlike other DataErrors this is not damage: ``snnbp data nmnist --from`` records the splits it finds.
    """


def _no_recordings(where, detail: str = "") -> DataError:
    return DataError(f"no recordings found under {where}{detail}; check the path (expected <digit>/<name>.bin files)")


# ------------------------------------------------------------------------------------------- sources


class _FolderSource:
    """A split folder holding ``<digit>/<name>.bin``."""

    def __init__(self, folder: Path, split_dir: str):
        self.folder, self.split_dir = folder, split_dir
        self.where = str(folder)

    def listing(self) -> list[tuple[str, int, int, str]]:
        """(name, digit, size in bytes, version stamp) of every recording, sorted by digit then file name.

        An entry that cannot be stat'ed (a symlink loop) or is not a regular file (a folder named x.bin) is
        listed with size 0; reading it raises DataError, so it is a bad file like any other. DataError if
        there is no recording at all, naming the class folders that could not be opened.
        """
        items, unopened = [], {}  # unopened: why -> digits whose class folder failed for that reason
        for digit in CLASSES:
            names, problem = _bin_names(self.folder / digit)
            if problem:
                unopened.setdefault(problem, []).append(digit)
            for file_name in names:
                size, stamp = _size_and_stamp(self.folder / digit / file_name)
                items.append((f"{self.split_dir}/{digit}/{file_name}", int(digit), size, stamp))
        why = "; ".join(f"class folder(s) {' '.join(digits)}: {problem}" for problem, digits in unopened.items())
        if not items:
            raise _no_recordings(self.folder, f" ({why})" if why else "")
        if why:
            log.warning("cannot open %s in %s", why, self.folder)
        return items

    def read(self, name: str, limits: ReadLimits) -> bytes:
        return read_file_bytes(self.folder / name.split("/", 1)[1], limits, self.path_of(name))

    def path_of(self, name: str) -> str:
        return str(self.folder / name.split("/", 1)[1])


def _bin_names(folder: Path) -> tuple[list[str], str]:
    """Sorted ``*.bin`` names in one class folder, and why the folder cannot be opened ("" if it can or is absent)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.name.endswith(".bin")), ""
    except FileNotFoundError:  # an absent class (a subset of the digits), or a dangling symlink
        return [], ""
    except OSError as err:  # a symlink loop, no permission, or a file where a folder should be
        return [], err.strerror or str(err)


def _size_and_stamp(path: Path) -> tuple[int, str]:
    """(size in bytes, mtime in ns as text) of a regular file; (0, why not) for anything else."""
    try:
        info = path.stat()
    except OSError as err:
        return 0, f"unreadable: {err.strerror or err}"
    if not stat.S_ISREG(info.st_mode):
        return 0, "not a regular file"
    return info.st_size, str(info.st_mtime_ns)


class _ZipSource:
    """An official zip; members may sit under a top-level folder (``Train/0/00002.bin``) or not."""

    def __init__(self, zip_path: Path, split: str):
        self.zip_path, self.split_dir = zip_path, SPLIT_DIRS[split]
        self.where = str(zip_path)
        self._zip: zipfile.ZipFile | None = None
        self._pid = -1
        self._members: dict[str, zipfile.ZipInfo] = {}

    def _handle(self) -> zipfile.ZipFile:
        # A ZipFile handle must not cross a fork (DataLoader workers): reopen in each process.
        if self._zip is None or self._pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.zip_path)
            except _ZIP_ERRORS as err:
                raise DataError(f"{self.zip_path}: not a readable zip file, truncated or damaged ({err}); download it "
                                "again") from None
            self._pid = os.getpid()
        return self._zip

    def listing(self) -> list[tuple[str, int, int, str]]:
        infos = [i for i in self._handle().infolist() if not i.is_dir() and "__MACOSX" not in i.filename]
        matches = [(i, m) for i in infos if (m := _MEMBER.search(i.filename)) and not m.group(2).startswith("._")]
        tagged = [(i, m, _split_of(i.filename)) for i, m in matches]
        wanted = self.split_dir.lower()
        if any(tag for _, _, tag in tagged):  # the zip names its split(s) in folder names: use them
            tagged = [t for t in tagged if t[2] == wanted]
        elif self.zip_path.stem.lower() in ("train", "test") and self.zip_path.stem.lower() != wanted:
            tagged = []
        if not matches:
            raise _no_recordings(self.zip_path)
        if not tagged:
            raise SplitNotFound(
                f"{self.zip_path} holds no {self.split_dir} recordings; pass {self.split_dir}.zip or the folder "
                "that holds both zips"
            )
        items = []
        for info, m, _ in tagged:
            name = f"{self.split_dir}/{m.group(1)}/{m.group(2)}"
            self._members[name] = info
            items.append((name, int(m.group(1)), info.file_size, f"{info.CRC:08x}"))
        return sorted(items, key=lambda it: (it[1], it[0]))

    def read(self, name: str, limits: ReadLimits) -> bytes:
        """The member's bytes; DataError naming it if it is too big, encrypted, or fails to decompress or its CRC."""
        info, where = self._members[name], self.path_of(name)
        # zipfile stops reading at the declared size, so checking it bounds the memory a member can take.
        check_file_size(info.file_size, where, limits)
        if info.flag_bits & 0x1:
            raise DataError(f"{where}: is encrypted; extract the zip with its password and pass the folder instead")
        try:
            return self._handle().read(info)
        except _ZIP_ERRORS as err:
            raise DataError(f"{where}: cannot be read from the zip ({err}); the zip is damaged - download it again, "
                            "or pass --skip-bad to skip this member") from None

    def path_of(self, name: str) -> str:
        return f"{self.zip_path}::{self._members[name].filename}"

    def __getstate__(self):  # picklable for worker processes; the handle is reopened there
        return {**self.__dict__, "_zip": None, "_pid": -1}


def _split_of(member: str) -> str:
    parts = [p.lower() for p in member.split("/")[:-2]]
    return next((p for p in reversed(parts) if p in ("train", "test")), "")


def _child(folder: Path, name: str) -> Path | None:
    """The entry of ``folder`` called ``name``, ignoring case (Train vs train), or None.

    An entry that exists but cannot be followed (a symlink loop, a dangling link) is a DataError: silently
    treating it as absent would record the data set without that split.
    """
    found = folder / name
    if not os.path.lexists(found):  # lexists: a link is found even when it cannot be followed
        found = next((c for c in folder.iterdir() if c.name.lower() == name.lower()), None)
    if found is not None and not found.exists():
        raise DataError(f"{found} cannot be opened (a symlink loop or a dangling link); fix the link or remove it")
    return found


def open_source(root_or_zip: str | os.PathLike, split: str) -> _FolderSource | _ZipSource:
    """Find the ``split`` of N-MNIST at ``root_or_zip`` (see module docstring); DataError if it is not there."""
    if split not in SPLIT_DIRS:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    split_dir = SPLIT_DIRS[split]
    path = Path(root_or_zip).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; pass the N-MNIST folder or Train.zip / Test.zip")
    if path.is_file():
        if zipfile.is_zipfile(path):
            return _ZipSource(path, split)
        if path.suffix.lower() == ".zip":  # meant to be a zip: say it is damaged rather than "not a zip"
            raise DataError(f"{path}: not a readable zip file, truncated or damaged; download it again")
        raise DataError(f"{path} is neither a folder nor a zip file; pass the N-MNIST folder or Train.zip / Test.zip")
    if path.name.lower() in ("train", "test"):
        if path.name.lower() == split:
            return _FolderSource(path, split_dir)
        path = path.parent  # the Train folder was given but Test is wanted: look beside it
    for candidate in (split_dir, f"{split_dir}.zip"):
        found = _child(path, candidate)
        if found is not None and (found.is_dir() or found.suffix.lower() == ".zip"):
            return _FolderSource(found, split_dir) if found.is_dir() else _ZipSource(found, split)
    if any((path / d).is_dir() for d in CLASSES):  # a bare folder of digit folders
        return _FolderSource(path, split_dir)
    raise SplitNotFound(f"no {split_dir}/ folder or {split_dir}.zip in {path}; pass the folder that holds them")


# ------------------------------------------------------------------------------------------- dataset


class NMNIST:
    """One split of N-MNIST: ``ds[i] -> (events, label)``.

    root_or_zip:     folder or zip (see module docstring)
    split:           "train" or "test"
    digits:          keep only these classes (ints 0..9); None = all
    limit_per_class: keep the first N files of each class (sorted by name); None = all
    files:           keep only these recordings, named ``3/00011.bin`` or ``Train/3/00011.bin``
    on_bad:          "error": a corrupt file raises DataError when read; "skip": every file is checked
                     now, bad ones are left out and listed in ``skipped`` as (name, reason) and logged
    limits:          largest recording accepted (``nmnist_format.ReadLimits``); None = ``read_limits()``,
                     10 s and 1,000,000 events unless raised by environment variables
    Attributes: ``names`` (``Train/3/00011.bin``), ``paths`` (where each is read from), ``labels``
    ((N,) int64), ``sensor_size``, ``classes``, ``skipped``, ``source`` (folder or zip path).
    """

    sensor_size = NMNIST_SENSOR
    classes = CLASSES

    def __init__(self, root_or_zip, split: str = "train", digits=None, limit_per_class: int | None = None,
                 files=None, on_bad: str = "error", progress: bool = False, limits: ReadLimits | None = None):
        if on_bad not in ("error", "skip"):
            raise DataError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
        self.split, self.on_bad = split, on_bad
        self.limits = read_limits() if limits is None else limits  # once, so a bad environment fails here
        self._src = open_source(root_or_zip, split)
        self.source = self._src.where
        items = _select(self._src.listing(), self._src.split_dir, digits, limit_per_class, files)
        self.skipped: list[tuple[str, str]] = []
        if on_bad == "skip":
            items = self._drop_bad(items, progress)
        self.names = [it[0] for it in items]
        self.labels = np.array([it[1] for it in items], dtype=np.int64)
        self.sizes = np.array([it[2] for it in items], dtype=np.int64)  # bytes, markers included
        self._stamps = [it[3] for it in items]

    @property
    def paths(self) -> list[str]:
        return [self._src.path_of(n) for n in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        """Events (EVENT_DTYPE, t in us) and label of recording ``i``."""
        return self._decode(self.names[i]), int(self.labels[i])

    def _decode(self, name: str) -> np.ndarray:
        """Read and decode one recording within ``self.limits``; DataError naming it if it is bad."""
        raw = self._src.read(name, self.limits)
        return decode_events(raw, name, sensor=self.sensor_size, limits=self.limits)

    def counts(self) -> dict[str, int]:
        """Recordings per class, {"0": n0, ..., "9": n9}."""
        return {c: int(n) for c, n in zip(CLASSES, np.bincount(self.labels, minlength=10))}

    def fingerprint(self) -> str:
        """sha256 hex of source, split, file names, sizes and version stamps (mtime or zip CRC)."""
        source = str(Path(self.source).resolve())
        key = [CACHE_VERSION, source, self.split, self.names, self.sizes.tolist(), self._stamps]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()

    def to_event_batch_arrays(self, progress: bool = True, cache_dir=None) -> "NMNISTArrays":
        """``load_all(self, ...)``."""
        return load_all(self, progress=progress, cache_dir=cache_dir)

    def _drop_bad(self, items, progress: bool):
        good = []
        for it in _bar(items, f"checking N-MNIST {self._src.split_dir}", progress):
            try:
                self._decode(it[0])
            except DataError as err:
                self.skipped.append((it[0], str(err)))
                log.warning("skipping %s", err)
                continue
            good.append(it)
        if self.skipped:
            log.warning("skipped %d bad N-MNIST file(s) of %d in %s", len(self.skipped), len(items), self.source)
        return good


def _select(items, split_dir: str, digits, limit_per_class, files):
    if digits is not None:
        keep = {int(d) for d in digits}
        items = [it for it in items if it[1] in keep]
    if files is not None:
        given = [str(f).replace(os.sep, "/") for f in files]
        wanted = {f if f.startswith(split_dir + "/") else f"{split_dir}/{f}" for f in given}
        missing = sorted(wanted - {it[0] for it in items})
        if missing:
            raise DataError(
                f"{missing[0]} (and {len(missing) - 1} more) not found in the {split_dir} split; check the names"
            )
        items = [it for it in items if it[0] in wanted]
    if limit_per_class is not None:
        kept, per_class = [], dict.fromkeys(range(10), 0)
        for it in items:  # items are sorted by name within a class, so this keeps the first N
            if per_class[it[1]] < limit_per_class:
                per_class[it[1]] += 1
                kept.append(it)
        items = kept
    return items


def _bar(iterable, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit="file", disable=not (progress and sys.stderr.isatty()))


# ------------------------------------------------------------------------------------------- preload


class NMNISTArrays(NamedTuple):
    """A whole split in CSR form; sample b owns events ``offsets[b]:offsets[b + 1]``.

    channels: (E,) int16 input channel ``(p * 34 + y) * 34 + x`` (0..2311), as events_to_channels
    times_us: (E,) int32 event time in microseconds (non-decreasing within a sample)
    offsets:  (B + 1,) int64
    labels:   (B,) int64 digit 0..9
    """

    channels: np.ndarray
    times_us: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray


def load_all(dataset: NMNIST, progress: bool = True, cache_dir=None) -> NMNISTArrays:
    """Read every recording of ``dataset`` into one NMNISTArrays (about 6 bytes per event).

    cache_dir: if given, the arrays are kept there as ``nmnist-<split>-<fingerprint>.npz`` and reused
    while the file list (names, sizes, mtimes or zip CRCs) is unchanged.
    """
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"nmnist-{dataset.split}-{dataset.fingerprint()[:20]}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return NMNISTArrays(*(z[k] for k in NMNISTArrays._fields))
    arrays = _read_all(dataset, progress)
    if cache is not None:
        _save_npz(cache, arrays)
    return arrays


def _read_all(dataset: NMNIST, progress: bool) -> NMNISTArrays:
    capacity = int(dataset.sizes.sum()) // BYTES_PER_EVENT  # upper bound: markers are dropped
    channels = np.empty(capacity, dtype=np.int16)
    times = np.empty(capacity, dtype=np.int32)
    offsets = np.zeros(len(dataset) + 1, dtype=np.int64)
    t_max = np.iinfo(np.int32).max
    for b in _bar(range(len(dataset)), f"loading N-MNIST {dataset.split}", progress):
        events, _ = dataset[b]
        s, e = offsets[b], offsets[b] + len(events)
        if len(events) and events["t"][-1] > t_max:
            raise DataError(f"{dataset.names[b]}: lasts {events['t'][-1]} us, too long for int32 times; trim it")
        channels[s:e] = events_to_channels(events, dataset.sensor_size)
        times[s:e] = events["t"]
        offsets[b + 1] = e
    n = int(offsets[-1])
    return NMNISTArrays(channels[:n].copy(), times[:n].copy(), offsets, dataset.labels.copy())


def _save_npz(path: Path, arrays: NMNISTArrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays._asdict())
        os.replace(tmp, path)  # never leave a half-written cache that a later run would trust
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def crop_events(n_events_total, length: int = 300, rng: np.random.Generator | None = None):
    """Start and stop of a random window of ``length`` consecutive events inside each stream.

    n_events_total: int or (B,) int array, events in each stream
    Returns ``(start, stop)`` of the same shape: ``start`` uniform on ``0..n - length`` so the window
    stays inside the stream, ``stop - start = min(n, length)`` (a shorter stream is used whole).
    """
    rng = np.random.default_rng() if rng is None else rng
    n = np.asarray(n_events_total, dtype=np.int64)
    if np.any(n < 0) or length < 1:
        raise ValueError("n_events_total must be >= 0 and length >= 1")
    start = rng.integers(0, np.maximum(n - length, 0) + 1)  # high is exclusive
    stop = start + np.minimum(n, length)
    if n.ndim == 0:
        return int(start), int(stop)
    return start.astype(np.int64), stop.astype(np.int64)
