"""A tiny learnable MNIST look-alike written with the project's own IDX writer (no network).

The files are then recorded with ``record_mnist``, as ``snnbp data mnist`` records the files it verified,
so loading them goes through the same checksum check as real data (``load_mnist`` refuses unrecorded files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnbp.data.idx import write_idx
from snnbp.data.mnist import FILE_NAMES, record_mnist


def write_fake_mnist(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """Each class lights its own 3 rows of a 28x28 image (plus noise), so a small net can learn it."""
    rng = np.random.default_rng(seed)
    directory = root / "mnist"
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = (rng.random((n, 28, 28)) < 0.02).astype(np.uint8) * 80
        for i, c in enumerate(labels):
            images[i, 2 * c + 4: 2 * c + 7, 4:24] = 255
        write_idx(directory / FILE_NAMES[(split, "images")], images)
        write_idx(directory / FILE_NAMES[(split, "labels")], labels)
    record_mnist(directory)
    return root
