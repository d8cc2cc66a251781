"""Where the data lives: the data root, and the index that says where N-MNIST is under it.

``data_root``: ``$SNNBP_DATA`` or ``~/.cache/snnbp`` unless a root is given. Under it,
``nmnist/index.json`` records the N-MNIST copy that ``snnbp data nmnist --from`` checked (``write_index``)
and ``nmnist-synthetic/`` holds the one ``snnbp data nmnist --synthetic`` made; ``resolve_nmnist`` turns
either into a path for ``snnbp.data.nmnist.NMNIST``. ``SPLIT_DIRS`` names the split folders of the layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from snnbp.errors import DataError
from snnbp.files import write_json_atomic

SPLIT_DIRS = {"train": "Train", "test": "Test"}  # split folders of the N-MNIST layout
INDEX_DIR = "nmnist"  # under the data root
INDEX_FILE = "index.json"
SYNTHETIC_DIR = "nmnist-synthetic"  # where snnbp.data.synthetic.writer writes (its SUBDIR)


def data_root(root: str | Path | None = None) -> Path:
    """The data root: ``root`` if given, else ``$SNNBP_DATA`` if set and non-empty, else ``~/.cache/snnbp``."""
    if root is None:
        root = os.environ.get("SNNBP_DATA") or Path.home() / ".cache" / "snnbp"
    return Path(root).expanduser()


def index_path(root=None) -> Path:
    """``<data root>/nmnist/index.json``, written by ``snnbp data nmnist --from``."""
    return data_root(root) / INDEX_DIR / INDEX_FILE


def write_index(record: dict, root=None) -> Path:
    """Save what ``snnbp data nmnist --from`` found (atomically) and return the index path."""
    path = index_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, record)


def resolve_nmnist(root=None, kind: str = "real", split: str | None = None) -> Path:
    """Where N-MNIST is: a folder or zip that ``NMNIST(path, split)`` opens.

    kind "real": the path recorded by ``snnbp data nmnist --from``; "synthetic": ``<root>/nmnist-synthetic``
    made by ``snnbp data nmnist --synthetic``. ``split``, if given, must be present there.
    Raises DataError naming the command to run when the data is not set up.
    """
    if kind == "synthetic":
        folder = data_root(root) / SYNTHETIC_DIR
        meta = folder / "SYNTHETIC.json"
        if not meta.is_file() or not json.loads(meta.read_text()).get("complete"):
            raise DataError(f"no complete synthetic N-MNIST in {folder}; run `snnbp data nmnist --synthetic`")
        return folder
    if kind != "real":
        raise DataError(f"kind must be 'real' or 'synthetic', got {kind!r}")
    path = index_path(root)
    if not path.is_file():
        raise DataError(
            f"N-MNIST is not set up ({path} is missing); download Train.zip and Test.zip from the N-MNIST site "
            "and run `snnbp data nmnist --from DIR_OR_ZIP`"
        )
    record = json.loads(path.read_text())
    data = Path(record["path"])
    if not data.exists():
        raise DataError(
            f"N-MNIST was recorded at {data}, which is gone; run `snnbp data nmnist --from DIR_OR_ZIP` again"
        )
    if split is not None and split not in record.get("splits", {}):
        raise DataError(
            f"the N-MNIST at {data} has no {SPLIT_DIRS.get(split, split)} split; run `snnbp data nmnist --from` "
            "with a folder or zips holding both Train and Test"
        )
    return data
